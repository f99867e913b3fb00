"""Checks for lab 09: December's customers read-only, one feature's PSI in Spark, a model's error, a monitoring run."""
from __future__ import annotations

import datetime as dt
from numbers import Real

from helpers.checks import expect, finished_run, task

FEATURE = "total_spend"
MONTH, REFERENCE_MONTH = dt.date(2024, 12, 1), dt.date(2024, 11, 1)
BIN_COLUMNS = ["bin", "expected", "actual"]
_EXPECTED: dict = {}  # what the checks recompute, once per kernel: the data do not change during the lab


def _number(value, variable: str, hint: str) -> float:
    expect(isinstance(value, Real) and not isinstance(value, bool), f"`{variable}` is {value!r}, not a number", hint)
    return float(value)


def _frame(value, variable: str, hint: str) -> None:
    expect(hasattr(value, "toPandas") and hasattr(value, "columns"),
           f"`{variable}` is {type(value).__name__}, not a Spark DataFrame", hint)


def _expected(spark) -> dict:
    """The reference and December's customers, rebuilt here with the course's definitions: the clean lines of
    retail_silver before December (without any December a lesson landed there) and the December file, cleaned."""
    if "reference" not in _EXPECTED:
        from pyspark.sql import functions as F

        from helpers import cached
        from helpers.data import DRIFT_MONTH_FILE, data_uri
        from helpers.features import clean_lines, training_table
        from helpers.monitoring import active_customer_features

        products, customers = spark.read.table("retail_products"), spark.read.table("retail_customers")
        categories = sorted(row.Category for row in products.select("Category").distinct().collect())
        schema = spark.read.table("retail_bronze").drop("source_file").schema
        december = clean_lines(spark.read.option("header", True).schema(schema).csv(data_uri(DRIFT_MONTH_FILE)),
                               products)
        lines = spark.read.table("retail_silver").filter(F.col("InvoiceDate") < F.lit(str(MONTH))) \
            .unionByName(december)
        reference = cached(training_table(lines, customers, categories, REFERENCE_MONTH))
        current = cached(active_customer_features(lines, customers, categories, MONTH))
        columns = ["CustomerID", "num_invoices", FEATURE]
        _EXPECTED.update(reference=reference, current=current, reference_rows=reference.select(columns).toPandas(),
                         current_rows=current.select(columns).toPandas())
    return _EXPECTED


def _expected_psi(spark) -> dict:
    """The bins and PSI of FEATURE, with numpy as helpers.monitoring does, and the index from helpers.monitoring.psi."""
    expected = _expected(spark)
    if "psi" not in expected:
        import numpy as np

        from helpers.monitoring import BINS, EMPTY_BIN_SHARE, psi

        reference = expected["reference_rows"][FEATURE].to_numpy()
        current = expected["current_rows"][FEATURE].to_numpy()
        cuts = np.unique(np.quantile(reference, np.linspace(0, 1, BINS + 1)[1:-1], method="closest_observation"))
        edges = np.concatenate([[-np.inf], cuts[cuts > reference.min()], [np.inf]])
        expected.update(psi=psi(reference, current),
                        bin_expected=np.clip(np.histogram(reference, edges)[0] / len(reference), EMPTY_BIN_SHARE, None),
                        bin_actual=np.clip(np.histogram(current, edges)[0] / len(current), EMPTY_BIN_SHARE, None))
    return expected


def _expected_errors(spark) -> dict:
    """The RMSEs of the task's model (ordinary least squares on the training part of the reference), and the rule."""
    expected = _expected_psi(spark)
    if "report" not in expected:
        import pandas as pd
        from pyspark.ml.evaluation import RegressionEvaluator
        from pyspark.ml.regression import LinearRegression

        from helpers.features import LABEL, VECTOR
        from helpers.gate import split
        from helpers.monitoring import MonitoringReport, MonitoringThresholds

        train, held_out = split(expected["reference"])
        model = LinearRegression(featuresCol=VECTOR, labelCol=LABEL).fit(train)
        rmse = RegressionEvaluator(labelCol=LABEL, metricName="rmse")
        current = expected["current"]
        newcomers = current.join(expected["reference"].select("CustomerID"), "CustomerID", "left_anti")
        report = MonitoringReport(pd.Series({FEATURE: expected["psi"]}), rmse.evaluate(model.transform(current)),
                                  rmse.evaluate(model.transform(held_out)), MonitoringThresholds())
        expected.update(report=report, newcomer_rmse=rmse.evaluate(model.transform(newcomers)))
    return expected


