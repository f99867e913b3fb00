"""The validation gate of the CD4ML loop: a new model version becomes @champion only if it passes explicit checks.

The checks run on the held-out customers (the tenth chosen by a hash of the customer id, as in notebook 02), which
no course model trains on. The results are recorded on the version as tags, whatever the outcome, so the registry
says why a version was promoted or refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from helpers.features import LABEL, VECTOR

NOT_FEATURES = ("CustomerID", LABEL, VECTOR)


def feature_columns(table) -> list[str]:
    return [column for column in table.columns if column not in NOT_FEATURES]


def split(table):
    """(train, held_out): the held-out tenth is chosen by a hash of the customer id, stable across runs and versions."""
    from pyspark.sql import functions as F

    bucketed = table.withColumn("bucket", F.abs(F.xxhash64("CustomerID")) % 10)
    return bucketed.filter("bucket > 0").drop("bucket"), bucketed.filter("bucket = 0").drop("bucket")


@dataclass(frozen=True)
class Thresholds:
    max_rmse: float = 8.0  # years: an absolute floor of quality, whatever the champion does
    max_worse_than_champion: float = 0.02  # the challenger's RMSE may exceed the champion's by at most 2%


@dataclass(frozen=True)
class GateResult:
    name: str
    version: str
    passed: bool
    reason: str
    rmse: float
    champion_version: str | None
    champion_rmse: float | None


def held_out_rmse(spark, model_uri: str, held_out) -> float:
    import mlflow.spark
    from pyspark.ml.evaluation import RegressionEvaluator

    model = mlflow.spark.load_model(model_uri)
    return RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(model.transform(held_out))


def validate(spark, name: str, version: str, held_out, thresholds: Thresholds = Thresholds(),
             alias: str = "champion") -> GateResult:
    """Evaluates version against the current @alias; moves the alias only if every check passes; tags the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    version = str(version)
    rmse = held_out_rmse(spark, f"models:/{name}/{version}", held_out)
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        champion = None
    champion_rmse = None
    if champion is not None and str(champion.version) != version:
        champion_rmse = held_out_rmse(spark, f"models:/{name}/{champion.version}", held_out)

    if rmse > thresholds.max_rmse:
        passed, reason = False, f"held-out RMSE {rmse:.3f} is above the limit of {thresholds.max_rmse:.3f}"
    elif champion_rmse is not None and rmse > champion_rmse * (1 + thresholds.max_worse_than_champion):
        passed, reason = False, (f"held-out RMSE {rmse:.3f} is worse than the champion's {champion_rmse:.3f} "
                                 f"(version {champion.version}) by more than {thresholds.max_worse_than_champion:.0%}")
    else:
        passed = True
        reason = (f"held-out RMSE {rmse:.3f}" + (f" against the champion's {champion_rmse:.3f}"
                                                 if champion_rmse is not None else ", no champion to beat"))
    tags = {"validation_status": "passed" if passed else "rejected", "validation_reason": reason,
            "held_out_rmse": f"{rmse:.6f}"}
    if champion_rmse is not None:
        tags["champion_rmse"] = f"{champion_rmse:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if passed:
        client.set_registered_model_alias(name, alias, version)
    return GateResult(name, version, passed, reason, rmse, champion and str(champion.version), champion_rmse)
