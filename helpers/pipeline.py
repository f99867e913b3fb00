"""The CD4ML pipeline as one unattended command: train -> register -> validate -> promote -> batch score.

    course-cd4ml --reg-param 0.0 --date 2024-12-01
    course-cd4ml --table retail_features --data-version 3 --model-name retail_age_model --no-score

What a CI/CD server (Jenkins, GitHub Actions, a Databricks Job) calls. Exit codes: 0 when the new version passed the
gate (it is then @champion, and the table was scored with it); 1 when the gate refused it (@champion unchanged, the
version tagged with the reason); 2 when something it needs is missing. Each failure is one sentence on stderr.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys

from helpers.config import REPO_ROOT

PROJECT = REPO_ROOT / "mlproject"


class PipelineError(RuntimeError):
    """Something the pipeline needs is missing: the message says what."""


def train(table: str, data_version: str, reg_param: float, elastic_net_param: float, model_name: str) -> str:
    """Runs the MLflow Project's train entry point in this environment; returns the version it registered."""
    import mlflow
    from mlflow import MlflowClient

    submitted = mlflow.projects.run(str(PROJECT), entry_point="train", env_manager="local", synchronous=False,
                                    parameters={"table": table, "data_version": data_version, "reg_param": reg_param,
                                                "elastic_net_param": elastic_net_param, "model_name": model_name})
    if not submitted.wait():
        raise PipelineError(f"the training run {submitted.run_id} failed; its output is above.")
    versions = MlflowClient().search_model_versions(f"run_id = '{submitted.run_id}'")
    if not versions:
        raise PipelineError(f"the training run {submitted.run_id} registered no version of {model_name}.")
    return str(versions[0].version)


def main(argv: list[str] | None = None) -> int:
    from helpers.gate import Thresholds

    defaults = Thresholds()
    parser = argparse.ArgumentParser(prog="course-cd4ml", description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="retail_features", help="the Delta table to train on and to score")
    parser.add_argument("--data-version", default="latest", help="the table's Delta version to train on")
    parser.add_argument("--reg-param", type=float, default=0.0)
    parser.add_argument("--elastic-net-param", type=float, default=0.0)
    parser.add_argument("--model-name", default="retail_age_model")
    parser.add_argument("--max-rmse", type=float, default=defaults.max_rmse, help="the gate's absolute RMSE limit")
    parser.add_argument("--max-worse", type=float, default=defaults.max_worse_than_champion,
                        help="how much worse than the champion's RMSE the new version may be (0.02 = 2%%)")
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.datetime.now(dt.timezone.utc).date(),
                        help="the scoring date of the batch predictions (default: today, UTC)")
    parser.add_argument("--no-score", action="store_true", help="stop after the gate")
    args = parser.parse_args(argv)

    from helpers import scoring
    from helpers.gate import split, validate
    from helpers.spark import start_spark
    from helpers.tracking import setup_mlflow

    try:
        setup_mlflow(quiet=True)
        spark = start_spark(quiet=True)
        if not spark.catalog.tableExists(args.table):
            raise PipelineError(f"there is no table {args.table!r} in the course workspace; run notebook 00 first.")
        version = train(args.table, args.data_version, args.reg_param, args.elastic_net_param, args.model_name)
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
