"""The Databricks branches of the helpers, with each compute type simulated by the environment variables Databricks
sets there: which branch runs, what it asks Spark, and where it points the course."""
import os
import re

import pytest

from helpers import databricks
from helpers.config import settings
from helpers.databricks import (Volume, compute_kind, copy_data_files, course_volume, default_schema, parse_volume,
                                prepare_databricks, use_course_volume)

CLASSIC = {"DATABRICKS_RUNTIME_VERSION": "16.4"}
STANDARD = {"DATABRICKS_RUNTIME_VERSION": "17.3", "SPARK_CONNECT_MODE_ENABLED": "1"}
SERVERLESS = {"DATABRICKS_RUNTIME_VERSION": "client.4.9", "SPARK_CONNECT_MODE_ENABLED": "1"}


ALICE = "alice.smith@example.com"
ALICES = default_schema(ALICE)


class FakeSpark:
    """Records the SQL it is asked; it answers the one query for the current catalog and user."""

    def __init__(self, user=ALICE, catalog="main"):
        self.user, self.catalog, self.statements = user, catalog, []

    def sql(self, statement):
        self.statements.append(statement)
        row = [self.catalog, self.user] if "current_catalog()" in statement else None

        class Result:
            def first(self):
                return row
        return Result()


class FakeWidgets:
    def __init__(self, **values):
        self.values = dict(values)

    def text(self, name, default):
        self.values.setdefault(name, default)  # Databricks keeps what the learner typed

    def get(self, name):
        if name not in self.values:
            raise ValueError(f"No input widget named {name} is defined")
        return self.values[name]


class FakeDbutils:
    def __init__(self, **widgets):
        self.widgets = FakeWidgets(**widgets)
        self.restarts = 0
        dbutils = self

        class Library:
            def restartPython(self):
                dbutils.restarts += 1
        self.library = Library()


@pytest.mark.parametrize("env, kind", [({}, "local"), ({"SPARK_CONNECT_MODE_ENABLED": "1"}, "local"), (CLASSIC, "dedicated"),
                                       (STANDARD, "standard"), (SERVERLESS, "serverless"),
                                       ({"DATABRICKS_RUNTIME_VERSION": "17.3", "IS_SERVERLESS": "TRUE"}, "serverless")])
def test_the_compute_kind_comes_from_what_databricks_sets(env, kind):
    assert compute_kind(env) == kind  # local Connect mode (SPARK_REMOTE=local[2]) is still local


def test_each_learner_gets_a_schema_of_their_own_in_the_workspaces_catalog():
    assert re.fullmatch(r"mlflow_course_alice_smith_[0-9a-f]{4}", ALICES)
    assert default_schema("Bob-Jones@example.com").startswith("mlflow_course_bob_jones_")
    assert default_schema("alice-smith@other.org") != ALICES  # the same name before the @, another learner
    assert course_volume(FakeSpark(catalog="workspace"), None, {}) == Volume("workspace", ALICES, "course")
    assert course_volume(FakeSpark("bob@example.com"), None, {}).schema != ALICES


def test_the_volume_comes_from_the_variable_then_the_widgets_then_the_defaults():
    spark = FakeSpark()
    widgets = FakeWidgets(catalog="training", schema="", volume="files")  # an emptied widget takes the default
    assert str(course_volume(spark, widgets, {})) == f"training.{ALICES}.files"
    assert str(course_volume(spark, widgets, {"COURSE_UC_VOLUME": "ml.team.data"})) == "ml.team.data"
    with pytest.raises(ValueError, match="is not `catalog.schema.volume`"):
        parse_volume("main.default")
    with pytest.raises(ValueError, match="letters, digits and _ only"):
        parse_volume("main.x; DROP SCHEMA y.z")


def test_the_course_volume_is_created_used_and_becomes_the_course_workspace(monkeypatch):
    copies = []
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: copies.append(target))
    env = dict(STANDARD)
    spark = FakeSpark()
    volume = use_course_volume(spark, FakeWidgets(catalog="training"), env)
    assert spark.statements[1:] == [f"CREATE SCHEMA IF NOT EXISTS `training`.`{ALICES}`",
                                    f"CREATE VOLUME IF NOT EXISTS `training`.`{ALICES}`.`course`",
                                    "USE CATALOG `training`", f"USE SCHEMA `{ALICES}`"]
    path = f"/Volumes/training/{ALICES}/course"
    assert env["COURSE_WORKSPACE"] == f"{path}/workspace"  # checkpoints (05) and the course's files go there
    assert env["MLFLOW_DFS_TMP"] == f"{path}/mlflow-tmp"  # MLflow refuses other places on standard and serverless
    assert env["COURSE_UC_VOLUME"] == str(volume) == f"training.{ALICES}.course"
    assert [str(target) for target in copies] == [f"{path}/data"]
    again = FakeSpark()
    use_course_volume(again, None, env)  # the next cell, or a helper: the same place, without asking Spark
    assert again.statements == [f"CREATE SCHEMA IF NOT EXISTS `training`.`{ALICES}`",
                                f"CREATE VOLUME IF NOT EXISTS `training`.`{ALICES}`.`course`",
                                "USE CATALOG `training`", f"USE SCHEMA `{ALICES}`"]
    changed = use_course_volume(FakeSpark(), FakeWidgets(catalog="training", schema="team_a", volume="files"), env)
    assert str(changed) == env["COURSE_UC_VOLUME"] == "training.team_a.files"  # the learner changed the widgets
    learners_own = {**STANDARD, "COURSE_UC_VOLUME": "ml.team.data"}  # a cluster's variable, set by the learner
    assert str(use_course_volume(FakeSpark(), FakeWidgets(catalog="x", schema="y", volume="z"), learners_own)) == \
        "ml.team.data"


