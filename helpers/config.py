"""Course settings: the few environment variables the course reads, all read here and nowhere else.

| variable | default | what it changes |
|---|---|---|
| COURSE_WORKSPACE | `workspace/` in the repository | where Delta tables, the MLflow store, artifacts and logs go |
| COURSE_SPARK_MASTER | `local[2]` | the Spark master URL (for example `spark://host:7077`) |
| MLFLOW_TRACKING_URI | SQLite store in the workspace | MLflow's own variable: a remote `mlflow server` wins when set |
| MLFLOW_REGISTRY_URI | the tracking store; `databricks-uc` on Databricks | MLflow's own variable (the Databricks stand-in sets its Unity Catalog rules with it) |
| COURSE_DELTA_JARS | `auto` | `spark`: Spark downloads the Delta jars; `maven`: Maven does; `auto`: Spark, then Maven on failure |
| JAVA_HOME | found on the machine | the JDK Spark runs on (17 or 21; see helpers.java) |
| DATABRICKS_RUNTIME_VERSION | unset | set by Databricks clusters: the helpers then use the cluster's Spark and MLflow |
| COURSE_UC_VOLUME | `<current catalog>.mlflow_course_<you>_<4 hex>.course` | on Databricks, the Unity Catalog `catalog.schema.volume` for the course's tables, models and files (see helpers.databricks) |
| COURSE_NAME_PREFIX | empty | goes before the course's experiment and model names, so learners who share one tracking server keep theirs apart (`alice_`) |
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"  # the course's data files (helpers.data writes them)
DEFAULT_WORKSPACE = REPO_ROOT / "workspace"
DELTA_JAR_MODES = ("auto", "spark", "maven")


@dataclass(frozen=True)
class Settings:
    workspace: Path
    spark_master: str
    tracking_uri: str | None
    delta_jars: str
    java_home: str | None
    databricks_runtime: str | None
    uc_volume: str | None = None
    name_prefix: str = ""
    registry_uri: str | None = None

    @property
    def on_databricks(self) -> bool:
        return bool(self.databricks_runtime)

    @property
    def uc_schema(self) -> str:
        """The `catalog.schema` of the course's tables and registered models on Databricks."""
        if not self.uc_volume:
            raise RuntimeError("The course's Unity Catalog schema is not chosen yet: run the notebook's first cells "
                               "(start_spark chooses it, from COURSE_UC_VOLUME or the notebook's widgets).")
        return self.uc_volume.rpartition(".")[0]


def settings() -> Settings:
    """The course's settings, read from the environment on every call (so tests and notebooks can change them)."""
    env = os.environ
    delta_jars = env.get("COURSE_DELTA_JARS", "auto").strip().lower() or "auto"
    if delta_jars not in DELTA_JAR_MODES:
        raise ValueError(f"COURSE_DELTA_JARS={delta_jars!r} is not one of {', '.join(DELTA_JAR_MODES)}: "
                         "unset it or pick one of those.")
    workspace = env.get("COURSE_WORKSPACE", "").strip()
    return Settings(
        workspace=Path(workspace).expanduser().resolve() if workspace else DEFAULT_WORKSPACE,
        spark_master=env.get("COURSE_SPARK_MASTER", "").strip() or "local[2]",
        tracking_uri=env.get("MLFLOW_TRACKING_URI", "").strip() or None,
        delta_jars=delta_jars,
        java_home=env.get("JAVA_HOME", "").strip() or None,
        databricks_runtime=env.get("DATABRICKS_RUNTIME_VERSION", "").strip() or None,
        uc_volume=env.get("COURSE_UC_VOLUME", "").strip() or None,
        name_prefix=env.get("COURSE_NAME_PREFIX", "").strip(),
        registry_uri=env.get("MLFLOW_REGISTRY_URI", "").strip() or None,
    )


def on_databricks() -> bool:
    """True inside a Databricks cluster (which sets DATABRICKS_RUNTIME_VERSION)."""
    return settings().on_databricks


def workspace_dir(*parts: str) -> Path:
    """A folder inside the course workspace, created if needed. Deleting the workspace resets the course."""
    path = settings().workspace.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def display_path(path: str | Path) -> str:
    """A path as a learner should read it, never this machine's: `workspace/...` inside the course workspace
    (wherever COURSE_WORKSPACE puts it, so outputs are the same everywhere), else relative to the repository."""
    path = Path(path).resolve()
    for base, label in ((settings().workspace, "workspace"), (REPO_ROOT, "")):
        try:
            relative = path.relative_to(base)
        except ValueError:
            continue
        return "/".join(part for part in (label, relative.as_posix()) if part and part != ".") or "."
    return path.as_posix()
