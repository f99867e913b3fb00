"""The compute tables of README.md and docs/databricks.md, made from the recorded stand-in runs
(databricks/standin-runs/*.json, written by `python3 course.py standin <compute> --record`), never by hand:
`python3 course.py standin --report` rewrites them, and tests/test_docs.py fails when they differ from the records."""
from __future__ import annotations

import json
import re
from pathlib import Path

from helpers.config import REPO_ROOT

RECORDS = REPO_ROOT / "databricks" / "standin-runs"  # the runs' summaries, written by `course.py standin --record`

BEGIN = "<!-- compute table: made by `python3 course.py standin --report` from databricks/standin-runs/ -->"
END = "<!-- end of compute table -->"
ORDER = ("serverless", "standard", "dedicated")
NEEDS = {
    "serverless": "environment 4+; no DataFrame cache; `availableNow` triggers only",
    "standard": "runtime 17.3 LTS+; Spark ML over Connect; Spark models staged in the volume (`MLFLOW_DFS_TMP`)",
    "dedicated": "runtime 17.3 LTS+ (Spark 4.0)",
}


def recorded_runs(folder: Path = RECORDS) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def result(run: dict | None) -> str:
    """How many of the run's notebooks passed; of a labs run (each lesson, then its lab), its labs only."""
    if run is None:
        return "not run yet"
    notebooks = [notebook for notebook in run["notebooks"]
                 if not run["labs"] or notebook["name"].endswith(("_lab", "_solutions"))]
    passed = sum(notebook["status"] == "passed" for notebook in notebooks)
    return f"{passed} of {len(notebooks)} passed ({run['date']})"


def readme_table(runs: dict[str, dict]) -> str:
    rows = ["| compute | needs | lessons in the stand-in | labs in the stand-in |", "|---|---|---|---|"]
    for compute in ORDER:
        rows.append(f"| {compute} | {NEEDS[compute]} | {result(runs.get(compute))} | "
                    f"{result(runs.get(f'{compute}-labs'))} |")
    return "\n".join(rows)


def docs_table(runs: dict[str, dict]) -> str:
    """Per notebook and compute type: passed or failed, and what the notebook did instead of a local step."""
    names = sorted({notebook["name"] for run in runs.values() for notebook in run["notebooks"]})
    keys = [key for compute in ORDER for key in (compute, f"{compute}-labs") if key in runs]
    status = {(key, notebook["name"]): notebook for key in keys for notebook in runs[key]["notebooks"]}
    computes = [compute for compute in ORDER if compute in runs or f"{compute}-labs" in runs]
    rows = [f"| notebook | {' | '.join(computes)} | on Databricks instead of a local step |",
            f"|---|{'---|' * len(computes)}---|"]
    for name in names:
        found = [status.get((compute, name)) or status.get((f"{compute}-labs", name)) for compute in computes]
        replaced = next((notebook["replaced"] for notebook in found if notebook and notebook["replaced"]), [])
        rows.append(f"| {name} | {' | '.join(notebook['status'] if notebook else '' for notebook in found)} | "
                    f"{'<br>'.join(line.replace('|', '/') for line in replaced)} |")
    environment = "; ".join(f"{compute}: " + ", ".join(f"`{k}={v}`" for k, v in run["environment"].items())
                            for compute in computes for run in [runs.get(compute) or runs[f"{compute}-labs"]])
    return "\n".join(rows) + f"\n\nEach compute type as the stand-in sets it up: {environment}."


def replace_block(text: str, table: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError("no compute table markers")
    return pattern.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text)


def expected_documents(runs: dict[str, dict] | None = None) -> dict[Path, str]:
    runs = recorded_runs() if runs is None else runs
    readme, docs = REPO_ROOT / "README.md", REPO_ROOT / "docs" / "databricks.md"
    return {readme: replace_block(readme.read_text(), readme_table(runs)),
            docs: replace_block(docs.read_text(), docs_table(runs))}


def write_tables() -> list[Path]:
    changed = []
    for path, text in expected_documents().items():
        if path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed
