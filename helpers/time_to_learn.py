"""How long a lesson or a lab takes to learn, by one stated rule, so that the times the course states are not guesses.

A careful read of technical prose runs at about 130 words a minute; reading code to understand it, about 8 lines a
minute; each code cell costs a minute more (run it, look at what it printed), and so does every 20 lines of output.
In a lab, the learner writes the solution code: 4 lines a minute. The sum is rounded up to the next 5 minutes. A
section whose heading says "(optional)" is counted on its own and stated beside the main figure.

    .venv/bin/python -m helpers.time_to_learn            # each notebook's stated time against the rule's, the totals
    .venv/bin/python -m helpers.time_to_learn --write    # states the rule's times in the lessons, the solutions
                                                         # and README.md (then `python3 course.py generate-labs`)
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from helpers.config import REPO_ROOT

WORDS_A_MINUTE = 130
CODE_LINES_A_MINUTE = 8
WRITTEN_LINES_A_MINUTE = 4
MINUTES_A_CODE_CELL = 1
OUTPUT_LINES_A_MINUTE = 20
STATED = re.compile(r"\*\*Time to learn\*\*: (\d+) minutes(?:, and (\d+) more for the optional section)?")
SOLUTION = re.compile(r"### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION", re.M | re.S)


def _code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def _output_lines(cell: dict) -> int:
    text = "".join("".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
                   for out in cell.get("outputs", []))
    return len(text.splitlines())


def _rounded(minutes: float) -> int:
    return 5 * math.ceil(minutes / 5) if minutes else 0


def minutes_to_learn(notebook: Path, optional: bool = False) -> int:
    """The rule's minutes for a lesson (with its committed outputs) or a lab's solutions notebook; with
    optional=True, those of its optional sections only (a heading with "(optional)" up to the next heading of the
    same level or higher), which the main figure leaves out."""
    minutes = {False: 0.0, True: 0.0}
    optional_level = None  # the heading level of the optional section the cells are in, if any
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        heading = re.match(r"(#+) ", source) if cell["cell_type"] == "markdown" else None
        if heading and (optional_level is None or len(heading.group(1)) <= optional_level):
            optional_level = len(heading.group(1)) if "(optional)" in source.splitlines()[0] else None
        if cell["cell_type"] == "markdown":
            minutes[optional_level is not None] += len(source.split()) / WORDS_A_MINUTE
        elif cell["cell_type"] == "code":
            written = sum(_code_lines(block) for block in SOLUTION.findall(source))
            minutes[optional_level is not None] += (
                written / WRITTEN_LINES_A_MINUTE + (_code_lines(source) - written) / CODE_LINES_A_MINUTE
                + MINUTES_A_CODE_CELL + _output_lines(cell) / OUTPUT_LINES_A_MINUTE)
    return _rounded(minutes[optional])


def stated_minutes(notebook: Path, optional: bool = False) -> int | None:
    found = STATED.search("".join(json.loads(notebook.read_text())["cells"][0]["source"]))
    if not found:
        return None
    return int(found.group(2) or 0) if optional else int(found.group(1))


def statement(notebook: Path) -> str:
    """What the notebook's first cell should say."""
    optional = minutes_to_learn(notebook, optional=True)
    return f"**Time to learn**: {minutes_to_learn(notebook)} minutes" + (
        f", and {optional} more for the optional section" if optional else "")


def write_stated_minutes(notebook: Path) -> bool:
    """Puts the rule's time in the notebook's first cell; True if it changed."""
    text = notebook.read_text()
    notebook_json = json.loads(text)
    first = notebook_json["cells"][0]
    old = "".join(first["source"])
    new = STATED.sub(statement(notebook), old, count=1)
    if new == old:
        return False
    first["source"] = new.splitlines(keepends=True)
    notebook.write_text(json.dumps(notebook_json, indent=1, ensure_ascii=False) + "\n")
    return True


def hours(minutes: int) -> str:
    """Minutes as hours to the nearest half hour, the way README states the totals: 510 -> "8.5"."""
    return f"{math.floor(minutes / 30 + 0.5) / 2:g}"  # half hours rounded up, never to even


def readme_with_times(text: str, times: dict[str, tuple[int, int]]) -> str:
    """README's syllabus rows end with "lesson + lab" minutes; its first paragraph states the totals."""
    names = {name[:2]: pair for name, pair in times.items()}
    text = re.sub(r"^(\| (\d\d) \| .* \| )\d+ \+ \d+ \|$",
                  lambda row: f"{row.group(1)}{names[row.group(2)][0]} + {names[row.group(2)][1]} |", text, flags=re.M)
    lessons, labs = (sum(pair[i] for pair in times.values()) for i in (0, 1))
    return re.sub(r"about [\d.]+ hours for the ten lessons and [\d.]+ for their labs",
                  f"about {hours(lessons)} hours for the ten lessons and {hours(labs)} for their labs", text)


def course_times() -> dict[str, tuple[int, int]]:
    """Each lesson's name: (its minutes, its lab's minutes)."""
    lessons = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return {lesson.stem: (minutes_to_learn(lesson),
                          minutes_to_learn(REPO_ROOT / "notebooks" / "labs" / f"{lesson.stem}_solutions.ipynb"))
            for lesson in lessons}


def main(argv: list[str]) -> int:
    times = course_times()
    for name, (lesson, lab) in times.items():
        if "--write" in argv:
            write_stated_minutes(REPO_ROOT / "notebooks" / f"{name}.ipynb")
            write_stated_minutes(REPO_ROOT / "notebooks" / "labs" / f"{name}_solutions.ipynb")
        stated = stated_minutes(REPO_ROOT / "notebooks" / f"{name}.ipynb")
        print(f"{name:36} lesson {lesson:3} min (stated {stated}), lab {lab:3} min")
    if "--write" in argv:
        readme = REPO_ROOT / "README.md"
        readme.write_text(readme_with_times(readme.read_text(), times))
    lessons, labs = (sum(pair[i] for pair in times.values()) for i in (0, 1))
    print(f"lessons {lessons} min, labs {labs} min: {(lessons + labs) / 60:.1f} hours in all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
