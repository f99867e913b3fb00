"""Shared fixtures: every unit test gets its own course workspace and a clean set of the course's variables."""
from __future__ import annotations

import os

import pytest

COURSE_VARIABLES = ("COURSE_WORKSPACE", "COURSE_SPARK_MASTER", "COURSE_DELTA_JARS", "MLFLOW_TRACKING_URI",
                    "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "DATABRICKS_RUNTIME_VERSION", "IS_SERVERLESS",
                    "COURSE_UC_VOLUME", "MLFLOW_DFS_TMP", "COURSE_NAME_PREFIX", "COURSE_WEBHOOK_ADMIN_USERNAME", "COURSE_WEBHOOK_ADMIN_PASSWORD",
                    "COURSE_SPARK_DRIVER")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty course workspace, with no course variable set but COURSE_WORKSPACE."""
    for name in COURSE_VARIABLES:  # set first, so that monkeypatch restores even what the test's code sets itself
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    folder = tmp_path / "workspace"
    monkeypatch.setenv("COURSE_WORKSPACE", str(folder))
    return folder


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """A real Spark session with Delta, in a workspace of its own (and MLflow's store there), for one test module."""
    saved = {name: os.environ.get(name) for name in ("COURSE_WORKSPACE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID",
                                                     "MLFLOW_EXPERIMENT_NAME", "COURSE_SPARK_DRIVER")}
    os.environ["COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp("spark-workspace"))
    for name in saved.keys() - {"COURSE_WORKSPACE"}:  # another module's experiment does not exist in this new store
        os.environ.pop(name, None)
    import mlflow.tracking.fluent

    mlflow.tracking.fluent._active_experiment_id = None  # nor does the one mlflow.set_experiment remembers in-process
    from helpers import start_spark

    session = start_spark(quiet=True)
    yield session
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
