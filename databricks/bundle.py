"""Writes databricks.yml: the course as a Databricks Asset Bundle, for an acceptance run on a real workspace.

One job, `course`, runs every lesson and each lab's solutions version (but lab 06's) in course order, each task after the one
before, with the set-up cell's widgets (catalog, schema, volume) as parameters. Two targets: `serverless` (the
notebooks' own serverless environment, version 4 and the course's MLflow) and `lts` (a single-node job cluster of
Databricks Runtime 17.3 LTS, dedicated access mode). A maintainer with a workspace and the Databricks CLI runs:

    databricks bundle deploy -t serverless && databricks bundle run -t serverless course
    databricks bundle deploy -t lts --var node_type=<a node type of your cloud> && databricks bundle run -t lts course

Regenerate after adding a notebook: `python3 databricks/bundle.py` (tests/test_databricks.py checks it is current).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from helpers.databricks import WIDGETS  # noqa: E402
from helpers.labs import solutions_notebooks  # noqa: E402
from helpers.runner import course_notebooks  # noqa: E402

BUNDLE = REPO_ROOT / "databricks.yml"
LTS_RUNTIME = "17.3.x-scala2.13"


def acceptance_notebooks() -> list[Path]:
    """Each lesson, then its lab's solutions version (the learner version stops at its first empty task)."""
    labs = {path.name[:2]: path for path in solutions_notebooks()}
    return [path for lesson in course_notebooks() for path in (lesson, labs.get(lesson.name[:2])) if path]


def task_key(notebook: Path) -> str:
    return notebook.stem.replace("_solutions", "_lab")


def tasks(cluster: str | None) -> list[str]:
    lines, previous = [], None
    for notebook in acceptance_notebooks():
        lines += [f"        - task_key: {task_key(notebook)}"]
        if previous:
            lines += ["          depends_on:", f"            - task_key: {previous}"]
        if cluster:
            lines += [f"          job_cluster_key: {cluster}"]
        lines += ["          notebook_task:",
                  f"            notebook_path: ./{notebook.relative_to(REPO_ROOT).as_posix()}",
                  "            base_parameters:",
                  *(f"              {widget}: ${{var.{widget}}}" for widget in WIDGETS)]
        previous = task_key(notebook)
    return lines


def bundle() -> str:
    return "\n".join([
        "# Made by `python3 databricks/bundle.py`: the course as one job, for an acceptance run on a real workspace",
        "# (docs/databricks.md, \"An acceptance run\"). Do not edit by hand.",
        "bundle:",
        "  name: mlflow-spark-course",
        "variables:",
        "  catalog:",
        "    description: the Unity Catalog catalog of the course's schema",
        "    default: workspace",
        "  schema:",
        "    description: a schema the job may create, or one it may write",
        "    default: mlflow_course_acceptance",
        "  volume:",
        "    description: the volume for the course's files",
        "    default: course",
        "  node_type:",
        "    description: the lts target's node type (for example i3.xlarge on AWS, Standard_DS3_v2 on Azure)",
        "    default: \"\"",
        "targets:",
        "  serverless:",
        "    default: true",
        "    mode: development",
        "    variables:",
        "      schema: mlflow_course_acceptance_serverless",
        "    resources:",
        "      jobs:",
        "        course:",
        "          name: mlflow-spark-course (serverless)",
        "          max_concurrent_runs: 1",
        "          tasks:",
        *["  " + line for line in tasks(None)],
        "  lts:",
        "    mode: development",
        "    variables:",
        "      schema: mlflow_course_acceptance_lts",
        "    resources:",
        "      jobs:",
        "        course:",
        f"          name: mlflow-spark-course ({LTS_RUNTIME})",
        "          max_concurrent_runs: 1",
        "          job_clusters:",
        "            - job_cluster_key: lts",
        "              new_cluster:",
        f"                spark_version: {LTS_RUNTIME}",
        "                node_type_id: ${var.node_type}",
        "                num_workers: 0",
        "                data_security_mode: SINGLE_USER",
        "                spark_conf:",
        "                  spark.master: local[*]",
        "                  spark.databricks.cluster.profile: singleNode",
        "                custom_tags:",
        "                  ResourceClass: SingleNode",
        "          tasks:",
        *["  " + line for line in tasks("lts")],
    ]) + "\n"


if __name__ == "__main__":
    BUNDLE.write_text(bundle())
    print(f"wrote {BUNDLE.relative_to(REPO_ROOT)}: {len(acceptance_notebooks())} notebooks in each target's job")
