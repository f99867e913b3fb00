"""MLflow set-up: where runs and models are stored (a SQLite store in the workspace by default) and experiment names."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from helpers.config import display_path, settings, workspace_dir

# Known noise that says nothing to a learner (each filter names the exact message it silences).
_QUIET_WARNINGS = (
    r".*PySpark does not yet fully support.*",
    r".*Hint: Inferred schema contains integer column\(s\).*",
    r".*`artifact_path` is deprecated.*",
    r".*IProgress not found.*",  # tqdm in a kernel without ipywidgets; MLflow's progress bars are off anyway
)
# Loggers whose routine lines (store migrations, temporary paths, Databricks SDK probing) mean nothing locally.
_QUIET_LOGGERS = {"alembic": logging.WARNING, "mlflow.store.db.utils": logging.WARNING,
                  "mlflow.store.db": logging.WARNING, "mlflow.tracking.fluent": logging.WARNING,
                  "mlflow.spark": logging.WARNING, "mlflow.utils.databricks_utils": logging.ERROR,
                  "mlflow.projects.utils": logging.WARNING,  # its INFO line names a fresh temporary folder per run
                  "mlflow.projects": logging.WARNING,  # its INFO lines name each run by its id; lessons print versions
                  "mlflow.projects.backend.local": logging.WARNING}  # (its own filter: a parent's skips child records)


# Known MLflow lines that a lesson explains once in its prose, and that would otherwise repeat at every call.
_QUIET_MESSAGES = {
    "mlflow.pyfunc": ("Passing a Python object as `python_model`",  # 03's custom pyfunc explains the choice
                      "Validating input example against model signature",
                      'Calling `spark_udf()` with `env_manager="local"`'),  # 05 explains env_manager="local"
    "mlflow.models.flavor_backend_registry": ("Selected backend for flavor",),
}


# What `mlflow.register_model` prints to stderr (with print, not a logger) at every call: the lessons print the
# version they registered themselves.
_QUIET_REGISTRATION_LINES = ("Successfully registered model ", "Registered model ", "Created version ")


def _registration_lines_dropped(eprint):
    def quiet_eprint(*args, **kwargs):
        if not (args and str(args[0]).startswith(_QUIET_REGISTRATION_LINES)):
            eprint(*args, **kwargs)
    quiet_eprint.course_quiet = True
    return quiet_eprint


class _KnownMessages(logging.Filter):
    """Drops records that start with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class _BelowLevel(logging.Filter):
    """Drops records below a level."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def local_store() -> Path:
    return workspace_dir("mlflow") / "mlflow.db"


def artifact_root() -> Path:
    return workspace_dir("mlflow", "artifacts")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set; on Databricks the workspace's server; else the course's SQLite store."""
    config = settings()
    if config.tracking_uri:
        return config.tracking_uri
    if config.on_databricks:
        return "databricks"
    return f"sqlite:///{local_store().as_posix()}"


def describe_tracking_uri(uri: str) -> str:
    """The tracking URI as a learner should read it (no absolute path of this machine)."""
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{display_path(uri[len('sqlite:///'):])}"
    return uri


def quiet_mlflow() -> None:
    """Keeps MLflow's and its libraries' routine log lines and known warnings out of notebook outputs."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # With a tracking server, every finished run prints "View run <random name> at <url>": noise, and never the same.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name, level in _QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        # MLflow re-applies its logging set-up (dictConfig) now and then, which resets child loggers' levels but
        # keeps their filters: the filter keeps them quiet.
        if not any(isinstance(f, _BelowLevel) for f in logger.filters):
            logger.addFilter(_BelowLevel(level))
    for name, prefixes in _QUIET_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownMessages) for f in logger.filters):
            logger.addFilter(_KnownMessages(prefixes))
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    _log_lines_without_time()
    from mlflow.tracking._model_registry import fluent as registry

    if not getattr(registry.eprint, "course_quiet", False):
        registry.eprint = _registration_lines_dropped(registry.eprint)


def _log_lines_without_time() -> None:
    """MLflow's log lines without their date and time: a cell's output is read later, and would differ every run.
    MLflow reads the format when it (re)configures its loggers, so the format is changed there too."""
    from mlflow.utils import logging_utils

    logging_utils.LOGGING_LINE_FORMAT = "%(levelname)s %(name)s: %(message)s"
    for handler in logging.getLogger("mlflow").handlers:
        if isinstance(handler.formatter, logging_utils.MlflowFormatter):
            handler.setFormatter(logging_utils.MlflowFormatter(fmt=logging_utils.LOGGING_LINE_FORMAT))


def use_this_python() -> None:
    """Puts this Python's scripts folder first on PATH. MLflow runs `uvicorn` (model serving) and an MLflow Project's
    `python` from PATH; in a virtualenv that is not activated they would be missing or another Python's."""
    scripts = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != scripts:
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])


