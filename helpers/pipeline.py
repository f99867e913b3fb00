"""The CD4ML pipeline as one unattended command: [monitor ->] train -> register -> validate -> promote -> batch score.

It trains with the MLflow Project's own step (mlproject/train.py, what `mlflow run mlproject` runs), in this process.

    course-cd4ml --reg-param 0.0 --date 2024-12-01
    course-cd4ml --table retail_features --data-version 3 --model-name retail_age_model --no-score
    course-cd4ml --version 7          # validate (and score with) a version registered elsewhere: a webhook's job
    course-cd4ml --land data/online_retail_2024-12.csv.gz --monitor 2024-12   # the nightly job: retrain on drift

What a CI/CD server (Jenkins, GitHub Actions, a Databricks Job) calls. Exit codes: 0 when the new version passed the
gate (it is then @champion, and the table was scored with it), or when monitoring found no reason to retrain; 1 when
the gate refused it (@champion unchanged, the version tagged with the reason); 2 when something it needs is missing.
Each failure is one sentence on stderr.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from helpers.config import REPO_ROOT
from helpers.monitoring import MonitoringReport, MonitoringThresholds

PROJECT = REPO_ROOT / "mlproject"
EXPERIMENT = "retail-age-cd4ml"  # where the project's training runs go
MONITORING_EXPERIMENT = "retail-age-monitoring"  # one run per monitored month


class PipelineError(RuntimeError):
    """Something the pipeline needs is missing: the message says what."""


def month_argument(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month written YYYY-MM, such as 2024-12.") from None


def experiment_id(name: str) -> str:
    """The id of the course experiment `name`, created if needed. Runs go there by id, not mlflow.set_experiment,
    which would change the caller's active experiment (and MLFLOW_EXPERIMENT_ID, which every later process inherits)."""
    import mlflow

    from helpers.tracking import course_experiment

    name = course_experiment(name)  # creates it on the course's own store; a server's is created here
    found = mlflow.get_experiment_by_name(name)
    return found.experiment_id if found else mlflow.create_experiment(name)


def train(spark, table: str, data_version: str, reg_param: float, elastic_net_param: float, model_name: str,
          experiment: str = EXPERIMENT) -> str:
    """The training project's step, run in this process on its Spark (no second JVM); returns the version registered."""
    import mlflow

    from helpers.tracking import quiet_mlflow
    from helpers.training import train_and_register

    quiet_mlflow()
    if not spark.catalog.tableExists(table):
        raise PipelineError(f"there is no table {table!r} in the course workspace; run notebook 00 first.")
    with mlflow.start_run(experiment_id=experiment_id(experiment), run_name="course-cd4ml-train"):
        return train_and_register(spark, table, data_version, reg_param, elastic_net_param, model_name).model_version


def existing_version(model_name: str, version: str) -> str:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        if version == "newest":  # what a job started by a new version validates; `name =` is all UC's search takes
            found = MlflowClient().search_model_versions(f"name = '{model_name}'")
            version = str(max(int(found_version.version) for found_version in found)) if found else "none"
        return str(MlflowClient().get_model_version(model_name, version).version)
    except MlflowException:
        raise PipelineError(f"there is no version {version} of the registered model {model_name!r}; "
                            "check --model-name and --version.") from None


def land_month(spark, raw_file: Path) -> None:
    """Appends one raw transactions file to retail_bronze (idempotent: replaceWhere on its source_file) and rebuilds
    retail_silver from bronze, as notebook 09 does."""
    from pyspark.sql import functions as F

    from helpers.config import DATA_DIR
    from helpers.data import data_uri
    from helpers.features import clean_lines

    schema = spark.read.table("retail_bronze").drop("source_file").schema
    # one of the course's files is read from its copy in the volume on Databricks (executors see no workspace files)
    source = data_uri(raw_file.name) if raw_file.resolve().parent == DATA_DIR.resolve() else raw_file.resolve().as_uri()
    lines = spark.read.option("header", True).schema(schema).csv(source) \
        .withColumn("source_file", F.col("_metadata.file_name"))
    lines.write.format("delta").mode("overwrite").option("replaceWhere", f"source_file = '{raw_file.name}'") \
        .saveAsTable("retail_bronze")
    clean_lines(spark.read.table("retail_bronze"), spark.read.table("retail_products")).write.format("delta") \
        .mode("overwrite").saveAsTable("retail_silver")


