"""Spark Connect mode (SPARK_REMOTE): the course's session over pyspark's local Connect server, as on Databricks
serverless and standard compute, and what the processes such a notebook starts do."""
import subprocess
import sys

import pytest

from helpers import runner
from helpers.serving import serving_environment
from helpers.spark import CONNECT_VARIABLES
from tests.sandbox import clean_env

# A job or project run that a Connect notebook starts: it joins the notebook's driver as a classic session.
CHILD = """
from helpers.spark import is_connect, start_spark
spark = start_spark(quiet=True)
print("child connect", is_connect(spark), "rows", spark.read.table("numbers").count())
"""
# A notebook in Connect mode: Delta's SQL, a Spark ML fit, the Spark flavor logged and loaded, then a child process.
NOTEBOOK = """
import subprocess, sys
import mlflow, mlflow.spark
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression
from helpers import setup_mlflow, start_spark
from helpers.spark import is_connect

spark = start_spark()
print("connect", is_connect(spark))
spark.range(10).selectExpr("id", "id * 2 AS y").write.format("delta").saveAsTable("numbers")
spark.sql("DELETE FROM numbers WHERE id < 3")
print("operations", [r.operation for r in spark.sql("DESCRIBE HISTORY numbers").orderBy("version").collect()])
print("version 0 rows", spark.sql("SELECT count(*) FROM numbers VERSION AS OF 0").first()[0])
setup_mlflow(quiet=True)
model = Pipeline(stages=[VectorAssembler(inputCols=["id"], outputCol="f"),
                         LinearRegression(featuresCol="f", labelCol="y")]).fit(spark.read.table("numbers"))
with mlflow.start_run():
    info = mlflow.spark.log_model(model, artifact_path="model", pip_requirements=["pyspark"])
loaded = mlflow.spark.load_model(info.model_uri)
print("prediction", round(loaded.transform(spark.range(1).selectExpr("5 AS id")).first().prediction, 6))
import threading
in_thread = {{}}
worker = threading.Thread(target=lambda: in_thread.update(same=start_spark(quiet=True) is spark))
worker.start(); worker.join()
print("another thread gets the same session", in_thread)
child = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True, timeout=300)
print(child.stdout.strip() or child.stderr[-2000:])
""".format(child=CHILD)


@pytest.mark.slow
def test_a_connect_notebook_runs_delta_and_mlflow_and_its_jobs_join_its_driver(tmp_path):
    done = subprocess.run([sys.executable, "-c", NOTEBOOK], env=clean_env(tmp_path / "ws", SPARK_REMOTE="local[2]"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Spark 4.2.0 on local[2] through Spark Connect, ")  # the notebook says which mode
    assert "connect True" in lines
    assert "operations ['CREATE TABLE AS SELECT', 'DELETE']" in lines
    assert "version 0 rows 10" in lines  # time travel in SQL: DeltaTable's Python API needs Delta Connect
    assert "prediction 10.0" in lines  # y = 2 * id, learned over Connect and saved through the server's JVM
    assert "another thread gets the same session {'same': True}" in lines  # a webhook worker's CI job, in 08
    assert "child connect False rows 7" in lines  # a classic session on the same driver sees the same table
    assert "CANNOT_MODIFY" not in done.stderr  # the start-up settings the client cannot re-apply stay quiet


def test_servers_get_no_connect_variables(workspace, monkeypatch):
    # `mlflow models serve` loads a Spark model in a classic session, which pyspark refuses in a Connect environment.
    for name in CONNECT_VARIABLES:
        monkeypatch.setenv(name, "local[2]" if name == "SPARK_REMOTE" else "1")
    env = serving_environment("sqlite:///mlflow.db")
    assert not set(CONNECT_VARIABLES) & set(env)
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"


def test_the_runner_starts_no_shared_driver_in_connect_mode(workspace, monkeypatch, capsys):
    chosen = {}

    def run_course(notebooks, parameters, kernel, timeout, write_back, shared_driver):
        chosen["shared_driver"] = shared_driver
        return [runner.Result("00_setup_and_data.ipynb", "passed", 1.0)]

    monkeypatch.setattr(runner, "run_course", run_course)
    monkeypatch.setenv("SPARK_REMOTE", "local[2]")
    assert runner.main(["--only", "00"]) == 0
    assert chosen == {"shared_driver": False}  # each kernel's Connect server lives in its own process
    assert "Spark Connect (SPARK_REMOTE=local[2])" in capsys.readouterr().out
    monkeypatch.delenv("SPARK_REMOTE")
    runner.main(["--only", "00"])
    assert chosen == {"shared_driver": True}
