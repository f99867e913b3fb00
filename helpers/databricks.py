"""The course on Databricks: which compute a notebook runs on, and where the course keeps its tables, models and files.

| compute | how it is recognised | what differs for the course |
|---|---|---|
| local | no DATABRICKS_RUNTIME_VERSION | nothing: the course's own Spark, MLflow store and workspace |
| dedicated (classic, single user) | DATABRICKS_RUNTIME_VERSION `17.3`, say | the cluster's Spark and MLflow; tables, models and files in Unity Catalog |
| standard (formerly shared) | that, and a Spark Connect session (SPARK_CONNECT_MODE_ENABLED) | also: Spark ML models are logged through a volume (MLFLOW_DFS_TMP) |
| serverless | DATABRICKS_RUNTIME_VERSION `client.4.x`, or IS_SERVERLESS=TRUE | also: no DataFrame cache, only `availableNow` streaming triggers |

On Databricks everything the course writes goes to one Unity Catalog schema and one volume in it: tables and
registered models in `<catalog>.<schema>`, files (the course's data, streaming checkpoints, MLflow's staging folder
for Spark ML models) under `/Volumes/<catalog>/<schema>/<volume>/`. Serverless executors cannot read workspace
files, so the data files are copied into the volume. They come from COURSE_UC_VOLUME (`catalog.schema.volume`, a
cluster's environment variable) or the notebook's widgets `catalog`, `schema` and `volume`; by default the
workspace's current catalog, and a schema named after the user, so learners who share a catalog do not overwrite
each other's tables.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from helpers.config import DATA_DIR, REPO_ROOT

COMPUTE_KINDS = ("local", "dedicated", "standard", "serverless")
VOLUME_VARIABLE = "COURSE_UC_VOLUME"
# Set beside COURSE_UC_VOLUME when the course chose it (from widgets or defaults), not the learner: then a widget
# changed later still wins.
CHOSEN_BY_COURSE = "COURSE_UC_VOLUME_FROM_WIDGETS"
DEFAULT_VOLUME = "course"
WIDGETS = ("catalog", "schema", "volume")
SHARED_SCHEMA = "default"  # where Unity Catalog lets every user of the workspace catalog create tables and models
# How Unity Catalog refuses a statement the user has no privilege for (error classes and their messages)
PERMISSION_DENIED = re.compile(r"INSUFFICIENT_PERMISSIONS|PERMISSION_DENIED|does not have (?:the )?\w+ (?:SCHEMA|privilege)",
                               re.IGNORECASE)
OLDEST_RUNTIME = (17, 3)  # Spark 4.0; the stand-in of the oldest supported runtime runs it (python3 course.py standin)
# The first databricks-sdk with jobs.ModelTriggerConfiguration (08's delivery job); the runtimes' own is older
OLDEST_DATABRICKS_SDK = "0.74.0"
OLDEST_SERVERLESS = 4  # environment 4 (Databricks Connect 17) is the first with pyspark.ml and mlflow.spark


class SetupError(RuntimeError):
    """What the course cannot do on this compute or in this workspace, in one sentence that says what to do."""


def check_compute(env=None) -> None:
    """Refuses compute the course cannot run on: serverless environments before 4, runtimes before 17.3 LTS."""
    env = os.environ if env is None else env
    runtime = env.get("DATABRICKS_RUNTIME_VERSION", "").strip()
    if compute_kind(env) == "serverless":
        found = re.match(r"client\.(\d+)", runtime)
        if found and int(found.group(1)) < OLDEST_SERVERLESS:
            raise SetupError(f"This notebook runs on serverless environment version {found.group(1)}, which has no "
                             f"Spark ML (pyspark.ml): in the notebook's Environment panel pick version "
                             f"{OLDEST_SERVERLESS} or later, apply it, and run the notebook again.")
    else:
        found = re.match(r"(\d+)\.(\d+)", runtime)
        if found and (int(found.group(1)), int(found.group(2))) < OLDEST_RUNTIME:
            raise SetupError(f"This cluster runs Databricks Runtime {runtime}; the course needs "
                             f"{'.'.join(map(str, OLDEST_RUNTIME))} LTS or later (Spark 4): attach the notebook to such "
                             "a cluster, or to serverless compute.")
    if importlib.util.find_spec("pyspark.ml") is None:
        raise SetupError("This compute has no Spark ML (pyspark.ml): use serverless environment version 4 or later, "
                         "or a cluster on Databricks Runtime 17.3 LTS or later.")


def compute_kind(env=None) -> str:
    """local, dedicated, standard or serverless, from the environment variables Databricks sets (MLflow reads the
    same ones to decide how it saves Spark ML models)."""
    env = os.environ if env is None else env
    runtime = env.get("DATABRICKS_RUNTIME_VERSION", "").strip()
    if not runtime:
        return "local"
    if runtime.startswith("client.") or env.get("IS_SERVERLESS", "").strip().upper() == "TRUE":
        return "serverless"
    return "standard" if "SPARK_CONNECT_MODE_ENABLED" in env else "dedicated"


@dataclass(frozen=True)
class Volume:
    """The Unity Catalog schema and volume that hold a learner's course."""
    catalog: str
    schema: str
    name: str

    @property
    def schema_name(self) -> str:
        return f"{self.catalog}.{self.schema}"

    @property
    def path(self) -> str:
        return f"/Volumes/{self.catalog}/{self.schema}/{self.name}"

    def __str__(self) -> str:
        return f"{self.schema_name}.{self.name}"


