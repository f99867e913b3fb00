"""Checks for lab 05: a scikit-learn model scored with spark_udf into a Delta table partitioned by scoring date."""
from __future__ import annotations

import contextlib
import datetime as dt
import io

from helpers.checks import expect, is_count, logged_sklearn_model, task

TABLE = "lab05_predictions"
EXPERIMENT = "lab-05-batch"
DAY1, DAY2 = dt.date(2024, 12, 1), dt.date(2024, 12, 2)
COLUMNS = {"CustomerID", "prediction", "model_uri", "scored_at", "scoring_date"}
NOT_FEATURES = ("CustomerID", "cust_age", "selected_features")
_expected: dict[str, object] = {}  # model URI -> its predictions per customer, computed once per kernel


def _feature_columns(spark) -> list[str]:
    return [c for c in spark.read.table("retail_features").columns if c not in NOT_FEATURES]


def _logged_model(spark, model_uri):
    """The learner's logged model: a scikit-learn model with a signature, logged by a finished run of the lab."""
    from helpers import course_experiment

    info = logged_sklearn_model(model_uri, course_experiment(EXPERIMENT))
    inputs, wanted = info.signature.inputs.input_names(), _feature_columns(spark)
    expect(sorted(inputs) == sorted(wanted), f"the signature's inputs are {inputs}, not the 15 feature columns",
           "infer the signature from train[feature_columns], the feature columns only")
    return info


def _expected_predictions(spark, model_uri: str):
    """What the learner's model predicts for each customer, computed here with the model loaded in pandas."""
    import mlflow
    import pandas as pd

    if model_uri not in _expected:
        columns = _feature_columns(spark)
        customers = spark.read.table("retail_features").select("CustomerID", "cust_age", *columns).toPandas()
        predicted = mlflow.pyfunc.load_model(model_uri).predict(customers[columns])
        _expected[model_uri] = pd.DataFrame({"CustomerID": customers["CustomerID"], "cust_age": customers["cust_age"],
                                             "expected": pd.Series(predicted, dtype=float).to_numpy()})
    return _expected[model_uri]


def _largest_gap(predictions, expected) -> float:
    """The largest difference between a predictions DataFrame (pandas, CustomerID and prediction) and the model's."""
    merged = expected.merge(predictions, on="CustomerID", how="left")
    expect(merged["prediction"].notna().all(), f"{int(merged['prediction'].isna().sum())} customers have no prediction",
           "score every row of `features`")
    return float((merged["prediction"] - merged["expected"]).abs().max())


def _plan(df) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as plan:
        df.explain()
    return plan.getvalue()


def _table(spark):
    expect(spark.catalog.tableExists(TABLE), f"there is no table `{TABLE}` yet",
           f'write with .write.format("delta").mode("overwrite").option("replaceWhere", ...)'
           f'.partitionBy("scoring_date").saveAsTable("{TABLE}")')
    detail = spark.sql(f"DESCRIBE DETAIL {TABLE}").first()
    expect(detail["format"] == "delta", f"`{TABLE}` is a {detail['format']} table, not a Delta table",
           'write it with .format("delta")')
    expect(list(detail["partitionColumns"]) == ["scoring_date"],
           f"`{TABLE}` is partitioned by {list(detail['partitionColumns'])}, not by scoring_date",
           'drop it with spark.sql("DROP TABLE lab05_predictions"), then write with .partitionBy("scoring_date")')
    table = spark.read.table(TABLE)
    expect(COLUMNS <= set(table.columns), f"`{TABLE}` lacks the columns {sorted(COLUMNS - set(table.columns))}",
           "select CustomerID, prediction, model_uri, scored_at and scoring_date before writing")
    date_type = dict(table.dtypes)["scoring_date"]
    expect(date_type == "date", f"scoring_date is a {date_type} column, not a date",
           "use F.lit(day) with a datetime.date, e.g. dt.date(2024, 12, 1)")
    return table


