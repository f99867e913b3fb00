"""Checks for lab 07: three versions trained as the project trains, the gate's comparison, a tolerance and verdicts."""
from __future__ import annotations

from helpers.checks import Wrong, expect, finished_run, is_count, is_number, task

TABLE = "retail_features"
# What Task 1 asks for: each variable's version and the (reg_param, elastic_net_param) it is trained with.
SPEC = {"champion_version": (0.1, 0.0), "steady_version": (0.0, 0.0), "sparse_version": (0.3, 1.0)}
TOLERANCE = 1e-6
_scores: dict[tuple[str, str, str], dict] = {}  # (model, version, run id) -> what the check measured on it


def _model_name() -> str:
    from helpers.tracking import course_model_name

    return course_model_name("lab_07_gate")


def _experiment() -> str:
    from helpers.tracking import course_experiment

    return course_experiment("lab_07_gate")


def _latest_delta(spark) -> int:
    return spark.sql(f"DESCRIBE HISTORY {TABLE} LIMIT 1").first()["version"]


def _held_out(spark):
    from helpers.gate import split

    return split(spark.read.option("versionAsOf", _latest_delta(spark)).table(TABLE))[1]


def _number(value, variable: str) -> str:
    expect(value is not None, f"`{variable}` is still None",
           "run Task 1 first: `train_version(...)` returns the number of the version it registered")
    expect((isinstance(value, str) or is_count(value)) and str(value).isdigit(),
           f"`{variable}` is {value!r}, not a version number",
           "return `str(registered.version)`, where `registered` is what `mlflow.register_model` returned")
    return str(value)


def _by_version(answers: dict) -> dict:
    """`answers` keyed as Task 1 keys versions, by their numbers as strings: an int or NumPy key is as correct."""
    return {str(key) if is_count(key) else key: value for key, value in answers.items()}


def _model_version(version: str, variable: str):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version(_model_name(), version)
    except MlflowException:
        raise Wrong(f"model {_model_name()} has no version {version} (the one in `{variable}`)",
                    "register the run's model with mlflow.register_model(f\"runs:/{run.info.run_id}/model\", "
                    "model_name, tags=...) and return the version it registered") from None


def _versions(champion_version, steady_version, sparse_version) -> dict[str, str]:
    """Task 1's three version numbers, by variable name, each an existing version of the lab's model."""
    given = {"champion_version": champion_version, "steady_version": steady_version, "sparse_version": sparse_version}
    numbers = {variable: _number(value, variable) for variable, value in given.items()}
    expect(len(set(numbers.values())) == 3, f"two of the three variables hold the same version ({numbers})",
           "call train_version three times and keep each call's answer in its own variable")
    for variable, version in numbers.items():
        _model_version(version, variable)
    return numbers


def _score(spark, version: str) -> dict:
    """The version's RMSE on the held-out customers and its regression parameters, measured here (and remembered)."""
    import mlflow.spark
    from pyspark.ml.evaluation import RegressionEvaluator

    from helpers.features import LABEL

    key = (_model_name(), version, _model_version(version, "your variable").run_id or "")
    if key not in _scores:
        model = mlflow.spark.load_model(f"models:/{_model_name()}/{version}")
        regression = model.stages[-1]
        _scores[key] = {
            "rmse": RegressionEvaluator(labelCol=LABEL, metricName="rmse").evaluate(model.transform(_held_out(spark))),
            "reg_param": regression.getRegParam(), "elastic_net_param": regression.getElasticNetParam(),
            "max_iter": regression.getMaxIter()}
    return _scores[key]


def _rmses(spark, numbers: dict[str, str]) -> dict[str, float]:
    return {variable: _score(spark, version)["rmse"] for variable, version in numbers.items()}


