"""The course runner: executes the notebooks in order with papermill and prints a table of what happened.

    course-run                       # every notebook, in the course workspace
    course-run --only 00 01          # a subset, by number prefix
    course-run --fresh               # delete the workspace first
    course-run --write-back          # refresh the committed outputs in notebooks/ (maintainers)
    course-run --fresh --profile     # the speed report: each notebook in reference floors, and its slowest cells
    course-run --labs --profile      # the labs instead (each solutions version, then its learner version)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from helpers.config import REPO_ROOT, display_path, settings
from helpers import execution
from helpers.execution import PREREQUISITE_LINE, Result, executed_folder, run_notebook

if TYPE_CHECKING:
    from helpers.spark import SharedDriver

# The least any notebook can cost: a fresh kernel, a plain Spark session with Delta, one count of a table.
REFERENCE_FLOOR = REPO_ROOT / "benchmarks" / "reference_floor.ipynb"
# A lesson may cost this many floors, plus one per extra process it is about (its metadata's course.extra_processes).
FLOORS_PER_LESSON = 3
# A lab may cost this many, whichever version runs.
FLOORS_PER_LAB = 2
# The table's row for the shared Spark driver's start-up (run_course).
SHARED_DRIVER_ROW = "(shared Spark driver)"
# Papermill's bookkeeping, dropped from committed notebooks so that a refresh only changes real outputs.
PAPERMILL_KEYS = ("papermill", "execution")


def course_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The notebooks in course order (their number prefix), optionally those whose name starts with one of `only`."""
    folder = folder or execution.NOTEBOOK_DIR
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


def print_table(results: list[Result]) -> None:
    width = max(len("notebook"), *(len(r.notebook) for r in results))
    print(f"\n{'notebook':<{width}}  {'status':<7}  {'seconds':>7}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 7}")
    for r in results:
        seconds = f"{r.seconds:7.1f}" if r.status != "not run" else f"{'-':>7}"
        print(f"{r.notebook:<{width}}  {r.status:<7}  {seconds}")
    total = sum(r.seconds for r in results)
    print(f"{'total':<{width}}  {'':<7}  {total:7.1f}")


@dataclass
class CellTime:
    index: int
    seconds: float
    first_line: str


def slowest_cells(executed: Path, count: int = 3) -> list[CellTime]:
    """The slowest code cells of an executed notebook, from the durations papermill records in its metadata."""
    import nbformat

    cells = [CellTime(index, cell.metadata.get("papermill", {}).get("duration") or 0.0,
                      next((line for line in cell.source.splitlines() if line.strip()), ""))
             for index, cell in enumerate(nbformat.read(executed, as_version=4).cells) if cell.cell_type == "code"]
    return sorted(cells, key=lambda cell: -cell.seconds)[:count]


def lesson_budget(notebook: Path) -> int:
    """Reference floors a lesson may cost: 3, plus one per extra process it is about (a project run, a job); a lab
    may cost 2."""
    import nbformat

    from helpers.labs import LAB_DIR

    if notebook.parent == LAB_DIR:
        return FLOORS_PER_LAB
    extra = nbformat.read(notebook, as_version=4).metadata.get("course", {}).get("extra_processes", 0)
    return FLOORS_PER_LESSON + int(extra)


def measure_floor(kernel: str) -> Result:
    """Runs the reference-floor notebook; it needs the retail_features table of notebook 00. The floor is a plain
    classic session whatever mode the course ran in, so that runs in both modes are measured in the same unit."""
    from helpers.spark import SPARK_REMOTE

    remote = os.environ.pop(SPARK_REMOTE, None)
    try:
        return run_notebook(REFERENCE_FLOOR, executed_folder() / REFERENCE_FLOOR.name, {}, kernel, 600)
    finally:
        if remote is not None:
            os.environ[SPARK_REMOTE] = remote


def prerequisite_seconds(executed: Path) -> tuple[str, float] | None:
    """The earlier notebook an executed notebook ran first because its results were missing (run_prerequisite), and
    how long that took by papermill's clock: the prerequisite's cost, not the notebook's own."""
    import nbformat

    for cell in nbformat.read(executed, as_version=4).cells:
        for output in cell.get("outputs", []):
            match = PREREQUISITE_LINE.search(output.get("text", ""))
            if match and (executed.parent / match[1]).exists():
                ran = nbformat.read(executed.parent / match[1], as_version=4)
                return match[1], float(ran.metadata.get("papermill", {}).get("duration") or 0.0)
    return None


def print_profile(results: list[Result], floor: Result, folder: Path | None = None) -> None:
    """The speed report: seconds, reference floors and budget per notebook, and each one's slowest cells. A notebook
    that first ran a prerequisite is measured without it, and the row says so."""
    folder = folder or execution.NOTEBOOK_DIR
    if floor.status != "passed":
        print(f"\nNo speed report: the reference floor did not run. {floor.error}")
        return
    executed = executed_folder()
    print(f"\nSpeed report: reference floor {floor.seconds:.1f} s (a fresh kernel, a plain local Spark session "
          "with Delta, one count of retail_features)")
    width = max(len(r.notebook) for r in results)
    print(f"{'notebook':<{width}}  {'seconds':>7}  {'floors':>6}  {'budget':>6}  slowest cells (index: seconds)")
    for r in results:
        if r.status != "passed":
            continue
        floors = r.seconds / floor.seconds
        if r.notebook == SHARED_DRIVER_ROW:  # counted in the total, as a part of no lesson
            print(f"{r.notebook:<{width}}  {r.seconds:7.1f}  {floors:6.1f}")
            continue
        budget = lesson_budget(folder / r.notebook)
        cells = ", ".join(f"{c.index}: {c.seconds:.1f} ({c.first_line[:30]})" for c in slowest_cells(executed / r.notebook))
        prerequisite = prerequisite_seconds(executed / r.notebook)
        if prerequisite:
            floors = (r.seconds - prerequisite[1]) / floor.seconds
            cells = f"{prerequisite[1]:.1f} s of it ran {prerequisite[0]} first, not counted in its floors; {cells}"
        print(f"{r.notebook:<{width}}  {r.seconds:7.1f}  {floors:6.1f}  {budget:6d}{' !' if floors > budget else '  '}"
              f"  {cells}")
    total = sum(r.seconds for r in results if r.status == "passed")
    print(f"{'total':<{width}}  {total:7.1f}  {total / floor.seconds:6.1f}   ('!': over its budget)")


