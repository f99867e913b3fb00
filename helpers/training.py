"""The course's training step, loaded from the MLflow Project's own file (`mlproject/train.py`), so that a project
run, `course-cd4ml` and the notebooks that train in their kernel all run one definition. The pipeline calls it in its
own process, where Spark is running already, instead of starting a second process with a second JVM.
"""
from __future__ import annotations

import importlib.util
import sys

from helpers.config import REPO_ROOT

_MODULE = "course_training_project"  # registered under this name: the dataclass it defines needs its module


def _project():
    if _MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_MODULE, REPO_ROOT / "mlproject" / "train.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[_MODULE]


def train_and_register(spark, table: str, data_version: str, reg_param: float, elastic_net_param: float,
                       model_name: str):
    """`train_and_register` of mlproject/train.py: trains, logs to the active run and registers a new version."""
    return _project().train_and_register(spark, table, data_version, reg_param, elastic_net_param, model_name)
