"""The `train` entry point of the course's MLflow Project: one Delta version in, one registered model version out.

Trains the course's linear pipeline (VectorAssembler + LinearRegression) on the customers outside the held-out
tenth (the same hash split as notebook 02), logs the parameters, the Delta version it read, the held-out RMSE and
the model, and registers the model as a new version of --model-name, tagged with the table and version
(`helpers/training.py`, which `course-cd4ml` calls too).
"""
from __future__ import annotations

import argparse
import sys

import mlflow

from helpers import setup_mlflow, start_spark
from helpers.training import train_and_register

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--table", default="retail_features")
parser.add_argument("--data-version", default="latest", help="a Delta version number, or 'latest'")
parser.add_argument("--reg-param", type=float, default=0.0)
parser.add_argument("--elastic-net-param", type=float, default=0.0)
parser.add_argument("--model-name", default="retail_age_model")
args = parser.parse_args()

spark = start_spark(quiet=True)
setup_mlflow(quiet=True)
if not spark.catalog.tableExists(args.table):
    raise SystemExit(f"train: there is no table {args.table!r} in the course workspace; run notebook 00 first.")
with mlflow.start_run():  # inside `mlflow run`, this is the project's run (MLFLOW_RUN_ID)
    trained = train_and_register(spark, args.table, args.data_version, args.reg_param, args.elastic_net_param,
                                 args.model_name)
# On stderr, like MLflow's own lines: a notebook that starts the project shows it as a log line, never mixed into its
# compared output (a child process's stdout reaches a notebook cell whenever it is flushed).
print(f"train: {trained.table} version {trained.delta_version}, held-out RMSE {trained.held_out_rmse:.3f}: "
      f"registered {args.model_name} version {trained.model_version}", file=sys.stderr)
