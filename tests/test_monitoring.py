"""Drift monitoring: PSI and the retrain decision on their own, then the pipeline's nightly job for real (Spark, Delta,
the registry, the training project) on the course's data: no retraining for an ordinary month, retraining on the
twelve months to December when December arrives.
"""
from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from helpers.data import DRIFT_MONTH_FILE, TRANSACTIONS_FILE, CUSTOMERS_FILE, PRODUCTS_FILE, data_path
from helpers.monitoring import MonitoringThresholds, assess, psi

MODEL = "monitored_model"
slow = pytest.mark.slow  # the tests that start Spark


# --- PSI and the decision, no Spark ---------------------------------------------------------------------------------

def test_psi_is_zero_for_the_same_sample_and_small_for_another_draw_of_the_same_distribution():
    rng = np.random.default_rng(7)
    reference = rng.normal(40, 10, 5000)
    assert psi(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, rng.normal(40, 10, 2000)) < 0.02  # sampling noise only: far below the 0.1 "stable" line


def test_psi_grows_with_the_shift_and_crosses_the_usual_alarm_level():
    rng = np.random.default_rng(7)
    reference = rng.normal(40, 10, 5000)
    shifts = [psi(reference, rng.normal(40 + shift, 10, 2000)) for shift in (1, 3, 6, 10)]
    assert shifts == sorted(shifts)  # a larger move of the mean is a larger index
    assert shifts[0] < 0.1 < 0.2 < shifts[-1]  # a tenth of a standard deviation is stable, a whole one is not


def test_psi_handles_a_constant_reference_and_refuses_an_empty_sample():
    assert psi(np.zeros(100), np.zeros(50)) == pytest.approx(0.0)
    assert psi(np.zeros(100), np.ones(50)) > 1  # every value moved out of the reference's only bin
    with pytest.raises(ValueError, match="empty"):
        psi(np.zeros(10), np.array([np.nan]))


def test_the_report_retrains_on_drift_or_on_a_grown_error_and_says_why():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 4000), "b": rng.uniform(0, 1, 4000)})
    same = pd.DataFrame({"a": rng.normal(0, 1, 1000), "b": rng.uniform(0, 1, 1000)})
    moved = same.assign(b=same["b"] + 0.5)
    thresholds = MonitoringThresholds(max_psi=0.2, max_rmse_increase=0.05)

    calm = assess(reference, same, ["a", "b"], rmse=6.1, baseline_rmse=6.0, thresholds=thresholds)
    assert not calm.retrain and calm.reasons == [] and calm.metrics()["retrain"] == 0.0

    drifted = assess(reference, moved, ["a", "b"], rmse=6.1, baseline_rmse=6.0, thresholds=thresholds)
    assert drifted.retrain and drifted.drifted == ["b"] and drifted.reasons[0].startswith("b drifted (PSI")

    worse = assess(reference, same, ["a", "b"], rmse=6.4, baseline_rmse=6.0, thresholds=thresholds)
    assert worse.retrain and worse.drifted == [] and "6.7% above the baseline" in worse.reasons[0]


def test_assess_names_the_missing_feature_columns():
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="missing: b"):
        assess(frame, frame, ["a", "b"], 1.0, 1.0)