def parse_volume(text: str) -> Volume:
    parts = text.strip().split(".")
    if len(parts) != 3 or not all(re.fullmatch(r"[A-Za-z0-9_]+", part) for part in parts):
        raise ValueError(f"{VOLUME_VARIABLE}={text!r} is not `catalog.schema.volume` (letters, digits and _ only): "
                         "fix it, or unset it to use the notebook's widgets.")
    return Volume(*parts)


def default_schema(user: str) -> str:
    """`mlflow_course_alice_smith_1a2b` for alice.smith@example.com: one schema per learner (the four hex digits of
    the whole address keep alice.smith@a.com and alice-smith@b.com apart)."""
    name = re.sub(r"[^a-z0-9]+", "_", user.split("@")[0].lower()).strip("_") or "user"
    return f"mlflow_course_{name}_{hashlib.sha1(user.lower().encode()).hexdigest()[:4]}"


def defaults(spark) -> tuple[str, str, str]:
    """The widgets' defaults: the session's current catalog (the workspace's default one, where a learner may
    usually create a schema), a schema of the learner's own, and `course`."""
    catalog, user = spark.sql("SELECT current_catalog(), current_user()").first()
    return catalog, default_schema(user), DEFAULT_VOLUME


def course_volume(spark, widgets=None, env=None) -> Volume:
    """The learner's volume: COURSE_UC_VOLUME as the learner set it, else the widgets' values, else the defaults."""
    env = os.environ if env is None else env
    if env.get(VOLUME_VARIABLE, "").strip() and not env.get(CHOSEN_BY_COURSE):
        return parse_volume(env[VOLUME_VARIABLE])
    values = {}
    for widget in WIDGETS if widgets is not None else ():
        try:
            values[widget] = widgets.get(widget).strip()
        except Exception:  # a widget this notebook does not define
            pass
    if all(values.get(widget) for widget in WIDGETS):
        return parse_volume(".".join(values[widget] for widget in WIDGETS))
    if env.get(VOLUME_VARIABLE, "").strip():  # chosen earlier in this process: asking Spark again gives the same
        return parse_volume(env[VOLUME_VARIABLE])
    fallback = dict(zip(WIDGETS, defaults(spark)))
    return parse_volume(".".join(values.get(widget) or fallback[widget] for widget in WIDGETS))