def monitor(spark, model_name: str, month: dt.date, thresholds: MonitoringThresholds) -> MonitoringReport:
    """Drift and error of @champion on the customers who bought in `month`, against the data it learned from;
    logged as one run of the monitoring experiment."""
    import mlflow
    import mlflow.spark
    from mlflow import MlflowClient
    from pyspark.ml.evaluation import RegressionEvaluator

    from helpers.features import LABEL, feature_names
    from helpers.gate import split
    from helpers.monitoring import active_customer_features, assess, training_data
    from mlflow.exceptions import MlflowException

    try:
        champion = MlflowClient().get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        raise PipelineError(f"{model_name!r} has no @champion to monitor; promote one first (notebook 04, or "
                            "course-cd4ml without --monitor).") from None
    try:
        table, version = training_data(champion)
    except ValueError as error:
        raise PipelineError(str(error)) from None
    reference = spark.read.option("versionAsOf", version).table(table)
    categories = sorted(r.Category for r in spark.read.table("retail_products").select("Category").distinct().collect())
    columns = feature_names(categories)
    current = active_customer_features(spark.read.table("retail_silver"), spark.read.table("retail_customers"),
                                       categories, month).cache()
    if current.isEmpty():
        raise PipelineError(f"nobody bought anything in {month:%Y-%m} according to retail_silver; land that month's "
                            "raw file first (--land).")
    model = mlflow.spark.load_model(f"models:/{model_name}/{champion.version}")
    evaluator = RegressionEvaluator(labelCol=LABEL, metricName="rmse")
    report = assess(reference.select(columns).toPandas(), current.select(columns).toPandas(), columns,
                    evaluator.evaluate(model.transform(current)),
                    evaluator.evaluate(model.transform(split(reference)[1])), thresholds)
    with mlflow.start_run(experiment_id=experiment_id(MONITORING_EXPERIMENT), run_name=f"monitoring-{month:%Y-%m}"):
        mlflow.log_params({"month": f"{month:%Y-%m}", "model_version": champion.version, "reference_table": table,
                           "reference_version": version, "max_psi": thresholds.max_psi,
                           "max_rmse_increase": thresholds.max_rmse_increase})
        mlflow.log_metrics(report.metrics())
        mlflow.set_tags({"retrain": str(report.retrain).lower(), "reasons": "; ".join(report.reasons) or "none"})
    return report


def refresh_training_table(spark, table: str, month: dt.date) -> str:
    """Rewrites `table` with the twelve months that end with `month` (a new Delta version); returns that version."""
    from helpers.features import training_table

    categories = sorted(r.Category for r in spark.read.table("retail_products").select("Category").distinct().collect())
    training_table(spark.read.table("retail_silver"), spark.read.table("retail_customers"), categories, month) \
        .write.format("delta").mode("overwrite").saveAsTable(table)
    return str(spark.sql(f"DESCRIBE HISTORY `{table}` LIMIT 1").first()["version"])  # SQL: Spark Connect has it too


def run_as_ci(model_name: str, *arguments: str) -> int:
    """Runs `course-cd4ml` in a new process, as a CI server or scheduler would, and prints the command, the
    command's own summary lines and its exit code (the lessons' view of a CI job's log)."""
    import shlex
    import subprocess

    command = ["course-cd4ml", "--model-name", model_name, *arguments]
    print("$", shlex.join(command))
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if finished.returncode not in (0, 1):  # 2: something missing; anything else: a crash worth reading whole
        print(finished.stderr.strip()[-3000:])
    for line in (finished.stdout + finished.stderr).splitlines():
        if line.startswith(("course-cd4ml:", "scored")):
            print(line)
    print(f"exit code {finished.returncode}\n")
    return finished.returncode


