"""The labs: each is written once, as notebooks/labs/NN_<lesson>_solutions.ipynb with its solutions marked, and the
learner's NN_<lesson>_lab.ipynb is generated from it.

    python3 course.py generate-labs           # write every learner version from its solutions version (maintainers)
    python3 course.py generate-labs --check   # exit 1, naming them, if a committed learner version is stale

A learner version records a fingerprint of the cells it was generated with; one whose cells were changed since (a
learner's work) is never replaced unless --force is given, and the command names it.

A solution is marked as nbgrader marks it: in a code cell, the lines from `### BEGIN SOLUTION` to `### END SOLUTION`
become `# YOUR CODE HERE` (at the same indent); in a Markdown cell, the text from `<!-- BEGIN SOLUTION -->` to
`<!-- END SOLUTION -->` becomes "_Your answer here._". Outputs are never committed in either version.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

from helpers.config import REPO_ROOT, display_path

LAB_DIR = REPO_ROOT / "notebooks" / "labs"
SOLUTIONS_SUFFIX = "_solutions.ipynb"
LEARNER_SUFFIX = "_lab.ipynb"
CODE_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.M | re.S)
MARKDOWN_SOLUTION = re.compile(r"<!-- BEGIN SOLUTION -->.*?<!-- END SOLUTION -->", re.S)
CODE_PLACEHOLDER = "# YOUR CODE HERE"
MARKDOWN_PLACEHOLDER = "_Your answer here._"
# The solutions version says so in its title; the learner's does not.
SOLUTIONS_TITLE = " (solutions)"


def solutions_notebooks(folder: Path | None = None) -> list[Path]:
    """The solutions versions, in course order."""
    return sorted((folder or LAB_DIR).glob(f"[0-9][0-9]_*{SOLUTIONS_SUFFIX}"))


def learner_path(solutions: Path) -> Path:
    return solutions.with_name(solutions.name.removesuffix(SOLUTIONS_SUFFIX) + LEARNER_SUFFIX)


def lab_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """Each lab's solutions version, then its learner version, in course order (optionally those starting with one
    of `only`)."""
    labs = [path for solutions in solutions_notebooks(folder) for path in (solutions, learner_path(solutions))]
    return [p for p in labs if not only or any(p.name.startswith(prefix) for prefix in only)]


def without_solutions(source: str, cell_type: str) -> str:
    """A cell's source with its marked solutions replaced by the learner's placeholder."""
    if cell_type == "code":
        return CODE_SOLUTION.sub(lambda m: f"{m.group(1)}{CODE_PLACEHOLDER}{m.group(2)}", source)
    return MARKDOWN_SOLUTION.sub(MARKDOWN_PLACEHOLDER, source)


def cells_fingerprint(notebook) -> str:
    """What a learner changes when they work on a lab: the cells' types and sources (not outputs or metadata)."""
    cells = "\0".join(f"{cell.cell_type}\0{cell.source}" for cell in notebook.cells)
    return hashlib.sha256(cells.encode()).hexdigest()


def learner_version(solutions):
    """The learner's notebook from a solutions notebook (an nbformat node): solutions and outputs removed, and the
    fingerprint of its cells as generated recorded in its metadata."""
    import copy

    notebook = copy.deepcopy(solutions)
    for cell in notebook.cells:
        cell.source = without_solutions(cell.source, cell.cell_type)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    title = notebook.cells[0]
    title.source = title.source.replace(SOLUTIONS_TITLE, "", 1)
    notebook.metadata.setdefault("course", {})["generated_cells"] = cells_fingerprint(notebook)
    return notebook


def changed_since_generated(learner: Path) -> bool:
    """Whether someone changed the cells of this learner version since it was generated (a learner's work)."""
    import nbformat

    notebook = nbformat.read(learner, as_version=4)
    return notebook.metadata.get("course", {}).get("generated_cells") != cells_fingerprint(notebook)


def rendered(notebook) -> str:
    import nbformat

    return nbformat.writes(notebook) + "\n"


def learner_text(solutions: Path) -> str:
    import nbformat

    return rendered(learner_version(nbformat.read(solutions, as_version=4)))


def stale_learner_versions(folder: Path | None = None) -> list[Path]:
    """The learner versions that are missing or differ from what their solutions version generates."""
    return [learner_path(s) for s in solutions_notebooks(folder)
            if not learner_path(s).exists() or learner_path(s).read_text() != learner_text(s)]


def write_learner_versions(folder: Path | None = None, force: bool = False) -> tuple[list[Path], list[Path]]:
    """Writes the stale learner versions; returns (written, kept): `kept` were changed since they were generated and
    are replaced only with `force`."""
    written, kept = [], []
    for solutions in solutions_notebooks(folder):
        target = learner_path(solutions)
        text = learner_text(solutions)
        if target.exists() and target.read_text() == text:
            continue
        if target.exists() and changed_since_generated(target) and not force:
            kept.append(target)
            continue
        target.write_text(text)
        written.append(target)
    return written, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course.py generate-labs",
                                     description="Generate the labs' learner versions from their solutions versions.")
    parser.add_argument("--check", action="store_true", help="only report stale learner versions (exit 1 if any)")
    parser.add_argument("--force", action="store_true",
                        help="also replace learner versions whose cells were changed since they were generated")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_learner_versions()
        for path in stale:
            print(f"{display_path(path)} is stale: run `python3 course.py generate-labs` and commit it.")
        return 1 if stale else 0
    written, kept = write_learner_versions(force=args.force)
    print(f"{len(solutions_notebooks())} labs; learner versions written: "
          f"{', '.join(p.name for p in written) or 'none'}")
    if kept:
        print(f"Not replaced, because their cells were changed since they were generated (someone's work?): "
              f"{', '.join(display_path(p) for p in kept)}. Copy them elsewhere to keep that work, then run "
              f"`python3 course.py generate-labs --force` to replace them.")
    return 1 if kept else 0


if __name__ == "__main__":
    sys.exit(main())