def start_shared_driver() -> tuple[SharedDriver | None, Result | None]:
    """The Spark driver the notebooks attach to in turn, and what starting it cost (a row of the table); (None,
    None) if it could not start."""
    from helpers.spark import SharedDriver

    started = time.monotonic()
    driver = SharedDriver.start()
    seconds = time.monotonic() - started
    print(f"Shared Spark driver: {'started' if driver else 'not started; each notebook starts its own'} "
          f"in {seconds:.1f} s", flush=True)
    return (driver, Result(SHARED_DRIVER_ROW, "passed", seconds)) if driver else (None, None)


def run_course(notebooks: list[Path], parameters: dict, kernel: str = "python3", timeout: int = 1800,
               write_back: bool = False, shared_driver: bool = True, keep_going: bool = False) -> list[Result]:
    """Runs `notebooks` in order into the workspace's executed/ folder; stops at the first failure unless
    `keep_going` (for notebooks that do not need the ones before, as the labs after a failed one).

    With `shared_driver`, the kernels attach one after another to one Spark driver (helpers.spark.SharedDriver),
    whose start-up is the table's first row; without it each notebook starts its own, as in Jupyter.
    """
    from helpers.spark import SHARED_DRIVER

    executed = executed_folder()
    executed.mkdir(parents=True, exist_ok=True)
    results = [Result(nb.name, "not run") for nb in notebooks]
    driver, start = start_shared_driver() if shared_driver else (None, None)
    try:
        for index, notebook in enumerate(notebooks):
            print(f"[{index + 1}/{len(notebooks)}] {notebook.name} ...", flush=True)
            output = executed / notebook.name
            if driver:
                os.environ[SHARED_DRIVER] = driver.address  # inherited by the kernel and the processes it starts
            results[index] = result = run_notebook(notebook, output, parameters, kernel, timeout)
            os.environ.pop(SHARED_DRIVER, None)
            if driver and not driver.release():
                print("The shared Spark driver stopped answering; the next notebooks start their own.", flush=True)
                driver = None
            print(f"[{index + 1}/{len(notebooks)}] {notebook.name} {result.status} in {result.seconds:.1f} s",
                  flush=True)
            if result.status == "failed" and not keep_going:
                break
            if write_back:  # the executed copy keeps papermill's cell durations, for --profile
                shutil.copyfile(output, notebook)
                clean_for_commit(notebook)
    finally:
        if driver:
            driver.close()
    return ([start] if start else []) + results


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
    parser.add_argument("--driver-per-notebook", action="store_true",
                        help="start a Spark driver in every notebook, as Jupyter does, instead of one shared driver")
    parser.add_argument("--labs", action="store_true",
                        help="run the labs (notebooks/labs/, each solutions version then its learner version)")
    parser.add_argument("--keep-going", action="store_true", help="run the next notebooks after a failed one")
    parser.add_argument("--with-lessons", action="store_true", help="with --labs: each lesson before its lab")
    parser.add_argument("--profile", action="store_true",
                        help="then measure the reference floor and print each notebook's floors and slowest cells")
    args = parser.parse_args(argv)

    if args.write_back and args.parameter:
        parser.error("--write-back takes the outputs of a default run: drop the -p parameters.")
    if args.write_back and args.labs:
        parser.error("--write-back is for the lessons: the labs are committed without outputs.")
    if args.workspace:
        os.environ["COURSE_WORKSPACE"] = str(Path(args.workspace).resolve())  # the kernels inherit it
    workspace = settings().workspace
    if args.fresh and workspace.exists():
        shutil.rmtree(workspace)
    print(f"Course workspace: {display_path(workspace)}")
    from helpers.spark import SPARK_REMOTE

    remote = os.environ.get(SPARK_REMOTE, "").strip()
    if remote:  # a kernel's local Connect server cannot be handed on to the next kernel as a classic driver is
        print(f"Spark Connect (SPARK_REMOTE={remote}): each notebook starts its own session")
    from helpers.labs import LAB_DIR, lab_notebooks

    notebooks = lab_notebooks(args.only) if args.labs else course_notebooks(args.only)
    if args.labs and args.with_lessons:  # each lesson, then its lab: a learner's order where nothing runs by itself
        notebooks = [path for lesson in course_notebooks(args.only) for path in
                     (lesson, *(lab for lab in notebooks if lab.name[:3] == lesson.name[:3]))]
    if not notebooks:
        parser.error(f"no lab in {display_path(LAB_DIR)} starts with {', '.join(args.only or [])}.")
    results = run_course(notebooks, parse_parameters(args.parameter), args.kernel, args.timeout,
                         args.write_back, shared_driver=not (args.driver_per_notebook or remote),
                         keep_going=args.keep_going)
    print_table(results)
    if args.profile:
        print_profile(results, measure_floor(args.kernel), LAB_DIR if args.labs else execution.NOTEBOOK_DIR)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"\n{failed[0].error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
