"""Process checks shared by the tests that start servers: which of these processes still run."""
from __future__ import annotations

import time

import psutil


def alive(pids: list[int]) -> list[int]:
    """The pids that still run (a zombie has ended; it only waits for its parent to collect it)."""
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            pass
    return living


def wait_until_gone(pids: list[int], seconds: float = 20) -> list[int]:
    """Waits up to `seconds` for the processes to end; returns those still running."""
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive(pids)
