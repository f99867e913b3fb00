"""Checks for lab 01: two tracked runs on different feature sets, and the better one found with search_runs."""
from __future__ import annotations

import json

from helpers.checks import expect, finished_run, task

THREE_FEATURES = ["avg_hour", "share_vintage", "share_gaming"]
NOT_FEATURES = ("CustomerID", "cust_age", "selected_features")


def _expected_rmse(spark, version: int, features: list[str]) -> float:
    """The test RMSE of the task's model, fitted here on the lesson's hash split of the same Delta version."""
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import functions as F

    table = spark.read.option("versionAsOf", version).table("retail_features")
    bucket = F.abs(F.xxhash64("CustomerID")) % 10
    model = Pipeline(stages=[VectorAssembler(inputCols=features, outputCol="features"),
                             LinearRegression(featuresCol="features", labelCol="cust_age")]).fit(table.filter(bucket > 0))
    return RegressionEvaluator(labelCol="cust_age", metricName="rmse").evaluate(model.transform(table.filter(bucket == 0)))


def _tracked(spark, run_id, variable: str, experiment_name: str, run_name: str, features: list[str]) -> str:
    run = finished_run(run_id, variable, experiment_name)
    name = run.data.tags.get("mlflow.runName")
    expect(name == run_name, f"the run in `{variable}` is named {name!r}, not {run_name!r}",
           f'start it with mlflow.start_run(run_name="{run_name}")')
    logged = run.data.params.get("features")
    expect(logged is not None, "the run has no parameter `features`",
           'log it with mlflow.log_param("features", ",".join(<the feature list>))')
    expect(sorted(logged.split(",")) == sorted(features),
           f"its parameter `features` names {len(logged.split(','))} features ({logged[:60]}), not the task's "
           f"{len(features)}", 'log ",".join(...) of the same list the VectorAssembler reads')
    expect("rmse" in run.data.metrics, "the run has no metric `rmse`",
           'log it with mlflow.log_metric("rmse", rmse_of.evaluate(model.transform(test)))')
    version = spark.sql("DESCRIBE HISTORY retail_features LIMIT 1").first()["version"]
    sources = [json.loads(d.dataset.source) for d in run.inputs.dataset_inputs]
    versions = [s.get("delta_table_version") for s in sources if s.get("delta_table_name") == "retail_features"]
    expect(versions, "the run has no dataset input for the Delta table retail_features",
           'log one: mlflow.log_input(mlflow.data.load_delta(table_name="retail_features", version=data_version, '
           'targets="cust_age"), context="training")')
    expect(versions[0] == version, f"its dataset input is retail_features version {versions[0]}, and the data is "
           f"version {version}", "pass version=data_version to mlflow.data.load_delta")
    rmse, expected = run.data.metrics["rmse"], _expected_rmse(spark, version, features)
    expect(abs(rmse - expected) < 1e-3, f"its rmse is {rmse:.3f}, and this model's RMSE on `test` is {expected:.3f}",
           "fit LinearRegression(featuresCol=\"features\", labelCol=\"cust_age\") with its defaults on `train`, and "
           "evaluate it on `test`")
    return f"{run_name}: test RMSE {rmse:.3f} on {len(features)} features, trained on retail_features version {version}."


@task(1, hint="set `three_run_id = run.info.run_id` after the `with mlflow.start_run(...) as run:` block")
def task1(spark, three_run_id, experiment_name: str) -> str:
    return _tracked(spark, three_run_id, "three_run_id", experiment_name, "three-features", THREE_FEATURES)


@task(2, hint="set `all_run_id = run.info.run_id` after the `with mlflow.start_run(...) as run:` block")
def task2(spark, all_run_id, experiment_name: str) -> str:
    features = [c for c in spark.read.table("retail_features").columns if c not in NOT_FEATURES]
    return _tracked(spark, all_run_id, "all_run_id", experiment_name, "all-features", features)


@task(3, hint='set `best_run_id = runs.iloc[0]["run_id"]` from the search ordered by "metrics.rmse ASC"')
def task3(best_run_id, experiment_name: str) -> str:
    import mlflow

    run = finished_run(best_run_id, "best_run_id", experiment_name,
                       how='search the experiment ordered by "metrics.rmse ASC" and take runs.iloc[0]["run_id"]')
    runs = mlflow.search_runs(experiment_names=[experiment_name], filter_string="metrics.rmse > 0")
    expect(len(runs) >= 2, f"the lab's experiment holds {len(runs)} of the two runs with an rmse",
           "do Tasks 1 and 2 first: the search compares their runs")
    lowest = runs["metrics.rmse"].min()
    rmse = run.data.metrics.get("rmse")
    expect(rmse is not None and abs(rmse - lowest) < 1e-9,
           f"the run in `best_run_id` has rmse {'none' if rmse is None else f'{rmse:.3f}'}, and the lowest in the "
           f"experiment is {lowest:.3f}",
           'order the search by ["metrics.rmse ASC"] and take the first row')
    verdict = run.data.tags.get("verdict")
    expect(verdict == "best", f"the best run's tag `verdict` is {verdict!r}, not 'best'",
           'tag it with MlflowClient().set_tag(best_run_id, "verdict", "best")')
    highest = runs["metrics.rmse"].max()
    return (f"{run.data.tags.get('mlflow.runName')} is the better run, {highest - lowest:.3f} years of RMSE below "
            "the other.")
