"""pytest plugin for nbval: the notebooks run in one fresh course workspace, and stderr is never compared.

Spark, MLflow and Jupyter write warnings to stderr that vary between runs and machines; a lesson's meaning is in
stdout and rich outputs, which stay compared in full (with the narrow sanitizer in nbval_sanitize.cfg).
"""
from __future__ import annotations

import os
import tempfile

import pytest

# The variables the kernels must see as the test run began: unit tests and libraries may change them in this
# process (mlflow.set_tracking_uri sets MLFLOW_TRACKING_URI, mlflow.set_experiment sets MLFLOW_EXPERIMENT_ID), and a
# kernel inherits what it finds: `mlflow run --experiment-name` in notebook 07 refuses a leaked MLFLOW_EXPERIMENT_ID.
KERNEL_VARIABLES = ("COURSE_WORKSPACE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                    "COURSE_SPARK_MASTER", "DATABRICKS_RUNTIME_VERSION")
_kernel_environment: dict[str, str | None] = {}


def pytest_configure(config):
    # A fresh workspace for the notebooks, unless the caller chose one (to point them at a cluster, say).
    if not os.environ.get("COURSE_WORKSPACE"):
        os.environ["COURSE_WORKSPACE"] = tempfile.mkdtemp(prefix="course-nbval-")
    _kernel_environment.update({name: os.environ.get(name) for name in KERNEL_VARIABLES})


def pytest_collectstart(collector):
    if type(collector).__name__ == "IPyNbFile":
        collector.skip_compare = (*collector.skip_compare, "stderr")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m filter reads the markers
def pytest_collection_modifyitems(items):
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            # Every notebook cell starts or uses Spark: `-m "not slow"` keeps the quick unit tests only.
            item.add_marker(pytest.mark.slow)
            # With `-n 2 --dist loadgroup` (course.py test): the notebooks run in order in one worker, in one
            # workspace, as the course runs; the unit tests run in the other worker.
            item.add_marker(pytest.mark.xdist_group("notebooks"))
        elif item.get_closest_marker("xdist_group") is None:  # a module may name a group it shares with others
            # a test module stays in one worker, so its module fixtures (a Spark session, a server) start once
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if hasattr(item, "module") else "other"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Runs before the notebook's kernel is started (by its collector's setup), so the kernel inherits these.
    if type(item).__name__ == "IPyNbCell":
        for name, value in _kernel_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
