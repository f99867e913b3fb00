"""The Databricks branches of the helpers, with each compute type simulated by the environment variables Databricks
sets there: which branch runs, what it asks Spark, and where it points the course."""
import os
import re

import pytest

from helpers import databricks
from helpers.config import settings
from helpers.databricks import (SetupError, Volume, check_compute, compute_kind, copy_data_files, course_volume,
                                default_schema, parse_volume, prepare_databricks, use_course_volume)

CLASSIC = {"DATABRICKS_RUNTIME_VERSION": "17.3"}
STANDARD = {"DATABRICKS_RUNTIME_VERSION": "17.3", "SPARK_CONNECT_MODE_ENABLED": "1"}
SERVERLESS = {"DATABRICKS_RUNTIME_VERSION": "client.4.9", "SPARK_CONNECT_MODE_ENABLED": "1"}


ALICE = "alice.smith@example.com"
ALICES = default_schema(ALICE)


class FakeSpark:
    """Records the SQL it is asked; it answers the queries for the current catalog and user, and refuses CREATE
    SCHEMA as Unity Catalog does for a user without the privilege when `may_create_schema` is False."""

    def __init__(self, user=ALICE, catalog="main", may_create_schema=True, schemas=()):
        self.user, self.catalog, self.statements = user, catalog, []
        self.may_create_schema, self.schemas = may_create_schema, set(schemas)

    def sql(self, statement):
        self.statements.append(statement)
        if statement.startswith("CREATE SCHEMA") and not self.may_create_schema:
            raise RuntimeError(f"[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have CREATE SCHEMA "
                               f"on Catalog '{self.catalog}'. SQLSTATE: 42501")
        row = None
        if "current_catalog()" in statement:
            row = [self.catalog, self.user]
        elif "current_user()" in statement:
            row = [self.user]
        elif statement.startswith("SHOW SCHEMAS"):
            row = next(([name] for name in self.schemas if f"LIKE '{name}'" in statement), None)

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
                                    "SET CATALOG `training`", f"USE SCHEMA `{ALICES}`"]
    path = f"/Volumes/training/{ALICES}/course"
    assert env["COURSE_WORKSPACE"] == f"{path}/workspace"  # checkpoints (05) and the course's files go there
    assert env["MLFLOW_DFS_TMP"] == f"{path}/mlflow-tmp"  # MLflow refuses other places on standard and serverless
    assert env["COURSE_UC_VOLUME"] == str(volume) == f"training.{ALICES}.course"
    assert [str(target) for target in copies] == [f"{path}/data"]
    again = FakeSpark()
    use_course_volume(again, None, env)  # the next cell, or a helper: the same place, without asking Spark
    assert again.statements == [f"CREATE SCHEMA IF NOT EXISTS `training`.`{ALICES}`",
                                f"CREATE VOLUME IF NOT EXISTS `training`.`{ALICES}`.`course`",
                                "SET CATALOG `training`", f"USE SCHEMA `{ALICES}`"]
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
        present.update(packages, **{"databricks-sdk": "0.74.0"})
        installs = []
        prepare_databricks(FakeSpark(), FakeDbutils(), dict(CLASSIC), install=installs.append)
        assert installs == [f"mlflow=={databricks.pinned_mlflow()}"]
        assert said in capsys.readouterr().out


def test_a_runtime_whose_databricks_sdk_has_no_model_update_triggers_gets_a_newer_one(monkeypatch, capsys):
    """databricks/environments pins databricks-sdk ~=0.49 on serverless 4 and 17.3 LTS; 08's job needs 0.74."""
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    pinned = databricks.pinned_mlflow()
    monkeypatch.setattr(databricks, "version", lambda package: {"databricks-sdk": "0.49.0"}.get(package, pinned))
    installs, dbutils = [], FakeDbutils()
    prepare_databricks(FakeSpark(), dbutils, dict(SERVERLESS), install=installs.append)
    assert installs == ["databricks-sdk>=0.74.0"] and dbutils.restarts == 1
    assert capsys.readouterr().out.endswith("installing databricks-sdk 0.74.0 or later over 0.49.0, then restarting "
                                            "Python.\n")


@pytest.mark.parametrize("env, refusal", [
    ({"DATABRICKS_RUNTIME_VERSION": "client.3.2", "SPARK_CONNECT_MODE_ENABLED": "1"}, "serverless environment version 3"),
    ({"DATABRICKS_RUNTIME_VERSION": "16.4"}, "Databricks Runtime 16.4; the course needs 17.3 LTS or later"),
    ({"DATABRICKS_RUNTIME_VERSION": "15.4", "SPARK_CONNECT_MODE_ENABLED": "1"}, "Runtime 15.4"),
])
def test_compute_the_course_cannot_run_on_is_refused_in_one_sentence(env, refusal):
    with pytest.raises(SetupError, match=refusal) as refused:
        prepare_databricks(FakeSpark(), FakeDbutils(), dict(env), install=lambda requirement: None)
    assert str(refused.value).count(". ") == 0 and str(refused.value).endswith(".")
    for supported in (CLASSIC, STANDARD, SERVERLESS, {"DATABRICKS_RUNTIME_VERSION": "18.0"},
                      {"DATABRICKS_RUNTIME_VERSION": "client.5.1"}):
        check_compute(supported)


def test_hive_metastore_is_refused_before_anything_is_created():
    spark = FakeSpark(catalog="hive_metastore")
    with pytest.raises(SetupError, match="hive_metastore, which has no volumes"):
        use_course_volume(spark, None, dict(SERVERLESS))
    assert not [statement for statement in spark.statements if statement.startswith("CREATE")]


