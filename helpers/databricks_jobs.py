"""The course's unattended steps as Databricks Jobs: what runs as a new process on a laptop (05's batch scoring,
08's delivery pipeline, 09's nightly job) is, on Databricks, a job the learner deploys and the workspace runs.

Each job has one notebook task, databricks/jobs/course_step.ipynb, which runs one of the course's commands
(`course-batch-score`, `course-cd4ml`) with the job's arguments, on the learner's schema and volume. The jobs are
defined with databricks-sdk's own request types (`jobs.JobSettings`, `jobs.Task`, `jobs.TriggerSettings`, ...), so
that what the SDK sends is what the Jobs API documents; tests/test_databricks_jobs.py records those requests.

    client = WorkspaceClient()              # a notebook's own credentials on Databricks
    job_id = deploy(client, batch_scoring_job("main.mlflow_course_ada_1a2b.retail_age_model", "champion", "2024-12-03"))
    print(describe(client, run_now(client, job_id)))
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from databricks.sdk.service import jobs

from helpers.config import REPO_ROOT

STEP_NOTEBOOK = REPO_ROOT / "databricks" / "jobs" / "course_step.ipynb"
COMMANDS = ("course-batch-score", "course-cd4ml")
FINAL_STATES = {jobs.RunLifeCycleState.TERMINATED, jobs.RunLifeCycleState.SKIPPED,
                jobs.RunLifeCycleState.INTERNAL_ERROR}
# A triggered run validates the newest version of the model (the one whose registration started it, unless another
# came since: the trigger batches events); the job passes its model's name, which the learner's prefix may change
DELIVERY_ARGUMENTS = "--version newest --no-score"


def workspace_path(path: Path) -> str:
    """A notebook's path as the Jobs API takes it: absolute, without `/Workspace` and without the extension."""
    text = path.with_suffix("").as_posix()
    return text.removeprefix("/Workspace") if text.startswith("/Workspace/") else text


def volume_parameters(env=None) -> dict[str, str]:
    """The learner's catalog, schema and volume, as the step notebook's widgets: the job works where the lesson
    does (the set-up cell chose them and keeps them in COURSE_UC_VOLUME)."""
    env = os.environ if env is None else env
    parts = env.get("COURSE_UC_VOLUME", "").strip().split(".")
    return dict(zip(("catalog", "schema", "volume"), parts)) if len(parts) == 3 else {}


def step_task(command: str, arguments: str, env=None) -> jobs.Task:
    """One task that runs `command arguments` in the step notebook: on the all-purpose cluster this notebook is
    attached to (classic compute sets DB_CLUSTER_ID), else, on serverless compute or a job's own cluster (which no
    other job may use), on serverless compute (a task without compute settings)."""
    if command not in COMMANDS:
        raise ValueError(f"{command!r} is not one of the course's commands: {', '.join(COMMANDS)}")
    env = os.environ if env is None else env
    cluster = env.get("DB_CLUSTER_ID") if env.get("DB_IS_JOB_CLUSTER", "").upper() != "TRUE" else None
    return jobs.Task(task_key=command.replace("-", "_"),
                     notebook_task=jobs.NotebookTask(notebook_path=workspace_path(STEP_NOTEBOOK),
                                                     base_parameters={"command": command, "arguments": arguments,
                                                                      **volume_parameters(env)}),
                     existing_cluster_id=cluster or None)


def job_name(model_name: str, purpose: str) -> str:
    """`main.mlflow_course_ada_1a2b.retail_age_model: batch scoring`: a learner's model name is theirs alone, so the
    job's name is too."""
    return f"{model_name}: {purpose}"


def batch_scoring_job(model_name: str, alias: str, date: str, env=None) -> jobs.JobSettings:
    """05: score the feature table with the model an alias points at, for one day."""
    return jobs.JobSettings(
        name=job_name(model_name, "batch scoring"), max_concurrent_runs=1, tags={"course": "mlflow-spark"},
        tasks=[step_task("course-batch-score", f"--model models:/{model_name}@{alias} --date {date}", env)])


def delivery_job(model_name: str, paused: bool = False, env=None) -> jobs.JobSettings:
    """08: Unity Catalog's counterpart of a registry webhook. A model update trigger starts the job when a new
    version of the model is ready; the job validates it with 07's gate and promotes it. A run started by hand may
    pass other arguments (`job_parameters={"arguments": ...}`), for example to train a version first. `paused`
    keeps the job and stops the trigger, as deleting 08's webhook does locally."""
    return jobs.JobSettings(
        name=job_name(model_name, "delivery"), max_concurrent_runs=1, tags={"course": "mlflow-spark"},
        parameters=[jobs.JobParameterDefinition(name="arguments", default=DELIVERY_ARGUMENTS)],
        # the model's name outside the parameter, so that a run by hand with other arguments gates the same model
        trigger=jobs.TriggerSettings(
            model=jobs.ModelTriggerConfiguration(
                condition=jobs.ModelTriggerConfigurationCondition.MODEL_VERSION_READY, securable_name=model_name),
            pause_status=jobs.PauseStatus.PAUSED if paused else jobs.PauseStatus.UNPAUSED),
        tasks=[step_task("course-cd4ml", f"--model-name {model_name} {{{{job.parameters.arguments}}}}", env)])


