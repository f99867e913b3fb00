"""The labs: one per lesson, in the lesson's shape with a check after every task; learner versions generated from the
solutions and up to date; checks that print one line and never raise; and (slow) every lab executed both ways, its
solutions passing every check and its learner version failing every one with a hint."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import nbformat
import pytest

from helpers import labs
from helpers.checks import Wrong, expect, finished_run, logged_sklearn_model, task
from helpers.config import REPO_ROOT
from helpers.runner import course_notebooks

LABS = labs.solutions_notebooks()
CHECK_CALL = re.compile(r"^check\.task(\d+)\(", re.M)
TASK_HEADING = re.compile(r"^## Task (\d+): ", re.M)


def lesson_of(lab) -> str:
    return lab.name.removesuffix(labs.SOLUTIONS_SUFFIX)


def sections(notebook) -> list[str]:
    return [line for cell in notebook.cells if cell.cell_type == "markdown"
            for line in cell.source.splitlines() if line.startswith("## ")]


def test_every_lesson_has_one_lab():
    assert [lesson_of(lab) for lab in LABS] == [lesson.stem for lesson in course_notebooks()]


def test_every_learner_version_is_generated_from_its_solutions_version():
    assert not labs.stale_learner_versions(), "run `python3 course.py generate-labs` and commit the learner versions"


def test_a_changed_solutions_version_makes_its_learner_version_stale(tmp_path, capsys, monkeypatch):
    solutions = tmp_path / LABS[0].name
    solutions.write_text(LABS[0].read_text())
    assert labs.stale_learner_versions(tmp_path) == [labs.learner_path(solutions)]  # none generated yet
    assert labs.write_learner_versions(tmp_path) == ([labs.learner_path(solutions)], [])
    assert labs.stale_learner_versions(tmp_path) == []
    notebook = nbformat.read(solutions, as_version=4)
    notebook.cells[-1].source += "\nOne more sentence."
    nbformat.write(notebook, solutions)
    assert labs.stale_learner_versions(tmp_path) == [labs.learner_path(solutions)]
    monkeypatch.setattr(labs, "LAB_DIR", tmp_path)
    assert labs.main(["--check"]) == 1
    assert "is stale: run `python3 course.py generate-labs`" in capsys.readouterr().out


def test_generating_the_labs_never_replaces_a_learners_work(tmp_path, capsys, monkeypatch):
    for solutions in LABS[:2]:
        for path in (solutions, labs.learner_path(solutions)):
            (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(labs, "LAB_DIR", tmp_path)
    worked_on, only_run = (tmp_path / labs.learner_path(lab).name for lab in LABS[:2])
    notebook = nbformat.read(worked_on, as_version=4)  # a learner fills in a task and runs it
    task = next(cell for cell in notebook.cells if labs.CODE_PLACEHOLDER in cell.source)
    task.source = task.source.replace(labs.CODE_PLACEHOLDER, "answer = 42  # my work")
    task.execution_count, task.outputs = 3, [nbformat.v4.new_output("stream", text="42\n")]
    nbformat.write(notebook, worked_on)
    notebook = nbformat.read(only_run, as_version=4)  # another only runs the lab: nothing of theirs to keep
    next(cell for cell in notebook.cells if cell.cell_type == "code").execution_count = 1
    nbformat.write(notebook, only_run)
    edited = worked_on.read_text()
    for solutions in LABS[:2]:  # and a maintainer changes the solutions versions
        notebook = nbformat.read(tmp_path / solutions.name, as_version=4)
        notebook.cells[-1].source += "\nOne more sentence."
        nbformat.write(notebook, tmp_path / solutions.name)

    assert labs.main([]) == 1
    assert worked_on.read_text() == edited  # the work is intact
    printed = capsys.readouterr().out
    assert f"Not replaced, because their cells were changed since they were generated (someone's work?): " \
           f"{worked_on}" in printed and "generate-labs --force" in printed
    assert "One more sentence." in only_run.read_text()
    assert labs.main(["--force"]) == 0  # named explicitly, the maintainer's way to replace it
    assert "One more sentence." in worked_on.read_text() and "my work" not in worked_on.read_text()


def test_generating_replaces_each_solution_and_keeps_the_rest():
    code = ("best = None\n### BEGIN SOLUTION\nbest = 1\n### END SOLUTION\nfor x in y:\n"
            "    ### BEGIN SOLUTION\n    x += 1\n    ### END SOLUTION\nprint(best)")
    assert labs.without_solutions(code, "code") == ("best = None\n# YOUR CODE HERE\nfor x in y:\n"
                                                    "    # YOUR CODE HERE\nprint(best)")
    markdown = "Why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\nNext."
    assert labs.without_solutions(markdown, "markdown") == "Why?\n_Your answer here._\nNext."
    assert labs.without_solutions("x = 1", "code") == "x = 1"


@pytest.mark.parametrize("solutions", LABS, ids=lesson_of)
def test_every_lab_has_the_lesson_shape_and_a_check_after_every_task(solutions):
    notebook = nbformat.read(solutions, as_version=4)
    title = notebook.cells[0].source.splitlines()[0]
    assert re.match(rf"# Lab {solutions.name[:2]} · .+ \(solutions\)$", title), title
    headings = sections(notebook)
    assert headings[:3] == ["## Overview", "## Prerequisites", "## Setup"]
    assert headings[-3:] == ["## Summary", "## What's next", "## Learn more"]
    tasks = [int(n) for cell in notebook.cells if cell.cell_type == "markdown" for n in TASK_HEADING.findall(cell.source)]
    assert 3 <= len(tasks) <= 5 and tasks == list(range(1, len(tasks) + 1)), tasks
    checks = importlib.import_module(f"helpers.checks.lab{solutions.name[:2]}")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].id == "databricks-setup"
    for number in tasks:  # the task's code (a marked solution), then the cell that checks it
        at = next(i for i, cell in enumerate(code) if CHECK_CALL.findall(cell.source) == [str(number)])
        assert "### BEGIN SOLUTION" in code[at - 1].source, f"task {number} has no marked solution before its check"
        assert callable(getattr(checks, f"task{number}")), f"helpers/checks/lab{solutions.name[:2]}.py has no task{number}"
    assert all(not cell.outputs for cell in code), "labs are committed without outputs"
    learner = labs.learner_path(solutions).read_text()
    assert "BEGIN SOLUTION" not in learner and "(solutions)" not in learner


@pytest.mark.parametrize("lesson", course_notebooks(), ids=lambda p: p.stem)
def test_every_lesson_points_to_its_lab(lesson):
    notebook = nbformat.read(lesson, as_version=4)
    whats_next = next(cell.source for cell in notebook.cells if cell.cell_type == "markdown"
                      and "## What's next" in cell.source)
    assert f"labs/{lesson.stem}_lab.ipynb" in whats_next.split("## What's next")[1]


def test_a_check_prints_one_line_and_never_raises(capsys):
    @task(7, hint="do it again")
    def check(value):
        expect(value is not None, "`value` is still None", "set it to 42")
        expect(value == 42, f"`value` is {value}", "the answer is 42")
        return "42 it is."

    check(None)
    check(41)
    check(42)
    assert capsys.readouterr().out.splitlines() == [
        "✗ Task 7: `value` is still None. Hint: set it to 42.",
        "✗ Task 7: `value` is 41. Hint: the answer is 42.",
        "✓ Task 7: correct. 42 it is."]

    @task(8, hint="set `table` to a DataFrame")
    def broken(table):
        return table.count()

    broken(12)
    assert capsys.readouterr().out == ("✗ Task 8: the check could not read your result (AttributeError: 'int' object "
                                       "has no attribute 'count'). Hint: set `table` to a DataFrame.\n")
    assert str(Wrong("a.", "b.")) == "a."


def test_a_run_check_refuses_none_an_unknown_id_a_running_run_and_another_experiment(workspace):
    import mlflow

    from helpers import course_experiment, setup_mlflow

    setup_mlflow(quiet=True)
    mlflow.set_experiment(course_experiment("lab-test"))
    with mlflow.start_run() as run:
        with pytest.raises(Wrong, match="is RUNNING, not FINISHED"):
            finished_run(run.info.run_id, "run_id")
    for value, problem in ((None, "is still None"), (12, "is a int, not a run id"), ("f" * 32, "no run has the id")):
        with pytest.raises(Wrong, match=problem):
            finished_run(value, "run_id")
    with pytest.raises(Wrong, match="not the lab's 'elsewhere'"):
        finished_run(run.info.run_id, "run_id", "elsewhere")
    assert finished_run(run.info.run_id, "run_id", course_experiment("lab-test")).info.status == "FINISHED"


def test_a_model_check_refuses_none_an_unknown_uri_another_flavor_no_signature_and_another_experiment(workspace):
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    from helpers import course_experiment, setup_mlflow

    setup_mlflow(quiet=True)
    lab = course_experiment("lab-test")
    mlflow.set_experiment(lab)
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 1.0, 0.0, 2.0]})
    ridge = Ridge().fit(X, X.a + X.b)

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str]) -> list[str]:
            return model_input

    with mlflow.start_run():
        plain = mlflow.sklearn.log_model(ridge, name="model").model_uri
        signed = mlflow.sklearn.log_model(ridge, name="signed", signature=infer_signature(X, ridge.predict(X))).model_uri
        with pytest.raises(Wrong, match="is RUNNING, not FINISHED"):
            logged_sklearn_model(signed, lab)
    with mlflow.start_run():
        other_flavor = mlflow.pyfunc.log_model(name="model", python_model=Echo(),
                                               pip_requirements=["mlflow"]).model_uri
    for value, problem in ((None, "is still None"), (7, "is a int, not a model URI"), ("models:/m-nothing", "no model"),
                           (other_flavor, "not sklearn"), (plain, "has no signature")):
        with pytest.raises(Wrong, match=problem):
            logged_sklearn_model(value, lab)
    with pytest.raises(Wrong, match="not the lab's"):
        logged_sklearn_model(signed, course_experiment("lab-elsewhere"))
    assert logged_sklearn_model(signed, lab).signature.inputs.input_names() == ["a", "b"]


def check_lines(executed) -> list[tuple[str, list[str]]]:
    """(the check's call, the lines it printed) for every check cell of an executed lab."""
    notebook = nbformat.read(executed, as_version=4)
    return [(cell.source, "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").splitlines())
            for cell in notebook.cells if cell.cell_type == "code" and CHECK_CALL.match(cell.source)]


