"""Spark Connect mode (SPARK_REMOTE): the course's session over pyspark's local Connect server, as on Databricks
serverless and standard compute, and what the processes such a notebook starts do."""
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from helpers import runner
from helpers.config import REPO_ROOT
from helpers.runner import course_notebooks
from helpers.serving import serving_environment
from helpers.spark import CONNECT_VARIABLES
from tests.processes import wait_until_gone
from tests.sandbox import clean_env
from tests.test_cli import free_port

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
from concurrent.futures import ThreadPoolExecutor
from helpers.spark import session_for_new_threads
def load_in_worker():  # as 08's CI job does: the model is loaded and let go in the worker thread
    return type(mlflow.spark.load_model(info.model_uri)).__name__
with ThreadPoolExecutor(1, initializer=session_for_new_threads()) as pool:
    print("loaded in a worker thread:", pool.submit(load_in_worker).result())
child = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True, timeout=300)
print(child.stdout.strip() or child.stderr[-2000:])
import os, re, tempfile
from pathlib import Path
from helpers.serving import ModelServer, free_port
class DirectoryServer(ModelServer):  # the course's server start and stop, around the cheapest HTTP server there is
    health_path = "/"
clean = 0
for start in range(20):
    spark.range(3).count()  # the Connect channel busy between starts, as in a notebook
    port, log = free_port(), Path(tempfile.mkdtemp()) / "server.log"
    with DirectoryServer("plain", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                         dict(os.environ), port, log):
        pass
    clean += not re.search(r"Bad file descriptor|^[EF]\\d{{4}} ", log.read_text(), flags=re.M)  # gRPC's errors
print("server starts with a clean log:", clean)
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
    assert "loaded in a worker thread: PipelineModel" in lines  # Spark ML finds the session as the active one
    assert "child connect False rows 7" in lines  # a classic session on the same driver sees the same table
    # Servers started from a process with live gRPC threads: with `preexec_fn` about 3 starts in 100 failed here
    # (grpc/grpc#43055, "Bad file descriptor"); each start above raises if its server never answers.
    assert "server starts with a clean log: 20" in lines
    assert "CANNOT_MODIFY" not in done.stderr  # the start-up settings the client cannot re-apply stay quiet


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("COURSE_CONNECT_NBVAL") != "1",
                    reason="14 minutes; CI runs the lessons over Connect in the Databricks stand-in instead "
                           "(tests/test_standin.py). COURSE_CONNECT_NBVAL=1 runs it (docs/maintainers.md).")
def test_every_notebook_gives_its_committed_outputs_over_spark_connect(tmp_path):
    """Every lesson, run with a local Spark Connect session on the course's pyspark, prints what the committed
    (classic) run printed; only the first line names the mode."""
    notebooks = [str(path.relative_to(REPO_ROOT)) for path in course_notebooks([])]
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MLFLOW_", "COURSE_", "PYSPARK_")) and name not in CONNECT_VARIABLES}
    env.update(SPARK_REMOTE="local[2]", COURSE_WORKSPACE=str(tmp_path / "workspace"))
    result = subprocess.run([sys.executable, "-m", "pytest", *notebooks, "-q", "-p", "no:cacheprovider"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout.splitlines()[-1] and "skipped" not in result.stdout.splitlines()[-1]


# A thin client of a Connect server elsewhere, as Databricks Connect is: Delta and Spark ML run on the server, and
# MLflow's Spark flavor, which needs a JVM in the client, stops with the course's sentence.
THIN_CLIENT = """
import mlflow, mlflow.spark, psutil
from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression
from helpers import setup_mlflow, start_spark
from helpers.spark import NoJvmForSparkFlavor, is_connect

spark = start_spark()
print("connect", is_connect(spark))
spark.range(10).selectExpr("id", "id * 2 AS y").write.format("delta").saveAsTable("numbers")
spark.sql("DELETE FROM numbers WHERE id < 3")
print("operations", [r.operation for r in spark.sql("DESCRIBE HISTORY numbers").orderBy("version").collect()])
model = Pipeline(stages=[VectorAssembler(inputCols=["id"], outputCol="f"),
                         LinearRegression(featuresCol="f", labelCol="y")]).fit(spark.read.table("numbers"))
print("prediction", round(model.transform(spark.range(1).selectExpr("5 AS id")).first().prediction, 6))
setup_mlflow(quiet=True)
try:
    with mlflow.start_run():
        mlflow.spark.log_model(model, artifact_path="model", pip_requirements=["pyspark"])
except NoJvmForSparkFlavor as error:
    print("stopped:", error)
print("processes of this client", [p.name() for p in psutil.Process().children(recursive=True)])
"""


@pytest.mark.slow
def test_a_thin_client_runs_delta_and_spark_ml_and_stops_at_the_spark_flavor_with_one_sentence(tmp_path):
    port = free_port()
    env = clean_env(tmp_path / "ws")
    server = subprocess.Popen([sys.executable, "-m", "helpers.cli", "connect-server", "--port", str(port)], env=env,
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ready = server.stdout.readline()  # the command prints once the server answers, or fails
        assert ready.startswith(f"Spark Connect server ready for thin clients: SPARK_REMOTE=sc://127.0.0.1:{port} ")
        jvms = [child.pid for child in psutil.Process(server.pid).children(recursive=True)]
        assert jvms, "the server's JVM runs as a child of the command"
        client = subprocess.run([sys.executable, "-c", THIN_CLIENT], env={**env, "SPARK_REMOTE": f"sc://127.0.0.1:{port}"},
                                capture_output=True, text=True, timeout=600)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert client.returncode == 0, client.stderr[-3000:]
    lines = client.stdout.splitlines()
    assert lines[0] == (f"Spark 4.2.0 through Spark Connect at sc://127.0.0.1:{port} "
                        "(a thin client: Spark and Delta run there)")
    assert "connect True" in lines
    assert "operations ['CREATE TABLE AS SELECT', 'DELETE']" in lines
    assert "prediction 10.0" in lines  # y = 2 * id, fitted on the server
    stopped = [line for line in lines if line.startswith("stopped: ")]
    assert stopped == [f"stopped: MLflow's Spark flavor copies Spark ML models through a JVM in this process, which a "
                       f"thin Spark Connect client (SPARK_REMOTE=sc://127.0.0.1:{port}) does not have: run Spark here "
                       "instead (SPARK_REMOTE=local[2], or unset it), or in a Databricks notebook set MLFLOW_DFS_TMP "
                       "to a folder in a Unity Catalog volume (/Volumes/<catalog>/<schema>/<volume>/mlflow-tmp, as the "
                       "course's set-up cell does)."]
    assert "processes of this client []" in lines  # a thin client starts no JVM of its own
    assert wait_until_gone(jvms, seconds=30) == []  # stopping the command stops its server
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_servers_get_no_connect_variables(workspace, monkeypatch):
    # `mlflow models serve` loads a Spark model in a classic session, which pyspark refuses in a Connect environment.
    for name in CONNECT_VARIABLES:
        monkeypatch.setenv(name, "local[2]" if name == "SPARK_REMOTE" else "1")
    env = serving_environment("sqlite:///mlflow.db")
    assert not set(CONNECT_VARIABLES) & set(env)
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"


def test_the_runner_starts_no_shared_driver_in_connect_mode(workspace, monkeypatch, capsys):
    chosen = {}

    def run_course(notebooks, parameters, kernel, timeout, write_back, shared_driver, keep_going):
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
