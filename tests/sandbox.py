"""Runs Python code the way a fresh machine would see it: system JDKs and download caches hidden (root + unshare)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEM_JDKS = Path("/usr/lib/jvm")
HOME = Path(os.path.expanduser("~"))  # Java reads the password file's home; so does this, as root
IVY_CACHE = HOME / ".ivy2.5.2"
MAVEN_CACHE = HOME / ".m2"


def run_python_hidden(code: str, hide: list[Path], env: dict[str, str], timeout: int = 600):
    """Runs `code` in this interpreter with an empty tmpfs mounted over each of `hide`, visible to that process only."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        reason = "hiding the system JDK and caches needs root and unshare"
        if os.environ.get("CI"):  # CI runs as root: there, a missing fresh-machine check is a failure, not a skip
            pytest.fail(f"{reason}, and CI must run this test")
        pytest.skip(f"{reason} (CI runs as root)")
    mounts = []
    for folder in hide:
        folder.mkdir(parents=True, exist_ok=True)
        mounts.append(f"mount -t tmpfs none {folder}")
    script = " && ".join([*mounts, 'exec "$0" -c "$1"'])
    return subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable, code], env=env,
                          capture_output=True, text=True, timeout=timeout)


def clean_env(workspace: Path, **extra: str) -> dict[str, str]:
    """This process's environment without JAVA_HOME or course variables, with its own workspace."""
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME" and not k.startswith(("COURSE_", "MLFLOW_"))}
    env["COURSE_WORKSPACE"] = str(workspace)
    env.update(extra)
    return env


def delta_round_trip(table: Path, rows: int) -> str:
    """Python code that starts the course's Spark, writes `rows` rows to a Delta table and prints `rows <count>`."""
    return ("from helpers import start_spark\n"
            "spark = start_spark()\n"
            f"spark.range({rows}).write.format('delta').save({str(table)!r})\n"
            f"print('rows', spark.read.format('delta').load({str(table)!r}).count())\n")