def _compare_customers(frame, expected_rows, variable: str, window_hint: str) -> int:
    """Wrong unless `frame` has the expected customers, with the expected num_invoices and total_spend."""
    missing = [c for c in ("CustomerID", "num_invoices", FEATURE) if c not in frame.columns]
    expect(not missing, f"`{variable}` has no column {', '.join(missing)}",
           "build it with the helpers of helpers/features.py and helpers/monitoring.py: they make every feature")
    rows = frame.select("CustomerID", "num_invoices", FEATURE).toPandas()
    expect(rows["CustomerID"].is_unique, f"`{variable}` has some customers more than once",
           "one row per customer: do not union or join the features with anything")
    ours, theirs = set(expected_rows["CustomerID"]), set(rows["CustomerID"])
    expect(not theirs - ours, f"`{variable}` has {len(theirs - ours)} customers too many ({len(theirs)} against "
           f"{len(ours)})", window_hint)
    expect(not ours - theirs, f"`{variable}` misses {len(ours - theirs)} of its {len(ours)} customers", window_hint)
    both = rows.merge(expected_rows[["CustomerID", "num_invoices", FEATURE]], on="CustomerID",
                      suffixes=("", "_expected"))
    wrong = ((both["num_invoices"] != both["num_invoices_expected"])
             | ((both[FEATURE] - both[f"{FEATURE}_expected"]).abs() > 1e-6)).sum()
    expect(wrong == 0, f"`{variable}` has the right customers, but the invoices or spend of {wrong} of them differ",
           window_hint + "; each clean line must count once: retail_silver holds December's lines already if you ran "
           "lesson 09, so keep only its lines before 2024-12-01 before adding the file's")
    return len(rows)


@task(1, hint="`reference` and `current` must be DataFrames: training_table(...) and active_customer_features(...)")
def task1(spark, reference, current) -> str:
    _frame(reference, "reference", "set `reference = training_table(lines, customers, categories, "
           "dt.date(2024, 11, 1))`")
    _frame(current, "current", "set `current = active_customer_features(lines, customers, categories, "
           "dt.date(2024, 12, 1))`")
    expected = _expected(spark)
    references = _compare_customers(
        reference, expected["reference_rows"], "reference",
        "the reference is the training table of the twelve months that end with November, customers with 2 invoices "
        "or more: training_table(lines, customers, categories, dt.date(2024, 11, 1))")
    customers = _compare_customers(
        current, expected["current_rows"], "current",
        "`current` holds everyone who bought in December 2024, with features over the twelve months that end with "
        "it: active_customer_features(lines, customers, categories, dt.date(2024, 12, 1)), on lines that include "
        "the file's December")
    newcomers = len(set(expected["current_rows"]["CustomerID"]) - set(expected["reference_rows"]["CustomerID"]))
    return (f"{customers} customers bought in December, {newcomers} of them new to the training year of "
            f"{references} customers.")