def test_the_pipeline_refuses_a_month_that_is_not_a_month():
    finished = subprocess.run([sys.executable, "-m", "helpers.pipeline", "--monitor", "2024-13"],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2 and "'2024-13' is not a month written YYYY-MM" in finished.stderr


# --- the nightly job, for real --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def course(spark):
    """The course's bronze, silver and features tables built from data/ as notebook 00 builds them (the year to
    November 2024), and a @champion trained on them by the training step."""
    from pyspark.sql import functions as F

    from helpers import setup_mlflow
    from helpers.features import clean_lines, training_table
    from helpers.gate import split, validate
    from helpers.pipeline import train

    setup_mlflow(quiet=True)
    spark.read.option("header", True).schema(
        "InvoiceNo STRING, StockCode STRING, Description STRING, Quantity INT, InvoiceDate STRING, UnitPrice DOUBLE, "
        "CustomerID DOUBLE, Country STRING").csv(data_path(TRANSACTIONS_FILE).as_uri()) \
        .withColumn("source_file", F.col("_metadata.file_name")) \
        .write.format("delta").saveAsTable("retail_bronze")
    for table, file_name in (("retail_customers", CUSTOMERS_FILE), ("retail_products", PRODUCTS_FILE)):
        spark.read.option("header", True).option("inferSchema", True).csv(data_path(file_name).as_uri()) \
            .write.format("delta").saveAsTable(table)
    clean_lines(spark.read.table("retail_bronze"), spark.read.table("retail_products")) \
        .write.format("delta").saveAsTable("retail_silver")
    categories = sorted(r.Category for r in spark.read.table("retail_products").select("Category").distinct().collect())
    training_table(spark.read.table("retail_silver"), spark.read.table("retail_customers"), categories,
                   pd.Timestamp("2024-11-01").date()).write.format("delta").saveAsTable("retail_features")
    version = train(spark, "retail_features", "latest", 0.0, 0.0, MODEL)
    assert validate(spark, MODEL, version, split(spark.read.table("retail_features"))[1]).passed
    yield spark
    mlflow.set_tracking_uri(None)


def pipeline(*arguments: str) -> subprocess.CompletedProcess:
    """`course-cd4ml` as a CI server runs it: a new process, the same workspace and tracking store."""
    return subprocess.run([sys.executable, "-m", "helpers.pipeline", "--model-name", MODEL, "--no-score", *arguments],
                           capture_output=True, text=True, timeout=900)


def pipeline_here(capsys, *arguments: str) -> tuple[int, str, str]:
    """`course-cd4ml` in this process, on the test's Spark session: the same code path without a minute of JVM
    start-up (the drifted month below runs it as a real process)."""
    from helpers.pipeline import main

    code = main(["--model-name", MODEL, "--no-score", *arguments])
    out, err = capsys.readouterr()
    return code, out, err


def monitoring_runs() -> pd.DataFrame:
    from helpers.pipeline import MONITORING_EXPERIMENT

    return mlflow.search_runs(experiment_names=[MONITORING_EXPERIMENT], order_by=["attributes.start_time ASC"])


def versions() -> set[str]:
    return {v.version for v in MlflowClient().search_model_versions(f"name = '{MODEL}'")}


@slow
def test_the_training_window_of_november_is_the_year_notebook_00_builds_its_table_from(course):
    from pyspark.sql import functions as F

    from helpers.features import MIN_INVOICES, clean_lines, customer_features

    products = course.read.table("retail_products")
    categories = sorted(r.Category for r in products.select("Category").collect())
    # the year's file alone, and the table's first version: another test may have landed December since
    year_file = course.read.table("retail_bronze").filter(f"source_file = '{TRANSACTIONS_FILE}'")
    whole_file = customer_features(clean_lines(year_file, products), course.read.table("retail_customers"),
                                   sorted(set(categories))).filter(f"num_invoices >= {MIN_INVOICES}")
    table = course.read.option("versionAsOf", 0).table("retail_features")
    assert table.count() == whole_file.count() > 1000

    def rounded(frame):  # sums over lines in another order differ in their last bits
        return frame.select([F.round(name, 9).alias(name) if kind == "double" else F.col(name)
                             for name, kind in frame.dtypes if name != "selected_features"])

    assert rounded(table).exceptAll(rounded(whole_file)).isEmpty()


@slow
def test_an_ordinary_month_is_monitored_and_triggers_no_retraining(course, capsys):
    before = versions()
    experiment_variable = os.environ.get("MLFLOW_EXPERIMENT_ID")
    code, out, err = pipeline_here(capsys, "--monitor", "2024-11")
    assert code == 0, err[-3000:]
    # The caller's active experiment is untouched (a leaked MLFLOW_EXPERIMENT_ID broke later tests and `mlflow run`).
    assert os.environ.get("MLFLOW_EXPERIMENT_ID") == experiment_variable
    assert "no threshold crossed in 2024-11: no retraining" in out
    assert versions() == before  # nothing was trained
    run = monitoring_runs().iloc[-1]
    assert run["tags.retrain"] == "false" and run["params.month"] == "2024-11"
    champion = MlflowClient().get_model_version_by_alias(MODEL, "champion")  # v0's, or December's if retrained
    assert run["metrics.max_psi"] < 0.2 and run["params.reference_version"] == champion.tags["data_version"]


@slow
def test_the_drifted_month_retrains_on_the_year_to_it_and_the_gate_promotes_the_new_version(course):
    from helpers.spark import register_workspace_tables

    client = MlflowClient()
    old_champion = client.get_model_version_by_alias(MODEL, "champion").version
    before = versions()
    finished = pipeline("--land", str(data_path(DRIFT_MONTH_FILE)), "--monitor", "2024-12")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "retraining, because" in finished.stdout and "drifted (PSI" in finished.stdout

    (new,) = versions() - before
    assert client.get_model_version_by_alias(MODEL, "champion").version == new != old_champion
    run = monitoring_runs().iloc[-1]
    assert run["tags.retrain"] == "true" and run["params.month"] == "2024-12" and run["metrics.max_psi"] > 0.2

    register_workspace_tables(course)  # the pipeline's own Spark wrote the tables
    new_version = client.get_model_version(MODEL, new)
    assert new_version.tags["data_version"] == "1"  # the table's next Delta version: the year to December
    december = course.read.table("retail_features").filter("CustomerID NOT IN (SELECT CustomerID FROM "
                                                           "retail_features VERSION AS OF 0)")
    assert december.count() > 100  # December's new customers are in the data the new version learned from


@slow
def test_landing_a_month_twice_keeps_one_copy(course):
    from helpers.pipeline import land_month

    def december_lines() -> int:
        return course.read.table("retail_bronze").filter(f"source_file = '{DRIFT_MONTH_FILE}'").count()

    land_month(course, data_path(DRIFT_MONTH_FILE))  # whether or not another test landed it already
    landed = december_lines()
    land_month(course, data_path(DRIFT_MONTH_FILE))
    assert december_lines() == landed > 0
    assert landed == course.read.option("header", True).csv(data_path(DRIFT_MONTH_FILE).as_uri()).count()


@slow
def test_the_pipeline_says_when_a_month_has_no_data_or_no_recorded_training_data(course, capsys):
    code, _, err = pipeline_here(capsys, "--monitor", "2025-06")
    assert code == 2 and "nobody bought anything in 2025-06" in err
    missing = pipeline("--land", "no/such/file.csv.gz", "--monitor", "2024-12")
    assert missing.returncode == 2 and "there is no file no/such/file.csv.gz" in missing.stderr
    both = pipeline("--version", "1", "--monitor", "2024-12")
    assert both.returncode == 2 and "pick one" in both.stderr
