"""Databricks Model Serving, as notebook 06 uses it through MLflow's `databricks` deployments client: waiting for a
new endpoint, and telling a workspace without room for one from a real failure."""
from __future__ import annotations

import re
import time

# How a workspace says it has no endpoint to spare (Free Edition allows few): quota and limit errors
NO_CAPACITY = re.compile(r"QUOTA|RESOURCE_EXHAUSTED|limit (?:of|on|for) .*endpoints|maximum number of .*endpoints",
                         re.IGNORECASE)


class NoServingCapacity(RuntimeError):
    """The workspace has no Model Serving endpoint to spare: the message says what to do."""


def endpoint_name(model_name: str) -> str:
    """`mlflow_course_ada_1a2b-retail_age_serving`: the learner's schema and the model, within the 63 characters an
    endpoint name may have (workspace-wide, so the schema keeps learners apart)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", model_name.split(".", 1)[-1])[-63:]


def no_capacity(error: Exception) -> bool:
    return bool(NO_CAPACITY.search(str(error)))


def wait_until_ready(client, endpoint: str, timeout: float = 1800) -> dict:
    """Polls the endpoint until it serves (a new endpoint takes minutes: a container is built for the model)."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.get_endpoint(endpoint).get("state", {})
        if state.get("ready") == "READY":
            return state
        if state.get("config_update") == "UPDATE_FAILED":
            raise RuntimeError(f"Model Serving could not start the endpoint {endpoint}: its Events and Logs tabs "
                               "(Serving, in the workspace's sidebar) say why; delete it there afterwards.")
        if time.monotonic() > deadline:
            raise TimeoutError(f"The endpoint {endpoint} was not ready after {timeout:.0f} s; follow it under Serving.")
        time.sleep(5)


class ServingEndpoint:
    """A Model Serving endpoint for a model, used as a lab uses a local model server (`serve_model` returns one on
    Databricks): `url` is a forwarder on 127.0.0.1 that passes `/invocations` to the endpoint with the notebook's
    credentials and answers `/ping` while the endpoint is ready, so that plain `requests.post(server.url +
    "/invocations", ...)` works on both; `stop()` deletes the endpoint."""

    def __init__(self, model_uri: str, registered_name: str):
        self.model_uri, self.registered_name = model_uri, registered_name
        self.name = endpoint_name(registered_name)
        self.command = ["Model Serving", model_uri]  # what the server serves, as a local server's command says
        self.ready_seconds = 0.0
        self.version = self.client = self.url = self.forwarder = None

    def __repr__(self) -> str:
        return f"ServingEndpoint({self.name!r}, {'running' if self.running else 'stopped'})"

    @property
    def running(self) -> bool:
        return self.forwarder is not None

    def display_command(self) -> str:
        return f"Model Serving endpoint {self.name}: {self.registered_name} version {self.version}"

    def start(self, timeout: float = 1800) -> "ServingEndpoint":
        import mlflow
        from databricks.sdk import WorkspaceClient
        from mlflow.deployments import get_deploy_client

        started = time.perf_counter()
        self.version = mlflow.register_model(self.model_uri, self.registered_name).version
        self.client = get_deploy_client("databricks")
        request = {"name": self.name, "config": {"served_entities": [{
            "entity_name": self.registered_name, "entity_version": self.version,
            "workload_size": "Small", "scale_to_zero_enabled": True}]}}
        try:
            self.client.create_endpoint(config=request)
        except Exception as error:
            if no_capacity(error):
                raise NoServingCapacity(f"This workspace has no Model Serving endpoint to spare ({error}): delete one "
                                   "you no longer need (Serving, in the sidebar) and run the cell again.") from None
            if "already exists" not in str(error).lower():
                raise
            self.client.delete_endpoint(self.name)  # a cell run again: a fresh endpoint for this version
            self.client.create_endpoint(config=request)
        try:
            wait_until_ready(self.client, self.name, timeout)
        except TimeoutError:
            self.client.delete_endpoint(self.name)  # never ready: not left running (a failed one stays, to read)
            raise
        self.ready_seconds = time.perf_counter() - started
        workspace = WorkspaceClient()
        self.forwarder = _forwarder(f"{workspace.config.host.rstrip('/')}/serving-endpoints/{self.name}",
                                    workspace.config.authenticate, self._ready)
        self.url = f"http://127.0.0.1:{self.forwarder.server_address[1]}"
        return self

    def _ready(self) -> bool:
        try:
            return self.client.get_endpoint(self.name).get("state", {}).get("ready") == "READY"
        except Exception:  # deleted, or the workspace unreachable
            return False

    def stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.shutdown()
            self.forwarder.server_close()
            self.forwarder = None
            self.client.delete_endpoint(self.name)  # an endpoint costs money while it exists

    def process_ids(self) -> list[int]:
        return []  # the endpoint runs in the workspace, not here

    def __enter__(self) -> "ServingEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _forwarder(target: str, credentials, ready):
    """A local HTTP server that passes POST /invocations to `target` with the headers `credentials()` gives."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    class Forward(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path in ("/ping", "/health"):
                return self.reply(200 if ready() else 503, b"\n", "text/plain")
            self.reply(404, b'{"error_code": "NOT_FOUND", "message": "the endpoint answers POST /invocations"}')

        def do_POST(self):
            if self.path != "/invocations":
                return self.do_GET()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {**credentials(), "Content-Type": self.headers.get("Content-Type", "application/json")}
            answer = requests.post(target + "/invocations", data=body, headers=headers, timeout=300)
            self.reply(answer.status_code, answer.content, answer.headers.get("Content-Type", "application/json"))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