@task(2, hint="`spend_bins` must be a DataFrame with columns bin, expected, actual, and `spend_psi` a number")
def task2(spark, spend_bins, spend_psi) -> str:
    import numpy as np

    _frame(spend_bins, "spend_bins", "join the shares per bin of `reference` (expected) and `current` (actual) on "
           "the Bucketizer's bin column")
    missing = [c for c in BIN_COLUMNS if c not in spend_bins.columns]
    expect(not missing, f"`spend_bins` has no column {', '.join(missing)}",
           "name the columns bin (the Bucketizer's output), expected (the reference's share) and actual (December's)")
    value = _number(spend_psi, "spend_psi", "sum (actual - expected) * ln(actual / expected) over `spend_bins` with "
                    "F.sum(...) and F.log(...), and take the number with .first()[0]")
    expected = _expected_psi(spark)
    bins = spend_bins.select(*BIN_COLUMNS).orderBy("bin").toPandas()
    count = len(expected["bin_expected"])
    expect(len(bins) == count, f"`spend_bins` has {len(bins)} bins, and the reference's deciles of {FEATURE} make "
           f"{count}", f"cut with reference.approxQuantile(\"{FEATURE}\", [0.1, 0.2, ..., 0.9], 0.0) (0.0: exact), "
           "and give the Bucketizer the splits [-inf, *cuts, inf]")
    expect(np.allclose(bins["expected"], expected["bin_expected"], atol=1e-9),
           f"the expected shares ({', '.join(f'{s:.3f}' for s in bins['expected'])}) are not those of the "
           f"reference of Task 1, the training table of the year to November, per bin of {FEATURE}",
           "make `reference` pass Task 1's check first; then expected = rows of `reference` per bin / "
           "reference.count(), with the splits from its exact deciles (relative error 0.0), and 1e-4 for a bin left "
           "empty")
    expect(np.allclose(bins["actual"], expected["bin_actual"], atol=1e-9),
           f"the expected shares are right, but the actual shares ({', '.join(f'{s:.3f}' for s in bins['actual'])}) "
           "are not December's", "actual = rows of `current` per bin (the same bucketizer) / current.count(); "
           "F.greatest(..., F.lit(1e-4)) for a bin December leaves empty")
    reference = expected["psi"]
    expect(abs(value - reference) < 1e-9,
           f"`spend_psi` is {value:.6f}, and helpers.monitoring.psi gives {reference:.6f} on the same data",
           "PSI = sum over the bins of (actual - expected) * ln(actual / expected)")
    reading = ("stable (below 0.1)" if value < 0.1 else "a moderate shift (0.1 to 0.2)" if value <= 0.2
               else "a significant shift (above 0.2)")
    return (f"PSI of {FEATURE} {value:.3f}, as helpers.monitoring.psi computes it: {reading}; its lowest bin holds "
            f"{bins['actual'].iloc[0]:.0%} of December's customers against {bins['expected'].iloc[0]:.0%} of the "
            "reference.")


@task(3, hint="the RMSEs come from RegressionEvaluator(labelCol=\"cust_age\", metricName=\"rmse\").evaluate(...), "
               "and `retrain` is a bool")
def task3(spark, baseline_rmse, december_rmse, newcomer_rmse, rmse_increase, retrain) -> str:
    fit = ("fit LinearRegression(featuresCol=\"selected_features\", labelCol=\"cust_age\") with its defaults on "
           "split(reference)[0]")
    baseline = _number(baseline_rmse, "baseline_rmse", fit + ", then evaluate it on split(reference)[1]")
    december = _number(december_rmse, "december_rmse", "evaluate the same model on `current`")
    newcomer = _number(newcomer_rmse, "newcomer_rmse", "evaluate the model on the customers of `current` who are "
                       "not in `reference` (a left_anti join on CustomerID)")
    increase = _number(rmse_increase, "rmse_increase", "rmse_increase = december_rmse / baseline_rmse - 1")
    expect(isinstance(retrain, bool) or type(retrain).__name__ == "bool_",
           f"`retrain` is {retrain!r}, not True or False",
           "set it to the rule's result: spend_psi > thresholds.max_psi or rmse_increase > "
           "thresholds.max_rmse_increase")
    expected = _expected_errors(spark)
    report = expected["report"]
    expect(abs(baseline - report.baseline_rmse) < 1e-6, f"`baseline_rmse` is {baseline:.4f}; the task's model scores "
           f"{report.baseline_rmse:.4f} on the held-out customers of the reference",
           fit + " (no regularisation), and evaluate it on the held-out tenth, split(reference)[1]")
    expect(abs(december - report.rmse) < 1e-6, f"`december_rmse` is {december:.4f}; the same model scores "
           f"{report.rmse:.4f} on December's customers", "evaluate the model of `baseline_rmse` on `current`")
    expect(abs(newcomer - expected["newcomer_rmse"]) < 1e-6, f"`newcomer_rmse` is {newcomer:.4f}; on December's "
           f"customers who are not in the reference the model scores {expected['newcomer_rmse']:.4f}",
           "keep the new customers with current.join(reference.select(\"CustomerID\"), \"CustomerID\", \"left_anti\")")
    expect(abs(increase - report.rmse_increase) < 1e-9, f"`rmse_increase` is {increase:.4f}, and december_rmse / "
           f"baseline_rmse - 1 is {report.rmse_increase:.4f}", "rmse_increase = december_rmse / baseline_rmse - 1")
    expect(bool(retrain) == report.retrain,
           f"`retrain` is {bool(retrain)}, but " + ("; ".join(report.reasons) if report.retrain else
                                                   "neither the PSI nor the error crosses its threshold"),
           "retrain when either holds: spend_psi > thresholds.max_psi or rmse_increase > thresholds.max_rmse_increase")
    because = "; ".join(report.reasons) if report.retrain else "no threshold is crossed"
    return (f"December's RMSE is {report.rmse_increase:+.1%} against the baseline, {expected['newcomer_rmse']:.2f} on "
            f"the newcomers; retrain: {report.retrain} ({because}).")


