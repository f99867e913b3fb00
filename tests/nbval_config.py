"""pytest plugin for nbval: one fresh course workspace for the notebooks, and stderr never compared.

Spark, MLflow and Jupyter write warnings to stderr that vary between runs and machines; a lesson's meaning is in
stdout and rich outputs, which stay compared in full (with the narrow sanitizer in nbval_sanitize.cfg).
"""
from __future__ import annotations

import os
import tempfile

NOTEBOOK_WORKSPACE_PREFIX = "course-nbval-"


def pytest_configure(config):
    # The kernels nbval starts inherit this process's environment: give them a fresh workspace of their own,
    # unless the caller chose one (the cluster test does, to point them elsewhere).
    if not os.environ.get("COURSE_WORKSPACE"):
        os.environ["COURSE_WORKSPACE"] = tempfile.mkdtemp(prefix=NOTEBOOK_WORKSPACE_PREFIX)


def pytest_collectstart(collector):
    if type(collector).__name__ == "IPyNbFile":
        collector.skip_compare = (*collector.skip_compare, "stderr")
