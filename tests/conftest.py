"""Shared fixtures: every unit test gets its own course workspace and a clean set of the course's variables."""
from __future__ import annotations

import pytest

COURSE_VARIABLES = ("COURSE_WORKSPACE", "COURSE_SPARK_MASTER", "COURSE_DELTA_JARS", "MLFLOW_TRACKING_URI",
                    "DATABRICKS_RUNTIME_VERSION", "COURSE_UC_SCHEMA")


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty course workspace, with no course variable set but COURSE_WORKSPACE."""
    for name in COURSE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "workspace"
    monkeypatch.setenv("COURSE_WORKSPACE", str(folder))
    return folder
