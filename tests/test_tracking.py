import os

import mlflow
import pytest

from helpers import tracking
from helpers.tracking import course_experiment, describe_tracking_uri, setup_mlflow, tracking_uri


@pytest.fixture
def restore_mlflow_uri():
    """mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI, which later subprocesses (kernels) would inherit."""
    previous, variable = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(previous)
    if variable is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = variable


def test_default_store_is_sqlite_inside_the_workspace(workspace):
    uri = tracking_uri()
    assert uri == f"sqlite:///{workspace.as_posix()}/mlflow/mlflow.db"
    assert describe_tracking_uri(uri) == "sqlite:///workspace/mlflow/mlflow.db"


def test_mlflow_tracking_uri_wins_when_set(workspace, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    assert tracking_uri() == "http://127.0.0.1:5555"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert tracking_uri() == "http://127.0.0.1:5555"


def test_databricks_uses_the_workspace_tracking_server(workspace, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert tracking_uri() == "databricks"


def test_experiment_on_databricks_is_user_scoped(workspace, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setattr(tracking, "databricks_user", lambda: "ada@example.com")
    assert course_experiment("linregexp") == "/Users/ada@example.com/linregexp"


def test_local_experiment_keeps_runs_and_artifacts_in_the_workspace(workspace, restore_mlflow_uri, capsys):
    setup_mlflow()
    assert "tracking URI sqlite:///workspace/mlflow/mlflow.db" in capsys.readouterr().out
    name = course_experiment("unit-test-experiment")
    assert name == "unit-test-experiment"
    assert course_experiment(name) == name  # a second call reuses it
    experiment = mlflow.get_experiment_by_name(name)
    assert experiment.artifact_location == (workspace / "mlflow" / "artifacts" / name).as_uri()
    mlflow.set_experiment(name)
    with mlflow.start_run():
        mlflow.log_metric("rmse", 1.5)
        mlflow.log_text("hello", "note.txt")
    assert (workspace / "mlflow" / "mlflow.db").is_file()
    assert list((workspace / "mlflow" / "artifacts" / name).rglob("note.txt"))


def test_databricks_default_autologging_is_turned_off(workspace, monkeypatch, restore_mlflow_uri):
    calls = []
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: calls.append(("uri", uri)))
    monkeypatch.setattr(mlflow, "set_registry_uri", lambda uri: calls.append(("registry", uri)))
    monkeypatch.setattr(mlflow, "autolog", lambda **kwargs: calls.append(("autolog", kwargs)))
    setup_mlflow(quiet=True)
    assert calls == [("uri", "databricks"), ("registry", "databricks-uc"), ("autolog", {"disable": True})]


def test_local_runs_leave_autologging_alone(workspace, monkeypatch, restore_mlflow_uri):
    monkeypatch.setattr(mlflow, "autolog", lambda **kwargs: pytest.fail("autologging touched locally"))
    setup_mlflow(quiet=True)


def test_model_names_are_unity_catalog_names_on_databricks(workspace, monkeypatch):
    from helpers.tracking import course_model_name

    assert course_model_name("retail-age-model") == "retail-age-model"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    with pytest.raises(RuntimeError, match="run the notebook's first cells"):  # no catalog is assumed
        course_model_name("retail_age_model")
    monkeypatch.setenv("COURSE_UC_VOLUME", "ml.course.files")
    assert course_model_name("retail_age_model") == "ml.course.retail_age_model"


def test_a_name_prefix_keeps_learners_on_one_server_apart(workspace, monkeypatch, restore_mlflow_uri, capsys):
    from helpers.tracking import course_model_name

    monkeypatch.setenv("COURSE_NAME_PREFIX", "alice_")
    assert course_model_name("retail_age_model") == "alice_retail_age_model"
    setup_mlflow(quiet=True)
    assert course_experiment("retail-age-tuning") == "alice_retail-age-tuning"
    assert mlflow.get_experiment_by_name("alice_retail-age-tuning") is not None
    assert mlflow.get_experiment_by_name("retail-age-tuning") is None  # bob's name stays free
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    monkeypatch.setenv("COURSE_UC_VOLUME", "main.mlflow_course_ada.course")
    monkeypatch.setattr(tracking, "databricks_user", lambda: "ada@example.com")
    assert course_model_name("retail_age_model") == "main.mlflow_course_ada.alice_retail_age_model"
    assert course_experiment("linregexp") == "/Users/ada@example.com/alice_linregexp"


def test_missing_runs_run_the_notebook_that_makes_them(workspace, monkeypatch, restore_mlflow_uri):
    from helpers import execution
    from helpers.tracking import ensure_runs

    setup_mlflow(quiet=True)
    mlflow.set_experiment(course_experiment("prerequisites"))
    with mlflow.start_run(run_name="present"):
        pass
    ran = []
    monkeypatch.setattr(execution, "run_prerequisite", lambda notebook, reason: ran.append((notebook, reason)))
    ensure_runs("prerequisites", ("present",), "02_x.ipynb")
    assert ran == []
    ensure_runs("prerequisites", ("present", "absent"), "02_x.ipynb")
    assert ran == [("02_x.ipynb", "Run absent is not in experiment prerequisites yet")]


def test_setup_puts_this_python_first_on_path(workspace, monkeypatch, restore_mlflow_uri):
    """`mlflow models serve` runs uvicorn, and an MLflow Project its `python`, from PATH: they must be this Python's."""
    import os
    import sys
    from pathlib import Path

    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    setup_mlflow(quiet=True)
    setup_mlflow(quiet=True)  # idempotent: added once
    folders = os.environ["PATH"].split(os.pathsep)
    assert folders[0] == str(Path(sys.executable).parent) and folders.count(folders[0]) == 1


def test_known_mlflow_lines_are_dropped_and_other_warnings_of_the_same_logger_kept(caplog):
    """Lines a lesson explains once (05's env_manager="local") stay out of outputs; a new warning still shows."""
    import logging

    from helpers.tracking import quiet_mlflow

    quiet_mlflow()
    quiet_mlflow()  # idempotent: one filter per logger
    logger = logging.getLogger("mlflow.pyfunc")
    assert sum(type(f).__name__ == "_KnownMessages" for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="mlflow.pyfunc"):
        logger.warning('Calling `spark_udf()` with `env_manager="local"` does not recreate the same environment')
        logger.warning("Something MLflow has not said before")
    assert [r.getMessage() for r in caplog.records if r.name == "mlflow.pyfunc"] == [
        "Something MLflow has not said before"]


def test_register_model_prints_no_progress_lines_but_other_lines_of_its_module_still_show(capsys):
    from mlflow.tracking._model_registry import fluent as registry

    from helpers.tracking import quiet_mlflow

    quiet_mlflow()
    quiet_mlflow()  # idempotent: wrapped once
    registry.eprint("Registered model 'retail_age_model' already exists. Creating a new version of this model...")
    registry.eprint("Created version '3' of model 'retail_age_model'.")
    registry.eprint("Something the registry has not said before")
    assert capsys.readouterr().err.splitlines() == ["Something the registry has not said before"]
