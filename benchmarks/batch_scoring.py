"""Batch-scoring throughput: native transform against spark_udf over the spark flavor and over the custom pyfunc.

    python3 course.py run --only 00 03          # once: the table and the models of notebook 03
    .venv/bin/python benchmarks/batch_scoring.py [--rows 1000000]

Scores `retail_features` repeated to --rows rows (cached first), with model loading included in every figure,
as notebook 05 does on 49,000 rows; checks the three agree, and prints rows/s and the ratio of each path to native.
"""
from __future__ import annotations

import argparse
import math
import time

from helpers import course_experiment, setup_mlflow, start_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import mlflow
    import mlflow.spark
    from pyspark.sql import functions as F

    spark = start_spark(quiet=True)
    setup_mlflow(quiet=True)
    runs = mlflow.search_runs(experiment_names=[course_experiment("retail-age-flavors")],
                              order_by=["attributes.start_time DESC"]).drop_duplicates("tags.mlflow.runName")
    run_of = dict(zip(runs.get("tags.mlflow.runName", []), runs.get("run_id", [])))
    if not {"spark-flavor", "custom-pyfunc-flavor"} <= set(run_of) or not spark.catalog.tableExists("retail_features"):
        raise SystemExit("The benchmark needs the table of notebook 00 and the models of notebook 03: "
                         "run `python3 course.py run --only 00 03` first.")
    spark_uri, custom_uri = (f"runs:/{run_of[name]}/model" for name in ("spark-flavor", "custom-pyfunc-flavor"))

    features = spark.read.table("retail_features")
    columns = [c for c in features.columns if c not in ("CustomerID", "cust_age", "selected_features")]
    copies = math.ceil(args.rows / features.count())
    table = features.crossJoin(spark.range(copies).withColumnRenamed("id", "copy")).limit(args.rows).cache()
    rows = table.count()

    def udf(uri):
        return mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")(F.struct(*columns))

    paths = {
        "native transform": lambda: mlflow.spark.load_model(spark_uri).transform(table),
        "spark_udf, spark flavor": lambda: table.withColumn("prediction", udf(spark_uri)),
        "spark_udf, custom pyfunc": lambda: table.withColumn("prediction", udf(custom_uri)),
    }
    seconds = {}
    for name, scored in paths.items():
        started = time.perf_counter()
        scored().write.format("noop").mode("overwrite").save()
        seconds[name] = time.perf_counter() - started

    sample = features.limit(2000)
    check = (mlflow.spark.load_model(spark_uri).transform(sample)
             .withColumn("via_spark_udf", udf(spark_uri)).withColumn("via_custom", udf(custom_uri))
             .select(F.max(F.abs(F.col("prediction") - F.col("via_spark_udf"))).alias("a"),
                     F.max(F.abs(F.col("prediction") - F.col("via_custom"))).alias("b")).first())

    print(f"{rows:,} rows, {spark.sparkContext.master}, model loading included")
    print(f"{'path':<26}{'seconds':>9}{'rows/s':>12}{'vs native':>11}")
    for name, took in seconds.items():
        print(f"{name:<26}{took:>9.1f}{rows / took:>12,.0f}{took / seconds['native transform']:>10.1f}x")
    print(f"predictions agree within 1e-9: {max(check['a'], check['b']) < 1e-9}")


if __name__ == "__main__":
    main()
