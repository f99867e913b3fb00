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
    # A challenger that learned from a newer version of the data may be up to 2% worse than the champion on the
    # held-out customers; one that learned from the same data must be no worse at all.
    max_worse_than_champion: float = 0.02


PRECISION = 3  # decimals of a year: RMSEs equal to this precision are equal (the same model retrained, say)


def verdict(rmse: float, champion_rmse: float | None, fresher: bool, thresholds: Thresholds,
            champion_version: str | None = None) -> tuple[bool, str]:
    """The gate's rule: (passed, reason). `fresher`: the challenger learned from a newer version of the champion's
    table, the only case where it may be a little worse."""
    if rmse > thresholds.max_rmse:
        return False, f"held-out RMSE {rmse:.3f} is above the limit of {thresholds.max_rmse:.3f}"
    if champion_rmse is None:
        return True, f"held-out RMSE {rmse:.3f}, no champion to beat"
    limit = champion_rmse * (1 + thresholds.max_worse_than_champion) if fresher else champion_rmse
    if round(rmse, PRECISION) > round(limit, PRECISION):
        which = f"the champion's {champion_rmse:.3f} (version {champion_version})"
        return False, (f"held-out RMSE {rmse:.3f} is worse than {which} by more than "
                       f"{thresholds.max_worse_than_champion:.0%}" if fresher
                       else f"held-out RMSE {rmse:.3f} is worse than {which}, on the same data")
    return True, f"held-out RMSE {rmse:.3f} against the champion's {champion_rmse:.3f}" + \
        (", on newer data" if fresher else "")


def trained_on(model_version) -> tuple[str, int] | None:
    """The Delta table and version a registered model version learned from (its run's dataset input), or None."""
    from helpers.monitoring import training_data

    try:
        return training_data(model_version)
    except ValueError:
        return None


def is_fresher(challenger, champion) -> bool:
    """Whether the challenger learned from a newer version of the same table than the champion."""
    mine, theirs = trained_on(challenger), trained_on(champion)
    return mine is not None and theirs is not None and mine[0] == theirs[0] and mine[1] > theirs[1]


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
    champion_rmse, fresher = None, False
    if champion is not None and str(champion.version) != version:
        champion_rmse = held_out_rmse(spark, f"models:/{name}/{champion.version}", held_out)
        fresher = is_fresher(client.get_model_version(name, version), champion)
    passed, reason = verdict(rmse, champion_rmse, fresher, thresholds, champion and str(champion.version))
    tags = {"validation_status": "passed" if passed else "rejected", "validation_reason": reason,
            "held_out_rmse": f"{rmse:.6f}"}
    if champion_rmse is not None:
        tags["champion_rmse"] = f"{champion_rmse:.6f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if passed:
        client.set_registered_model_alias(name, alias, version)
    return GateResult(name, version, passed, reason, rmse, champion and str(champion.version), champion_rmse)
