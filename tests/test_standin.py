"""The course on the Spark of Databricks' oldest supported runtime (17.3 LTS, serverless environment 4: Spark 4.0),
in the stand-in environment built from databricks/runtimes/spark-4.0.lock."""
import json
import os
import subprocess
import sys

import pytest

from helpers.config import REPO_ROOT
from helpers.runner import course_notebooks
from helpers.standin.report import docs_table, readme_table
from helpers.standin.workspace import runtime_environment, summarise

TREES_IN_A_VALIDATOR = """
import os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
from pyspark.sql import SparkSession
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GBTRegressor
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from helpers.spark import keep_connect_session_in_ml_threads

spark = SparkSession.builder.remote("local[2]").getOrCreate()
rows = spark.createDataFrame([(float(i), float(i % 7), float(2 * i + i % 3)) for i in range(120)], ["a", "b", "y"])
gbt = GBTRegressor(labelCol="y", maxIter=2)
validator = CrossValidator(estimator=Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"), gbt]),
                           estimatorParamMaps=ParamGridBuilder().addGrid(gbt.maxDepth, [2, 3]).build(),
                           evaluator=RegressionEvaluator(labelCol="y"), numFolds=2, parallelism=2)
try:
    validator.fit(rows)
    print("without the fix: fitted")
except AssertionError:
    print("without the fix: AssertionError")
keep_connect_session_in_ml_threads()
print(f"with the fix: {len(validator.fit(rows).avgMetrics)} settings compared")
"""


@pytest.mark.slow
def test_a_tree_ensemble_in_a_parallel_validator_fits_over_spark_connect_on_spark_4_0():
    """Notebook 02's gradient-boosted trees cell, reduced: pyspark 4.0 loses the Connect session in the validator's
    threads (fixed in 4.1); start_spark applies 4.1's fix."""
    python = runtime_environment("spark-4.0")
    done = subprocess.run([str(python), "-c", TREES_IN_A_VALIDATOR], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["without the fix: AssertionError", "with the fix: 2 settings compared"]


@pytest.mark.slow
def test_every_lesson_runs_in_the_serverless_stand_in_of_the_oldest_runtime():
    """`python3 course.py standin serverless`: every lesson, on serverless environment 4's Spark (4.0, over Connect),
    with Unity Catalog's registry rules and volumes; each Databricks branch ran, and each replacement is listed."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MLFLOW_", "COURSE_", "PYSPARK_", "SPARK_"))}
    done = subprocess.run([sys.executable, "-m", "helpers.standin.workspace", "serverless"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    lessons = [notebook.name for notebook in course_notebooks([])]
    assert [line.split()[1] for line in done.stdout.splitlines() if " passed in " in line] == lessons
    assert "Spark 4.0.1 on Databricks serverless compute; tables and models in spark_catalog." \
        in notebook_output("serverless", "00_setup_and_data")  # the set-up cell chose and created schema and volume
    assert "07_projects_and_gate: On Databricks the project's training ran in this notebook" in done.stdout
    assert "retail_features version" in notebook_output("serverless", "09_monitoring_and_retraining")  # retrained
    # the workspace's Jobs and Model Serving did the hands-on parts: 05's job, 08's job started by the colleague's
    # new version (its trigger; the gate refuses a version worse on the same data, so the run fails) and then by hand
    # with a hyperparameter the gate refuses, 09's nightly job; 06's endpoint
    summary = json.loads((REPO_ROOT / ".standin" / "runs" / "serverless" / "summary.json").read_text())
    runs = [(run["job"].rsplit(": ", 1)[-1], run["trigger"], run["result"]) for run in summary["job_runs"]]
    assert runs == [("batch scoring", "ONE_TIME", "SUCCESS"), ("delivery", "MODEL", "FAILED"),
                    ("delivery", "ONE_TIME", "FAILED"), ("nightly", "ONE_TIME", "SUCCESS")], summary["job_runs"]
    assert "on the same data" in summary["job_runs"][1]["error"]
    assert "the gate refused" in summary["job_runs"][2]["error"]
    assert [name.rsplit("-", 1)[-1] for name in summary["endpoints"]] == ["retail_age_serving"]


def notebook_output(compute: str, notebook: str) -> str:
    executed = json.loads((REPO_ROOT / ".standin" / "runs" / compute / "runner" / "executed" /
                           f"{notebook}.ipynb").read_text())
    return "".join("".join(output.get("text", [])) for cell in executed["cells"] for output in cell.get("outputs", []))


def test_a_run_is_summarised_with_what_failed_and_what_did_not_run_and_the_tables_say_so(tmp_path):
    def executed(name, outputs):
        cells = [{"cell_type": "code", "source": "", "outputs": outputs}]
        (tmp_path / f"{name}.ipynb").write_text(json.dumps({"cells": cells}))

    executed("06_online_serving", [{"output_type": "stream", "name": "stdout",
                                    "text": ["Spark 4.0.1 on Databricks serverless compute\n",
                                             "Skipped on Databricks: Model Serving serves the alias.\n"]}])
    executed("06_online_serving_solutions", [{"output_type": "error", "ename": "ServingError", "evalue": "no"}])
    summary = summarise(tmp_path, "serverless", "spark-4.0", True,
                        ["06_online_serving", "06_online_serving_solutions", "06_online_serving_lab"])
    assert [(n["name"], n["status"], n["replaced"]) for n in summary["notebooks"]] == [
        ("06_online_serving", "passed", ["Skipped on Databricks: Model Serving serves the alias."]),
        ("06_online_serving_solutions", "failed", []), ("06_online_serving_lab", "not run", [])]
    runs = {"serverless-labs": summary}
    assert "| serverless | " in readme_table(runs) and "| not run yet | 0 of 2 passed (" in readme_table(runs)
    table = docs_table(runs)
    assert "| 06_online_serving | passed | Skipped on Databricks: Model Serving serves the alias. |" in table
    assert "| 06_online_serving_lab | not run |  |" in table and "`IS_SERVERLESS=TRUE`" in table