def stated_success_lines(solutions) -> dict[str, str]:
    """Task number -> the line its markdown says a correct run prints."""
    stated = {}
    for cell in nbformat.read(solutions, as_version=4).cells:
        task = TASK_HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if task:
            stated[task.group(1)] = re.search(r"^```text\n(✓ Task \d+: correct\..*)\n```", cell.source, re.M).group(1)
    return stated


def shape(line: str) -> str:
    """A check's line with its numbers masked: versions and RMSEs differ between runs, the sentence does not."""
    return re.sub(r"\d+(\.\d+)?", "#", line)


def test_every_task_says_what_a_correct_run_prints():
    for solutions in LABS:
        stated = stated_success_lines(solutions)
        tasks = [n for cell in nbformat.read(solutions, as_version=4).cells if cell.cell_type == "markdown"
                 for n in TASK_HEADING.findall(cell.source)]
        assert sorted(stated) == sorted(tasks), solutions.name
        assert all(line.startswith(f"✓ Task {n}: correct. ") for n, line in stated.items()), solutions.name


@pytest.mark.slow
def test_every_lab_passes_with_its_solutions_and_fails_with_hints_without_them(tmp_path):
    """The runner runs each lab's solutions version, then its learner version, in one empty workspace (the first
    lab builds notebook 00's tables, as any lab does when they are missing)."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MLFLOW_") and name not in ("COURSE_SPARK_DRIVER", "SPARK_REMOTE")}
    workspace = tmp_path / "workspace"
    before = sorted(labs.LAB_DIR.iterdir())
    result = subprocess.run([sys.executable, "-m", "helpers.runner", "--labs", "--workspace", str(workspace)],
                            cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(labs.LAB_DIR.iterdir()) == before, "a lab wrote into notebooks/labs/ (an MLflow store, mlruns/?)"
    for solutions in LABS:
        stated = stated_success_lines(solutions)
        for path, mark in ((solutions, "✓"), (labs.learner_path(solutions), "✗")):
            checks = check_lines(workspace / "executed" / path.name)
            assert checks, f"{path.name} has no check cell"
            for call, lines in checks:
                number = CHECK_CALL.match(call).group(1)
                assert len(lines) == 1, f"{path.name}, {call}: {lines}"
                if mark == "✓":
                    assert lines[0].startswith(f"✓ Task {number}: correct."), f"{path.name}: {lines[0]}"
                    # the task says what a correct run prints: the same line, but for its numbers
                    assert shape(lines[0]) == shape(stated[number]), f"{path.name}: {lines[0]} / {stated[number]}"
                else:
                    assert re.match(rf"✗ Task {number}: .+\. Hint: .+\.$", lines[0]), f"{path.name}: {lines[0]}"


def test_the_runner_runs_each_solutions_version_then_its_learner_version_and_never_writes_back():
    from helpers.runner import main

    order = labs.lab_notebooks()
    assert [p.name for p in order[:2]] == [LABS[0].name, labs.learner_path(LABS[0]).name]
    assert len(order) == 2 * len(LABS)
    assert [p.name for p in labs.lab_notebooks(["01"])] == [p.name for p in order[2:4]]
    with pytest.raises(SystemExit):
        main(["--labs", "--write-back"])


def test_a_count_may_be_any_kind_of_whole_number_but_not_a_bool():
    """Lab checks accept a correct count however it was computed: `.count()` gives an int, pandas and NumPy give
    numpy.int64 (lab 05's `most_copies` was refused as "not a count" when it came from pandas)."""
    import numpy as np

    from helpers.checks import is_count

    assert all(is_count(value) for value in (1, np.int64(1), np.int32(7), np.uint8(0)))
    assert not any(is_count(value) for value in (True, np.bool_(True), 1.0, np.float64(1.0), "1", None))


def test_a_number_may_be_any_kind_of_real_number_but_not_a_bool():
    """An RMSE or a tolerance computed with NumPy (np.float32 is no Python float) is a number to the checks."""
    import numpy as np

    from helpers.checks import is_number

    assert all(is_number(value) for value in (0.5, 1, np.float64(6.5), np.float32(6.5), np.int64(2)))
    assert not any(is_number(value) for value in (True, np.bool_(False), "6.5", None, [6.5]))


def test_a_setting_or_a_version_number_counts_however_it_was_read_back():
    """Lab 02's best setting may come from the grid (40) or from a run's parameters ("40"); lab 07's version numbers
    may be Task 1's strings or the ints a local registry returns: each is the same answer to the checks."""
    import numpy as np

    from helpers.checks.lab02 import _whole
    from helpers.checks.lab07 import _by_version

    assert [_whole(value) for value in (40, np.int64(40), 40.0, "40", "6")] == [40, 40, 40, 40, 6]
    assert [_whole(value) for value in ("forty", 0.5, None)] == ["forty", 0.5, None]
    assert _by_version({1: "a", np.int64(2): "b", "3": "c"}) == {"1": "a", "2": "b", "3": "c"}
    assert _by_version({True: "x", 2.0: "y"}) == {True: "x", 2.0: "y"}  # not version numbers: the check says so
