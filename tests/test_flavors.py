import numpy as np
import pytest

from helpers.flavors import UnsupportedPipelineError, export_linear_pipeline


def predict(spec: dict, rows: np.ndarray) -> np.ndarray:
    """The lightweight model's arithmetic, as notebook 03's pyfunc computes it."""
    return ((rows - np.array(spec["mean"])) / np.array(spec["scale"])) @ np.array(spec["coefficients"]) + spec["intercept"]


@pytest.fixture(scope="module")
def frame(spark):
    rng = np.random.default_rng(7)
    x = rng.normal(50, 20, size=(400, 3))
    x[:, 2] = 4.0  # a constant column: zero standard deviation
    y = x @ np.array([0.3, -1.2, 0.0]) + 12 + rng.normal(0, 1, 400)
    return spark.createDataFrame([(*map(float, row), float(label)) for row, label in zip(x, y)], ["a", "b", "c", "y"])


def fitted(frame, *stages):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    return Pipeline(stages=[VectorAssembler(inputCols=["a", "b", "c"], outputCol="raw"), *stages]).fit(frame)


def assert_reproduces(model, frame):
    spec = export_linear_pipeline(model)
    scored = model.transform(frame).select("a", "b", "c", "prediction").toPandas()
    ours = predict(spec, scored[spec["columns"]].to_numpy(dtype=float))
    assert np.max(np.abs(ours - scored["prediction"].to_numpy())) < 1e-9


@pytest.mark.slow
def test_assembler_and_regression_are_reproduced_exactly(frame):
    from pyspark.ml.regression import LinearRegression

    assert_reproduces(fitted(frame, LinearRegression(featuresCol="raw", labelCol="y", regParam=0.1)), frame)


@pytest.mark.slow
def test_chained_scalers_are_reproduced_exactly(frame):
    from pyspark.ml.feature import StandardScaler
    from pyspark.ml.regression import LinearRegression

    model = fitted(frame, StandardScaler(inputCol="raw", outputCol="scaled", withMean=True),
                   StandardScaler(inputCol="scaled", outputCol="twice", withMean=False, withStd=True),
                   LinearRegression(featuresCol="twice", labelCol="y", elasticNetParam=0.5, regParam=0.05))
    assert_reproduces(model, frame)


def unsupported_stages(case):
    """Stages after the VectorAssembler (which writes 'raw') that the exporter must refuse."""
    from pyspark.ml.feature import MinMaxScaler, StandardScaler
    from pyspark.ml.regression import GBTRegressor, LinearRegression

    return {
        "a tree model": [GBTRegressor(featuresCol="raw", labelCol="y", maxIter=3)],
        "an unknown preparation stage": [MinMaxScaler(inputCol="raw", outputCol="scaled"),
                                         LinearRegression(featuresCol="scaled", labelCol="y")],
        "a regression that skips the prepared vector": [StandardScaler(inputCol="raw", outputCol="scaled"),
                                                        LinearRegression(featuresCol="raw", labelCol="y")],
    }[case]


@pytest.mark.slow
@pytest.mark.parametrize("case, message", [
    ("a tree model", "last stage is GBTRegressionModel.*spark flavor"),
    ("an unknown preparation stage", "stage MinMaxScalerModel"),
    ("a regression that skips the prepared vector", "reads 'raw', not the prepared vector 'scaled'"),
])
def test_pipelines_it_cannot_reproduce_are_refused_with_a_clear_message(frame, case, message):
    model = fitted(frame, *unsupported_stages(case))
    with pytest.raises(UnsupportedPipelineError, match=message):
        export_linear_pipeline(model)


def test_a_bare_model_is_refused():
    with pytest.raises(UnsupportedPipelineError, match="expected a fitted PipelineModel, got str"):
        export_linear_pipeline("not a model")
