"""Plumbing shared by the course's notebooks, jobs and tests: Spark and MLflow set-up, paths, data and the runner.

The lessons themselves (the MLflow, Spark and Delta calls) live in the notebooks.
"""
from helpers.config import display_path, on_databricks, settings, workspace_dir
from helpers.databricks import cached
from helpers.spark import start_spark
from helpers.tracking import course_experiment, quiet_mlflow, setup_mlflow

try:
    quiet_mlflow()  # before a notebook imports mlflow, so known noise never reaches its outputs
except ImportError:  # a Databricks runtime without MLflow: the set-up cell installs it, then Python restarts
    pass

__all__ = ["cached", "course_experiment", "display_path", "on_databricks", "settings", "setup_mlflow", "start_spark",
           "workspace_dir"]
