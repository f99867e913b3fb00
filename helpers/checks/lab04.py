"""Checks for lab 04: two registered versions, their descriptions and tags, @champion with a @previous to roll back to."""
from __future__ import annotations

from helpers.checks import Wrong, expect, finished_run, is_count, is_number, pinned_requirements, task

EXPERIMENT = "lab-04-registry"
MODEL = "lab_04_age"
FEATURE_SETS = {
    "spend": ["num_invoices", "total_spend", "avg_basket_value", "lines_per_invoice", "avg_quantity", "avg_unit_price"],
    "habits": ["avg_hour", "weekend_share", "share_gadgets", "share_gaming", "share_garden", "share_home_decor",
               "share_party", "share_toys", "share_vintage"],
}
REGISTER_HINT = "keep what mlflow.register_model(f\"runs:/{run.info.run_id}/model\", model_name) returns"


def _model_name() -> str:
    from helpers.tracking import course_model_name

    return course_model_name(MODEL)


def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def _version(value, variable: str):
    """The registered version the learner kept in `variable`, read again from the registry."""
    from mlflow.exceptions import MlflowException

    expect(value is not None, f"`{variable}` is still None", f"{REGISTER_HINT} in `{variable}`")
    expect(hasattr(value, "version") and hasattr(value, "name"),
           f"`{variable}` is a {type(value).__name__}, not the ModelVersion that register_model returns",
           f"{REGISTER_HINT} in `{variable}`")
    name = _model_name()
    expect(value.name == name, f"`{variable}` is a version of {value.name!r}, not of the lab's model {name!r}",
           "register under `model_name`, set in the Setup cell")
    try:
        version = _client().get_model_version(name, value.version)
    except MlflowException:
        raise Wrong(f"the lab's model has no version {value.version} (Setup deletes the model, so `{variable}` is "
                    "from an earlier attempt)", "run Task 1 again after the Setup cell") from None
    expect(version.status == "READY", f"version {version.version} is {version.status}, not READY",
           "wait for the registration to finish, then run the check again")
    return version


def _versions(spend_version, habits_version):
    spend, habits = _version(spend_version, "spend_version"), _version(habits_version, "habits_version")
    expect(int(spend.version) != int(habits.version), f"`spend_version` and `habits_version` are both version "
           f"{spend.version}", "register each candidate's run separately and keep each result")
    return spend, habits


def _run(version, variable: str):
    from helpers import course_experiment

    run = finished_run(version.run_id, f"{variable}.run_id", course_experiment(EXPERIMENT))
    expect(run.info.lifecycle_stage == "active", f"the run of `{variable}` was deleted (an earlier attempt?)",
           "run the Setup cell, then Task 1 again")
    return run


def _test_rmse(version, variable: str) -> float:
    rmse = _run(version, variable).data.metrics.get("test_rmse")
    expect(rmse is not None, f"the run of version {version.version} has no metric `test_rmse`",
           "in each candidate's run, mlflow.log_metric(\"test_rmse\", evaluator.evaluate(pipeline.transform(test)))")
    return rmse


def _verdict(spend, habits) -> tuple[int, int, dict]:
    """(the version that should pass, the one that should fail, test RMSE per version number)."""
    rmse = {int(spend.version): _test_rmse(spend, "spend_version"), int(habits.version): _test_rmse(habits, "habits_version")}
    winner = min(rmse, key=rmse.get)
    return winner, next(v for v in rmse if v != winner), rmse


def _alias(alias: str, hint: str):
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(_model_name(), alias)
    except MlflowException:
        raise Wrong(f"the lab's model has no @{alias} alias", hint) from None


def _test_set(spark):
    from pyspark.sql import functions as F

    return spark.read.table("retail_features").filter(F.abs(F.xxhash64("CustomerID")) % 10 == 0)


def _numbers(value, variable: str, how: str) -> list[int]:
    expect(value is not None, f"`{variable}` is still None", how)
    expect(isinstance(value, (list, tuple)) and all(is_count(v) for v in value),
           f"`{variable}` is {value!r}, not a list of version numbers (int)",
           "convert each found version with int(version.version)")
    expect(list(value) == sorted(value), f"`{variable}` is not sorted", "wrap the list in sorted(...)")
    return list(value)


