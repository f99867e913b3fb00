"""The notebooks' Databricks branches against Unity Catalog's registry rules, as MLflow's own UC client code applies
them (helpers/standin/registry.py): the cells are run as they are written, on a stand-in registry with the lessons' models."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

from helpers.config import REPO_ROOT
from helpers.standin.registry import registry_uri

NOTEBOOKS = REPO_ROOT / "notebooks"
SCHEMA = "workspace.mlflow_course_learner_1a2b"


def cell(notebook: str, marker: str) -> str:
    """The one code cell of `notebook` that contains `marker`."""
    cells = [''.join(c["source"]) for c in json.loads((NOTEBOOKS / notebook).read_text())["cells"]
             if c["cell_type"] == "code" and marker in ''.join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} cells of {notebook} contain {marker!r}"
    return cells[0]


def run_cell(source: str, namespace: dict) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, "<cell>", "exec"), namespace)
    return printed.getvalue()


@pytest.fixture()
def registry(tmp_path, monkeypatch):
    """A tracking store and a Unity Catalog stand-in registry with three versions of the lessons' model: 1 and 2
    tagged by validation (2 passed), 3 untagged; @champion on 1."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        # setenv first, so that monkeypatch restores each variable afterwards, though mlflow.set_tracking_uri and
        # mlflow.set_experiment below set them behind its back (the next test's store has no experiment 1)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'tracking.db'}")
    mlflow.set_registry_uri(registry_uri(tmp_path / "registry.db"))
    mlflow.set_experiment("unity-catalog")
    features = pd.DataFrame({"age": [20.0, 30.0, 40.0]})
    model = LinearRegression().fit(features, [1.0, 2.0, 3.0])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", input_example=features)
    client, name = MlflowClient(), f"{SCHEMA}.retail_age_model"
    for version, status in ((1, "rejected"), (2, "passed"), (3, None)):
        mlflow.register_model(info.model_uri, name)
        if status:
            client.set_model_version_tag(name, str(version), "validation_status", status)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    yield {"client": client, "model_name": name, "model_uri": info.model_uri, "mlflow": mlflow,
           "MlflowException": MlflowException, "on_databricks": lambda: True,
           "course_model_name": lambda short: f"{SCHEMA}.{short}"}
    mlflow.set_registry_uri(None)
    mlflow.set_tracking_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None


def test_the_stand_in_applies_unity_catalogs_rules_with_mlflows_own_code(registry):
    client, name = registry["client"], registry["model_name"]
    found = client.search_model_versions(f"name = '{name}'")
    assert type(found[0]).__name__ == "ModelVersionSearch"  # MLflow's UC entity: its tags and aliases raise
    with pytest.raises(AttributeError):
        found[0].tags.get("validation_status")
    refused = {
        "filter_string": lambda: client.search_registered_models(filter_string=f"name = '{name}'"),
        "order_by": lambda: client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"]),
        "tag filter": lambda: client.search_model_versions(f"name = '{name}' and tags.validation_status = 'passed'"),
        "stages": lambda: client.transition_model_version_stage(name, "1", "Staging"),
        "latest by stage": lambda: client.get_latest_versions(name),
        "two-level name": lambda: mlflow.register_model(registry["model_uri"], "schema.model"),
    }
    for what, call in refused.items():
        with pytest.raises(MlflowException):
            call()
            pytest.fail(f"{what} was accepted")
    with pytest.raises(NotImplementedError):
        client.create_webhook(name="gate", url="http://localhost:1/hook", events=["model_version.created"])
    assert client.get_model_version(name, "2").tags["validation_status"] == "passed"
    assert client.get_model_version_by_alias(name, "champion").version == "1"


def test_the_registry_is_the_file_its_uri_names_wherever_the_notebook_runs(registry, tmp_path):
    assert (tmp_path / "registry.db").stat().st_size > 0
    assert not list(tmp_path.rglob("*/registry.db"))  # not a copy under the working folder


def test_a_model_without_a_full_signature_is_refused(registry):
    with mlflow.start_run():
        unsigned = mlflow.sklearn.log_model(LinearRegression().fit([[1.0], [2.0]], [1.0, 2.0]), name="unsigned")
    with pytest.raises(MlflowException, match="signature"):
        mlflow.register_model(unsigned.model_uri, f"{SCHEMA}.unsigned")


def test_lesson_04_searches_the_registry_as_unity_catalog_allows(registry):
    printed = run_cell(cell("04_model_registry.ipynb", "passed validation: versions"), registry)
    assert printed.splitlines()[0] == f"['{registry['model_name']}']"
    assert "version 1: validation_status=rejected, aliases=['champion']" in printed
    assert "version 2: validation_status=passed, aliases=['challenger']" in printed
    assert printed.splitlines()[-1] == "passed validation: versions [2]"


def test_lesson_04_deletes_and_checks_as_unity_catalog_allows(registry):
    printed = run_cell(cell("04_model_registry.ipynb", "scratch_name ="), registry)
    assert "loading @challenger now fails (" in printed
    assert "looking it up now fails (RESOURCE_DOES_NOT_EXIST)" in printed
    remaining = [int(v.version) for v in registry["client"].search_model_versions(
        f"name = '{registry['model_name']}'")]
    assert sorted(remaining) == [1, 2, 3]  # the duplicate version was deleted again


def test_lab_04_task_5_solution_runs_on_unity_catalog(registry):
    namespace = dict(registry)
    run_cell(cell("labs/04_model_registry_solutions.ipynb", "passed_versions ="), namespace)
    assert namespace["all_versions"] == [1, 2, 3] and namespace["passed_versions"] == [2]


def test_lab_07_task_4_solution_runs_on_unity_catalog(registry):
    """The gate cell with the lab's own scoring replaced: the registry calls are what Unity Catalog must accept."""
    rmse = {"1": 6.5, "2": 6.4, "3": 9.0}
    namespace = dict(registry, held_out_rmse=lambda version: rmse[str(version)], thresholds=0.01,
                     decide=lambda new, old, tolerance: (new <= old * (1 + tolerance), f"{new} against {old}"),
                     sparse_version="3", steady_version="2")
    printed = run_cell(cell("labs/07_projects_and_gate_solutions.ipynb", "def gate(version)"), namespace)
    assert [v.version for v in namespace["passed_versions"]] == ["2"]
    assert printed.splitlines()[-1] == "passed: ['2']; @champion is version 2"