def _day_writes(spark, day: dt.date) -> list[int]:
    """The versions that wrote `day` with a replaceWhere on it."""
    from pyspark.sql import functions as F

    history = (spark.sql(f"DESCRIBE HISTORY {TABLE}")
               .select("version", "operation", F.col("operationParameters.predicate").alias("predicate")).collect())
    return sorted(row.version for row in history
                  if row.operation == "WRITE" and row.predicate and day.isoformat() in row.predicate)


def _day(table, day: dt.date):
    """One day's rows of the table, in pandas (a day is one row per customer: small)."""
    from pyspark.sql import functions as F

    return (table.filter(F.col("scoring_date") == F.lit(day))
            .select("CustomerID", "prediction", "model_uri", "scored_at").toPandas())


def _check_day(spark, table, model_uri: str, day: dt.date) -> int:
    """Wrong unless `day` holds exactly one prediction per customer, the learner's model's; returns its rows."""
    rows = _day(table, day)
    expect(len(rows), f"`{TABLE}` has no rows for {day}", f"call score_day(dt.date({day.year}, {day.month}, {day.day}))")
    most = int(rows["CustomerID"].value_counts().max())
    expect(most == 1, f"some customers have {most} rows on {day}: a write added the day again instead of replacing it",
           f"write with .mode(\"overwrite\").option(\"replaceWhere\", \"scoring_date = '{day.isoformat()}'\"), "
           "then run Setup and the tasks again")
    expected = _expected_predictions(spark, model_uri)
    expect(len(rows) == len(expected), f"{day} has {len(rows)} rows, and retail_features has {len(expected)} customers",
           "write the predictions of every customer in `scored`")
    uris = sorted(rows["model_uri"].astype(str).unique())
    expect(uris == [model_uri], f"the model_uri column of {day} holds {uris}, not Task 1's {model_uri!r}",
           "add F.lit(model_uri).alias(\"model_uri\")")
    gap = _largest_gap(rows[["CustomerID", "prediction"]], expected)
    expect(gap < 1e-6, f"the predictions of {day} differ from Task 1's model by up to {gap:.3g} years",
           "write the `prediction` column of `scored`")
    return len(rows)


@task(1, hint="set `model_uri` to `info.model_uri`, where info = mlflow.sklearn.log_model(...)")
def task1(spark, model_uri) -> str:
    _logged_model(spark, model_uri)
    expected = _expected_predictions(spark, model_uri)
    rmse = float(((expected["expected"] - expected["cust_age"]) ** 2).mean() ** 0.5)
    spread = float(expected["cust_age"].std(ddof=0))
    expect(rmse < 0.9 * spread, f"the model's RMSE on retail_features is {rmse:.1f} years, hardly better than "
           f"guessing the mean age ({spread:.1f})", "fit Ridge(alpha=1.0) on train[feature_columns] and train[\"cust_age\"]")
    return f"a scikit-learn Ridge on 15 features, RMSE {rmse:.2f} years on retail_features."


@task(2, hint="`scored` must be a DataFrame: features.withColumn(\"prediction\", udf(F.struct(*feature_columns)))")
def task2(spark, model_uri, scored) -> str:
    _logged_model(spark, model_uri)
    expect(scored is not None and hasattr(scored, "columns"), f"`scored` is {type(scored).__name__}, not a DataFrame",
           "set scored = features.withColumn(\"prediction\", udf(F.struct(*feature_columns))), where udf = "
           "mlflow.pyfunc.spark_udf(spark, model_uri, result_type=\"double\", env_manager=\"local\")")
    expect({"CustomerID", "prediction"} <= set(scored.columns), f"`scored` has the columns {scored.columns}, "
           "without CustomerID and prediction", "add the column with .withColumn(\"prediction\", ...) on `features`")
    expect("EvalPython" in _plan(scored), "`scored`'s plan has no Python UDF: its predictions were not made inside "
           "Spark by spark_udf", "wrap the model with mlflow.pyfunc.spark_udf(spark, model_uri, "
           "result_type=\"double\", env_manager=\"local\") and apply it to F.struct(*feature_columns)")
    expected = _expected_predictions(spark, model_uri)
    predictions = scored.select("CustomerID", "prediction").toPandas()
    expect(len(predictions) == len(expected), f"`scored` has {len(predictions)} rows, and retail_features has "
           f"{len(expected)} customers", "score `features` itself, without filtering or joining it")
    gap = _largest_gap(predictions, expected)
    expect(gap < 1e-6, f"`scored`'s predictions differ from the model's own by up to {gap:.3g} years",
           "pass the plain feature columns by name: F.struct(*feature_columns)")
    return f"{len(predictions)} customers scored inside Spark, each as the model itself predicts outside Spark."


