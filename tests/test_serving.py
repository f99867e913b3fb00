"""Model servers for real: hostile requests against the guarded scoring server, and no process left behind.

The model is a small scikit-learn regression with a named-column signature (no Spark needed); the servers are real
`uvicorn`/`mlflow models serve` processes on loopback, and the kernels in the last tests are real Jupyter kernels.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import textwrap
import time
import types

import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
import requests

from helpers.serving import ServingError, serve_model
from tests.processes import alive, wait_until_gone

pytestmark = pytest.mark.slow
COLUMNS = ["visits", "spend", "share_toys"]
LIMIT = 64 * 1024  # a small body limit, so that oversized requests are quick to send


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tracking store of its own with two models: a linear regression, and a model that takes minutes to load."""
    from sklearn.linear_model import LinearRegression

    folder = tmp_path_factory.mktemp("serving")
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # An experiment of this store: a module that ran before in this process may have left another store's active.
    mlflow.set_experiment("serving-tests")
    frame = pd.DataFrame({"visits": [1.0, 2.0, 3.0, 4.0], "spend": [10.0, 20.0, 35.0, 41.0],
                          "share_toys": [0.1, 0.5, 0.2, 0.9]})
    regression = LinearRegression().fit(frame, [20.0, 30.0, 41.0, 52.0])
    with mlflow.start_run():
        linear = mlflow.sklearn.log_model(regression, name="model", input_example=frame.head(2),
                                          pip_requirements=["scikit-learn"])
    slow_code = folder / "slow_model.py"
    slow_code.write_text(textwrap.dedent("""
        import time
        import mlflow
        import pandas as pd

        class SlowToLoad(mlflow.pyfunc.PythonModel):
            def load_context(self, context):
                time.sleep(600)

            def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
                return model_input

        mlflow.models.set_model(SlowToLoad())
    """))
    with mlflow.start_run():
        slow = mlflow.pyfunc.log_model(name="slow", python_model=str(slow_code), pip_requirements=["mlflow"])
    yield {"linear": linear.model_uri, "slow": slow.model_uri, "frame": frame,
           "expected": regression.predict(frame), "tracking_uri": mlflow.get_tracking_uri()}
    mlflow.set_tracking_uri(saved)


@pytest.fixture(scope="module")
def guarded(store):
    with serve_model(store["linear"], guarded=True, max_bytes=LIMIT) as server:
        yield server


def good_body(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


def hostile_requests(frame: pd.DataFrame, seed: int = 7) -> list[tuple[str, dict]]:
    """A few hundred requests that are each wrong: (description, keyword arguments for requests.post)."""
    rng = random.Random(seed)
    good = good_body(frame)["dataframe_split"]
    text = json.dumps(good_body(frame))
    json_type = {"Content-Type": "application/json"}
    not_a_number = ["many", "", None, [], {}, [1, 2], {"a": 1}, "1e999x", "NaN?", "0x1F", "🙂"]
    cases: list[tuple[str, dict]] = []

    def add(name, body, headers=json_type):
        raw = isinstance(body, (bytes, types.GeneratorType))  # bytes as they are; a generator is sent chunked
        cases.append((name, dict(data=body if raw else json.dumps(body).encode(), headers=headers)))

    for _ in range(80):  # one cell of one row replaced by something that is not a number
        data = [list(row) for row in good["data"]]
        data[rng.randrange(len(data))][rng.randrange(len(COLUMNS))] = rng.choice(not_a_number)
        add("bad cell", {"dataframe_split": {"columns": good["columns"], "data": data}})
    for _ in range(30):  # records with a field missing or mistyped
        records = frame.to_dict(orient="records")
        record = rng.choice(records)
        column = rng.choice(COLUMNS)
        if rng.random() < 0.5:
            del record[column]
        else:
            record[column] = rng.choice(not_a_number)
        add("bad record", {"dataframe_records": records})
    for _ in range(40):  # valid JSON cut off at a random place
        add("truncated JSON", text[: rng.randrange(1, len(text) - 1)].encode())
    for _ in range(30):  # random bytes
        add("random bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
    for shape in ([], {}, 0, "text", None, True, [good], {"dataframe_split": None}, {"dataframe_split": []},
                  {"dataframe_split": {"columns": COLUMNS}}, {"dataframe_split": {"data": good["data"]}},
                  {"dataframe_split": {"columns": COLUMNS, "data": "rows"}},
                  {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2]]}},
                  {"dataframe_split": {"columns": COLUMNS[:2], "data": [row[:2] for row in good["data"]]}},
                  {"dataframe_split": {"columns": [1, 2, 3], "data": good["data"]}},
                  {"dataframe_records": "rows"}, {"dataframe_records": [1, 2]}, {"inputs": "x"},
                  {"inputs": {"visits": [1]}}, {"instances": [[1]]}, {"unknown_format": good},
                  {"dataframe_split": good, "inputs": good["data"]}):
        add(f"wrong shape {str(shape)[:30]}", shape)
    for depth in (2_000, 50_000, 500_000):
        add(f"nested {depth} deep", b"[" * depth + b"]" * depth)
    add("invalid UTF-8", b'{"inputs": "\xff\xfe\xfd"}')
    add("empty body", b"")
    add("whitespace body", b"   \n ")
    for content_type in (None, "text/plain", "application/xml", "multipart/form-data; boundary=x",
                         "application/json; charset=latin-1", "application/json; version=2", "text/csv",
                         "application/x-parquet", "*/*"):
        headers = {} if content_type is None else {"Content-Type": content_type}
        add(f"content type {content_type!r}", text.encode() if content_type != "text/csv" else b"a,b\n1", headers)
    oversized = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": good["data"] * 2_000}}).encode()
    add("oversized, Content-Length", oversized)
    add("oversized, chunked", (oversized[i:i + 8192] for i in range(0, len(oversized), 8192)))
    add("declared oversized", b"")  # see send()
    return cases


