import pytest

from helpers.config import DEFAULT_WORKSPACE, REPO_ROOT, display_path, on_databricks, settings, workspace_dir


def test_defaults_without_any_variable(workspace, monkeypatch):
    monkeypatch.delenv("COURSE_WORKSPACE")
    config = settings()
    assert config.workspace == DEFAULT_WORKSPACE == REPO_ROOT / "workspace"
    assert config.spark_master == "local[2]"
    assert config.tracking_uri is None
    assert config.delta_jars == "auto"
    assert not config.on_databricks


def test_variables_override_the_defaults(workspace, monkeypatch):
    monkeypatch.setenv("COURSE_SPARK_MASTER", "spark://127.0.0.1:7077")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("COURSE_DELTA_JARS", " Maven ")
    config = settings()
    assert config.workspace == workspace
    assert config.spark_master == "spark://127.0.0.1:7077"
    assert config.tracking_uri == "http://127.0.0.1:5000"
    assert config.delta_jars == "maven"


def test_an_unknown_delta_jar_mode_is_refused_with_the_choices(workspace, monkeypatch):
    monkeypatch.setenv("COURSE_DELTA_JARS", "ivy")
    with pytest.raises(ValueError, match="auto, spark, maven"):
        settings()


def test_databricks_is_detected_from_its_runtime_variable(workspace, monkeypatch):
    assert not on_databricks()
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert on_databricks()


def test_workspace_dir_creates_folders_inside_the_workspace(workspace):
    folder = workspace_dir("mlflow", "artifacts")
    assert folder.is_dir() and folder.parent.parent == workspace


def test_display_path_never_shows_this_machine(workspace, monkeypatch):
    assert display_path(REPO_ROOT / "data" / "products.csv") == "data/products.csv"
    assert display_path(workspace / "logs" / "spark.log") == "workspace/logs/spark.log"  # wherever it is
    assert display_path(workspace) == "workspace"
    assert display_path(REPO_ROOT) == "."
    assert display_path("/opt/elsewhere/file") == "/opt/elsewhere/file"
    monkeypatch.delenv("COURSE_WORKSPACE")
    assert display_path(DEFAULT_WORKSPACE / "logs") == "workspace/logs"
    assert display_path(DEFAULT_WORKSPACE) == "workspace"
