"""The `train` entry point of the course's MLflow Project: one Delta version in, one registered model version out.

`mlflow run mlproject -e train ...` runs this file as a script. `course-cd4ml` (08, 09) and the Databricks path of 07
call its `train_and_register` in their own process, where Spark already runs (helpers/training.py loads it from
here), so every training run of the course is this code.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from dataclasses import dataclass

import mlflow
import mlflow.spark
import pyspark
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression

from helpers.gate import LABEL, feature_columns, split


@dataclass(frozen=True)
class TrainedVersion:
    table: str
    delta_version: int
    held_out_rmse: float
    model_version: str


def train_and_register(spark, table: str, data_version: str, reg_param: float, elastic_net_param: float,
                       model_name: str) -> TrainedVersion:
    """Trains the linear pipeline on `table` at `data_version` ("latest" or a number), outside the held-out tenth
    of the customers; logs it to the active run with the Delta version as the run's dataset input; registers it."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("train_and_register logs to the active MLflow run: call it inside mlflow.start_run().")
    # 1. The data: one Delta version, read with time travel, split by the customers' hash as in notebook 02
    latest = spark.sql(f"DESCRIBE HISTORY `{table}` LIMIT 1").first()["version"]
    version = latest if data_version == "latest" else int(float(data_version))
    data = spark.read.option("versionAsOf", version).table(table)
    train, held_out = split(data)
    columns = feature_columns(data)

    # 2. The model: the course's pipeline, scored on the held-out customers
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=columns, outputCol="features"),
        LinearRegression(featuresCol="features", labelCol=LABEL, regParam=reg_param,
                         elasticNetParam=elastic_net_param, maxIter=50)]).fit(train)
    rmse = RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(pipeline.transform(held_out))

    # 3. The record: the Delta version as a dataset input, the parameters, the metric and the model
    mlflow.log_input(mlflow.data.load_delta(table_name=table, version=version, targets=LABEL, name=table),
                     context="training")
    # `mlflow run` logs the entry point's parameters itself (data_version may say "latest"): add the rest, and the
    # Delta version that "latest" meant.
    given = {"table": table, "data_version": data_version, "reg_param": reg_param,
             "elastic_net_param": elastic_net_param}
    logged = mlflow.get_run(run.info.run_id).data.params
    mlflow.log_params({key: value for key, value in given.items() if key not in logged})
    mlflow.log_params({"delta_version": version, "features": len(columns)})
    mlflow.log_metric("held_out_rmse", rmse)
    example = train.select(columns).limit(2).toPandas()
    mlflow.spark.log_model(pipeline, artifact_path="model", input_example=example,
                           signature=mlflow.models.infer_signature(example, pipeline.transform(train.limit(2))
                                                                   .select("prediction").toPandas()),
                           # pinned, as 01 and 03 teach: what a server needs to load this exact model
                           pip_requirements=[f"mlflow=={mlflow.__version__}", f"pyspark=={pyspark.__version__}"])

    # 4. The registry: a new version, tagged with the data it learned from. MLflow prints "Registered model ...
    # already exists" and "Created version" to stderr; the caller reports the version itself (a failure still raises).
    with contextlib.redirect_stderr(io.StringIO()):
        registered = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name,
                                           tags={"table": table, "data_version": str(version)})
    return TrainedVersion(table, version, rmse, str(registered.version))


def main() -> None:
    from helpers import setup_mlflow, start_spark

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
    # On stderr, like MLflow's own lines: a notebook that starts the project shows it as a log line, never mixed into
    # its compared output (a child process's stdout reaches a notebook cell whenever it is flushed).
    print(f"train: {trained.table} version {trained.delta_version}, held-out RMSE {trained.held_out_rmse:.3f}: "
          f"registered {args.model_name} version {trained.model_version}", file=sys.stderr)


if __name__ == "__main__":
    main()
