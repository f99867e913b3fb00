"""Model servers as child processes that always stop: the plumbing behind notebook 06 and the serving benchmark.

`serve_model(uri)` runs the book's `mlflow models serve -m <uri> --env-manager local`; `serve_model(uri, guarded=True)`
runs MLflow's same scoring app behind the request guard of `helpers.serving_app`. Either way the server listens on
127.0.0.1 and a free port, `/ping` answers before the call returns, and the server and every process it started are
stopped by `stop()`, by leaving a `with` block, when Python exits, and when start-up fails or is interrupted. If the
process that started it is killed outright, Linux sends the server's first process a parent-death signal: that is
uvicorn itself for the guarded server, and `mlflow models serve` passes the same signal on to its uvicorn.

The signal is asked for by a tiny launcher that then execs the server, never by `preexec_fn`: Python code run between
fork and exec in a process with threads (a Spark Connect kernel's gRPC threads) can break the child (grpc/grpc#43055:
`epoll_wait error: Bad file descriptor`), and Python's documentation calls `preexec_fn` unsafe there.
"""
from __future__ import annotations

import atexit
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from helpers.config import on_databricks, settings, workspace_dir

DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # the payload limit the book quotes for Databricks serving
_LIVE: set["ModelServer"] = set()


class ServingError(RuntimeError):
    """A model server could not start; the message says why and where its log is."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Run as `python -I -S -c DIE_WITH_PARENT <parent pid> <command ...>`: asks Linux for SIGTERM when the parent dies,
# gives up if the parent is already gone, then becomes the command (the request survives exec).
DIE_WITH_PARENT = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: stop() and atexit still apply
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the parent died before the request: nobody would stop this server
os.execvpe(sys.argv[2], sys.argv[2:], os.environ)
"""


def dying_with_parent(command: list[str]) -> list[str]:
    """`command`, run through the launcher that makes it die with this process."""
    return [sys.executable, "-I", "-S", "-c", DIE_WITH_PARENT, str(os.getpid()), *command]


class ModelServer:
    """One scoring server process (and its children). Use it in a `with` block or call stop()."""

    health_path = "/ping"  # what start() polls until it answers 200
    shown_variables = ("COURSE_SERVING_MODEL_URI",)  # what display_command shows besides the arguments

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ModelServer {self.name} at {self.url}, {state}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def display_command(self) -> str:
        """The command as a learner would type it in an activated environment, with the variables it needs."""
        words = list(self.command)
        if Path(words[0]) == Path(sys.executable):
            words = words[2:] if words[1] == "-m" else words[1:]
        variables = [f"{name}={shlex.quote(self.env[name])}" for name in self.shown_variables if name in self.env]
        return " ".join([*variables, shlex.join(words)])

    def start(self, timeout: float = 180) -> "ModelServer":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "ModelServer":
        """Starts the process and returns at once: servers launched together load their models side by side."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._launched = time.perf_counter()
        with open(self.log, "wb") as log:  # a new log per start: a port can be reused
            self.process = subprocess.Popen(dying_with_parent(self.command), env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)  # a kernel interrupt must not reach it
        _LIVE.add(self)
        return self

    def wait_ready(self, timeout: float = 180) -> "ModelServer":
        """Returns once the launched server answers its health path; stops it and explains if it never does."""
        started = self._launched
        try:
            while not self._answers(self.health_path):
                if self.process.poll() is not None:
                    raise ServingError(f"The {self.name} server exited with code {self.process.returncode} before "
                                       f"answering {self.health_path}; its log is {self.log}:\n{self.log_tail()}")
                if time.perf_counter() - started > timeout:
                    raise ServingError(f"The {self.name} server did not answer {self.health_path} within "
                                       f"{timeout:.0f} s; its log is {self.log}:\n{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:  # also KeyboardInterrupt: a half-started server must not outlive the cell
            self.stop()
            raise
        self.ready_seconds = time.perf_counter() - started
        return self

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"

    def process_ids(self) -> list[int]:
        """The server's process and all its descendants (uvicorn, a Spark JVM), for stopping and for tests."""
        import psutil

        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace: float = 10) -> None:
        """Stops the server and everything it started: SIGTERM, then SIGKILL for what is left after `grace` s."""
        import psutil

        _LIVE.discard(self)
        if self.process is None:
            return
        processes = []
        for pid in self.process_ids():
            try:
                processes.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        for process in processes:
            try:
                process.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(processes, timeout=grace)
        for process in alive:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=grace)
        try:  # anything left in the server's own process group, e.g. children of a first process that already died
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=grace)

    def __enter__(self) -> "ModelServer":
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def stop_all() -> None:
    """Stops every server this Python process started (a kernel restart or shutdown ends here)."""
    for server in list(_LIVE):
        try:
            server.stop()
        except Exception as error:  # one failure must not leave the others running
            print(f"could not stop {server}: {error}", file=sys.stderr)


