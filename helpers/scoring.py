"""The batch-scoring job: a registered model scores a Delta table and one day's predictions land in Delta.

    course-batch-score --model models:/retail_age_model@champion --date 2024-12-01
    course-batch-score --model models:/retail_age_model@champion --stream --table retail_features_arrivals

A scheduler (cron, Airflow, a Databricks Job) runs it; it exits 2 with one sentence when something is missing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from dataclasses import dataclass

from helpers.config import workspace_dir

KEY_COLUMNS = ("CustomerID",)


class ScoringError(RuntimeError):
    """Something the job needs is missing: the message says what and how to fix it."""


@dataclass(frozen=True)
class ResolvedModel:
    uri: str
    name: str | None  # None for runs:/ URIs
    version: str | None
    alias: str | None


def resolve_model(uri: str) -> ResolvedModel:
    """Checks that a models:/name@alias or models:/name/version URI exists in the registry, before Spark starts."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"models:/([^@/]+)(?:@([\w-]+)|/(\d+))", uri)
    if uri.startswith("runs:/"):
        return ResolvedModel(uri, None, None, None)
    if not match:
        raise ScoringError(f"--model {uri!r} is not a models:/<name>@<alias>, models:/<name>/<version> or runs:/ URI.")
    name, alias, version = match.groups()
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise ScoringError(f"There is no registered model named {name!r} in this tracking store: register one first "
                           "(notebook 04) or check MLFLOW_TRACKING_URI.") from None
    try:
        version = client.get_model_version_by_alias(name, alias).version if alias else \
            client.get_model_version(name, version).version
    except MlflowException:
        what = f"alias @{alias}" if alias else f"version {version}"
        raise ScoringError(f"Model {name!r} has no {what}: set the alias with set_registered_model_alias (notebook 04) "
                           "or pass an existing version.") from None
    # Load by number from now on: if the alias moves while the job runs, the version we record is still the one used.
    return ResolvedModel(f"models:/{name}/{version}", name, str(version), alias)


def score(spark, model: ResolvedModel, table: str):
    """The predictions of `model` for every row of `table`, with the model that made them."""
    import mlflow.spark
    from pyspark.sql import functions as F

    if not spark.catalog.tableExists(table):
        raise ScoringError(f"Table {table!r} does not exist in this workspace: build it first (notebook 00 builds "
                           "retail_features) or pass --table.")
    return (mlflow.spark.load_model(model.uri).transform(spark.read.table(table))
            .select(*KEY_COLUMNS, "prediction", F.lit(model.name).alias("model_name"),
                    F.lit(model.version).alias("model_version"), F.lit(model.alias).alias("model_alias"),
                    F.current_timestamp().alias("scored_at")))


def write_day(predictions, output: str, day: dt.date) -> None:
    """Replaces the predictions of `day` in the Delta table `output` (partitioned by scoring_date); other days stay."""
    from pyspark.sql import functions as F

    (predictions.withColumn("scoring_date", F.lit(day))
     .write.format("delta").mode("overwrite").option("replaceWhere", f"scoring_date = '{day.isoformat()}'")
     .partitionBy("scoring_date").saveAsTable(output))


def score_stream(spark, model: ResolvedModel, source: str, output: str, checkpoint: str) -> int:
    """Scores the rows that arrived in `source` since the last run (the checkpoint remembers), then stops."""
    import mlflow.spark
    from pyspark.sql import functions as F

    if not spark.catalog.tableExists(source):
        raise ScoringError(f"Table {source!r} does not exist in this workspace: create it or pass --table.")
    pipeline = mlflow.spark.load_model(model.uri)
    query = (pipeline.transform(spark.readStream.format("delta").table(source))
             .select(*KEY_COLUMNS, "prediction", F.lit(model.version).alias("model_version"),
                     F.current_timestamp().alias("scored_at"))
             .writeStream.format("delta").option("checkpointLocation", checkpoint)
             .trigger(availableNow=True).toTable(output))
    query.awaitTermination()
    return sum(progress["numInputRows"] for progress in query.recentProgress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course-batch-score", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="models:/<name>@<alias>, models:/<name>/<version> or runs:/...")
    parser.add_argument("--table", default="retail_features", help="the Delta table to score")
    parser.add_argument("--output", default=None, help="the predictions table (default: retail_predictions, "
                                                        "or retail_predictions_stream with --stream)")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.datetime.now(dt.timezone.utc).date(),
                        help="the scoring date, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--stream", action="store_true", help="score only rows that arrived since the last run")
    args = parser.parse_args(argv)
    output = args.output or ("retail_predictions_stream" if args.stream else "retail_predictions")

    from helpers.spark import start_spark
    from helpers.tracking import setup_mlflow

    try:
        setup_mlflow(quiet=True)
        model = resolve_model(args.model)
        spark = start_spark(quiet=True)
        described = f"{model.name} version {model.version}" + (f" (@{model.alias})" if model.alias else "") \
            if model.name else model.uri
        if args.stream:
            checkpoint = str(workspace_dir("checkpoints", output))
            rows = score_stream(spark, model, args.table, output, checkpoint)
            print(f"scored {rows} new rows of {args.table} with {described} into {output}")
        else:
            predictions = score(spark, model, args.table).cache()
            write_day(predictions, output, args.date)
            print(f"scored {predictions.count()} rows of {args.table} with {described} into {output} "
                  f"for {args.date.isoformat()}")
    except ScoringError as error:
        print(f"course-batch-score: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