@task(1, hint="train_version must return the registered version's number, e.g. str(registered.version)")
def task1(spark, champion_version, steady_version, sparse_version) -> str:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    numbers = _versions(champion_version, steady_version, sparse_version)
    delta = _latest_delta(spark)
    for variable, (reg_param, elastic_net_param) in SPEC.items():
        version = _model_version(numbers[variable], variable)
        expect(version.run_id, f"version {version.version} (`{variable}`) was not registered from a run",
               "register f\"runs:/{run.info.run_id}/model\", the model the run logged")
        run = finished_run(version.run_id, variable, _experiment())
        params, metrics = run.data.params, run.data.metrics
        for name, wanted in (("reg_param", reg_param), ("elastic_net_param", elastic_net_param)):
            expect(name in params, f"the run of `{variable}` has no parameter `{name}`",
                   "log it with mlflow.log_params({\"reg_param\": ..., \"elastic_net_param\": ..., "
                   "\"delta_version\": ...}) inside the run")
            expect(float(params[name]) == wanted, f"the run of `{variable}` logged {name}={params[name]}, "
                   f"the task asks for {wanted}", f"train `{variable}` with train_version({reg_param}, "
                   f"{elastic_net_param})")
        expect(params.get("delta_version") == str(delta),
               f"the run of `{variable}` logged delta_version={params.get('delta_version')!r}; the latest version "
               f"of {TABLE} is {delta}", "read the version from spark.sql(\"DESCRIBE HISTORY retail_features "
               "LIMIT 1\").first()[\"version\"] and log it as `delta_version`")
        tags = version.tags
        expect(tags.get("table") == TABLE and tags.get("data_version") == str(delta),
               f"version {version.version} (`{variable}`) is tagged table={tags.get('table')!r}, "
               f"data_version={tags.get('data_version')!r}",
               f"register it with tags={{\"table\": \"{TABLE}\", \"data_version\": str(delta_version)}}")
        measured = _score(spark, version.version)
        expect((measured["reg_param"], measured["elastic_net_param"]) == (reg_param, elastic_net_param)
               and measured["max_iter"] == 50,
               f"the model of `{variable}` was fitted with regParam={measured['reg_param']}, "
               f"elasticNetParam={measured['elastic_net_param']}, maxIter={measured['max_iter']}",
               f"fit LinearRegression(..., maxIter=50, regParam={reg_param}, elasticNetParam={elastic_net_param}) "
               "and log that fitted pipeline")
        expect("held_out_rmse" in metrics, f"the run of `{variable}` has no metric `held_out_rmse`",
               "log it with mlflow.log_metric(\"held_out_rmse\", rmse)")
        expect(abs(metrics["held_out_rmse"] - measured["rmse"]) < TOLERANCE,
               f"the run of `{variable}` logged held_out_rmse {metrics['held_out_rmse']:.4f}, and its model's RMSE "
               f"on the held-out customers is {measured['rmse']:.4f}",
               "evaluate on the second part of split(data), the held-out tenth, with RegressionEvaluator "
               "(metricName=\"rmse\")")
    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(_model_name(), "champion")
    except MlflowException:
        raise Wrong("no version of the lab's model has the `champion` alias",
                    "client.set_registered_model_alias(model_name, \"champion\", champion_version)") from None
    moved_by_gate = champion.tags.get("validation_status") == "passed"  # Task 4 moved it
    expect(str(champion.version) == numbers["champion_version"] or moved_by_gate,
           f"@champion is version {champion.version}, not `champion_version` ({numbers['champion_version']})",
           "client.set_registered_model_alias(model_name, \"champion\", champion_version)")
    return (f"versions {', '.join(numbers.values())} learned from {TABLE} version {delta}, and each says so; "
            f"@champion is version {champion.version}.")


@task(2, hint="`held_out` must be a DataFrame and `rmse_by_version` a dict from version strings to RMSEs")
def task2(spark, held_out, rmse_by_version, champion_version, steady_version, sparse_version) -> str:
    from pyspark.sql import functions as F

    expect(held_out is not None, "`held_out` is still None",
           "held_out = split(spark.read.table(\"retail_features\"))[1], the held-out tenth")
    expect(rmse_by_version is not None, "`rmse_by_version` is still None",
           "build it with {version: held_out_rmse(version) for version in (champion_version, steady_version, "
           "sparse_version)}")
    numbers = _versions(champion_version, steady_version, sparse_version)
    expect(hasattr(held_out, "columns") and hasattr(held_out, "count"),
           f"`held_out` is a {type(held_out).__name__}, not a DataFrame", "take the second part of split(...)")
    expected_ids = {row[0] for row in _held_out(spark).select("CustomerID").collect()}
    given_ids = {row[0] for row in held_out.select("CustomerID").collect()}
    expect(given_ids == expected_ids,
           f"`held_out` has {len(given_ids)} customers, {len(given_ids & expected_ids)} of them held out; the "
           f"held-out tenth has {len(expected_ids)}",
           "split(...) returns (train, held_out): keep the second part, [1]")
    expect(isinstance(rmse_by_version, dict), f"`rmse_by_version` is a {type(rmse_by_version).__name__}, not a dict",
           "make it a dict: {version: held_out_rmse(version) for version in ...}")
    rmse_by_version = _by_version(rmse_by_version)
    keys = set(rmse_by_version)
    expect(keys == set(numbers.values()), f"`rmse_by_version` has the keys {sorted(keys, key=str)}, and the three "
           f"versions are {sorted(numbers.values(), key=int)}",
           "use the version numbers of Task 1 as its keys")
    rmses = _rmses(spark, numbers)
    for variable, version in numbers.items():
        given = rmse_by_version[version]
        expect(is_number(given) and abs(given - rmses[variable]) < TOLERANCE,
               f"`rmse_by_version[{version!r}]` is {given!r}; version {version}'s RMSE on the held-out customers is "
               f"{rmses[variable]:.4f}", "load models:/<model_name>/<version> with mlflow.spark.load_model, "
               "transform `held_out` and evaluate with RegressionEvaluator(metricName=\"rmse\")")
    champion = rmses["champion_version"]
    return (f"the champion's RMSE is {champion:.3f}; version {numbers['steady_version']} is "
            f"{rmses['steady_version'] / champion - 1:+.2%} and version {numbers['sparse_version']} "
            f"{rmses['sparse_version'] / champion - 1:+.2%} against it.")