@task(4, hint="set `monitoring_run_id = run.info.run_id` after the `with mlflow.start_run(...) as run:` block")
def task4(spark, monitoring_run_id, experiment_name: str) -> str:
    import mlflow

    run = finished_run(monitoring_run_id, "monitoring_run_id", experiment_name,
                       how="log the run in a `with mlflow.start_run(run_name=\"monitoring-2024-12\") as run:` block "
                           "and set `monitoring_run_id = run.info.run_id`")
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    expect(tags.get("mlflow.runName") == "monitoring-2024-12",
           f"the run is named {tags.get('mlflow.runName')!r}, not 'monitoring-2024-12'",
           "start it with mlflow.start_run(run_name=\"monitoring-2024-12\")")
    wanted = {"month": "2024-12", "feature": FEATURE, "max_psi": 0.2, "max_rmse_increase": 0.05}
    missing = [name for name in wanted if name not in params]
    expect(not missing, f"the run has no parameter {', '.join(missing)}",
           "log them with mlflow.log_params({\"month\": \"2024-12\", \"feature\": \"total_spend\", \"max_psi\": "
           "thresholds.max_psi, \"max_rmse_increase\": thresholds.max_rmse_increase})")
    for name, value in wanted.items():
        logged = params[name]
        same = logged == value if isinstance(value, str) else abs(float(logged) - value) < 1e-12
        expect(same, f"its parameter {name} is {logged!r}, not {value!r}",
               "log the month judged, the feature measured and the thresholds of the Setup cell")
    expected = _expected_errors(spark)
    report = expected["report"]
    values = {"psi_total_spend": expected["psi"], "rmse": report.rmse, "baseline_rmse": report.baseline_rmse,
              "rmse_increase": report.rmse_increase, "newcomer_rmse": expected["newcomer_rmse"]}
    missing = [name for name in values if name not in metrics]
    expect(not missing, f"the run has no metric {', '.join(missing)}",
           "log them with mlflow.log_metrics({\"psi_total_spend\": spend_psi, \"rmse\": december_rmse, ...})")
    for name, value in values.items():
        expect(abs(metrics[name] - value) < 1e-6, f"its metric {name} is {metrics[name]:.4f}, and it should be "
               f"{value:.4f}", "log the numbers of Tasks 2 and 3 (check them first)")
    decision = str(report.retrain).lower()
    expect(tags.get("retrain") == decision, f"its tag retrain is {tags.get('retrain')!r}, not {decision!r}",
           "set it with mlflow.set_tag(\"retrain\", str(retrain).lower()), once `retrain` passes Task 3's check")
    artifacts = [info.path for info in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    expect("psi_bins.json" in artifacts, "the run has no table psi_bins.json",
           "log the bins with mlflow.log_table(spend_bins.toPandas(), \"psi_bins.json\")")
    table = mlflow.load_table("psi_bins.json", run_ids=[run.info.run_id])
    count = len(expected["bin_expected"])
    expect(len(table) == count and all(c in table.columns for c in BIN_COLUMNS),
           f"psi_bins.json has {len(table)} rows and the columns {list(table.columns)}, not the {count} bins with "
           "bin, expected and actual",
           "log spend_bins itself: mlflow.log_table(spend_bins.toPandas(), \"psi_bins.json\")")
    return (f"the monitoring run records PSI {expected['psi']:.3f}, an RMSE {report.rmse_increase:+.1%} against the "
            f"baseline, retrain={decision}, and the {count} bins as a table.")
