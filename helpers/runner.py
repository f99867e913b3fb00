"""The course runner: executes the notebooks in order with papermill and prints a table of what happened.

    course-run                       # every notebook, in the course workspace
    course-run --only 00 01          # a subset, by number prefix
    course-run --fresh               # delete the workspace first
    course-run --write-back          # refresh the committed outputs in notebooks/ (maintainers)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.config import REPO_ROOT, display_path, settings

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# Papermill's bookkeeping, dropped from committed notebooks so that a refresh only changes real outputs.
PAPERMILL_KEYS = ("papermill", "execution")


@dataclass
class Result:
    notebook: str
    status: str  # "passed", "failed", "not run"
    seconds: float = 0.0
    error: str = ""


def course_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The notebooks in course order (their number prefix), optionally those whose name starts with one of `only`."""
    folder = folder or NOTEBOOK_DIR
    notebooks = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(prefix) for prefix in only)]
        if not notebooks:
            raise SystemExit(f"No notebook in {display_path(folder)} starts with {', '.join(only)}.")
    return notebooks


def parse_parameters(pairs: list[str]) -> dict[str, object]:
    """`name=value` pairs; values that read as Python literals (numbers, True) become them."""
    import ast

    parameters = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"Parameter {pair!r} is not name=value.")
        try:
            parameters[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parameters[name] = value
    return parameters


def clean_for_commit(path: Path) -> None:
    """Removes papermill's per-run metadata from an executed notebook before it is committed."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for key in PAPERMILL_KEYS:
        notebook.metadata.pop(key, None)
    for cell in notebook.cells:
        for key in PAPERMILL_KEYS:
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            cell.metadata.pop("tags")
    nbformat.write(notebook, path)


def run_notebook(source: Path, output: Path, parameters: dict, kernel: str, timeout: int) -> Result:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)  # a prerequisite run from a notebook: no runner made it
    started = time.monotonic()
    try:
        papermill.execute_notebook(str(source), str(output), parameters=parameters, kernel_name=kernel,
                                   cwd=str(source.parent), progress_bar=sys.stderr.isatty(),
                                   execution_timeout=timeout, log_output=False)
    except PapermillExecutionError as error:
        message = (f"{source.name} failed in cell {error.cell_index} (execution count {error.exec_count}): "
                   f"{error.ename}: {error.evalue}. The executed notebook, with the traceback, is "
                   f"{display_path(output)}.")
        return Result(source.name, "failed", time.monotonic() - started, message)
    return Result(source.name, "passed", time.monotonic() - started)


def run_prerequisite(notebook: str, reason: str) -> None:
    """Runs an earlier notebook whose results are missing, so that every notebook also runs on its own.

    On Databricks it asks the learner to run it instead (the runner starts local kernels).
    """
    from helpers.config import on_databricks

    if on_databricks():
        raise RuntimeError(f"{reason}: run notebooks/{notebook} first.")
    print(f"{reason}: running {notebook} first ...", flush=True)
    result = run_notebook(NOTEBOOK_DIR / notebook, settings().workspace / "executed" / notebook, {}, "python3", 1800)
    if result.status != "passed":
        raise RuntimeError(f"{reason}, and running {notebook} to build it failed. {result.error}")


def print_table(results: list[Result]) -> None:
    width = max(len("notebook"), *(len(r.notebook) for r in results))
    print(f"\n{'notebook':<{width}}  {'status':<7}  {'seconds':>7}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 7}")
    for r in results:
        seconds = f"{r.seconds:7.1f}" if r.status != "not run" else f"{'-':>7}"
        print(f"{r.notebook:<{width}}  {r.status:<7}  {seconds}")
    total = sum(r.seconds for r in results)
    print(f"{'total':<{width}}  {'':<7}  {total:7.1f}")


def run_course(notebooks: list[Path], parameters: dict, kernel: str = "python3", timeout: int = 1800,
               write_back: bool = False) -> list[Result]:
    """Runs `notebooks` in order into the workspace's executed/ folder; stops at the first failure."""
    executed = settings().workspace / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    results = [Result(nb.name, "not run") for nb in notebooks]
    for index, notebook in enumerate(notebooks):
        print(f"[{index + 1}/{len(notebooks)}] {notebook.name} ...", flush=True)
        output = executed / notebook.name
        results[index] = result = run_notebook(notebook, output, parameters, kernel, timeout)
        print(f"[{index + 1}/{len(notebooks)}] {notebook.name} {result.status} in {result.seconds:.1f} s", flush=True)
        if result.status == "failed":
            break
        if write_back:
            clean_for_commit(output)
            shutil.copyfile(output, notebook)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course-run", description="Run the course's notebooks in order.")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only the notebooks with these number prefixes")
    parser.add_argument("--workspace", help="the course workspace to use (default: COURSE_WORKSPACE or workspace/)")
    parser.add_argument("--fresh", action="store_true", help="delete the workspace first")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="a papermill parameter for every notebook (repeatable)")
    parser.add_argument("--write-back", action="store_true",
                        help="copy the executed notebooks, outputs included, back into notebooks/ (maintainers)")
    parser.add_argument("--kernel", default="python3", help="the Jupyter kernel to run (default: python3)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds one cell may take (default: 1800)")
    args = parser.parse_args(argv)

    if args.write_back and args.parameter:
        parser.error("--write-back takes the outputs of a default run: drop the -p parameters.")
    if args.workspace:
        os.environ["COURSE_WORKSPACE"] = str(Path(args.workspace).resolve())  # the kernels inherit it
    workspace = settings().workspace
    if args.fresh and workspace.exists():
        shutil.rmtree(workspace)
    print(f"Course workspace: {display_path(workspace)}")
    results = run_course(course_notebooks(args.only), parse_parameters(args.parameter), args.kernel, args.timeout,
                         args.write_back)
    print_table(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"\n{failed[0].error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
