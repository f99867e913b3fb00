"""The times the course states come from one rule (helpers/time_to_learn.py), not from guesses."""
import json
import re

from helpers.config import REPO_ROOT
from helpers.time_to_learn import WORDS_A_MINUTE, course_times, hours, minutes_to_learn, stated_minutes


def notebook(path, cells):
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_the_rule_counts_reading_running_and_writing(tmp_path):
    prose = {"cell_type": "markdown", "source": "word " * (WORDS_A_MINUTE * 12)}  # 12 minutes of reading
    assert minutes_to_learn(notebook(tmp_path / "a.ipynb", [prose])) == 15  # rounded up to 5 minutes
    ten_cells = [{"cell_type": "code", "source": "x = 1", "outputs": []}] * 10  # 10 cells, 10 lines: 11.25 minutes
    assert minutes_to_learn(notebook(tmp_path / "b.ipynb", [prose, *ten_cells])) == 25
    solution = {"cell_type": "code", "outputs": [],
                "source": "### BEGIN SOLUTION\n" + "y = 2\n" * 40 + "### END SOLUTION"}  # written: 10 minutes
    assert minutes_to_learn(notebook(tmp_path / "c.ipynb", [prose, solution])) == 25


def test_every_lesson_and_lab_states_the_rules_time():
    stale = []
    for name, (lesson, lab) in course_times().items():
        for path, minutes in ((REPO_ROOT / "notebooks" / f"{name}.ipynb", lesson),
                              (REPO_ROOT / "notebooks" / "labs" / f"{name}_solutions.ipynb", lab),
                              (REPO_ROOT / "notebooks" / "labs" / f"{name}_lab.ipynb", lab)):
            if stated_minutes(path) != minutes:
                stale.append(f"{path.name}: states {stated_minutes(path)}, the rule gives {minutes}")
    assert not stale, "run `.venv/bin/python -m helpers.time_to_learn --write`, then generate-labs: " + "; ".join(stale)


def test_the_readme_states_the_rules_times_and_their_total():
    readme = (REPO_ROOT / "README.md").read_text()
    times = course_times()
    rows = dict(re.findall(r"^\| (\d\d) \| .* \| (\d+ \+ \d+) \|$", readme, flags=re.M))
    assert rows == {name[:2]: f"{lesson} + {lab}" for name, (lesson, lab) in times.items()}
    lessons, labs = (sum(pair[i] for pair in times.values()) for i in (0, 1))
    assert f"about {hours(lessons)} hours for the ten lessons and {hours(labs)} for their labs" in readme
    assert [hours(m) for m in (495, 480, 500, 330)] == ["8.5", "8", "8.5", "5.5"]  # to the nearest half hour


def test_an_optional_section_is_counted_on_its_own(tmp_path):
    words = lambda minutes: "word " * (WORDS_A_MINUTE * minutes)
    cells = [{"cell_type": "markdown", "source": "## 1. Core\n" + words(12)},
             {"cell_type": "markdown", "source": "## 2. Going further (optional): speed\n" + words(7)},
             {"cell_type": "markdown", "source": "### 2.1 Still optional\n" + words(7)},
             {"cell_type": "markdown", "source": "## 3. Core again\n" + words(6)}]
    path = notebook(tmp_path / "d.ipynb", cells)
    assert (minutes_to_learn(path), minutes_to_learn(path, optional=True)) == (20, 15)


def test_every_optional_section_is_stated_beside_the_main_time():
    for lesson in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert stated_minutes(lesson, optional=True) == minutes_to_learn(lesson, optional=True), lesson.name
