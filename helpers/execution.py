"""Executes one notebook in a fresh Jupyter kernel with papermill: what the runner does for each notebook, and what a
notebook does first when an earlier notebook's results are missing (run_prerequisite)."""
from __future__ import annotations

import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode

from helpers.config import REPO_ROOT, display_path, on_databricks, settings, workspace_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# What run_prerequisite prints when a notebook first runs an earlier one whose results are missing.
PREREQUISITE_LINE = re.compile(r"running (\d\d_\w+\.ipynb) first")


@dataclass
class Result:
    notebook: str
    status: str  # "passed", "failed", "not run"
    seconds: float = 0.0
    error: str = ""


class LoggedKernelManager(AsyncKernelManager):
    """A kernel whose own terminal output goes to a log file. ipykernel copies whatever a cell's child processes (a
    project run, a JVM) write to its file descriptors both into the cell and to the terminal the kernel was started
    from: the cells keep it, and the runner's console keeps only its progress lines and table."""

    log_path = Unicode("", config=True, help="the file that receives the kernel process's stdout and stderr")

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        if not self.log_path:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        with open(self.log_path, "ab") as log:  # the kernel gets its own copy of the descriptor
            return await super()._async_launch_kernel(kernel_cmd, **{"stdout": log, "stderr": log, **kw})


def kernel_config(log: Path):
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    # Kernels talk to the runner over local sockets (IPC), not TCP: nothing to eavesdrop on, and no
    # "Kernel is running over TCP without encryption" warning from every kernel. The sockets go beside Jupyter's
    # connection files, not into the notebook's folder, where JupyterLab would list them. Each kernel gets its own
    # prefix: jupyter_client numbers sockets from the first free file name, so two runners starting kernels at the
    # same moment (the test suite's workers) would otherwise bind the same sockets and read each other's messages.
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    prefix = runtime / f"course-kernel-{uuid.uuid4().hex[:12]}"
    return Config({"KernelManager": {"transport": "ipc", "ip": str(prefix)},
                   "LoggedKernelManager": {"log_path": str(log)},
                   "NotebookClient": {"kernel_manager_class": LoggedKernelManager}})


def kernel_log() -> Path:
    return workspace_dir("logs") / "kernels.log"


def executed_folder() -> Path:
    """Where the runner writes executed notebooks (papermill's per-cell durations included)."""
    return settings().workspace / "executed"


def run_notebook(source: Path, output: Path, parameters: dict, kernel: str, timeout: int) -> Result:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)  # a prerequisite run from a notebook: no runner made it
    started = time.monotonic()
    try:
        papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=kernel,
                                   cwd=str(source.parent), progress_bar=sys.stderr.isatty(),
                                   execution_timeout=timeout, log_output=False, config=kernel_config(kernel_log()))
    except PapermillExecutionError as error:
        message = (f"{source.name} failed in cell {error.cell_index} (execution count {error.exec_count}): "
                   f"{error.ename}: {error.evalue}. The executed notebook, with the traceback, is "
                   f"{display_path(output)}; the kernel's own output is in {display_path(kernel_log())}.")
        return Result(source.name, "failed", time.monotonic() - started, message)
    return Result(source.name, "passed", time.monotonic() - started)


def run_prerequisite(notebook: str, reason: str) -> None:
    """Runs an earlier notebook whose results are missing, so that every notebook also runs on its own.

    On Databricks it asks the learner to run it instead (the runner starts local kernels).
    """
    if on_databricks():
        raise RuntimeError(f"{reason}: run notebooks/{notebook} first.")
    print(f"{reason}: running {notebook} first ...", flush=True)
    result = run_notebook(NOTEBOOK_DIR / notebook, executed_folder() / notebook, {}, "python3", 1800)
    if result.status != "passed":
        raise RuntimeError(f"{reason}, and running {notebook} to build it failed. {result.error}")
