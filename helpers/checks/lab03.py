"""Checks for lab 03: a scikit-learn pipeline logged with a signature, loaded as a pyfunc, its flavors and schema enforcement."""
from __future__ import annotations

from helpers.checks import Wrong, expect, finished_run, pinned_requirements, task

EXPERIMENT = "lab-03-flavors"
FEATURES = ["num_invoices", "avg_hour", "weekend_share", "share_gadgets", "share_gaming", "share_garden",
            "share_home_decor", "share_party", "share_toys", "share_vintage"]
LOG_HINT = "set `model_info = mlflow.sklearn.log_model(sk_model, name=\"model\", ...)` inside `with mlflow.start_run():`"


def _split(spark, test: bool):
    """The lesson's customer-hash split of retail_features in pandas, ordered by CustomerID."""
    from pyspark.sql import functions as F

    bucket = F.abs(F.xxhash64("CustomerID")) % 10
    rows = spark.read.table("retail_features").filter(bucket == 0 if test else bucket > 0)
    return rows.select("CustomerID", "cust_age", *FEATURES).orderBy("CustomerID").toPandas()


def _logged_model(model_info):
    """The learner's logged model, re-read from the store: (its run, its ModelInfo)."""
    from mlflow.models import get_model_info

    from helpers import course_experiment

    expect(model_info is not None, "`model_info` is still None", LOG_HINT)
    expect(hasattr(model_info, "model_uri") and hasattr(model_info, "run_id"),
           f"`model_info` is a {type(model_info).__name__}, not the ModelInfo that log_model returns", LOG_HINT)
    expect(model_info.run_id, "the model in `model_info` was not logged in a run", LOG_HINT)
    run = finished_run(model_info.run_id, "model_info.run_id", course_experiment(EXPERIMENT))
    expect(run.info.lifecycle_stage == "active", "the run of `model_info` was deleted (an earlier attempt?)",
           "run the Setup cell, then Task 1 again")
    return run, get_model_info(model_info.model_uri)


def _rmse(actual, predicted) -> float:
    import numpy as np

    return float(np.sqrt(np.mean((np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)) ** 2)))


def _predictions(values, variable: str, expected, how: str):
    import numpy as np

    expect(values is not None, f"`{variable}` is still None", f"set it to {how}")
    try:
        values = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise Wrong(f"`{variable}` is not a list of numbers", f"set it to {how}") from None
    expect(len(values) == len(expected), f"`{variable}` has {len(values)} predictions, and there are "
           f"{len(expected)} test customers", "predict all of test_pandas[feature_columns]")
    difference = float(np.max(np.abs(values - expected)))
    expect(difference < 1e-9, f"`{variable}` differs from the logged model's predictions for the test customers "
           f"(by up to {difference:.3g} years)", "predict test_pandas[feature_columns], with test_pandas ordered by "
           "CustomerID as Task 1 asks")
    return values


@task(1, hint=LOG_HINT)
def task1(spark, model_info) -> str:
    import mlflow.sklearn
    import sklearn
    from sklearn.linear_model import Lasso
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    run, info = _logged_model(model_info)
    expect("sklearn" in info.flavors, f"the logged model's flavors are {sorted(info.flavors)}, with no sklearn",
           "log it with mlflow.sklearn.log_model")
    expect(info.signature is not None, "the model was logged without a signature",
           "pass signature=infer_signature(example, sk_model.predict(example)) to log_model")
    inputs = info.signature.inputs.input_names()
    expect(inputs == FEATURES, f"the signature's inputs are {inputs}, not the ten habit columns",
           f"infer the signature from train_pandas[feature_columns] with feature_columns = {FEATURES}")
    expect(info.saved_input_example_info, "the model was logged without an input example",
           "pass input_example=train_pandas[feature_columns].head(3) to log_model")
    pinned_requirements(info.model_uri, {"scikit-learn": sklearn.__version__, "mlflow": mlflow.__version__},
                        'pass pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"]')

    model = mlflow.sklearn.load_model(info.model_uri)
    steps = [type(step).__name__ for _, step in model.steps] if isinstance(model, Pipeline) else [type(model).__name__]
    shape = " then ".join(steps)
    expect(isinstance(model, Pipeline) and len(model.steps) == 2 and isinstance(model[0], StandardScaler)
           and isinstance(model[-1], Lasso), f"the logged model is {shape}, not a StandardScaler then a Lasso",
           "fit make_pipeline(StandardScaler(), Lasso(alpha=0.1))")
    expect(model[-1].alpha == 0.1, f"the Lasso's alpha is {model[-1].alpha}, not 0.1", "use Lasso(alpha=0.1)")

    test, train = _split(spark, test=True), _split(spark, test=False)
    rmse = _rmse(test["cust_age"], model.predict(test[FEATURES]))
    baseline = _rmse(test["cust_age"], [train["cust_age"].mean()] * len(test))
    expect(rmse < baseline, f"the model's test RMSE ({rmse:.3f}) is no better than always predicting the training "
           f"customers' mean age ({baseline:.3f})", "fit on train_pandas[feature_columns] and train_pandas[\"cust_age\"]")
    logged = run.data.metrics.get("test_rmse")
    expect(logged is not None, "the run has no metric `test_rmse`",
           "inside the run, mlflow.log_metric(\"test_rmse\", ...) with the RMSE on test_pandas")
    expect(abs(logged - rmse) < 1e-6, f"the run's test_rmse is {logged:.4f}, and the logged model's RMSE on the "
           f"{len(test)} test customers is {rmse:.4f}", "compute the RMSE of sk_model's predictions for "
           "test_pandas (ordered by CustomerID, bucket 0), the square root of the mean squared error")
    kept = sum(1 for coefficient in model[-1].coef_ if coefficient != 0)
    return f"Test RMSE {rmse:.3f} on {len(test)} test customers; the Lasso kept {kept} of the {len(FEATURES)} features."