def send(server, name, request, method="POST", path="/invocations"):
    if name == "declared oversized":  # a Content-Length that promises more than the limit (and a short body)
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(LIMIT * 10))
        connection.endheaders()
        reply = connection.getresponse()
        return reply.status, reply.getheader("content-type", ""), reply.read()
    reply = requests.request(method, server.url + path, timeout=60, **request)
    return reply.status_code, reply.headers.get("content-type", ""), reply.content


def test_every_hostile_request_gets_a_4xx_json_error_and_the_server_keeps_serving(guarded, store):
    cases = hostile_requests(store["frame"])
    assert len(cases) >= 200
    wrong = []
    for name, request in cases:
        status, content_type, body = send(guarded, name, request)
        try:
            error = json.loads(body)
            well_formed = content_type.startswith("application/json") and set(error) >= {"error_code", "message"}
        except ValueError:
            well_formed = False
        if not (400 <= status < 500 and well_formed):
            wrong.append(f"{name}: {status} {content_type} {body[:120]!r}")
    assert not wrong, f"{len(wrong)} of {len(cases)} replies were not a 4xx JSON error:\n" + "\n".join(wrong[:20])
    reply = requests.post(guarded.url + "/invocations", json=good_body(store["frame"]), timeout=30)
    assert reply.status_code == 200
    assert np.allclose(reply.json()["predictions"], store["expected"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("method, path", [("GET", "/invocations"), ("PUT", "/invocations"), ("GET", "/admin"),
                                          ("POST", "/invocations/extra"), ("DELETE", "/")])
def test_wrong_methods_and_paths_get_a_json_4xx(guarded, method, path):
    status, content_type, body = send(guarded, "", {}, method=method, path=path)
    assert 400 <= status < 500 and content_type.startswith("application/json"), (status, body)
    json.loads(body)


def test_a_request_that_is_not_valid_http_gets_a_400_from_uvicorn(guarded):
    """A control character in a header never reaches the app: uvicorn's HTTP parser answers, in plain text."""
    status, _, _ = send(guarded, "", {"data": b"{}", "headers": {"Content-Type": "application/json\x01"}})
    assert status == 400


def padded(payload: dict, size: int) -> bytes:
    """The payload's JSON with trailing spaces up to exactly `size` bytes."""
    text = json.dumps(payload).encode()
    return text + b" " * (size - len(text))


@pytest.mark.parametrize("case", ["dataframe_split", "dataframe_records", "inputs", "csv", "chunked",
                                  "exactly the limit", "charset=utf-8"])
def test_good_requests_in_every_format_pass_the_guard(guarded, store, case):
    frame = store["frame"]
    json_type = {"Content-Type": "application/json"}
    body, headers = json.dumps(good_body(frame)).encode(), json_type
    if case == "dataframe_records":
        body = json.dumps({"dataframe_records": frame.to_dict(orient="records")}).encode()
    elif case == "inputs":
        body = json.dumps({"inputs": frame.to_dict(orient="list")}).encode()
    elif case == "csv":
        body, headers = frame.to_csv(index=False).encode(), {"Content-Type": "text/csv"}
    elif case == "chunked":
        text = body
        body = (text[i:i + 16] for i in range(0, len(text), 16))
    elif case == "exactly the limit":
        body = padded(good_body(frame), LIMIT)
    elif case == "charset=utf-8":
        headers = {"Content-Type": "application/json; charset=utf-8"}
    reply = requests.post(guarded.url + "/invocations", data=body, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    assert np.allclose(np.ravel(reply.json()["predictions"]), store["expected"], rtol=0, atol=1e-9)


def test_one_byte_over_the_limit_is_refused(guarded, store):
    reply = requests.post(guarded.url + "/invocations", data=padded(good_body(store["frame"]), LIMIT + 1),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 413 and reply.json()["error_code"] == "REQUEST_TOO_LARGE"


def test_repeated_content_headers_are_refused(guarded, store):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=30)
    body = json.dumps(good_body(store["frame"])).encode()
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    reply = connection.getresponse()
    assert reply.status == 400 and json.loads(reply.read())["error_code"] == "BAD_REQUEST"


def test_the_size_limit_refuses_before_reading_the_body(guarded):
    """413 after the headers alone: the client never sent its (promised) 640 kB."""
    status, _, body = send(guarded, "declared oversized", {})
    assert status == 413 and json.loads(body)["error_code"] == "REQUEST_TOO_LARGE"


def test_servers_launched_together_each_become_ready(store):
    servers = [serve_model(store["linear"], guarded=guarded, wait=False) for guarded in (True, False)]
    try:
        assert all(s.running and s.ready_seconds is None for s in servers)  # launched, not yet waited for
        for server in servers:
            server.wait_ready()
            reply = requests.post(server.url + "/invocations", json=good_body(store["frame"]), timeout=30)
            assert reply.status_code == 200 and server.ready_seconds > 0
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("guarded_server", [True, False], ids=["guarded", "mlflow-models-serve"])
def test_leaving_the_with_block_stops_the_server_and_its_children(store, guarded_server):
    with serve_model(store["linear"], guarded=guarded_server) as server:
        pids = server.process_ids()
        reply = requests.post(server.url + "/invocations", json=good_body(store["frame"]), timeout=30)
        assert reply.status_code == 200
    assert len(pids) == (1 if guarded_server else 2)  # `mlflow models serve` runs uvicorn as its child
    assert not wait_until_gone(pids, seconds=1)


def test_a_spark_model_server_and_its_jvm_are_stopped(spark, store):
    """The Spark-flavor server runs a JVM under uvicorn under `mlflow models serve`: all three must go."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    frame = spark.createDataFrame(store["frame"].assign(age=[20.0, 30.0, 41.0, 52.0]))
    model = Pipeline(stages=[VectorAssembler(inputCols=COLUMNS, outputCol="features"),
                             LinearRegression(labelCol="age")]).fit(frame)
    mlflow.set_tracking_uri(store["tracking_uri"])
    with mlflow.start_run():
        info = mlflow.spark.log_model(model, artifact_path="model", input_example=store["frame"].head(2),
                                      pip_requirements=["pyspark"])
    with serve_model(info.model_uri) as server:
        processes = [psutil.Process(pid) for pid in server.process_ids()]
        assert any(process.name() == "java" for process in processes), [p.name() for p in processes]
        reply = requests.post(server.url + "/invocations", json=good_body(store["frame"]), timeout=60)
        assert reply.status_code == 200
    assert not wait_until_gone([process.pid for process in processes])


def test_a_server_that_exits_at_start_up_is_reported_with_its_log(store):
    with pytest.raises(ServingError, match="exited with code"):
        serve_model("models:/no_such_model/1", guarded=True)


class Kernel:
    """A real Jupyter kernel running in the course environment, as papermill and JupyterLab start it."""

    def __init__(self, tracking_uri: str):
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri})
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.run("import mlflow\nfrom helpers.serving import serve_model")

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def run(self, code: str, timeout: float = 120) -> tuple[str, str]:
        """Runs a cell; returns (status, stdout)."""
        printed = []

        def collect(message):
            if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
                printed.append(message["content"]["text"])

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        return reply["content"]["status"], "".join(printed)

    def start_server(self, uri: str) -> list[int]:
        status, printed = self.run(f"server = serve_model({uri!r}, guarded=True)\nprint(server.process_ids())")
        assert status == "ok", printed
        return json.loads(printed)

    def shutdown(self):
        self.client.stop_channels()
        if self.manager.is_alive():
            self.manager.shutdown_kernel(now=False)  # what papermill does after the last or a failing cell
        else:
            self.manager.cleanup_resources()


@pytest.fixture
def kernel(store):
    started = Kernel(store["tracking_uri"])
    yield started
    started.shutdown()


def test_no_server_outlives_a_kernel_whose_cell_failed(kernel, store):
    pids = kernel.start_server(store["linear"])
    status, _ = kernel.run("1 / 0  # the learner's next cell fails")
    assert status == "error" and alive(pids)
    kernel.shutdown()
    assert not wait_until_gone(pids)


def test_interrupting_a_server_start_stops_the_half_started_server(kernel, store):
    def command(child) -> str:
        try:
            return " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):  # a child that exited while we looked
            return ""

    def server_processes():
        return [child for child in psutil.Process(kernel.pid).children(recursive=True) if "uvicorn" in command(child)]

    kernel.client.execute(f"server = serve_model({store['slow']!r}, guarded=True, timeout=900)")
    deadline = time.monotonic() + 60
    while not server_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = [process.pid for process in server_processes()]
    assert pids, "the slow server never started"
    time.sleep(2)  # it is now loading the model, which takes ten minutes
    kernel.manager.interrupt_kernel()
    reply = kernel.client.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert not wait_until_gone(pids), "the interrupted start left its server running"
    assert kernel.manager.is_alive()


def test_a_killed_kernel_takes_its_servers_with_it(kernel, store):
    pids = kernel.start_server(store["linear"])
    os.kill(kernel.pid, signal.SIGKILL)  # a crashed kernel: no atexit, no finally; the parent-death signal remains
    assert not wait_until_gone(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")
def test_a_killed_python_process_takes_its_stock_server_with_it(store, tmp_path):
    """`mlflow models serve` runs uvicorn as a child: both must go when the Python that started them is killed."""
    script = tmp_path / "start.py"
    script.write_text(textwrap.dedent(f"""
        import json, time, mlflow
        from helpers.serving import serve_model
        mlflow.set_tracking_uri({store['tracking_uri']!r})
        server = serve_model({store['linear']!r})
        print(json.dumps(server.process_ids()), flush=True)
        time.sleep(600)
    """))
    import subprocess

    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = json.loads(process.stdout.readline())
    assert len(alive(pids)) == 2
    process.kill()
    process.wait()
    assert not wait_until_gone(pids)


def test_a_server_starts_through_the_launcher_and_no_python_runs_between_fork_and_exec(monkeypatch, tmp_path):
    """The deterministic half of grpc/grpc#43055's guard (tests/test_connect.py starts servers from a live Connect
    process): a preexec_fn would run Python in the forked child of a process with gRPC's threads."""
    import subprocess

    from helpers import serving

    started = {}

    class Recorder:
        def __init__(self, command, **options):
            started.update(command=command, options=options)

    monkeypatch.setattr(subprocess, "Popen", Recorder)
    serving.ModelServer("probe", ["uvicorn", "app"], {}, 1, tmp_path / "probe.log").launch()
    assert started["options"].get("preexec_fn") is None
    assert started["command"] == serving.dying_with_parent(["uvicorn", "app"])
    serving._LIVE.clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")
def test_the_launcher_runs_the_command_and_refuses_to_start_one_nobody_would_stop():
    import subprocess

    from helpers.serving import DIE_WITH_PARENT, dying_with_parent

    ran = subprocess.run(dying_with_parent([sys.executable, "-c", "print('ran')"]), capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "ran\n")
    # As if the parent had died before the child asked for the signal: the child's parent is not the one named.
    orphan = subprocess.run([sys.executable, "-I", "-S", "-c", DIE_WITH_PARENT, "1", "true"], capture_output=True)
    assert orphan.returncode == 1
