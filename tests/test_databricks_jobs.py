"""The lessons' Databricks jobs (helpers/databricks_jobs.py), sent by databricks-sdk to the stand-in's Jobs API
(helpers/standin/api.py), which records each request and runs each job's notebook task with papermill."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from helpers.databricks_jobs import (STEP_NOTEBOOK, batch_scoring_job, delivery_job, deploy, describe, nightly_job,
                                     run_now, triggered_run, workspace_path)
from helpers.standin.api import WorkspaceApi
from tests.test_unity_catalog import registry  # noqa: F401 (a fixture: the stand-in registry with three versions)

VOLUME = {"COURSE_UC_VOLUME": "workspace.mlflow_course_learner_1a2b.course"}
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    env = {name: value for name, value in __import__("os").environ.items()
           if not name.startswith(("DATABRICKS_", "COURSE_UC_"))}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'tracking.db'}")
    api = WorkspaceApi(tmp_path / "api", Path(sys.executable), env).start()
    monkeypatch.setenv("DATABRICKS_HOST", api.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "stand-in")
    yield api, WorkspaceClient(host=api.url, token="stand-in")
    api.stop()


def requests_sent(api: WorkspaceApi, path: str) -> list[dict]:
    lines = (api.folder / "requests.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if entry["path"].split("?")[0].rstrip("/").endswith(path)]


def test_the_jobs_api_receives_the_lessons_jobs_as_documented(workspace):
    api, client = workspace
    env = {**VOLUME, "DB_CLUSTER_ID": "1207-000000-dedicated"}
    model = "workspace.mlflow_course_learner_1a2b.retail_age_model"
    delivery = deploy(client, delivery_job(model, env=env))
    sent = requests_sent(api, "/jobs/create")[0]["body"]
    assert sent["trigger"] == {"model": {"condition": "MODEL_VERSION_READY", "securable_name": model},
                               "pause_status": "UNPAUSED"}
    assert sent["parameters"] == [{"name": "arguments", "default": "--version newest --no-score"}]
    task = sent["tasks"][0]
    assert task["existing_cluster_id"] == "1207-000000-dedicated"  # classic compute: the notebook's cluster
    assert task["notebook_task"] == {"notebook_path": workspace_path(STEP_NOTEBOOK), "base_parameters": {
        "command": "course-cd4ml", "arguments": f"--model-name {model} {{{{job.parameters.arguments}}}}",
        "catalog": "workspace", "schema": "mlflow_course_learner_1a2b", "volume": "course"}}

    # a second deploy resets the job of that name (a re-run cell makes no twin), here with the trigger paused
    assert deploy(client, delivery_job(model, paused=True, env=env)) == delivery
    assert len(requests_sent(api, "/jobs/create")) == 1
    assert requests_sent(api, "/jobs/reset")[0]["body"]["new_settings"]["trigger"]["pause_status"] == "PAUSED"

    nightly = requests_sent(api, "/jobs/create")  # serverless: no cluster in the task
    deploy(client, nightly_job(model, "--land data/x.csv.gz --monitor 2024-12", env=VOLUME))
    nightly = requests_sent(api, "/jobs/create")[-1]["body"]
    assert nightly["schedule"] == {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC",
                                   "pause_status": "PAUSED"}
    assert "existing_cluster_id" not in nightly["tasks"][0]
    assert nightly["tasks"][0]["notebook_task"]["base_parameters"]["arguments"].startswith(f"--model-name {model} ")
    on_a_job_cluster = delivery_job(model, env={**env, "DB_IS_JOB_CLUSTER": "TRUE"})  # no other job may use it
    assert on_a_job_cluster.tasks[0].existing_cluster_id is None
    scoring = batch_scoring_job(model, "champion", "2024-12-03", env=VOLUME)
    assert scoring.tasks[0].notebook_task.base_parameters["arguments"] == \
        f"--model models:/{model}@champion --date 2024-12-03"
    with pytest.raises(ValueError, match="not one of the course's commands"):
        from helpers.databricks_jobs import step_task
        step_task("rm -rf", "/")


def test_a_run_executes_the_task_notebook_with_the_jobs_parameters(workspace, tmp_path):
    api, client = workspace
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('arguments = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('print("task got", arguments)\nassert arguments != "fail", "asked to fail"')], metadata=KERNEL)
    nbformat.write(notebook, tmp_path / "task.ipynb")
    settings = jobs.JobSettings(name="echo", parameters=[jobs.JobParameterDefinition("arguments", "default")],
                                tasks=[jobs.Task(task_key="echo", notebook_task=jobs.NotebookTask(
                                    (tmp_path / "task").as_posix(), {"arguments": "{{job.parameters.arguments}}"}))])
    job_id = deploy(client, settings)
    passed = run_now(client, job_id, timeout=120, arguments="--date 2024-12-03")
    assert passed.state.result_state == jobs.RunResultState.SUCCESS, describe(client, passed)
    executed = (api.folder / "runs" / f"run-{passed.run_id}-echo.ipynb").read_text()
    assert "task got --date 2024-12-03" in executed  # run-now's job parameter replaced {{job.parameters.arguments}}
    failed = run_now(client, job_id, timeout=120, arguments="fail")
    assert describe(client, failed).startswith("FAILED") and "AssertionError: asked to fail" in describe(client, failed)


def test_the_step_notebook_fails_the_run_with_the_commands_own_sentence(workspace):
    api, client = workspace
    job_id = deploy(client, batch_scoring_job("retail_age_model_that_is_not_there", "champion", "2024-12-03", env={}))
    run = run_now(client, job_id, timeout=180)
    assert run.state.result_state == jobs.RunResultState.FAILED
    reason = describe(client, run).split(": ", 1)[1]  # the command's own sentence, from the task's run output
    assert reason.startswith("StepFailed: course-batch-score: ") and "retail_age_model_that_is_not_there" in reason
    log = (api.folder / "runs" / f"run-{run.run_id}-course_batch_score.ipynb").read_text()
    assert "retail_age_model_that_is_not_there" in log  # the command's one sentence, in the task's output


def test_a_new_model_version_starts_the_delivery_job(workspace, registry, monkeypatch, tmp_path):  # noqa: F811
    api, client = workspace
    api.env["MLFLOW_REGISTRY_URI"] = registry["mlflow"].get_registry_uri()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('print("gate")')], metadata=KERNEL)
    nbformat.write(notebook, tmp_path / "gate.ipynb")
    settings = delivery_job(registry["model_name"], env={})
    settings.tasks[0].notebook_task.notebook_path = (tmp_path / "gate").as_posix()
    job_id = deploy(client, settings)
    assert triggered_run(client, job_id, 0, timeout=8) is None  # the three versions before the job start nothing
    registry["mlflow"].register_model(registry["model_uri"], registry["model_name"])  # version 4
    run = triggered_run(client, job_id, 0, timeout=60)
    assert run is not None and run.state.result_state == jobs.RunResultState.SUCCESS, run
    deploy(client, delivery_job(registry["model_name"], paused=True, env={}))
    registry["mlflow"].register_model(registry["model_uri"], registry["model_name"])  # version 5: trigger paused
    assert triggered_run(client, job_id, run.end_time + 1, timeout=8) is None


def test_lab_06s_server_on_databricks_is_a_model_serving_endpoint_behind_a_local_address(workspace, registry,  # noqa: F811
                                                                                         monkeypatch):
    """What serve_model returns on Databricks: the lab's plain requests reach the endpoint with the credentials."""
    import requests

    from helpers.model_serving import ServingEndpoint

    api, _ = workspace
    api.env.update(MLFLOW_TRACKING_URI=registry["mlflow"].get_tracking_uri(),
                   MLFLOW_REGISTRY_URI=registry["mlflow"].get_registry_uri())
    server = ServingEndpoint(registry["model_uri"], "workspace.mlflow_course_learner_1a2b.lab_06_ridge").start(120)
    try:
        created = requests_sent(api, "/api/2.0/serving-endpoints")[0]["body"]
        assert created["config"]["served_entities"][0] == {
            "entity_name": "workspace.mlflow_course_learner_1a2b.lab_06_ridge", "entity_version": "1",
            "workload_size": "Small", "scale_to_zero_enabled": True}
        assert requests.get(server.url + "/ping", timeout=10).status_code == 200
        good = requests.post(server.url + "/invocations", json={"dataframe_split": {"columns": ["age"],
                                                                                    "data": [[20.0], [40.0]]}})
        assert good.status_code == 200 and [round(p, 6) for p in good.json()["predictions"]] == [1.0, 3.0]
        bad = requests.post(server.url + "/invocations", json={"rows": [[20.0]]})
        assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST"  # the scoring server's answer
        assert all(entry["path"].startswith("/") for entry in requests_sent(api, "/invocations"))
    finally:
        server.stop()
    assert not server.running and requests_sent(api, f"/serving-endpoints/{server.name}")[-1]["method"] == "DELETE"