def use_course_volume(spark, widgets=None, env=None, data_dir: Path | None = None) -> Volume:
    """Creates the learner's schema and volume if they are missing, makes the schema the session's current one,
    copies the course's data files into the volume, and points the course's settings at it: COURSE_UC_VOLUME,
    COURSE_WORKSPACE (a folder of the volume) and MLFLOW_DFS_TMP (MLflow stages Spark ML models there; standard and
    serverless compute refuse any other place). Safe to call again: start_spark does, in every notebook."""
    env = os.environ if env is None else env
    volume = writable_schema(spark, course_volume(spark, widgets, env), env)
    spark.sql(f"CREATE VOLUME IF NOT EXISTS `{volume.catalog}`.`{volume.schema}`.`{volume.name}`")
    spark.sql(f"SET CATALOG `{volume.catalog}`")  # Databricks: { USE | SET } CATALOG; Spark: SET only
    spark.sql(f"USE SCHEMA `{volume.schema}`")
    if env.get(VOLUME_VARIABLE, "").strip() != str(volume) or env.get(CHOSEN_BY_COURSE):
        env[CHOSEN_BY_COURSE] = "1"  # not the learner's own setting: widgets may change it
    env[VOLUME_VARIABLE] = str(volume)
    env["COURSE_WORKSPACE"] = f"{volume.path}/workspace"
    env["MLFLOW_DFS_TMP"] = f"{volume.path}/mlflow-tmp"
    copy_data_files(Path(data_dir or DATA_DIR), Path(volume.path) / "data")
    return volume


