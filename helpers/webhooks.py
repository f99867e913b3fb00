"""A stand-in for a CI server (Jenkins, GitHub Actions) that receives MLflow Model Registry webhooks.

`mlflow server` POSTs one JSON delivery per registry event to every webhook subscribed to it, signed the way MLflow's
`mlflow/webhooks/delivery.py` does: `X-MLflow-Signature: v1,<base64 HMAC-SHA256>` of
`"{X-MLflow-Delivery-Id}.{X-MLflow-Timestamp}.{body}"` keyed with the webhook's secret. `verify_delivery` checks one
delivery; `WebhookReceiver` is a small loopback HTTP server that verifies and records them; `start_tracking_server`
runs the `mlflow server` that sends them (the file store and `mlflow ui` send none).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from helpers.serving import ModelServer, free_port

DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_HEADER = "X-MLflow-Signature"
SIGNATURE_PREFIX = "v1,"  # MLflow's signature version 1
MAX_BODY_BYTES = 1024 * 1024  # registry payloads are a few hundred bytes; never read more before verifying

_logger = logging.getLogger(__name__)


class DeliveryRejected(Exception):
    """A delivery that must not be acted on; `reason` says why and `status` is the HTTP answer to give."""

    def __init__(self, reason: str, status: int = 401):
        super().__init__(reason)
        self.reason, self.status = reason, status


def verify_delivery(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None,
                    max_age: int = 300, seen: set | None = None) -> dict:
    """Checks one webhook delivery and returns its JSON payload, or raises DeliveryRejected.

    The delivery id is added to `seen` only when everything passed, so forged requests cannot fill it.
    """
    lowered = {name.lower(): value for name, value in headers.items()}  # HTTP header names are case-insensitive
    for name, status in ((DELIVERY_ID_HEADER, 400), (TIMESTAMP_HEADER, 400), (SIGNATURE_HEADER, 401)):
        if not lowered.get(name.lower()):
            raise DeliveryRejected(f"The {name} header is missing.", status)
    delivery_id, timestamp, signature = (lowered[name.lower()] for name in
                                         (DELIVERY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not signature.startswith(SIGNATURE_PREFIX):
        raise DeliveryRejected(f"The {SIGNATURE_HEADER} header does not start with '{SIGNATURE_PREFIX}'.")
    try:
        received = base64.b64decode(signature[len(SIGNATURE_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        received = b""
    if len(received) != hashlib.sha256().digest_size:
        raise DeliveryRejected(f"The {SIGNATURE_HEADER} header is not a base64 HMAC-SHA256 after "
                               f"'{SIGNATURE_PREFIX}'.")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise DeliveryRejected(f"The {TIMESTAMP_HEADER} header is not a Unix time in seconds.", 400)
    # Sign exactly what MLflow signs: the header strings as sent and the body's bytes (MLflow's JSON is UTF-8).
    expected = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, received):  # constant time: no timing hints about the right signature
        raise DeliveryRejected("The signature does not match: wrong secret, or the body or headers were altered.")
    age = (time.time() if now is None else now) - int(timestamp)
    if age > max_age:
        raise DeliveryRejected(f"The delivery is {age:.0f} s old, older than the {max_age} s allowed.")
    if age < -max_age:
        raise DeliveryRejected(f"The delivery is dated {-age:.0f} s in the future, beyond the {max_age} s allowed.")
    if seen is not None and delivery_id in seen:
        raise DeliveryRejected("This delivery id was already received: a replay.", 409)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DeliveryRejected("The body is not JSON.", 400) from None
    if not isinstance(payload, dict):
        raise DeliveryRejected("The body is JSON but not an object.", 400)
    if seen is not None:
        seen.add(delivery_id)
    return payload


class WebhookReceiver:
    """A loopback HTTP server that accepts only signed, fresh, first-time MLflow deliveries.

    `accepted` holds dicts with `delivery_id`, `timestamp`, `payload`, `headers` and the raw `body`; `rejected` holds
    dicts with `status`, `reason` and `delivery_id`. `on_delivery(payload)` runs in one worker thread, in order.
    """

    def __init__(self, secret: str, *, on_delivery: Callable[[dict], Any] | None = None,
                 log_path: Path | None = None, max_age: int = 300):
        self.secret, self.on_delivery, self.log_path, self.max_age = secret, on_delivery, log_path, max_age
        self.accepted: list[dict] = []
        self.rejected: list[dict] = []
        self._seen: set[str] = set()
        self._changed = threading.Condition()  # guards the lists, the seen ids and the log; wakes wait_for
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._worker: ThreadPoolExecutor | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The webhook receiver is not started: call start() or use it in a `with` block.")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "WebhookReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, answer = receiver._handle(dict(self.headers.items()), self._read_body())
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _read_body(self) -> bytes | None:
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    return None
                return self.rfile.read(length) if 0 <= length <= MAX_BODY_BYTES else None

            def log_message(self, format: str, *args: Any) -> None:
                _logger.debug("webhook receiver: " + format, *args)  # keep notebook and test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        from helpers.spark import session_for_new_threads

        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-callback",
                                          initializer=session_for_new_threads())
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._worker.shutdown(wait=True)  # let queued callbacks finish: a CI job already triggered should run
            self._server = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _handle(self, headers: dict[str, str], body: bytes | None) -> tuple[int, dict]:
        lowered = {name.lower(): value for name, value in headers.items()}
        delivery_id = lowered.get(DELIVERY_ID_HEADER.lower())
        with self._changed:  # verify and remember the id in one step, so two copies of a delivery cannot both pass
            try:
                if body is None:
                    raise DeliveryRejected(f"The body is missing, or larger than {MAX_BODY_BYTES} bytes.", 400)
                payload = verify_delivery(self.secret, headers, body, max_age=self.max_age, seen=self._seen)
            except DeliveryRejected as rejection:
                self.rejected.append({"status": rejection.status, "reason": rejection.reason,
                                      "delivery_id": delivery_id})
                self._log({"event": "rejected", **self.rejected[-1]})
                return rejection.status, {"error": rejection.reason}
            delivery = {"delivery_id": delivery_id, "timestamp": int(lowered[TIMESTAMP_HEADER.lower()]),
                        "payload": payload, "headers": headers, "body": body}
            self.accepted.append(delivery)
            self._log({"event": "accepted", "delivery_id": delivery_id, "timestamp": delivery["timestamp"],
                       "payload": payload})
            self._changed.notify_all()
        if self.on_delivery is not None:
            self._worker.submit(self._run_callback, delivery)  # the sender gets its 200 without waiting for CI
        return 200, {"status": "accepted"}

    def _run_callback(self, delivery: dict) -> None:
        try:
            self.on_delivery(delivery["payload"])
        except Exception as error:  # a failing CI step must not take the receiver down
            if self.log_path is None:
                _logger.exception("on_delivery failed for delivery %s", delivery["delivery_id"])
            with self._changed:
                self._log({"event": "callback_failed", "delivery_id": delivery["delivery_id"],
                           "error": f"{type(error).__name__}: {error}"})

    def _log(self, record: dict) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 15) -> dict:
        """Returns the first accepted delivery (a dict, see the class) for which `predicate` is true, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for delivery in self.accepted:
                    if predicate(delivery):
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{d['payload'].get('entity')}.{d['payload'].get('action')}" for d in self.accepted]
                    raise TimeoutError(f"No matching webhook delivery within {timeout:.0f} s; accepted: {seen}, "
                                       f"rejected: {[r['reason'] for r in self.rejected]}")
                self._changed.wait(remaining)