@task(3, hint="set `most_copies` to the largest count of groupBy(\"CustomerID\", \"scoring_date\").count()")
def task3(spark, model_uri, most_copies) -> str:
    _logged_model(spark, model_uri)
    table = _table(spark)
    rows = _check_day(spark, table, model_uri, DAY1)
    writes = _day_writes(spark, DAY1)
    expect(len(writes) >= 2, f"`{TABLE}`'s history has {len(writes)} write(s) that replaced {DAY1}, not two",
           f"write with .mode(\"overwrite\").option(\"replaceWhere\", \"scoring_date = '{DAY1.isoformat()}'\") "
           "and call score_day(dt.date(2024, 12, 1)) twice")
    expect(is_count(most_copies),
           f"`most_copies` is {most_copies!r}, not a count",
           "group the table by CustomerID and scoring_date, count, and take the largest count: "
           ".agg(F.max(\"count\")).first()[0]")
    expect(most_copies == 1, f"`most_copies` is {most_copies}, and every customer has one row per day in the table",
           "count the rows of spark.read.table(\"lab05_predictions\") per CustomerID and scoring_date")
    return f"{DAY1} written {len(writes)} times, and each of its {rows} customers is in it once."


@task(4, hint="set `rows_per_day` to {row.scoring_date: row[\"count\"] for row in ...groupBy(\"scoring_date\").count().collect()}")
def task4(spark, model_uri, rows_per_day) -> str:
    _logged_model(spark, model_uri)
    table = _table(spark)
    days = sorted(row.scoring_date for row in table.select("scoring_date").distinct().collect())
    expect(days == [DAY1, DAY2], f"`{TABLE}` holds the days {[str(d) for d in days]}, not {DAY1} and {DAY2}",
           "score 2024-12-01 (Task 3), then score_day(dt.date(2024, 12, 2)), each with its own replaceWhere")
    counts = {str(day): _check_day(spark, table, model_uri, day) for day in days}
    writes = _day_writes(spark, DAY2)
    expect(writes, f"no write in `{TABLE}`'s history replaced {DAY2} alone", "score it with score_day, whose "
           "replaceWhere names the day it writes")
    version = writes[-1]
    before, after = (_day(spark.read.option("versionAsOf", v).table(TABLE), DAY1) for v in (version - 1, version))
    merged = before.merge(after, on="CustomerID", how="outer", suffixes=("_before", "_after"), indicator=True)
    changed = int(((merged["_merge"] != "both") | (merged["scored_at_before"] != merged["scored_at_after"])
                   | (merged["prediction_before"] != merged["prediction_after"])).sum())
    expect(changed == 0, f"writing {DAY2} changed {changed} rows of {DAY1}",
           f"replace only the day you write: .option(\"replaceWhere\", \"scoring_date = '{DAY2.isoformat()}'\")")
    expect(isinstance(rows_per_day, dict), f"`rows_per_day` is {type(rows_per_day).__name__}, not a dictionary",
           "build it from spark.read.table(\"lab05_predictions\").groupBy(\"scoring_date\").count()")
    theirs = {str(day): rows for day, rows in rows_per_day.items()}
    expect(theirs == counts, f"`rows_per_day` is {theirs}, and the table holds {counts}",
           "read the counts back from the table after scoring the second day")
    return f"two days of {counts[str(DAY1)]} predictions each; writing {DAY2} left {DAY1}'s rows as they were."