def create_local_store(uri: str) -> None:
    """Creates the SQLite store with the Default experiment's artifacts in the workspace. Left to MLflow, they would
    go to ./mlruns of whichever directory the first client happened to run in (runs of `mlflow run` land there)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, artifact_root().as_uri())


def setup_mlflow(quiet: bool = False) -> str:
    """Points MLflow at the course's tracking store and returns its URI."""
    import mlflow

    quiet_mlflow()
    use_this_python()
    uri = tracking_uri()
    if uri == f"sqlite:///{local_store().as_posix()}" and not local_store().exists():
        create_local_store(uri)
    if uri.startswith(("http://", "https://")):
        check_tracking_server(uri)
    mlflow.set_tracking_uri(uri)
    config = settings()
    if config.on_databricks:
        # registered models live in Unity Catalog (course_model_name); the stand-in names its own registry
        mlflow.set_registry_uri(config.registry_uri or "databricks-uc")
        # Databricks turns autologging on for every notebook; the lessons log explicitly, and show autologging
        # where they teach it, so extra automatic runs would contradict what they print.
        mlflow.autolog(disable=True)
    if not quiet:
        print(f"MLflow {mlflow.__version__}, tracking URI {describe_tracking_uri(uri)}")
    return uri


class TrackingServerError(RuntimeError):
    """The tracking server in MLFLOW_TRACKING_URI does not answer or refuses the configured user."""


def check_tracking_server(uri: str, timeout: float = 10) -> None:
    """One clear sentence now, instead of MLflow retrying a dead server for minutes in the first cell that logs."""
    import requests

    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
    try:
        reply = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                             auth=auth, timeout=timeout)
    except requests.RequestException:
        raise TrackingServerError(f"The MLflow tracking server at {uri} does not answer: start it, or fix or unset "
                                  "MLFLOW_TRACKING_URI (unset, the course uses its own SQLite store).") from None
    if reply.status_code in (401, 403):
        raise TrackingServerError(f"The MLflow tracking server at {uri} refused "
                                  f"{'user ' + repr(user) if user else 'anonymous requests'} ({reply.status_code}): "
                                  "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account.")


def databricks_user() -> str:
    """The e-mail of the Databricks user running the notebook (experiments live under /Users/<e-mail>/)."""
    from pyspark.sql import SparkSession

    return SparkSession.builder.getOrCreate().sql("SELECT current_user()").first()[0]


def course_experiment(name: str) -> str:
    """The experiment path to use: `name` locally, `/Users/<you>/name` on Databricks (as the book writes it);
    COURSE_NAME_PREFIX goes before `name`.

    On the local store the experiment is created with its artifacts inside the course workspace, so runs never
    scatter `mlruns/` folders into whatever directory a notebook was started from.
    """
    import mlflow

    name = settings().name_prefix + name
    if settings().on_databricks:
        return f"/Users/{databricks_user()}/{name}"
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=(artifact_root() / name).as_uri())
    return name


def course_model_name(name: str) -> str:
    """A registered model's name: `name` locally, `<catalog>.<schema>.name` in Unity Catalog on Databricks;
    COURSE_NAME_PREFIX goes before `name`."""
    config = settings()
    name = config.name_prefix + name
    return f"{config.uc_schema}.{name}" if config.on_databricks else name


def ensure_runs(experiment_name: str, run_names: tuple[str, ...], notebook: str) -> None:
    """Makes sure finished runs of these names exist in the experiment; when some are missing, runs `notebook`."""
    import mlflow

    from helpers.execution import run_prerequisite

    found = set()
    if mlflow.get_experiment_by_name(experiment_name) is not None:
        runs = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.status = 'FINISHED'")
        found = set(runs.get("tags.mlflow.runName", []))
    missing = [name for name in run_names if name not in found]
    if missing:
        run_prerequisite(notebook, f"Run {', '.join(missing)} is not in experiment {experiment_name} yet")


def ensure_model_alias(name: str, alias: str, notebook: str) -> None:
    """Makes sure the registered model has the alias; when it does not, runs `notebook`, which sets it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from helpers.execution import run_prerequisite

    try:
        MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        run_prerequisite(notebook, f"Model {name} has no @{alias} alias yet")