@task(2, hint="pyfunc_model = mlflow.pyfunc.load_model(model_info.model_uri), then predict test_pandas[feature_columns]")
def task2(spark, model_info, pyfunc_model, sklearn_predictions, pyfunc_predictions) -> str:
    import mlflow.pyfunc
    import mlflow.sklearn

    _, info = _logged_model(model_info)
    hint = "pyfunc_model = mlflow.pyfunc.load_model(model_info.model_uri)"
    expect(pyfunc_model is not None, "`pyfunc_model` is still None", hint)
    expect(isinstance(pyfunc_model, mlflow.pyfunc.PyFuncModel),
           f"`pyfunc_model` is a {type(pyfunc_model).__name__}, not a pyfunc model", hint)
    expect(pyfunc_model.metadata.model_uuid == info.model_uuid, "`pyfunc_model` is not the model of `model_info`",
           hint)
    test = _split(spark, test=True)
    expected = mlflow.sklearn.load_model(info.model_uri).predict(test[FEATURES])
    _predictions(sklearn_predictions, "sklearn_predictions", expected, "sk_model.predict(test_pandas[feature_columns])")
    _predictions(pyfunc_predictions, "pyfunc_predictions", expected,
                 "pyfunc_model.predict(test_pandas[feature_columns])")
    loader = pyfunc_model.metadata.flavors["python_function"]["loader_module"]
    return f"The pyfunc (loaded by {loader}) and scikit-learn agree on all {len(test)} test customers."


@task(3, hint="read the MLmodel file with yaml.safe_load and take its \"flavors\" mapping")
def task3(model_info, flavors, loader_module, serialization_format) -> str:
    _, info = _logged_model(model_info)
    recorded = info.flavors
    read_hint = ("download the model with mlflow.artifacts.download_artifacts(model_info.model_uri, "
                 "dst_path=tempfile.mkdtemp()) and yaml.safe_load its MLmodel file")
    expect(flavors is not None, "`flavors` is still None", f"{read_hint}; flavors = sorted(mlmodel[\"flavors\"])")
    expect(isinstance(flavors, (list, tuple)) and all(isinstance(name, str) for name in flavors),
           f"`flavors` is a {type(flavors).__name__}, not a list of flavor names",
           "flavors = sorted(mlmodel[\"flavors\"]): the sorted names")
    expect(list(flavors) == sorted(recorded), f"`flavors` is {list(flavors)}; the MLmodel file lists "
           f"{sorted(recorded)}", "flavors = sorted(mlmodel[\"flavors\"]), from Task 1's model")
    expected_loader = recorded["python_function"]["loader_module"]
    expect(loader_module == expected_loader, f"`loader_module` is {loader_module!r}, not what the python_function "
           "flavor names", "loader_module = mlmodel[\"flavors\"][\"python_function\"][\"loader_module\"]")
    expected_format = recorded["sklearn"]["serialization_format"]
    expect(serialization_format == expected_format, f"`serialization_format` is {serialization_format!r}, not what "
           "the sklearn flavor records", "serialization_format = mlmodel[\"flavors\"][\"sklearn\"][\"serialization_format\"]")
    return f"Flavors {', '.join(recorded)}; pyfunc loads with {expected_loader}; the model is stored as {expected_format}."


@task(4, hint="bad_input must be a pandas DataFrame; catch the error with `except MlflowException as error:`")
def task4(model_info, bad_input, error_message) -> str:
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.exceptions import MlflowException

    _, info = _logged_model(model_info)
    frame_hint = ("bad_input = test_pandas[feature_columns].head(3).rename(columns={\"share_vintage\": "
                  "\"share_retro\"})")
    expect(bad_input is not None, "`bad_input` is still None", frame_hint)
    expect(isinstance(bad_input, pd.DataFrame), f"`bad_input` is a {type(bad_input).__name__}, not a pandas "
           "DataFrame", frame_hint)
    expect(len(bad_input) == 3, f"`bad_input` has {len(bad_input)} rows, not the first 3 of the test set", frame_hint)
    model = mlflow.pyfunc.load_model(info.model_uri)
    try:
        model.predict(bad_input)
    except MlflowException as error:
        reason = str(error.message).rsplit("Error: ", 1)[-1]
        code = error.error_code
    except Exception as error:
        raise Wrong(f"`bad_input` fails with {type(error).__name__}, not with schema enforcement's MlflowException",
                    frame_hint) from None
    else:
        extra = set(bad_input.columns) - set(FEATURES)
        raise Wrong("the model accepted `bad_input`" + (" (extra columns are ignored)" if extra else ""),
                    f"rename a column the signature requires: {frame_hint}")
    keep_hint = "inside `except MlflowException as error:`, set error_message = str(error.message)"
    expect(error_message is not None, "`error_message` is still None", keep_hint)
    expect(isinstance(error_message, str) and reason in error_message,
           f"`error_message` is not the message of the error `bad_input` raises ({reason.rstrip('.')})", keep_hint)
    return f"Schema enforcement refused it before the model ran ({code}): {reason}"