class TrackingServer(ModelServer):
    """`mlflow server` as a child process: ModelServer's start/stop, but ready when `/health` answers (it has no
    `/ping`)."""

    health_path = "/health"
    shown_variables = ("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS",
                       "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")


def start_tracking_server(store_dir: Path, port: int | None = None, timeout: float = 180, *,
                          backend_store_uri: str | None = None, artifacts_dir: Path | None = None,
                          options: tuple[str, ...] = (), env: dict[str, str] | None = None) -> TrackingServer:
    """Starts `mlflow server` with a SQLite store (or `backend_store_uri`) and local artifacts in `store_dir` (or
    `artifacts_dir`); its `.url` is the tracking URI. `options` and `env` add to the command and its environment
    (`course.py cluster` adds PostgreSQL, basic-auth and proxied artifacts).

    Its environment lets it deliver webhooks to http://127.0.0.1 (MLflow allows only https and public addresses by
    default) and turns off the job runner (GenAI jobs: seven extra processes and seconds of start-up on 2 cores).
    """
    store_dir = Path(store_dir).resolve()
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    artifacts_dir = Path(artifacts_dir or store_dir / "artifacts").resolve()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               backend_store_uri or f"sqlite:///{store_dir}/mlflow.db", "--artifacts-destination",
               artifacts_dir.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *options]
    server_env = dict(os.environ)
    server_env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), server_env.get("PATH", "")])  # uvicorn
    server_env.update(MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https", MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
                      MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **(env or {}))
    server = TrackingServer("mlflow tracking", command, server_env, port, store_dir / "mlflow-server.log")
    return server.start(timeout)