def test_data_files_are_copied_once(tmp_path):
    source, target = tmp_path / "data", tmp_path / "volume" / "data"
    source.mkdir()
    (source / "a.csv").write_text("x\n1\n")
    (source / "b.csv.gz").write_bytes(b"zz")
    (source / "README.md").write_text("not data")
    assert copy_data_files(source, target) == ["a.csv", "b.csv.gz"]
    assert copy_data_files(source, target) == []
    (source / "a.csv").write_text("x\n1\n2\n")  # regenerated data
    assert copy_data_files(source, target) == ["a.csv"]
    assert (target / "a.csv").read_text() == "x\n1\n2\n"


def test_the_setup_step_does_nothing_locally(capsys):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the local branch used Databricks")

    assert prepare_databricks(Untouchable(), Untouchable(), {}, install=Untouchable()) is None
    assert capsys.readouterr().out == ""  # the committed outputs are the same with and without it


@pytest.mark.parametrize("env", [CLASSIC, STANDARD, SERVERLESS])
def test_the_setup_step_installs_the_course_mlflow_only_over_an_older_one(env, monkeypatch, capsys):
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    pinned = databricks.pinned_mlflow()
    installs = []
    monkeypatch.setattr(databricks, "version", lambda package: "2.22.1")
    dbutils = FakeDbutils()
    prepare_databricks(FakeSpark(), dbutils, dict(env), install=installs.append)
    assert installs == [f"mlflow=={pinned}"] and dbutils.restarts == 1
    assert capsys.readouterr().out == (
        f"Databricks {compute_kind(env)} compute: tables and models in main.{ALICES}, files in "
        f"/Volumes/main/{ALICES}/course; installing MLflow {pinned} over the runtime's 2.22.1, "
        "then restarting Python.\n")
    assert dbutils.widgets.values == {"catalog": "main", "schema": ALICES, "volume": "course"}
    monkeypatch.setattr(databricks, "version", lambda package: pinned)
    installs.clear()
    prepare_databricks(FakeSpark(), FakeDbutils(schema="team_a"), dict(env), install=installs.append)
    assert installs == []
    assert capsys.readouterr().out.endswith(f"main.team_a, files in /Volumes/main/team_a/course; MLflow {pinned}.\n")


def test_serverless_keeps_no_dataframe_cache(monkeypatch):
    class Frame:
        cached = False

        def cache(self):
            self.cached = True
            return self

    for env, expected in ((SERVERLESS, False), (STANDARD, True), ({}, True)):
        monkeypatch.setattr(os, "environ", dict(env))
        frame = Frame()
        assert databricks.cached(frame) is frame and frame.cached is expected


def test_on_databricks_spark_reads_the_data_from_the_volume(workspace, monkeypatch):
    from helpers.data import TRANSACTIONS_FILE, data_uri

    assert data_uri(TRANSACTIONS_FILE).startswith("file:///")  # this machine's file
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "client.4.9")
    monkeypatch.setenv("COURSE_UC_VOLUME", "main.mlflow_course_alice.course")
    assert data_uri(TRANSACTIONS_FILE) == f"/Volumes/main/mlflow_course_alice/course/data/{TRANSACTIONS_FILE}"
    assert settings().uc_schema == "main.mlflow_course_alice"


def test_start_spark_on_databricks_uses_the_compute_session_and_the_learners_schema(workspace, monkeypatch, capsys):
    from pyspark.sql import SparkSession

    from helpers import start_spark

    spark = FakeSpark()
    spark.version = "4.1.0"
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", lambda builder: spark)
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    for name, value in SERVERLESS.items():
        monkeypatch.setenv(name, value)
    assert start_spark() is spark
    assert spark.statements[-1] == f"USE SCHEMA `{ALICES}`"
    assert capsys.readouterr().out == ("Spark 4.1.0 on Databricks serverless compute; tables and models in "
                                       f"main.{ALICES}, files in /Volumes/main/{ALICES}/course\n")
    assert os.environ["MLFLOW_DFS_TMP"] == f"/Volumes/main/{ALICES}/course/mlflow-tmp"


def test_a_runtime_with_only_mlflow_skinny_or_none_gets_the_course_mlflow(monkeypatch, capsys):
    from importlib.metadata import PackageNotFoundError

    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    present = {}

    def version(package):
        if package not in present:
            raise PackageNotFoundError(package)
        return present[package]

    monkeypatch.setattr(databricks, "version", version)
    for packages, said in (({"mlflow-skinny": "2.19.0"}, "over the runtime's 2.19.0"), ({}, "(the runtime has none)")):
        present.clear()
        present.update(packages)
        installs = []
        prepare_databricks(FakeSpark(), FakeDbutils(), dict(CLASSIC), install=installs.append)
        assert installs == [f"mlflow=={databricks.pinned_mlflow()}"]
        assert said in capsys.readouterr().out