@task(1, hint=REGISTER_HINT)
def task1(spark, spend_version, habits_version) -> str:
    import mlflow.spark
    import pyspark
    from mlflow.models import get_model_info
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.regression import LinearRegressionModel

    spend, habits = _versions(spend_version, habits_version)
    expect(spend.run_id != habits.run_id, f"versions {spend.version} and {habits.version} come from the same run",
           "give each candidate a run of its own: one `with mlflow.start_run():` per feature set")
    test = _test_set(spark)
    evaluator = RegressionEvaluator(labelCol="cust_age", metricName="rmse")
    found = {}
    for (feature_set, columns), version, variable in zip(FEATURE_SETS.items(), (spend, habits),
                                                          ("spend_version", "habits_version")):
        uri = f"models:/{_model_name()}/{version.version}"
        info = get_model_info(uri)
        expect("spark" in info.flavors, f"version {version.version} has flavors {sorted(info.flavors)}, no spark",
               "log each pipeline with mlflow.spark.log_model(pipeline, artifact_path=\"model\", ...)")
        expect(info.signature is not None, f"version {version.version}'s model has no signature",
               "pass signature=infer_signature(example, predictions) to mlflow.spark.log_model")
        inputs = info.signature.inputs.input_names()
        expect(sorted(inputs) == sorted(columns), f"`{variable}` (version {version.version}) takes {inputs}, not the "
               f"{feature_set} columns", f"train the {feature_set} candidate on {', '.join(columns)}")
        pinned_requirements(uri, {"pyspark": pyspark.__version__, "mlflow": mlflow.__version__},
                            'pass pip_requirements=[f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}"]')
        rmse = _test_rmse(version, variable)
        model = mlflow.spark.load_model(uri)
        regression = model.stages[-1]
        expect(isinstance(regression, LinearRegressionModel), f"version {version.version}'s last stage is "
               f"{type(regression).__name__}, not a LinearRegressionModel",
               "use the lessons' pipeline: a VectorAssembler, then LinearRegression")
        expect(regression.getRegParam() == 0.01 and regression.getMaxIter() == 10,
               f"version {version.version}'s regression has regParam={regression.getRegParam()}, "
               f"maxIter={regression.getMaxIter()}", "use LinearRegression(labelCol=\"cust_age\", maxIter=10, regParam=0.01)")
        recomputed = evaluator.evaluate(model.transform(test))
        expect(abs(recomputed - rmse) < 1e-6, f"the run of version {version.version} logged test_rmse {rmse:.4f}, "
               f"and its model's RMSE on the test customers is {recomputed:.4f}",
               "evaluate on the test customers (bucket 0) with RegressionEvaluator(labelCol=\"cust_age\")")
        found[feature_set] = (version.version, rmse)
    return (f"Version {found['spend'][0]} (spend) has test RMSE {found['spend'][1]:.3f}, "
            f"version {found['habits'][0]} (habits) {found['habits'][1]:.3f}.")


@task(2, hint="client.update_model_version(model_name, version, description=...) and client.set_model_version_tag")
def task2(spend_version, habits_version) -> str:
    spend, habits = _versions(spend_version, habits_version)
    winner, loser, rmse = _verdict(spend, habits)
    for version in (spend, habits):
        number = int(version.version)
        expect((version.description or "").strip(), f"version {number} has no description",
               "client.update_model_version(model_name, version, description=\"...\")")
        tag = version.tags.get("test_rmse")
        expect(tag is not None, f"version {number} has no tag `test_rmse`",
               "client.set_model_version_tag(model_name, version, \"test_rmse\", f\"{rmse:.3f}\")")
        expect(tag == f"{rmse[number]:.3f}", f"version {number}'s test_rmse tag is {tag!r}, and its run's metric is "
               f"{rmse[number]:.3f} rounded", "take the metric from mlflow.get_run(version.run_id).data.metrics[\"test_rmse\"] "
               "and format it with f\"{rmse:.3f}\"")
        status, expected = version.tags.get("validation_status"), "passed" if number == winner else "failed"
        expect(status == expected, f"version {number}'s validation_status is {status!r}; with test RMSE "
               f"{rmse[number]:.3f} against {rmse[loser if number == winner else winner]:.3f} it should be "
               f"{expected!r}", "tag the version with the lower test RMSE `passed`, the other `failed`")
    return f"Version {winner} passed (test RMSE {rmse[winner]:.3f}), version {loser} failed ({rmse[loser]:.3f})."