def test_a_learner_who_may_not_create_a_schema_gets_the_catalogs_default_schema(monkeypatch, capsys):
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    monkeypatch.setattr(databricks, "version", lambda package: databricks.pinned_mlflow())
    env = dict(SERVERLESS)
    spark = FakeSpark(catalog="workspace", may_create_schema=False)
    prepare_databricks(spark, FakeDbutils(), env)
    learner = ALICES.removeprefix("mlflow_course_")
    assert env["COURSE_UC_VOLUME"] == f"workspace.default.{ALICES}"  # a volume of the learner's own
    assert env["COURSE_NAME_PREFIX"] == f"{learner}_"  # models of the learner's own (course_model_name)
    assert f"CREATE VOLUME IF NOT EXISTS `workspace`.`default`.`{ALICES}`" in spark.statements
    assert settings().name_prefix == "" and "USE SCHEMA `default`" in spark.statements
    assert f"tables and models in workspace.default, files in /Volumes/workspace/default/{ALICES} (you may not " \
           f"create a schema here, so your models start with {learner}_;" in capsys.readouterr().out


def test_a_schema_the_learner_named_but_may_not_create_is_refused_or_used_if_it_exists(monkeypatch):
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    with pytest.raises(SetupError, match="may not create the schema main.team_a: type a schema you may write"):
        use_course_volume(FakeSpark(may_create_schema=False), FakeWidgets(schema="team_a"), dict(STANDARD))
    env = dict(STANDARD)
    existing = FakeSpark(may_create_schema=False, schemas=["team_a"])
    assert str(use_course_volume(existing, FakeWidgets(schema="team_a"), env)) == "main.team_a.course"
    assert "COURSE_NAME_PREFIX" not in env


def test_an_mlflow_that_cannot_be_installed_is_one_sentence(monkeypatch, capsys):
    monkeypatch.setattr(databricks, "copy_data_files", lambda source, target: [])
    monkeypatch.setattr(databricks, "version", lambda package: "3.0.1")

    def no_route(requirement):
        raise RuntimeError("pip left MLflow 3.0.1; its message is above")
    dbutils = FakeDbutils()
    with pytest.raises(SetupError, match=r"mlflow==.* could not be installed \(pip left MLflow 3.0.1.*Environment panel"):
        prepare_databricks(FakeSpark(), dbutils, dict(SERVERLESS), install=no_route)
    assert dbutils.restarts == 0


def test_the_bundle_runs_every_lesson_and_lab_in_order_on_serverless_and_on_17_3_lts():
    """databricks.yml, the acceptance run for a real workspace: one job per target, every lesson then its lab's
    solutions, each task after the one before, with the set-up cell's widgets as parameters."""
    import importlib.util

    import yaml

    from helpers.config import REPO_ROOT
    from helpers.labs import solutions_notebooks
    from helpers.runner import course_notebooks

    spec = importlib.util.spec_from_file_location("bundle", REPO_ROOT / "databricks" / "bundle.py")
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    text = (REPO_ROOT / "databricks.yml").read_text()
    assert text == bundle.bundle(), "databricks.yml is out of date: run `python3 databricks/bundle.py`"
    expected = [f"./notebooks/{path.name}" for path in course_notebooks()]
    for solutions in solutions_notebooks():
        lesson = expected.index(next(p for p in expected if p.startswith(f"./notebooks/{solutions.name[:2]}_")))
        expected.insert(lesson + 1, f"./notebooks/labs/{solutions.name}")
    assert len(expected) == 20
    targets = yaml.safe_load(text)["targets"]
    assert set(targets) == {"serverless", "lts"}
    assert targets["serverless"]["variables"]["schema"] != targets["lts"]["variables"]["schema"]  # runs side by side
    for name, target in targets.items():
        job = target["resources"]["jobs"]["course"]
        tasks = job["tasks"]
        assert [task["notebook_task"]["notebook_path"] for task in tasks] == expected
        assert [task.get("depends_on") for task in tasks] == \
            [None] + [[{"task_key": task["task_key"]}] for task in tasks[:-1]]
        for task in tasks:
            assert task["notebook_task"]["base_parameters"] == {w: f"${{var.{w}}}" for w in databricks.WIDGETS}
            assert (REPO_ROOT / task["notebook_task"]["notebook_path"]).exists()
            assert task.get("job_cluster_key") == ("lts" if name == "lts" else None)
    cluster = targets["lts"]["resources"]["jobs"]["course"]["job_clusters"][0]["new_cluster"]
    assert cluster["spark_version"] == "17.3.x-scala2.13" and cluster["data_security_mode"] == "SINGLE_USER"


def test_no_notebook_writes_to_a_sink_serverless_compute_does_not_list():
    """Serverless compute lists its data sources, and Spark's `noop` sink is not among them (05 timed its paths with
    it); the stand-in's open-source Spark has it, so only reading the cells can catch it."""
    import json

    from helpers.config import REPO_ROOT

    sinks = re.compile(r"""\.format\(\s*["']noop["']""")
    found = [f"{path.name} cell {index}" for path in sorted((REPO_ROOT / "notebooks").rglob("*.ipynb"))
             for index, cell in enumerate(json.loads(path.read_text())["cells"])
             if cell["cell_type"] == "code" and sinks.search("".join(cell["source"]))]
    assert not found, found
