"""The course's training step: one Delta version in, one registered model version out.

The MLflow Project (`mlproject/train.py`, run by `mlflow run`) and `course-cd4ml` both call it, so a project run and
a pipeline run train the same model the same way; the pipeline calls it in its own process, where Spark is running
already, instead of starting a second process with a second JVM.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from helpers.gate import LABEL, feature_columns, split


@dataclass(frozen=True)
class TrainedVersion:
    table: str
    delta_version: int
    held_out_rmse: float
    model_version: str


def train_and_register(spark, table: str, data_version: str, reg_param: float, elastic_net_param: float,
                       model_name: str) -> TrainedVersion:
    """Trains the linear pipeline on `table` at `data_version` ("latest" or a number) outside the held-out tenth,
    logs it to the active run (with the Delta version as the run's dataset input) and registers a new version of
    `model_name`, tagged with the table and version."""
    import mlflow
    import mlflow.spark
    import pyspark
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("train_and_register logs to the active MLflow run: call it inside mlflow.start_run().")
    latest = spark.sql(f"DESCRIBE HISTORY `{table}` LIMIT 1").first()["version"]
    version = latest if data_version == "latest" else int(float(data_version))
    data = spark.read.option("versionAsOf", version).table(table)
    train, held_out = split(data)
    columns = feature_columns(data)
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=columns, outputCol="features"),
        LinearRegression(featuresCol="features", labelCol=LABEL, regParam=reg_param,
                         elasticNetParam=elastic_net_param, maxIter=50)]).fit(train)
    rmse = RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(pipeline.transform(held_out))

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
    # MLflow prints "Registered model ... already exists", "Waiting up to 300 seconds ..." and "Created version"
    # to stderr; the caller reports the version itself (a failure still raises).
    with contextlib.redirect_stderr(io.StringIO()):
        registered = mlflow.register_model(f"runs:/{run.info.run_id}/model", model_name,
                                           tags={"table": table, "data_version": str(version)})
    return TrainedVersion(table, version, rmse, str(registered.version))