def _decision(decide, rmse: float, champion_rmse: float, thresholds, case: str):
    try:
        answer = decide(rmse, champion_rmse, thresholds)
    except Exception as error:
        raise Wrong(f"decide({rmse}, {champion_rmse}, thresholds) raised {type(error).__name__} ({case})",
                    "decide must take (rmse, champion_rmse, thresholds) and return (passed, reason)") from None
    expect(isinstance(answer, tuple) and len(answer) == 2, f"decide returned {answer!r}, not a pair ({case})",
           "return a tuple: `return passed, reason`")
    passed, reason = answer
    expect(passed in (True, False) and isinstance(reason, str) and reason.strip(),
           f"decide returned ({passed!r}, {reason!r}) ({case}): not a bool and a sentence",
           "return (True or False, a sentence with the numbers)")
    return bool(passed)


@task(3, hint="`thresholds` must be a Thresholds(max_rmse=..., max_worse_than_champion=...) and `decide` a function")
def task3(spark, decide, thresholds, champion_version, steady_version, sparse_version) -> str:
    from helpers.gate import Thresholds

    expect(callable(decide), f"`decide` is {decide!r}, not a function", "define it with def decide(rmse, "
           "champion_rmse, thresholds): ... return passed, reason")
    expect(thresholds is not None, "`thresholds` is still None",
           "thresholds = Thresholds(max_rmse=8.0, max_worse_than_champion=...)")
    tolerance, max_rmse = thresholds.max_worse_than_champion, thresholds.max_rmse
    expect(max_rmse == 8.0, f"`thresholds.max_rmse` is {max_rmse!r}, the task asks for 8.0",
           "pass max_rmse=8.0 to Thresholds")
    numbers = _versions(champion_version, steady_version, sparse_version)

    # The rule itself, on numbers whose limits are exact in floating point, with thresholds of the check's own.
    rule = Thresholds(max_rmse=8.0, max_worse_than_champion=0.25)
    for rmse, champion_rmse, wanted, case in (
            (4.5, 4.0, True, "12.5% worse with a 25% tolerance"),
            (5.0, 4.0, True, "exactly 25% worse with a 25% tolerance: at the limit, it passes"),
            (5.01, 4.0, False, "more than 25% worse with a 25% tolerance"),
            (8.0, 9.0, True, "exactly at max_rmse and better than the champion"),
            (8.5, 9.0, False, "above max_rmse, although better than the champion")):
        got = _decision(decide, rmse, champion_rmse, rule, case)
        expect(got == wanted, f"decide({rmse}, {champion_rmse}, Thresholds(max_rmse=8.0, "
               f"max_worse_than_champion=0.25)) says passed={got}, and it should be {wanted} ({case})",
               "refuse when rmse > thresholds.max_rmse or rmse > champion_rmse * (1 + "
               "thresholds.max_worse_than_champion); use the `thresholds` argument, not a global")

    rmses = _rmses(spark, numbers)
    champion = rmses["champion_version"]
    steady_worse, sparse_worse = rmses["steady_version"] / champion - 1, rmses["sparse_version"] / champion - 1
    expect(is_number(tolerance) and steady_worse <= tolerance < sparse_worse,
           f"a tolerance of {tolerance!r} does not separate them: version {numbers['steady_version']} is "
           f"{steady_worse:+.2%} and version {numbers['sparse_version']} {sparse_worse:+.2%} against the champion",
           "choose max_worse_than_champion at least the steady version's relative difference and below the sparse "
           "one's, e.g. halfway between, computed from rmse_by_version")
    for variable, wanted in (("steady_version", True), ("sparse_version", False)):
        got = _decision(decide, rmses[variable], champion, thresholds, f"version {numbers[variable]}")
        expect(got == wanted, f"with your thresholds, decide says passed={got} for version {numbers[variable]}",
               "check decide's comparison with champion_rmse * (1 + thresholds.max_worse_than_champion)")
    return (f"a tolerance of {tolerance:.2%} passes version {numbers['steady_version']} ({steady_worse:+.2%}) and "
            f"refuses version {numbers['sparse_version']} ({sparse_worse:+.2%}).")


