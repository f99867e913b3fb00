"""Monitoring for the CD4ML loop: has the population drifted, has the model's error grown, should we retrain?

Drift is measured per feature with the population stability index (PSI): the reference values are cut into ten
bins of equal count, and PSI = sum over bins of (current share - reference share) * ln(current share / reference
share). 0 means the same distribution; the usual reading is below 0.1 stable, 0.1 to 0.2 a moderate shift, above
0.2 a significant one. It needs no labels, so it can warn before the labels arrive; the error on newly labelled
customers says whether the shift actually hurts the model.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BINS = 10
EMPTY_BIN_SHARE = 1e-4  # a bin that one side leaves empty would make the logarithm infinite


def psi(reference, current, bins: int = BINS) -> float:
    """The population stability index of `current` against `reference` (two 1-D arrays of numbers)."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) == 0 or len(current) == 0:
        raise ValueError("PSI needs at least one value on each side; one of the two samples is empty.")
    # The observation nearest each decile, as Spark's exact approxQuantile picks it: notebook 09 computes PSI in Spark
    # and checks that the two agree.
    cuts = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], method="closest_observation"))
    cuts = cuts[cuts > reference.min()]  # a cut at the minimum would only make an empty first bin
    if len(cuts) == 0:  # a constant reference: its value in one bin, anything above it in the other
        cuts = np.array([np.nextafter(reference.max(), np.inf)])
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, EMPTY_BIN_SHARE, None), np.clip(actual, EMPTY_BIN_SHARE, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class MonitoringThresholds:
    max_psi: float = 0.2  # any feature above this has drifted significantly
    max_rmse_increase: float = 0.05  # the error may grow by at most 5% over the champion's baseline


@dataclass(frozen=True)
class MonitoringReport:
    psi: pd.Series  # feature -> PSI, largest first
    rmse: float
    baseline_rmse: float
    thresholds: MonitoringThresholds = field(default_factory=MonitoringThresholds)

    @property
    def drifted(self) -> list[str]:
        return [name for name, value in self.psi.items() if value > self.thresholds.max_psi]

    @property
    def rmse_increase(self) -> float:
        return self.rmse / self.baseline_rmse - 1

    @property
    def degraded(self) -> bool:
        return self.rmse_increase > self.thresholds.max_rmse_increase

    @property
    def retrain(self) -> bool:
        return bool(self.drifted) or self.degraded

    @property
    def reasons(self) -> list[str]:
        reasons = [f"{name} drifted (PSI {self.psi[name]:.3f} > {self.thresholds.max_psi})" for name in self.drifted]
        if self.degraded:
            reasons.append(f"RMSE {self.rmse:.3f} is {self.rmse_increase:.1%} above the baseline "
                           f"{self.baseline_rmse:.3f} (limit {self.thresholds.max_rmse_increase:.0%})")
        return reasons

    def metrics(self) -> dict[str, float]:
        """Everything worth plotting over time, as MLflow metric names and values."""
        return {**{f"psi_{name}": value for name, value in self.psi.items()},
                "max_psi": float(self.psi.max()), "drifted_features": float(len(self.drifted)),
                "rmse": self.rmse, "baseline_rmse": self.baseline_rmse, "rmse_increase": self.rmse_increase,
                "retrain": float(self.retrain)}


def assess(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], rmse: float, baseline_rmse: float,
           thresholds: MonitoringThresholds = MonitoringThresholds()) -> MonitoringReport:
    """PSI of every feature column of `current` against `reference`, and the error against its baseline."""
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"Both samples need the feature columns; missing: {', '.join(missing)}.")
    values = pd.Series({c: psi(reference[c], current[c]) for c in columns}).sort_values(ascending=False)
    return MonitoringReport(values, float(rmse), float(baseline_rmse), thresholds)


def active_customer_features(silver, customers, categories: list[str], month: dt.date):
    """Features of the customers who bought in `month`, computed over the twelve months that end with it: the same
    window length as the training year, so the numbers mean the same thing."""
    from pyspark.sql import functions as F

    from helpers.features import customer_features, month_bounds, year_ending_with

    start, end = month_bounds(month)
    active = silver.filter((F.col("InvoiceDate") >= F.lit(str(start))) & (F.col("InvoiceDate") < F.lit(str(end)))) \
        .select("CustomerID").distinct()
    return customer_features(year_ending_with(silver, month), customers, categories).join(active, on="CustomerID")


def training_data(model_version) -> tuple[str, int]:
    """The Delta table and version a registered model version learned from: its run's dataset input, recorded with
    `mlflow.data.load_delta` and `mlflow.log_input` (notebook 02 and the training project do). Monitoring compares
    new data with exactly that version."""
    import json

    import mlflow

    if model_version.run_id:
        run = mlflow.get_run(model_version.run_id)
        for dataset_input in run.inputs.dataset_inputs:
            source = json.loads(dataset_input.dataset.source)
            if "delta_table_version" in source:
                return source["delta_table_name"], int(source["delta_table_version"])
            # MLflow 3.17 leaves a version 0 out of the source (it tests the number for truth); the training
            # project also logs the version it read as a parameter.
            if "delta_table_name" in source and "delta_version" in run.data.params:
                return source["delta_table_name"], int(run.data.params["delta_version"])
    raise ValueError(f"Version {model_version.version} of {model_version.name} records no Delta table version as a "
                     "dataset input, so there is no reference to compare new data with: train it with the course's "
                     "training project (mlproject/), which records one.")


def plot_psi(psi_by_month: pd.DataFrame, max_psi: float, title: str):
    """A bar chart of PSI per feature (rows) and month (columns), with the threshold as a line; returns the figure."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4))
    psi_by_month.plot.bar(ax=axis, width=0.8)
    axis.axhline(max_psi, color="red", linestyle="--", label=f"threshold {max_psi}")
    axis.set_ylabel("population stability index")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    plt.close(figure)  # the caller shows or logs it; closed figures are not drawn twice in a notebook
    return figure
