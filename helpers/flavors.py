"""Exports the arithmetic of a fitted Spark linear pipeline (input columns, scaling, coefficients) for use without Spark.

Notebook 03 builds a lightweight pyfunc model from it; this module only reads numbers out of the fitted stages.
"""
from __future__ import annotations

import math

SUPPORTED = "a VectorAssembler, optionally StandardScaler stages, then a LinearRegressionModel"


class UnsupportedPipelineError(ValueError):
    """The pipeline has a stage whose arithmetic the exporter cannot reproduce exactly."""


def _refuse(reason: str) -> UnsupportedPipelineError:
    return UnsupportedPipelineError(f"Cannot export this pipeline without Spark: {reason}. The exporter handles "
                                    f"{SUPPORTED}; serve other pipelines with the spark flavor instead.")


def export_linear_pipeline(model) -> dict:
    """The numbers that reproduce `model.transform(df)["prediction"]`: ((x - mean) / scale) @ coefficients + intercept.

    `x` holds the row's values of `columns`, in that order. Raises UnsupportedPipelineError for anything else.
    """
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import StandardScalerModel, VectorAssembler
    from pyspark.ml.regression import LinearRegressionModel

    if not isinstance(model, PipelineModel):
        raise _refuse(f"expected a fitted PipelineModel, got {type(model).__name__}")
    *preparation, last = model.stages
    if not preparation or not isinstance(preparation[0], VectorAssembler):
        raise _refuse("its first stage must be a VectorAssembler, so that the input columns are known")
    columns = list(preparation[0].getInputCols())
    mean, scale, vector = [0.0] * len(columns), [1.0] * len(columns), preparation[0].getOutputCol()
    for stage in preparation[1:]:
        if not isinstance(stage, StandardScalerModel):
            raise _refuse(f"stage {type(stage).__name__} ({stage.uid}) is not supported")
        if stage.getInputCol() != vector:
            raise _refuse(f"stage {stage.uid} reads {stage.getInputCol()!r}, not the vector {vector!r}")
        # Spark scales by 1/std and maps a zero std to 0; dividing by infinity does the same.
        stds = [s if s != 0 else float("inf") for s in stage.std.toArray()] if stage.getWithStd() else [1.0] * len(columns)
        centre = list(stage.mean.toArray()) if stage.getWithMean() else [0.0] * len(columns)
        # Chained scalers compose: ((x - m1) / s1 - m2) / s2 = (x - (m1 + m2 s1)) / (s1 s2). A column already
        # zeroed by an earlier scaler (infinite scale) stays zero.
        composed = [(m1, s1) if math.isinf(s1) else (m1 + m2 * s1, s1 * s2)
                    for m1, s1, m2, s2 in zip(mean, scale, centre, stds)]
        mean, scale = [m for m, _ in composed], [s for _, s in composed]
        vector = stage.getOutputCol()
    if not isinstance(last, LinearRegressionModel):
        raise _refuse(f"its last stage is {type(last).__name__}, not a LinearRegressionModel")
    if last.getFeaturesCol() != vector:
        raise _refuse(f"the regression reads {last.getFeaturesCol()!r}, not the prepared vector {vector!r}")
    return {"columns": columns, "mean": mean, "scale": scale, "coefficients": list(last.coefficients.toArray()),
            "intercept": float(last.intercept)}
