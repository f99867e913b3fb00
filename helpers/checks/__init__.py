"""The labs' checks: after each task a check inspects what the learner produced (a run, a registry entry, a table, a
number) and prints one line: "✓ Task N: correct. …", or "✗ Task N: <what is wrong>. Hint: <what to do>". A check
never raises, so a wrong answer never ends in a traceback. One module per lab (lab00 … lab09).
"""
from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

PASSED, FAILED = "✓", "✗"


class Wrong(Exception):
    """What a check found wrong, and a hint at the fix."""

    def __init__(self, problem: str, hint: str):
        super().__init__(problem)
        self.problem, self.hint = problem.rstrip("."), hint.rstrip(".")


def expect(condition: Any, problem: str, hint: str) -> None:
    if not condition:
        raise Wrong(problem, hint)


def is_count(value: Any) -> bool:
    """A whole number, of any kind a correct answer may come as: Python's int, or NumPy's (a count Spark or pandas
    gave), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def is_number(value: Any) -> bool:
    """A real number of any kind a correct answer may come as (Python's or NumPy's, a float32 included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def task(number: int, hint: str) -> Callable:
    """Makes a function that raises Wrong (or returns a sentence about the correct result) into a check that prints
    one line; `hint` is what it says when the check itself cannot read the learner's result."""
    def decorate(check: Callable[..., str | None]) -> Callable[..., None]:
        @functools.wraps(check)
        def run(*args, **kwargs) -> None:
            try:
                detail = check(*args, **kwargs)
            except Wrong as wrong:
                print(f"{FAILED} Task {number}: {wrong.problem}. Hint: {wrong.hint}.")
            except Exception as error:  # the learner's object was not what the task asks for
                print(f"{FAILED} Task {number}: the check could not read your result ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else 'no message'}). Hint: {hint.rstrip('.')}.")
            else:
                print(f"{PASSED} Task {number}: correct.{' ' + detail if detail else ''}")
        return run
    return decorate


def finished_run(run_id: Any, variable: str, experiment_name: str | None = None, how: str | None = None):
    """The MLflow run whose id the learner stored in `variable`; Wrong unless it is a finished run (in the lab's
    experiment, when one is named). `how` says where the id comes from, for a learner who has not set it yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    expect(run_id, f"`{variable}` is still {run_id!r}", how or f"set `{variable}` to the run's id, `run.info.run_id`")
    expect(isinstance(run_id, str), f"`{variable}` is a {type(run_id).__name__}, not a run id",
           f"store `run.info.run_id`, a string, in `{variable}`")
    try:
        run = mlflow.get_run(run_id)
    except MlflowException:
        raise Wrong(f"no run has the id in `{variable}` ({run_id!r})",
                    "copy the id from `run.info.run_id` inside the task's `with mlflow.start_run()` block") from None
    expect(run.info.status == "FINISHED", f"the run in `{variable}` is {run.info.status}, not FINISHED",
           "end it: leave the `with mlflow.start_run():` block, or call `mlflow.end_run()`")
    if experiment_name is not None:
        experiment = mlflow.get_experiment(run.info.experiment_id)
        expect(experiment.name == experiment_name,
               f"the run in `{variable}` is in experiment {experiment.name!r}, not the lab's {experiment_name!r}",
               "run the Setup cell again: it sets the lab's experiment before any run starts")
    return run


def logged_sklearn_model(model_uri: Any, experiment_name: str):
    """The model info of the scikit-learn model at `model_uri`; Wrong unless it has a signature and was logged by a
    finished, live run of the lab's experiment."""
    import mlflow

    expect(model_uri, f"`model_uri` is still {model_uri!r}",
           "set it to the `model_uri` of what mlflow.sklearn.log_model returns")
    expect(isinstance(model_uri, str), f"`model_uri` is a {type(model_uri).__name__}, not a model URI",
           "store `info.model_uri`, a string such as models:/m-..., in `model_uri`")
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception:
        raise Wrong(f"no model is logged at {model_uri!r}",
                    "log the model with mlflow.sklearn.log_model inside `with mlflow.start_run():`, then copy "
                    "`info.model_uri`") from None
    expect("sklearn" in info.flavors, f"the model at {model_uri!r} has the flavors {sorted(info.flavors)}, not sklearn",
           "log the fitted Ridge with mlflow.sklearn.log_model")
    expect(info.run_id, "the model was not logged inside a run", "log it inside `with mlflow.start_run():`")
    run = mlflow.get_run(info.run_id)
    expect(run.info.lifecycle_stage == "active", "the model belongs to a deleted run, left by an earlier run of the lab",
           "run the Setup cell and Task 1 again")
    expect(run.info.status == "FINISHED", f"the model's run is {run.info.status}, not FINISHED",
           "leave the `with mlflow.start_run():` block")
    experiment = mlflow.get_experiment(run.info.experiment_id).name
    expect(experiment == experiment_name,
           f"the model's run is in experiment {experiment!r}, not the lab's", "run the Setup cell again, then Task 1")
    expect(info.signature is not None, "the model has no signature",
           "pass signature=infer_signature(X, ridge.predict(X)) to log_model")
    return info


def pinned_requirements(model_uri: str, packages: dict[str, str], hint: str) -> None:
    """Wrong unless the model's requirements.txt holds exactly these pins: explicit pip_requirements, not the list
    MLflow infers when none are given."""
    import logging
    from pathlib import Path

    import mlflow

    logger = logging.getLogger("mlflow.pyfunc")  # which logs a `%pip install -r <this machine's path>` line
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        requirements = Path(mlflow.pyfunc.get_model_dependencies(model_uri))
    finally:
        logger.setLevel(level)
    lines = [line.strip() for line in requirements.read_text().splitlines() if line.strip() and not line.startswith("#")]
    wanted = [f"{package}=={version}" for package, version in packages.items()]
    missing = [pin for pin in wanted if pin not in lines]
    expect(not missing, f"the model's requirements.txt does not pin {', '.join(missing)}", hint)
    extra = [line for line in lines if line not in wanted]
    expect(not extra, f"the model's requirements.txt also lists {', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}"
           ": MLflow inferred its requirements, so no pip_requirements were given", hint)


def start_over(spark=None, tables: tuple[str, ...] = (), models: tuple[str, ...] = (),
               experiments: tuple[str, ...] = ()) -> None:
    """Drops the lab's own tables and registered models and deletes the runs of its experiments, so that every run
    of a lab starts from nothing and a check never passes on what an earlier run left behind. The lessons' tables,
    models and experiments are never touched."""
    from helpers.spark import drop_tables

    drop_tables(spark, *tables)
    if not (models or experiments):  # a lab without MLflow: no client, which would make a store where none is set
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    for model in models:
        try:
            client.delete_registered_model(model)
        except MlflowException:  # not registered yet
            pass
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            for run in client.search_runs([experiment.experiment_id], max_results=10_000):
                client.delete_run(run.info.run_id)