@task(3, hint="promoted = int(client.get_model_version_by_alias(model_name, \"champion\").version)")
def task3(spend_version, habits_version, promoted) -> str:
    spend, habits = _versions(spend_version, habits_version)
    winner, _, _ = _verdict(spend, habits)
    set_hint = "client.set_registered_model_alias(model_name, \"champion\", version)"
    previous_hint = ("before moving @champion, client.set_registered_model_alias(model_name, \"previous\", "
                     "client.get_model_version_by_alias(model_name, \"champion\").version) (if Task 4 already "
                     "deleted it, run the Setup cell and Tasks 1 to 3 again)")
    champion = _alias("champion", set_hint)
    previous = _alias("previous", previous_hint)
    expect(int(previous.version) == int(spend.version), f"@previous is version {previous.version}, not the first "
           f"champion, the spend version ({spend.version})",
           f"point @champion at spend_version.version first; then {previous_hint}")
    expect(int(champion.version) == winner, f"@champion is version {champion.version}, and the version that passed "
           f"validation is {winner}", "after setting @previous, client.set_registered_model_alias(model_name, "
           "\"champion\", <the version tagged passed>)")
    expect(promoted is not None, "`promoted` is still None",
           "promoted = int(client.get_model_version_by_alias(model_name, \"champion\").version)")
    expect(is_count(promoted), f"`promoted` is {promoted!r}, not a "
           "version number (int)", "promoted = int(client.get_model_version_by_alias(model_name, \"champion\").version)")
    expect(promoted == winner, f"`promoted` is {promoted}, and @champion is version {winner}",
           "read it after moving @champion: client.get_model_version_by_alias(model_name, \"champion\")")
    return f"@champion moved to version {winner}; @previous keeps version {spend.version} to roll back to."


@task(4, hint="champion_model = mlflow.spark.load_model(f\"models:/{model_name}@champion\") after the rollback")
def task4(spend_version, champion_model, champion_rmse) -> str:
    from mlflow.exceptions import MlflowException
    from pyspark.ml import PipelineModel

    spend = _version(spend_version, "spend_version")
    champion = _alias("champion", "client.set_registered_model_alias(model_name, \"champion\", "
                                  "client.get_model_version_by_alias(model_name, \"previous\").version)")
    expect(int(champion.version) == int(spend.version), f"@champion is version {champion.version}, not the first "
           f"champion, the spend version ({spend.version}), which @previous should have kept in Task 3",
           "make Task 3 pass its check first; then move @champion to client.get_model_version_by_alias(model_name, "
           "\"previous\").version, then delete @previous (run Task 3 again first if @previous is gone)")
    try:
        _client().get_model_version_by_alias(_model_name(), "previous")
    except MlflowException:
        pass
    else:
        raise Wrong("@previous still exists", "client.delete_registered_model_alias(model_name, \"previous\")")
    load_hint = "champion_model = mlflow.spark.load_model(f\"models:/{model_name}@champion\"), after the rollback"
    expect(champion_model is not None, "`champion_model` is still None", load_hint)
    expect(isinstance(champion_model, PipelineModel), f"`champion_model` is a {type(champion_model).__name__}, not "
           "the PipelineModel that mlflow.spark.load_model returns", load_hint)
    columns = champion_model.stages[0].getInputCols() if champion_model.stages else []
    expect(sorted(columns) == sorted(FEATURE_SETS["spend"]), f"`champion_model` uses {columns}: it is not the "
           "version @champion points at now", load_hint)
    rmse = _test_rmse(spend, "spend_version")
    expect(is_number(champion_rmse),
           f"`champion_rmse` is {champion_rmse!r}, not a number", "champion_rmse = evaluator.evaluate("
           "champion_model.transform(test))")
    expect(abs(champion_rmse - rmse) < 1e-6, f"`champion_rmse` is {champion_rmse:.4f}, and the champion's test RMSE "
           f"is {rmse:.4f}", "evaluate champion_model on the test customers (bucket 0) with Task 1's evaluator")
    return f"@champion is version {spend.version} again; loaded by its alias it scores test RMSE {rmse:.3f}."


@task(5, hint="client.search_model_versions(f\"name = '{model_name}'\"), then [int(v.version) for v in ...]")
def task5(all_versions, passed_versions) -> str:
    mine_all = _numbers(all_versions, "all_versions", f"all_versions = sorted(int(v.version) for v in "
                        f"client.search_model_versions(f\"name = '{{model_name}}'\"))")
    mine_passed = _numbers(passed_versions, "passed_versions", "search with the filter f\"name = '{model_name}' "
                           "and tags.validation_status = 'passed'\"")
    name, client = _model_name(), _client()
    numbers = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    expect(numbers, "the lab's model has no versions", "run the Setup cell, then Tasks 1 to 4")
    passed = sorted(n for n in numbers if client.get_model_version(name, n).tags.get("validation_status") == "passed")
    expect(passed, "no version of the lab's model is tagged validation_status = passed", "run Task 2 again")
    expect(mine_all == numbers, f"`all_versions` is {mine_all}; the model has versions {numbers}",
           "search by name only, without any tag filter")
    expect(mine_passed == passed, f"`passed_versions` is {mine_passed}; the versions tagged passed are {passed}",
           "add `and tags.validation_status = 'passed'` to the name filter")
    return (f"{len(numbers)} versions; passed validation: version{'s' if len(passed) > 1 else ''} "
            f"{', '.join(map(str, passed))}.")