def _float_tag(tags: dict, key: str, version: str) -> float:
    expect(key in tags, f"version {version} has no tag `{key}`",
           f"client.set_model_version_tag(model_name, version, \"{key}\", ...) inside gate(version)")
    try:
        return float(tags[key])
    except ValueError:
        raise Wrong(f"version {version}'s tag `{key}` is {tags[key]!r}, not a number",
                    f"tag it with f\"{{rmse:.6f}}\"") from None


@task(4, hint="`verdicts` must be a dict from version numbers to gate(version)'s (passed, reason)")
def task4(spark, verdicts, champion_version, steady_version, sparse_version) -> str:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    expect(verdicts is not None, "`verdicts` is still None",
           "verdicts = {version: gate(version) for version in (sparse_version, steady_version)}")
    numbers = _versions(champion_version, steady_version, sparse_version)
    expect(isinstance(verdicts, dict), f"`verdicts` is a {type(verdicts).__name__}, not a dict",
           "verdicts = {version: gate(version) for version in (sparse_version, steady_version)}")
    challengers = {numbers["steady_version"], numbers["sparse_version"]}
    verdicts = _by_version(verdicts)
    expect(set(verdicts) == challengers, f"`verdicts` has the keys {sorted(verdicts, key=str)}, and the "
           f"challengers are {sorted(challengers, key=int)}", "gate exactly `sparse_version` and `steady_version`")
    rmses = _rmses(spark, numbers)
    client = MlflowClient()
    for variable, status in (("sparse_version", "rejected"), ("steady_version", "passed")):
        version = numbers[variable]
        tags = client.get_model_version(_model_name(), version).tags
        expect(tags.get("validation_status") == status,
               f"version {version} (`{variable}`) is tagged validation_status={tags.get('validation_status')!r}, "
               f"and with your thresholds it is {status}",
               "tag \"passed\" if decide passed it, \"rejected\" if not, with client.set_model_version_tag")
        expect(tags.get("validation_reason", "").strip(), f"version {version} has no `validation_reason` tag",
               "tag it with the reason decide returned")
        rmse = _float_tag(tags, "held_out_rmse", version)
        expect(abs(rmse - rmses[variable]) < 1e-5, f"version {version} is tagged held_out_rmse {rmse:.4f}; its "
               f"RMSE on the held-out customers is {rmses[variable]:.4f}", "tag held_out_rmse(version), the "
               "version's own RMSE")
        champion_rmse = _float_tag(tags, "champion_rmse", version)
        expect(variable == "sparse_version" or abs(champion_rmse - rmses["sparse_version"]) >= 1e-5,
               f"version {version} was gated against version {numbers['sparse_version']} as @champion: the refused "
               "version had taken the alias", "call client.set_registered_model_alias in gate only when the "
               "version passed; run Task 1 again to start from its three versions")
        # Both against the first champion: the sparse version is gated first and refused, so it never moves it.
        expect(variable == "steady_version" or abs(champion_rmse - rmses["steady_version"]) >= 1e-5
               or abs(rmses["steady_version"] - rmses["champion_version"]) < 1e-5,
               f"version {version} (`sparse_version`) was gated against version {numbers['steady_version']} as "
               "@champion: it was gated after the steady version had passed and taken the alias",
               "gate `sparse_version` first, then `steady_version`, as the task says; run Task 1 again to start "
               "from its three versions")
        expect(abs(champion_rmse - rmses["champion_version"]) < 1e-5,
               f"version {version} is tagged champion_rmse {champion_rmse:.4f}, and @champion's RMSE was "
               f"{rmses['champion_version']:.4f}", "score the version that client.get_model_version_by_alias("
               "model_name, \"champion\") returns, at the time of the gate")
        verdict = verdicts[version]
        expect(isinstance(verdict, tuple) and len(verdict) == 2 and verdict[0] == (status == "passed")
               and verdict[1] == tags["validation_reason"],
               f"`verdicts[{version!r}]` is {verdict!r}, and the registry says {status}: {tags['validation_reason']}",
               "return (passed, reason) from gate(version), the pair you tagged")
    try:
        champion = str(client.get_model_version_by_alias(_model_name(), "champion").version)
    except MlflowException:
        raise Wrong("no version has the `champion` alias any more",
                    "move it with client.set_registered_model_alias(model_name, \"champion\", version), never "
                    "delete it") from None
    expect(champion == numbers["steady_version"], f"@champion is version {champion}; the version that passed is "
           f"{numbers['steady_version']}", "call client.set_registered_model_alias(model_name, \"champion\", "
           "version) in gate only when the version passed")
    return (f"version {numbers['sparse_version']} was refused and version {numbers['steady_version']} passed and "
            "holds @champion; both carry the reason as tags.")
