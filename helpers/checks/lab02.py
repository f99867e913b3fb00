"""Checks for lab 02: a random-forest grid, tuned with TrainValidationSplit as a parent run with child runs."""
from __future__ import annotations

from helpers.checks import expect, finished_run, task

SETTINGS = {(10, 3), (10, 6), (40, 3), (40, 6)}  # (numTrees, maxDepth), as the task asks


def _children(parent_run_id: str):
    import mlflow

    return mlflow.search_runs(search_all_experiments=True,
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def _test_rmse(spark, settings: dict) -> float:
    """The test RMSE of a forest with these settings, refitted here on the lab's training rows."""
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import RandomForestRegressor
    from pyspark.sql import functions as F

    version = spark.sql("DESCRIBE HISTORY retail_features LIMIT 1").first()["version"]
    table = spark.read.option("versionAsOf", version).table("retail_features")
    features = [c for c in table.columns if c not in ("CustomerID", "cust_age", "selected_features")]
    bucket = F.abs(F.xxhash64("CustomerID")) % 10
    forest = RandomForestRegressor(featuresCol="features", labelCol="cust_age", seed=42, **settings)
    model = Pipeline(stages=[VectorAssembler(inputCols=features, outputCol="features"), forest]).fit(
        table.filter(bucket > 0).coalesce(1).sortWithinPartitions("CustomerID"))
    return RegressionEvaluator(labelCol="cust_age", metricName="rmse").evaluate(model.transform(table.filter(bucket == 0)))


@task(1, hint="build it with ParamGridBuilder().addGrid(forest.numTrees, [10, 40]).addGrid(forest.maxDepth, [3, 6]).build()")
def task1(grid, forest) -> str:
    expect(isinstance(grid, list) and grid, f"`grid` is {grid!r}, not a list of param maps",
           "end the ParamGridBuilder chain with .build(), which returns the list")
    expect(len(grid) == 4, f"`grid` has {len(grid)} param maps, not 4 (2 values of numTrees times 2 of maxDepth)",
           "add exactly two values for each of the two parameters")
    names = {param.name for param_map in grid for param in param_map}
    expect(names == {"numTrees", "maxDepth"}, f"the grid sets {sorted(names)}, not numTrees and maxDepth",
           "add only forest.numTrees and forest.maxDepth")
    expect(all(param.parent == forest.uid for param_map in grid for param in param_map),
           "the grid's parameters belong to another estimator than `forest`",
           "pass forest.numTrees and forest.maxDepth, the parameters of the pipeline's own forest stage")
    settings = {(m[forest.numTrees], m[forest.maxDepth]) for m in grid}
    expect(settings == SETTINGS, f"the grid's (numTrees, maxDepth) settings are {sorted(settings)}",
           "use numTrees 10 and 40, maxDepth 3 and 6")
    return "four settings: numTrees 10 and 40, each with maxDepth 3 and 6."


def _whole(value):
    """40, NumPy's 40, 40.0 or "40" (a parameter read back from a run): the same setting."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else value


@task(2, hint="set `parent_run_id = parent.info.run_id` after the parent run's `with` block")
def task2(parent_run_id, experiment_name: str, tuned=None) -> str:
    parent = finished_run(parent_run_id, "parent_run_id", experiment_name,
                          how="set it to `parent.info.run_id` after the parent run's `with` block")
    name = parent.data.tags.get("mlflow.runName")
    expect(name == "random-forest-tvs", f"the parent run is named {name!r}, not 'random-forest-tvs'",
           'start it with mlflow.start_run(run_name="random-forest-tvs")')
    children = _children(parent_run_id)
    expect(len(children) == 4, f"the parent run has {len(children)} child runs, not one per setting (4)",
           "inside the parent's `with` block, loop over the grid with mlflow.start_run(nested=True) once per setting")
    for column, what in (("params.numTrees", "parameter numTrees"), ("params.maxDepth", "parameter maxDepth"),
                         ("metrics.validation_rmse", "metric validation_rmse")):
        expect(column in children and children[column].notna().all(), f"a child run has no {what}",
               "log {param.name: value for param, value in param_map.items()} and "
               'mlflow.log_metric("validation_rmse", score) in each child run')
    settings = {(int(t), int(d)) for t, d in zip(children["params.numTrees"], children["params.maxDepth"])}
    expect(settings == SETTINGS, f"the child runs hold the settings {sorted(settings)}, not the task's four "
           f"{sorted(SETTINGS)}", "make Task 1's grid pass its check, then log the param map of each child run's own "
           "setting")
    expect(tuned is not None and hasattr(tuned, "validationMetrics"),
           f"`tuned` is {tuned!r}, not the fitted TrainValidationSplitModel", "set `tuned = tuner.fit(train)`")
    ratio, seed = tuned.getTrainRatio(), tuned.getSeed()
    expect((ratio, seed) == (0.75, 42), f"the tuning ran with trainRatio {ratio} and seed {seed}, not 0.75 and 42",
           "pass trainRatio=0.75 and seed=42 to TrainValidationSplit")
    tuned_scores = {}
    for param_map, score in zip(tuned.getEstimatorParamMaps(), tuned.validationMetrics):
        setting = {param.name: value for param, value in param_map.items()}
        tuned_scores[(int(setting["numTrees"]), int(setting["maxDepth"]))] = score
    for trees, depth, logged in zip(children["params.numTrees"], children["params.maxDepth"],
                                    children["metrics.validation_rmse"]):
        scored = tuned_scores.get((int(trees), int(depth)))
        expect(scored is not None and abs(logged - scored) < 1e-9,
               f"the child run of numTrees {trees}, maxDepth {depth} logs validation_rmse {logged:.4f}, and the "
               f"tuning scored that setting {scored if scored is None else round(scored, 4)}",
               "log tuned.validationMetrics in the grid's order: zip(grid, tuned.validationMetrics)")
    scores = children["metrics.validation_rmse"]
    return f"four child runs, validation RMSE from {scores.min():.3f} to {scores.max():.3f}."


@task(3, hint='set `best_settings` to a dict such as {"numTrees": 40, "maxDepth": 6}')
def task3(spark, best_settings, parent_run_id, experiment_name: str) -> str:
    expect(isinstance(best_settings, dict) and best_settings, f"`best_settings` is {best_settings!r}, not a dict",
           "build it from the best param map: {param.name: value for param, value in grid[best].items()}")
    parent = finished_run(parent_run_id, "parent_run_id", experiment_name)
    children = _children(parent_run_id)
    expect(len(children) == 4 and "metrics.validation_rmse" in children
           and children["metrics.validation_rmse"].notna().all(),
           "the parent run does not have four child runs with a validation_rmse", "make Task 2 pass its check first")
    settings = {(int(t), int(d)) for t, d in zip(children["params.numTrees"], children["params.maxDepth"])}
    expect(settings == SETTINGS, f"the child runs hold the settings {sorted(settings)}, not the task's four",
           "make Tasks 1 and 2 pass their checks first")
    best = children.loc[children["metrics.validation_rmse"].idxmin()]
    expected = {"numTrees": int(best["params.numTrees"]), "maxDepth": int(best["params.maxDepth"])}
    best_settings = {name: _whole(value) for name, value in best_settings.items()}
    expect(best_settings == expected, f"`best_settings` is {best_settings}, and the lowest validation RMSE is "
           f"{expected}'s", "take the param map with the lowest tuned.validationMetrics")
    logged = {name: parent.data.params.get(f"best_{name}") for name in expected}
    expect(logged == {name: str(value) for name, value in expected.items()},
           f"the parent run's best_numTrees and best_maxDepth are {logged}",
           "reopen the parent with mlflow.start_run(run_id=parent_run_id) and log "
           '{f"best_{name}": value for name, value in best_settings.items()}')
    test_rmse = parent.data.metrics.get("test_rmse")
    expect(test_rmse is not None, "the parent run has no metric test_rmse",
           "log evaluator.evaluate(tuned.bestModel.transform(test)) as test_rmse in the reopened parent run")
    refitted = _test_rmse(spark, expected)
    expect(abs(test_rmse - refitted) < 1e-3, f"the logged test_rmse is {test_rmse:.3f}, and the best forest refitted "
           f"on all of `train` scores {refitted:.3f} on `test`", "evaluate tuned.bestModel on `test`, not `train`")
    return (f"numTrees {expected['numTrees']}, maxDepth {expected['maxDepth']}: validation RMSE "
            f"{best['metrics.validation_rmse']:.3f}, test RMSE {test_rmse:.3f}.")