def serving_environment(tracking_uri: str) -> dict[str, str]:
    """The child's environment: this Python's scripts first on PATH (`mlflow models serve` runs `uvicorn` from
    PATH, which an unactivated virtualenv lacks), the course's tracking store and a Java for Spark models."""
    from helpers.java import prepare_java

    from helpers.spark import CONNECT_VARIABLES

    # A server loads a Spark model in a classic local session of its own, which pyspark refuses while the
    # variables of a Spark Connect notebook say that a Connect server is in use.
    env = {name: value for name, value in os.environ.items() if name not in CONNECT_VARIABLES}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    config = settings()
    try:
        java = prepare_java(config.workspace, config.java_home)
        env["JAVA_HOME"] = str(java.home)
    except RuntimeError:
        pass  # only a Spark-flavor model needs Java, and it then fails with Spark's own clear message
    return env


def start_server(command: list[str], port: int, *, name: str, env: dict[str, str] | None = None,
                 health_path: str = "/ping", timeout: float = 180, wait: bool = True) -> ModelServer:
    """Runs a server command as a lesson writes it (`mlflow models serve ...`, `mlflow server ...`, listening on
    `port`) as a child process that stops with this kernel, and returns once `health_path` answers 200 (with
    wait=False at once). A leading `mlflow` or `uvicorn` is this environment's, installed or not on PATH; `env` adds
    to the course's serving environment."""
    import mlflow

    if command[0] in ("mlflow", "uvicorn"):
        command = [sys.executable, "-m", *command]
    environment = serving_environment(mlflow.get_tracking_uri())
    environment.update(env or {})
    log = workspace_dir() / "logs" / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-{port}.log"
    server = ModelServer(name, command, environment, port, log)
    server.health_path = health_path
    return server.start(timeout) if wait else server.launch()


def serve_model(model_uri: str, *, guarded: bool = False, name: str | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 180, wait: bool = True) -> ModelServer:
    """Starts a scoring server for `model_uri` on 127.0.0.1 and returns it once `/ping` answers (with wait=False at
    once: call its wait_ready() when you need it)."""
    if on_databricks():  # Databricks Model Serving instead, at a local address that adds the notebook's credentials
        if guarded:
            raise ServingError("The guard runs in front of a local server; Databricks Model Serving has its own "
                               "limits (16 MB a request): serve the model without guarded=True there.")
        from helpers.model_serving import ServingEndpoint
        from helpers.tracking import course_model_name

        registered = course_model_name(re.sub(r"[^A-Za-z0-9_]", "_", name or "served_model").lower())
        return ServingEndpoint(model_uri, registered).start(max(timeout, 1800))
    port = free_port()
    env = {}
    if guarded:
        env.update(COURSE_SERVING_MODEL_URI=model_uri, COURSE_SERVING_MAX_BYTES=str(max_bytes))
        command = ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                   "--no-access-log", "--factory", "helpers.serving_app:create_app"]
    else:
        command = ["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
                   "--host", "127.0.0.1", "--port", str(port)]
    return start_server(command, port, name=name or model_uri, env=env, timeout=timeout, wait=wait)


def _post_forever(url: str, body: bytes, deadline: float, latencies: list[float]) -> None:
    """One client: single-row requests over one keep-alive connection until the deadline, timing each."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            connection.request("POST", address.path, body, headers)
            reply = connection.getresponse()
            reply.read()
            if reply.status != 200:
                raise ServingError(f"{url} answered {reply.status} during the load test")
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()


def load_test(url: str, body: bytes, clients: int = 1, seconds: float = 3.0) -> dict[str, float]:
    """Drives `url` with `clients` concurrent Python clients for `seconds`: requests/s and latency percentiles (ms).

    A Python client shares the 2 cores with the server, so these figures are a floor; benchmarks/serving.py
    measures the same servers with wrk.
    """
    import threading

    import numpy as np

    _post_forever(url, body, time.perf_counter() + 0.5, [])  # warm-up: connections, caches, lazy imports
    per_client: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def client(latencies: list[float]) -> None:
        try:
            _post_forever(url, body, deadline, latencies)
        except BaseException as error:  # reported below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(latencies,)) for latencies in per_client]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    if not any(per_client):
        raise ServingError(f"No request to {url} finished within {seconds} s.")
    latencies = np.array([value for values in per_client for value in values]) * 1000
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"requests": len(latencies), "requests_per_s": len(latencies) / elapsed, "p50_ms": p50, "p95_ms": p95,
            "p99_ms": p99}
