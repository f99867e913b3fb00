"""The training project and the validation gate, for real: `mlflow run`, Spark, Delta and the registry.

A small features table with a real signal stands in for `retail_features`; the project trains on it through
`mlflow run` and through `course-cd4ml`'s in-process training step (the same code), and the gate decides which
versions become @champion.
"""
import importlib.metadata
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from helpers.gate import Thresholds, split, validate
from helpers.pipeline import PROJECT, train as train_step
from helpers.spark import register_workspace_tables

pytestmark = pytest.mark.slow
MODEL = "gate_model"


@pytest.fixture(scope="module")
def course(spark):
    """A features table (version 0) whose label is 30 + 2a - b plus noise, and a tracking store, in one workspace."""
    from pyspark.sql import functions as F

    from helpers import setup_mlflow

    setup_mlflow(quiet=True)
    rows = spark.range(400).select(
        F.col("id").cast("int").alias("CustomerID"),
        (F.col("id") % 13).cast("double").alias("a"),
        (F.col("id") % 7).cast("double").alias("b"))
    noise = (F.abs(F.xxhash64("CustomerID")) % 100 - 50) / 100.0
    rows.withColumn("cust_age", F.lit(30.0) + 2 * F.col("a") - F.col("b") + noise) \
        .write.format("delta").saveAsTable("gate_features")
    yield spark
    mlflow.set_tracking_uri(None)


