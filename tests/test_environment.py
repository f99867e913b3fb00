"""The environment files agree with each other, and the README's commands are what CI runs."""
import re
import sys
from pathlib import Path

import yaml

from helpers.config import REPO_ROOT


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def package(requirement: str) -> str:
    """The distribution name of `mlflow[auth]` or `psycopg-binary`, normalised as pip compares them."""
    return re.sub(r"[-_.]+", "-", requirement.split("[")[0]).lower()


def lock_pins() -> dict[str, str]:
    """requirements.lock: every package with its version; each entry must be pinned and carry hashes."""
    text = (REPO_ROOT / "requirements.lock").read_text()
    entries = re.split(r"\n(?=\S)", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pins = {}
    for entry in filter(str.strip, entries):
        match = re.match(r"([\w.\[\],-]+)==([\w.]+)", entry)
        assert match, f"requirements.lock: {entry.splitlines()[0]!r} is not pinned with =="
        assert "--hash=sha256:" in entry, f"requirements.lock: {match.group(1)} has no hash"
        pins[package(match.group(1))] = match.group(2)
    return pins


def test_the_lock_pins_every_requirement_at_its_top_level_pin():
    # Refresh after editing requirements.txt: see docs/dependencies.md.
    locked = lock_pins()
    assert len(locked) > 100  # the transitive packages too, not only the top-level ones
    disagree = {name: (version, locked.get(package(name))) for name, version in pip_pins().items()
                if locked.get(package(name)) != version}
    assert not disagree, f"requirements.txt and requirements.lock disagree (pin, lock): {disagree}"


def test_conda_environment_has_the_same_pins_as_pip():
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    conda_pins = dict(p.lower().split("==") for p in pip if "==" in p)
    assert conda_pins == pip_pins()
    assert "-e ." in pip
    assert "python=3.11" in conda and "openjdk=17" in conda


def test_delta_python_package_and_jars_share_one_version():
    # The wheel asks Spark for the jars of its own version; 4.4.1's jars do not resolve (see docs/dependencies.md).
    pins = {package(name): version for name, version in pip_pins().items()}
    assert pins["delta-spark"] == "4.4.0"
    assert pins["pyspark"] == "4.2.0"
    assert int(pins["pandas"].split(".")[0]) < 3


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 course\.py \w+$", readme, flags=re.M)
    # a learner starts with `lab`; the whole course is run and proved with `run` and `test`
    assert commands == ["python3 course.py lab", "python3 course.py run", "python3 course.py test"]
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^python3 course\.py test$", ci, flags=re.M)


def test_the_ci_example_runs_commands_that_exist():
    """The example CI workflow calls the course's own commands: course.py and a console script of pyproject.toml."""
    workflow = yaml.safe_load((REPO_ROOT / "mlproject" / "ci-example.github-actions.yml").read_text())
    section = (REPO_ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    scripts = set(re.findall(r"^([\w-]+) =", section, flags=re.M))  # plain text: no TOML parser needed
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    assert runs, "the example runs no command"
    for command in runs:
        program = command.split()[0]
        assert program == "python3" and command.split()[1] == "course.py" or \
            program.startswith(".venv/bin/") and program.removeprefix(".venv/bin/") in scripts, command


def test_the_project_asks_databricks_for_the_course_mlflow_only():
    """Serverless Git folders install pyproject.toml's dependencies over the runtime: pyspark there would replace
    Databricks Connect. The MLflow pin is the one the course is tested with (requirements.txt)."""
    import tomllib

    from helpers.databricks import OLDEST_DATABRICKS_SDK, pinned_mlflow

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == [f"mlflow=={pinned_mlflow()}", f"databricks-sdk>={OLDEST_DATABRICKS_SDK}"]


def test_every_notebook_asks_serverless_compute_for_environment_4_and_the_course_mlflow():
    """A serverless notebook's environment (its Environment panel, kept in the .ipynb's Databricks metadata): version 4
    is the first with pyspark.ml; with the pinned MLflow and a databricks-sdk with model update triggers there, the
    set-up cell needs no %pip install."""
    import json

    from helpers.databricks import OLDEST_DATABRICKS_SDK, pinned_mlflow

    notebooks = sorted((REPO_ROOT / "notebooks").rglob("*.ipynb"))
    assert len(notebooks) == 30
    notebooks.append(REPO_ROOT / "databricks" / "jobs" / "course_step.ipynb")  # the lessons' jobs run it
    for notebook in notebooks:
        metadata = json.loads(notebook.read_text())["metadata"]
        environment = metadata.get("application/vnd.databricks.v1+notebook", {}).get("environmentMetadata")
        assert environment == {"environment_version": "4", "dependencies": [
            f"mlflow=={pinned_mlflow()}", f"databricks-sdk>={OLDEST_DATABRICKS_SDK}"]}, notebook.name