def nightly_job(model_name: str, arguments: str, env=None) -> jobs.JobSettings:
    """09: land the day's data, monitor @champion and retrain on drift, every night at 02:00 UTC. The schedule is
    created paused: the course's months are history, so the lesson runs it once by hand."""
    return jobs.JobSettings(
        name=job_name(model_name, "nightly"), max_concurrent_runs=1, tags={"course": "mlflow-spark"},
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 2 * * ?", timezone_id="UTC",
                                   pause_status=jobs.PauseStatus.PAUSED),
        tasks=[step_task("course-cd4ml", f"--model-name {model_name} {arguments}", env)])


def deploy(client, settings: jobs.JobSettings) -> int:
    """Creates the job, or resets the one of that name to these settings (running a cell again makes no twin).
    Model update triggers are in Beta: a workspace that refuses one gets the job without it, and a sentence."""
    from databricks.sdk.errors import DatabricksError

    try:
        for existing in client.jobs.list(name=settings.name):
            client.jobs.reset(existing.job_id, new_settings=settings)
            return existing.job_id
        fields = {name: value for name, value in vars(settings).items() if value is not None}
        return client.jobs.create(**fields).job_id
    except DatabricksError as error:
        if settings.trigger is None or "trigger" not in str(error).lower():
            raise
        print(f"This workspace refused the job's model update trigger ({error}); the job is deployed without it, "
              "and the lesson starts it by hand.")
        return deploy(client, replace(settings, trigger=None))


def wait_for_run(client, run_id: int, timeout: float = 1800) -> jobs.Run:
    """The run once it has ended (whatever its result: the caller prints it)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.jobs.get_run(run_id)
        if run.state and run.state.life_cycle_state in FINAL_STATES:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"job run {run_id} did not end within {timeout:.0f} s; follow it in Jobs & Pipelines.")
        time.sleep(5)


def run_now(client, job_id: int, timeout: float = 1800, **job_parameters: str) -> jobs.Run:
    """Starts the job by hand, as "Run now" in the Jobs UI does, and waits for it to end."""
    started = client.jobs.run_now(job_id, job_parameters=job_parameters or None)
    return wait_for_run(client, started.run_id, timeout)


def triggered_run(client, job_id: int, since_ms: int, timeout: float) -> jobs.Run | None:
    """The first run of the job that its trigger started after `since_ms` (epoch ms), once it has ended; None if no
    trigger fired within `timeout` seconds (model update triggers poll about once a minute)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [run for run in client.jobs.list_runs(job_id=job_id, start_time_from=since_ms)
                if run.trigger != jobs.TriggerType.ONE_TIME]
        if runs:
            return wait_for_run(client, min(runs, key=lambda run: run.start_time or 0).run_id)
        time.sleep(5)
    return None


def describe(client, run: jobs.Run) -> str:
    """`SUCCESS after 48 s`, or `FAILED after 52 s: <the failed task's error>` (from the task's run output, where the
    step notebook puts the command's own sentence), for the lesson's output."""
    state = run.state or jobs.RunState(life_cycle_state=jobs.RunLifeCycleState.PENDING)
    result = state.result_state.value if state.result_state else state.life_cycle_state.value
    seconds = max(0, ((run.end_time or 0) - (run.start_time or 0)) / 1000)
    if result == "SUCCESS":
        return f"{result} after {seconds:.0f} s"
    errors = [client.jobs.get_run_output(task.run_id).error for task in run.tasks or []
              if task.state and task.state.result_state and task.state.result_state.value != "SUCCESS"]
    reason = next((error for error in errors if error), state.state_message)
    return f"{result} after {seconds:.0f} s" + (f": {reason}" if reason else "")


class StepFailed(RuntimeError):
    """A course command ended with a non-zero exit code; the message is the command's own last sentence."""


def run_step(command: str, arguments: str) -> None:
    """What the step notebook runs: the command's main() with these arguments. Its sentences still reach the task's
    output; the last one it wrote to stderr becomes the error of a failed run, so the job's page says why."""
    import contextlib
    import io
    import shlex
    import sys

    from helpers import pipeline, scoring

    steps = {"course-batch-score": scoring.main, "course-cd4ml": pipeline.main}
    if command not in steps:
        raise ValueError(f"The job asks for {command!r}; the step notebook runs {' or '.join(steps)}.")

    shown = sys.stderr  # the task's output

    class Tee(io.StringIO):
        def write(self, text: str) -> int:
            shown.write(text)
            return super().write(text)

    said = Tee()
    with contextlib.redirect_stderr(said):
        try:
            exit_code = steps[command](shlex.split(arguments))
        except SystemExit as wrong:  # argparse refused the job's arguments (its usage line is above)
            exit_code = wrong.code
    if exit_code:
        lines = [line for line in said.getvalue().splitlines() if line.startswith(f"{command}:")]
        raise StepFailed(lines[-1] if lines else f"{command} ended with exit code {exit_code}.")