def main(argv: list[str] | None = None) -> int:
    from helpers.gate import Thresholds
    from helpers.tracking import course_model_name

    defaults = Thresholds()
    parser = argparse.ArgumentParser(prog="course-cd4ml", description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="retail_features", help="the Delta table to train on and to score")
    parser.add_argument("--data-version", default="latest", help="the table's Delta version to train on")
    parser.add_argument("--reg-param", type=float, default=0.0)
    parser.add_argument("--elastic-net-param", type=float, default=0.0)
    parser.add_argument("--model-name", default=course_model_name("retail_age_model"))
    parser.add_argument("--max-rmse", type=float, default=defaults.max_rmse, help="the gate's absolute RMSE limit")
    parser.add_argument("--max-worse", type=float, default=defaults.max_worse_than_champion,
                        help="how much worse than the champion's RMSE a version that learned from newer data may be "
                             "(0.02 = 2%%); on the champion's own data it may not be worse at all")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.datetime.now(dt.timezone.utc).date(),
                        help="the scoring date of the batch predictions (default: today, UTC)")
    parser.add_argument("--no-score", action="store_true", help="stop after the gate")
    parser.add_argument("--version", help="skip training: validate this existing version of --model-name, or the "
                                          "newest one (what a job started by a new model version runs)")
    parser.add_argument("--land", type=Path, metavar="FILE", help="first append this raw transactions file to "
                        "retail_bronze and rebuild retail_silver (idempotent)")
    parser.add_argument("--monitor", type=month_argument, metavar="YYYY-MM",
                        help="first measure drift and error of @champion on this month; train (on the twelve months "
                             "that end with it) only when a threshold is crossed")
    parser.add_argument("--max-psi", type=float, default=MonitoringThresholds().max_psi,
                        help="with --monitor: retrain when a feature's PSI is above this")
    parser.add_argument("--max-rmse-increase", type=float, default=MonitoringThresholds().max_rmse_increase,
                        help="with --monitor: retrain when the RMSE grew by more than this (0.05 = 5%%)")
    args = parser.parse_args(argv)
    if args.version and args.monitor:
        parser.error("--version validates an existing version; --monitor decides whether to train one: pick one.")
    if args.land and not args.land.is_file():  # before Spark starts: a typo should cost a second, not a minute
        print(f"course-cd4ml: there is no file {args.land}; pass a raw transactions file such as "
              "data/online_retail_2024-12.csv.gz.", file=sys.stderr)
        return 2

    from helpers import scoring
    from helpers.gate import split, validate
    from helpers.spark import start_spark
    from helpers.tracking import setup_mlflow

    try:
        setup_mlflow(quiet=True)
        spark = start_spark(quiet=True)
        if not spark.catalog.tableExists(args.table):
            raise PipelineError(f"there is no table {args.table!r} in the course workspace; run notebook 00 first.")
        if args.land:
            land_month(spark, args.land)
            print(f"course-cd4ml: landed {args.land.name} in retail_bronze and retail_silver", flush=True)
        if args.monitor:
            report = monitor(spark, args.model_name, args.monitor,
                             MonitoringThresholds(args.max_psi, args.max_rmse_increase))
            print(f"course-cd4ml: monitored {args.monitor:%Y-%m}: max PSI {report.psi.max():.3f}, RMSE "
                  f"{report.rmse:.3f} ({report.rmse_increase:+.1%} against {report.baseline_rmse:.3f})", flush=True)
            if not report.retrain:
                print(f"course-cd4ml: no threshold crossed in {args.monitor:%Y-%m}: no retraining", flush=True)
                return 0
            print("course-cd4ml: retraining, because " + "; ".join(report.reasons), flush=True)
            args.data_version = refresh_training_table(spark, args.table, args.monitor)
            print(f"course-cd4ml: {args.table} version {args.data_version} holds the twelve months to "
                  f"{args.monitor:%Y-%m}", flush=True)
        if args.version:
            version = existing_version(args.model_name, args.version)
        else:
            version = train(spark, args.table, args.data_version, args.reg_param, args.elastic_net_param,
                            args.model_name)
            print(f"course-cd4ml: trained and registered {args.model_name} version {version}", flush=True)
        held_out = split(spark.read.table(args.table))[1]
        result = validate(spark, args.model_name, version, held_out, Thresholds(args.max_rmse, args.max_worse))
    except PipelineError as error:
        print(f"course-cd4ml: {error}", file=sys.stderr)
        return 2
    if not result.passed:
        print(f"course-cd4ml: the gate refused {args.model_name} version {version}: {result.reason}; "
              f"@champion stays version {result.champion_version}.", file=sys.stderr)
        return 1
    print(f"course-cd4ml: version {version} passed the gate ({result.reason}) and is now @champion", flush=True)
    if args.no_score:
        return 0
    return scoring.main(["--model", f"models:/{args.model_name}@champion", "--table", args.table,
                         "--date", args.date.isoformat()])


if __name__ == "__main__":
    sys.exit(main())
