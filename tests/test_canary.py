"""The release canary's parts (the whole canary runs the course and is not part of CI: docs/maintainers.md)."""
from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from helpers import canary
from helpers.config import REPO_ROOT


def test_the_top_level_packages_are_read_with_their_pins_and_extras():
    packages = {p.name: p.pinned for p in canary.top_level_pins()}
    assert packages["mlflow[auth]"] and packages["delta-spark"] and packages["uv"]
    assert canary.distribution("psycopg[binary]") == "psycopg" and canary.distribution("Scikit_Learn") == "scikit-learn"


def test_the_resolvers_reason_is_kept_whole_on_one_line():
    stderr = ("error: No solution found when resolving dependencies\n"
              "  cause: Because there is no version of mlflow-tracing==3.18.0 and mlflow>=3.18.0 depends on\n"
              "         mlflow-tracing==3.18.0, we can conclude that mlflow>=3.18.0 cannot be used.\n"
              "         And because you require mlflow[auth]==3.18.0, we can conclude that your requirements are "
              "unsatisfiable.\n")
    assert canary.resolver_reason(stderr) == (
        "Because there is no version of mlflow-tracing==3.18.0 and mlflow>=3.18.0 depends on mlflow-tracing==3.18.0, "
        "we can conclude that mlflow>=3.18.0 cannot be used.")


@pytest.mark.slow
def test_delta_jars_are_looked_up_on_maven_central_as_spark_would_ask():
    # STACK_NOTES: 4.4.0's jars resolve from Maven Central here, 4.4.1's do not (the wheel of each is on PyPI)
    assert canary.jars_served("io.delta:delta-spark_4.2_2.13:4.4.0")
    assert not canary.jars_served("io.delta:delta-spark_4.2_2.13:4.4.1")


@pytest.mark.slow
def test_an_nbval_report_gives_each_notebooks_changed_and_failed_cells(tmp_path):
    """A real nbval run of a notebook whose committed outputs are partly wrong, read back from its JUnit report."""
    cells = [new_code_cell("print(1)", outputs=[new_output("stream", text="1\n")], execution_count=1),
             new_code_cell("print(2)", outputs=[new_output("stream", text="3\n")], execution_count=2),
             new_code_cell("1 / 0", outputs=[], execution_count=3)]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "00_demo.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1", execution_count=1)],
                                metadata=notebook.metadata), tmp_path / "01_fine.ipynb")
    report = tmp_path / "nbval.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    subprocess.run([sys.executable, "-m", "pytest", "00_demo.ipynb", "01_fine.ipynb", "--nbval", "--nbval-current-env",
                    "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=", f"--junitxml={report}",
                    f"--rootdir={tmp_path}"], cwd=tmp_path, env=env, capture_output=True, timeout=300)
    demo, fine = canary.lesson_results(report, ["00_demo.ipynb", "01_fine.ipynb"])
    assert demo.changed == {1: ("3", "2")}  # the committed line, then what the run printed
    assert list(demo.failed) == [2] and demo.failed[2].startswith("ZeroDivisionError")
    assert demo.describe() == f"cell 1 output changed: '3' became '2'; cell 2 failed: {demo.failed[2]}"
    assert fine.describe() == "passed"


def test_the_canary_is_a_maintainers_command_outside_ci():
    assert "canary" not in (REPO_ROOT / ".ci" / "run").read_text()
    usage = subprocess.run([sys.executable, "course.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert "python3 course.py canary" in usage.stdout