def train(course, *, via: str, reg_param: float = 0.0) -> str:
    """Runs the project's train entry point through `mlflow run` ("cli") or `course-cd4ml`'s training step in this
    process ("pipeline"); returns the new version of MODEL."""
    if via == "pipeline":
        return train_step(course, "gate_features", "latest", reg_param, 0.0, MODEL)
    client = MlflowClient()
    before = {int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", "train", "--env-manager", "local",
               "-P", "table=gate_features", "-P", f"model_name={MODEL}", "-P", f"reg_param={reg_param}"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)  # PATH: setup_mlflow
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"registered {MODEL} version" in finished.stderr
    after = {int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    (new,) = after - before
    return str(new)


def held_out(course):
    return split(course.read.table("gate_features"))[1]


def champion_of(model: str = MODEL) -> str:
    return str(MlflowClient().get_model_version_by_alias(model, "champion").version)


@pytest.fixture(scope="module")
def champion(course) -> str:
    """A first version of MODEL, trained as the project trains it and promoted by the gate (no champion to beat)."""
    version = train(course, via="pipeline")
    assert validate(course, MODEL, version, held_out(course)).passed
    return version


def test_mlflow_run_trains_on_a_delta_version_and_registers_a_version(course):
    version = train(course, via="cli")
    model_version = MlflowClient().get_model_version(MODEL, version)
    assert model_version.tags["data_version"] == "0" and model_version.tags["table"] == "gate_features"
    run = mlflow.get_run(model_version.run_id)
    assert run.data.params["data_version"] == "latest" and run.data.params["delta_version"] == "0"
    assert run.data.metrics["held_out_rmse"] < 1.0  # the signal is learnable: noise is at most 0.5 years
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["gate_features"]
    # the model states the exact versions a server needs to load it, as 01 and 03 teach
    requirements = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/{version}/requirements.txt"))
    assert sorted(requirements.read_text().split()) == sorted(
        [f"mlflow=={mlflow.__version__}", f"pyspark=={importlib.metadata.version('pyspark')}"])


def test_the_pipelines_training_step_records_what_the_project_records(course):
    version = train(course, via="pipeline", reg_param=0.1)
    run = mlflow.get_run(MlflowClient().get_model_version(MODEL, version).run_id)
    assert run.data.params["reg_param"] == "0.1" and run.data.params["delta_version"] == "0"
    assert run.data.metrics["held_out_rmse"] < 1.0
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["gate_features"]


def test_the_first_version_of_a_model_passes_the_gate_and_becomes_champion(course):
    first_model = f"{MODEL}_first"
    version = train_step(course, "gate_features", "latest", 0.0, 0.0, first_model)
    result = validate(course, first_model, version, held_out(course))
    assert result.passed and result.champion_version is None and "no champion to beat" in result.reason
    assert champion_of(first_model) == version


def test_a_worse_model_never_becomes_champion(course, champion):
    before = champion_of()
    worse = train(course, via="pipeline", reg_param=50.0)  # heavy shrinkage: predictions near the mean age
    result = validate(course, MODEL, worse, held_out(course))
    assert not result.passed and "worse than the champion" in result.reason
    client = MlflowClient()
    assert champion_of() == before
    tags = client.get_model_version(MODEL, worse).tags
    assert tags["validation_status"] == "rejected" and tags["validation_reason"] == result.reason
    assert float(tags["held_out_rmse"]) > float(tags["champion_rmse"])


def test_an_absolute_limit_refuses_even_without_a_better_champion(course, champion):
    version = champion_of()
    result = validate(course, MODEL, version, held_out(course), Thresholds(max_rmse=0.01))
    assert not result.passed and "above the limit" in result.reason
    assert champion_of() == version


def test_a_signed_webhook_delivery_runs_the_gate_and_a_forged_one_changes_nothing(course, tmp_path):
    """The CD4ML loop on real processes: training -> `mlflow server` -> signed webhook -> gate -> @champion.
    Every version the server announces is gated: the first becomes champion, a worse one is refused, an equally
    good one is promoted; only a gate that really ran against the champion gives that sequence."""
    from helpers.webhooks import WebhookReceiver, start_tracking_server

    saved = mlflow.get_tracking_uri()
    gated = []

    def on_delivery(payload: dict) -> None:  # what the CI server does when a version is created
        data = payload["data"]
        if data["name"] == MODEL:
            gated.append(validate(course, data["name"], data["version"], held_out(course)))

    def gate_after(version: str, count: int) -> tuple[str, bool]:
        deadline = time.monotonic() + 120
        while len(gated) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(gated) == count, f"no gate ran for version {version}"
        return gated[-1].version, gated[-1].passed

    secret = "course-webhook-secret"
    with start_tracking_server(tmp_path / "server") as server, \
            WebhookReceiver(secret, on_delivery=on_delivery) as receiver:
        mlflow.set_tracking_uri(server.url)
        try:
            # Before anything is registered: the server caches its webhooks per event for a minute
            # (MLFLOW_WEBHOOK_CACHE_TTL), so a webhook created after a first event could miss the next ones.
            MlflowClient().create_webhook(name="ci", url=receiver.url, events=["model_version.created"],
                                          secret=secret)
            first = train(course, via="pipeline")
            assert gate_after(first, 1) == (first, True) and champion_of() == first
            worse = train(course, via="pipeline", reg_param=50.0)
            assert gate_after(worse, 2) == (worse, False) and champion_of() == first
            better = train(course, via="pipeline")  # as good as the champion: the gate promotes it
            assert gate_after(better, 3) == (better, True) and champion_of() == better

            accepted = len(receiver.accepted)
            forged = {"entity": "model_version", "action": "created", "data": {"name": MODEL, "version": first}}
            reply = requests.post(receiver.url, json=forged, timeout=10,
                                  headers={"X-MLflow-Delivery-Id": "forged", "X-MLflow-Timestamp": "1"})
            assert reply.status_code in (400, 401) and len(receiver.accepted) == accepted
            time.sleep(1)  # a callback, had the forgery been queued, would have run by now
            assert len(gated) == 3 and champion_of() == better
        finally:
            mlflow.set_tracking_uri(saved)


def pipeline(*arguments: str) -> subprocess.CompletedProcess:
    """`course-cd4ml` as a CI server runs it: a new process, the same workspace and tracking store."""
    return subprocess.run([sys.executable, "-m", "helpers.pipeline", "--table", "gate_features",
                           "--model-name", MODEL, *arguments], capture_output=True, text=True, timeout=900)


def test_the_pipeline_command_exits_1_when_the_gate_refuses_and_0_when_it_passes(course, champion):
    client = MlflowClient()
    before = champion_of()
    worse = train(course, via="pipeline", reg_param=50.0)  # registered, not yet validated
    refused = pipeline("--version", worse, "--no-score")  # what a job triggered by the webhook runs
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "the gate refused" in refused.stderr and f"@champion stays version {before}" in refused.stderr
    assert champion_of() == before

    # trained as the champion was (reg_param 0): an equally good model, which the gate promotes
    passed = pipeline("--reg-param", "0", "--date", "2024-12-01")
    assert passed.returncode == 0, passed.stderr[-3000:]
    new = champion_of()
    assert new not in (before, worse) and f"version {new} passed the gate" in passed.stdout
    assert client.get_model_version(MODEL, new).tags["validation_status"] == "passed"
    register_workspace_tables(course)  # the pipeline's own Spark wrote the table
    predictions = course.read.table("retail_predictions").filter("scoring_date = '2024-12-01'")
    assert predictions.count() == 400
    assert {row.model_version for row in predictions.select("model_version").distinct().collect()} == {new}


def test_the_pipeline_command_says_what_is_missing(course):
    missing = pipeline("--table", "no_such_table")
    assert missing.returncode == 2 and "there is no table 'no_such_table'" in missing.stderr
