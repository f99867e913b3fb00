"""The batch-scoring job against a real Spark session, Delta tables and a registered model."""
import os
import subprocess
import sys

import mlflow
import pytest

from helpers.config import REPO_ROOT
from helpers.scoring import ScoringError, main, resolve_model

pytestmark = pytest.mark.slow
ROWS = 40


@pytest.fixture(scope="module")
def course(spark):
    """A workspace with a small features table and a registered model `mini_model` whose @champion is version 1."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    from helpers import setup_mlflow

    setup_mlflow(quiet=True)
    mlflow.set_experiment("scoring-tests")  # not an experiment another module left active in this process
    rows = [(customer, float(customer % 7), float(customer % 5), 20.0 + customer % 50) for customer in range(ROWS)]
    spark.createDataFrame(rows, "CustomerID INT, a DOUBLE, b DOUBLE, cust_age DOUBLE").write.format("delta") \
        .saveAsTable("mini_features")
    model = Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"),
                             LinearRegression(labelCol="cust_age")]).fit(spark.read.table("mini_features"))
    with mlflow.start_run() as run:
        mlflow.spark.log_model(model, artifact_path="model", pip_requirements=["pyspark"])
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "mini_model")
    mlflow.MlflowClient().set_registered_model_alias("mini_model", "champion", version.version)
    yield spark
    mlflow.set_tracking_uri(None)


def test_a_registered_alias_resolves_to_its_version(course):
    resolved = resolve_model("models:/mini_model@champion")
    assert (resolved.name, resolved.version, resolved.alias) == ("mini_model", "1", "champion")
    assert resolved.uri == "models:/mini_model/1"  # pinned: a moving alias cannot change the model mid-job
    assert resolve_model("models:/mini_model/1").version == "1"


@pytest.mark.parametrize("uri, message", [
    ("models:/nope@champion", "no registered model named 'nope'"),
    ("models:/mini_model@ghost", "has no alias @ghost"),
    ("models:/mini_model/9", "has no version 9"),
    ("mini_model", "is not a models:/"),
])
def test_missing_models_and_aliases_are_one_clear_sentence(course, uri, message):
    with pytest.raises(ScoringError, match=message):
        resolve_model(uri)


def test_scoring_a_day_twice_leaves_one_copy_and_other_days_alone(course, capsys):
    spark = course
    arguments = ["--model", "models:/mini_model@champion", "--table", "mini_features", "--output", "mini_predictions"]
    assert main([*arguments, "--date", "2024-12-01"]) == 0
    assert "scored 40 rows of mini_features with mini_model version 1 (@champion)" in capsys.readouterr().out
    assert main([*arguments, "--date", "2024-12-01"]) == 0  # a re-run replaces the day
    assert main([*arguments, "--date", "2024-12-02"]) == 0
    predictions = spark.read.table("mini_predictions")
    per_day = {r["scoring_date"].isoformat(): r["count"] for r in predictions.groupBy("scoring_date").count().collect()}
    assert per_day == {"2024-12-01": ROWS, "2024-12-02": ROWS}
    assert predictions.select("model_version", "model_alias").distinct().collect()[0].asDict() == {
        "model_version": "1", "model_alias": "champion"}
    assert predictions.filter("prediction IS NULL").count() == 0


def test_a_missing_table_exits_2_and_writes_nothing(course, capsys):
    spark = course
    assert main(["--model", "models:/mini_model@champion", "--table", "nope", "--output", "never_written"]) == 2
    assert "Table 'nope' does not exist" in capsys.readouterr().err
    assert not spark.catalog.tableExists("never_written")


def test_streaming_scores_each_new_row_exactly_once(course, capsys):
    spark = course
    source = spark.read.table("mini_features")
    source.filter("CustomerID < 25").write.format("delta").saveAsTable("mini_arrivals")
    arguments = ["--model", "models:/mini_model@champion", "--stream", "--table", "mini_arrivals",
                 "--output", "mini_stream"]
    assert main(arguments) == 0
    assert main(arguments) == 0  # nothing new: nothing scored again
    source.filter("CustomerID >= 25").write.format("delta").mode("append").saveAsTable("mini_arrivals")
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("scored")] == ["25", "0", "15"]
    scored = spark.read.table("mini_stream")
    assert scored.count() == ROWS and scored.select("CustomerID").distinct().count() == ROWS


def test_the_console_command_refuses_a_missing_alias_in_one_sentence(course):
    result = subprocess.run([sys.executable, "-m", "helpers.scoring", "--model", "models:/mini_model@ghost"],
                            cwd=REPO_ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "course-batch-score: Model 'mini_model' has no alias @ghost: set the alias with set_registered_model_alias "
        "(notebook 04) or pass an existing version.")
