"""The `train` entry point of the course's MLflow Project: one Delta version in, one registered model version out.

Trains the course's linear pipeline (VectorAssembler + LinearRegression) on the customers outside the held-out
tenth (the same hash split as notebook 02), logs the parameters, the Delta version it read, the held-out RMSE and
the model, and registers the model as a new version of --model-name, tagged with the table and version.
"""
from __future__ import annotations

import argparse
import sys

import mlflow
import mlflow.spark
from delta.tables import DeltaTable
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression

from helpers import setup_mlflow, start_spark
from helpers.gate import LABEL, feature_columns, split

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
latest = DeltaTable.forName(spark, args.table).history(1).first()["version"]
version = latest if args.data_version == "latest" else int(float(args.data_version))
table = spark.read.option("versionAsOf", version).table(args.table)
train, held_out = split(table)
columns = feature_columns(table)

pipeline = Pipeline(stages=[
    VectorAssembler(inputCols=columns, outputCol="features"),
    LinearRegression(featuresCol="features", labelCol=LABEL, regParam=args.reg_param,
                     elasticNetParam=args.elastic_net_param, maxIter=50)]).fit(train)
rmse = RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(pipeline.transform(held_out))

with mlflow.start_run() as run:  # inside `mlflow run`, this is the project's run (MLFLOW_RUN_ID)
    mlflow.log_input(mlflow.data.load_delta(table_name=args.table, version=version, targets=LABEL,
                                            name=args.table), context="training")
    # `mlflow run` has logged the entry point's parameters already (data_version may say "latest"): add the rest,
    # and the Delta version that "latest" meant.
    given = {"table": args.table, "data_version": args.data_version, "reg_param": args.reg_param,
             "elastic_net_param": args.elastic_net_param}
    logged = mlflow.get_run(run.info.run_id).data.params
    mlflow.log_params({key: value for key, value in given.items() if key not in logged})
    mlflow.log_params({"delta_version": version, "features": len(columns)})
    mlflow.log_metric("held_out_rmse", rmse)
    example = train.select(columns).limit(2).toPandas()
    mlflow.spark.log_model(pipeline, artifact_path="model", input_example=example,
                           signature=mlflow.models.infer_signature(example, pipeline.transform(train.limit(2))
                                                                   .select("prediction").toPandas()),
                           pip_requirements=[f"mlflow=={mlflow.__version__}", "pyspark", "delta-spark"])
    registered = mlflow.register_model(f"runs:/{run.info.run_id}/model", args.model_name,
                                       tags={"table": args.table, "data_version": str(version)})
# On stderr, like MLflow's own lines: a notebook that starts the project shows it as a log line, never mixed into its
# compared output (a child process's stdout reaches a notebook cell whenever it is flushed).
print(f"train: {args.table} version {version}, held-out RMSE {rmse:.3f}: "
      f"registered {args.model_name} version {registered.version}", file=sys.stderr)