def writable_schema(spark, volume: Volume, env) -> Volume:
    """The volume in a schema the learner may write: the one asked for, created if missing; when Unity Catalog
    refuses to create the learner's default schema (most users of a workspace catalog may not), the catalog's
    `default` schema, with a volume and model names of the learner's own (COURSE_NAME_PREFIX)."""
    if volume.catalog.lower() == "hive_metastore":
        raise SetupError("The catalog is hive_metastore, which has no volumes and no Unity Catalog models: type a "
                         "Unity Catalog catalog (for example `workspace` or `main`) in the `catalog` widget, or set "
                         f"{VOLUME_VARIABLE}, and run the cell again.")
    try:
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{volume.catalog}`.`{volume.schema}`")
        return volume
    except Exception as error:  # pyspark's AnalysisException, or Spark Connect's
        if not PERMISSION_DENIED.search(str(error)):
            raise
    if spark.sql(f"SHOW SCHEMAS IN `{volume.catalog}` LIKE '{volume.schema}'").first() is not None:
        return volume  # it exists, and may be writable for this learner
    learner_default = default_schema(spark.sql("SELECT current_user()").first()[0])
    if volume.schema != learner_default:
        raise SetupError(f"You may not create the schema {volume.schema_name}: type a schema you may write in the "
                         f"`schema` widget, or clear it to use the catalog's `{SHARED_SCHEMA}` schema.")
    learner = learner_default.removeprefix("mlflow_course_")
    if not env.get("COURSE_NAME_PREFIX", "").strip():
        env["COURSE_NAME_PREFIX"] = f"{learner}_"
    return Volume(volume.catalog, SHARED_SCHEMA, learner_default)


def copy_data_files(source: Path, target: Path) -> list[str]:
    """Copies the data files the volume does not have yet (or has at another size); returns their names."""
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for file in sorted(source.glob("*.csv*")):
        there = target / file.name
        if not there.exists() or there.stat().st_size != file.stat().st_size:
            shutil.copyfile(file, there)
            copied.append(file.name)
    return copied


def pinned_mlflow(requirements: Path = REPO_ROOT / "requirements.txt") -> str:
    """The MLflow version the course is tested with (requirements.txt)."""
    found = re.search(r"^mlflow(?:\[[^\]]*\])?==([^\s;#]+)", requirements.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{requirements.name} pins no MLflow version")
    return found.group(1)


def installed_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def installed_mlflow() -> str:
    """The version of MLflow installed here; runtimes without Databricks ML may have only `mlflow-skinny`."""
    for package in ("mlflow", "mlflow-skinny"):
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return "none"


def older(installed: str, pinned: str) -> bool:
    from packaging.version import Version

    return Version(installed) < Version(pinned)


def notebook_dbutils():
    """The `dbutils` of the Databricks notebook this runs in (widgets, Python restarts), or None."""
    try:
        from IPython import get_ipython
        return (get_ipython().user_ns or {}).get("dbutils")
    except Exception:  # not in IPython, or no dbutils there
        return None


def prepare_databricks(spark=None, dbutils=None, env=None, install=None) -> None:
    """The set-up step at the top of every notebook: nothing locally. On Databricks: widgets for the learner's
    catalog, schema and volume, those created, and the course's MLflow installed where the runtime's is older (then
    Python restarts, and the notebook goes on with the next cell). It says what it did in one line."""
    env = os.environ if env is None else env
    kind = compute_kind(env)
    if kind == "local":
        return
    check_compute(env)
    if spark is None:
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.getOrCreate()
    dbutils = dbutils if dbutils is not None else notebook_dbutils()
    widgets = getattr(dbutils, "widgets", None)
    if widgets is not None and not (env.get(VOLUME_VARIABLE, "").strip() and not env.get(CHOSEN_BY_COURSE)):
        for widget, default in zip(WIDGETS, defaults(spark)):
            widgets.text(widget, default)  # keeps a value the learner has typed
    volume = use_course_volume(spark, widgets, env)
    done = f"Databricks {kind} compute: tables and models in {volume.schema_name}, files in {volume.path}"
    if volume.schema == SHARED_SCHEMA:
        done += (f" (you may not create a schema here, so your models start with {env['COURSE_NAME_PREFIX']}; "
                 f"the tables are shared with everyone who uses {volume.schema_name})")
    installed, pinned = installed_mlflow(), pinned_mlflow()
    sdk = installed_version("databricks-sdk")
    wanted = {}  # requirement: how the cell describes it
    if installed == "none" or older(installed, pinned):
        over = f"over the runtime's {installed}" if installed != "none" else "(the runtime has none)"
        wanted[f"mlflow=={pinned}"] = f"MLflow {pinned} {over}"
    if sdk == "none" or older(sdk, OLDEST_DATABRICKS_SDK):  # the runtimes ship 0.49: no model update triggers
        wanted[f"databricks-sdk>={OLDEST_DATABRICKS_SDK}"] = f"databricks-sdk {OLDEST_DATABRICKS_SDK} or later over {sdk}"
    if not wanted:
        print(f"{done}; MLflow {installed}.")
        return
    print(f"{done}; installing {' and '.join(wanted.values())}, then restarting Python.", flush=True)
    for requirement in wanted:
        try:
            (install or _pip_install)(requirement)
        except Exception as error:  # pip's own failure: no route to PyPI, a proxy, a full disk
            raise SetupError(f"{requirement} could not be installed ({str(error).strip()[-200:]}): add "
                             f"`{requirement}` (or, without PyPI, its wheel in a volume) to the notebook's "
                             "Environment panel or the cluster's libraries, and run the notebook again.") from None
    if dbutils is not None:
        dbutils.library.restartPython()  # the process ends here; the next cell runs with the new MLflow


def _pip_install(requirement: str) -> None:
    """`%pip install`, which on Databricks installs into the notebook's own environment."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        shell.run_line_magic("pip", f"install --quiet '{requirement}'")  # prints pip's error, raises none
    else:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)
    name, _, wanted = re.split(r"(==|>=)", requirement)
    found = installed_mlflow() if name == "mlflow" else installed_version(name)
    if older(found.replace("none", "0"), wanted):
        raise RuntimeError(f"pip left {'MLflow' if name == 'mlflow' else name} {found}; its message is above")


def cached(df):
    """`df.cache()`, except on serverless compute, which keeps no DataFrame cache: there Spark recomputes `df` each
    time it is used, and the results are the same."""
    return df if compute_kind() == "serverless" else df.cache()