def tracking_server_in_use() -> str | None:
    """The tracking server MLFLOW_TRACKING_URI names, when it is on this machine (`course.py cluster`'s): notebook 08
    uses it for its webhooks instead of starting one. None for the course's own store. A server elsewhere could not
    deliver webhooks to a receiver on this machine's loopback interface, so that stops here with one sentence."""
    from urllib.parse import urlparse

    import mlflow

    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return None
    if urlparse(uri).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError(f"The tracking server at {uri} cannot deliver webhooks to a receiver on this machine's "
                           "loopback interface: run notebook 08 with the course's own store (unset "
                           "MLFLOW_TRACKING_URI), or put the receiver where that server can reach it.")
    return uri

ADMIN_VARIABLES = ("COURSE_WEBHOOK_ADMIN_USERNAME", "COURSE_WEBHOOK_ADMIN_PASSWORD")


class WebhookPermissionError(PermissionError):
    """The tracking server lets only its admins manage webhooks (MLflow's basic-auth)."""


@contextmanager
def as_webhook_admin():
    """The block's MLflow calls go as the server's admin when COURSE_WEBHOOK_ADMIN_USERNAME and _PASSWORD are set.

    On a tracking server with MLflow's basic-auth only admins may create, list, test or delete webhooks; a team's
    admin registers the CI server's webhook once (`course.py cluster` hands its admin account to the course run for
    just these calls). Without the variables the calls go as you: right on a server without authentication, such
    as the one notebook 08 starts. MLflow reads the credentials from the environment at every request, so every
    MLflow call of this process inside the block goes as the admin: keep only the webhook calls in it.
    """
    from mlflow.exceptions import MlflowException

    username, password = (os.environ.get(name) for name in ADMIN_VARIABLES)
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    if username and password:
        os.environ.update(MLFLOW_TRACKING_USERNAME=username, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield
    except MlflowException as error:
        if error.get_http_status_code() not in (401, 403):
            raise
        if username and password:
            raise WebhookPermissionError(f"The tracking server refused the admin account {username!r} for a webhook "
                                         f"call ({error.error_code}): check {ADMIN_VARIABLES[1]}.") from None
        raise WebhookPermissionError(
            f"The tracking server lets only its admins manage webhooks ({error.error_code}): set "
            f"{' and '.join(ADMIN_VARIABLES)} to an admin account, or ask your MLflow admin to register the "
            "webhook.") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
