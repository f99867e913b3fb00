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


@pytest.mark.slow
def test_a_tree_model_is_refused_with_a_clear_message(frame):
    from pyspark.ml.regression import GBTRegressor

    model = fitted(frame, GBTRegressor(featuresCol="raw", labelCol="y", maxIter=3))
    with pytest.raises(UnsupportedPipelineError, match="last stage is GBTRegressionModel.*spark flavor"):
        export_linear_pipeline(model)


@pytest.mark.slow
def test_an_unknown_preparation_stage_is_refused(frame):
    from pyspark.ml.feature import MinMaxScaler
    from pyspark.ml.regression import LinearRegression

    model = fitted(frame, MinMaxScaler(inputCol="raw", outputCol="scaled"),
                   LinearRegression(featuresCol="scaled", labelCol="y"))
    with pytest.raises(UnsupportedPipelineError, match="stage MinMaxScalerModel"):
        export_linear_pipeline(model)


@pytest.mark.slow
def test_a_regression_that_skips_the_prepared_vector_is_refused(frame):
    from pyspark.ml.feature import StandardScaler
    from pyspark.ml.regression import LinearRegression

    model = fitted(frame, StandardScaler(inputCol="raw", outputCol="scaled"),
                   LinearRegression(featuresCol="raw", labelCol="y"))
    with pytest.raises(UnsupportedPipelineError, match="reads 'raw', not the prepared vector 'scaled'"):
        export_linear_pipeline(model)


def test_a_bare_model_is_refused():
    with pytest.raises(UnsupportedPipelineError, match="expected a fitted PipelineModel, got str"):
        export_linear_pipeline("not a model")
