"""MLflow's own scoring app behind a small request guard: `uvicorn --factory helpers.serving_app:create_app`.

The app that answers is `mlflow.pyfunc.scoring_server.init(model)`, exactly what `mlflow models serve` runs; the guard
only handles what the stock server lets through (measured in notebook 06):
- bodies over COURSE_SERVING_MAX_BYTES get 413 before they are read in full (the stock server reads any size);
- a missing or unsupported Content-Type, and JSON nested too deeply for Python's parser, get a 4xx instead of 500;
- every other 4xx reply is JSON (`{"error_code": ..., "message": ...}`) as MLflow's own errors are.
It also freezes the objects loaded at start-up out of the garbage collector's sight (`gc.freeze()`): with MLflow,
pandas and the model in memory, full collections paused requests for tens of milliseconds (benchmarks/serving.py).
Its one cost: a JSON body is parsed twice (once here to find nesting too deep for Python, once by MLflow), which for
one-row requests is about 5 us (measured with timeit) against the 74-1,326 us of MLflow's own scoring code.
"""
from __future__ import annotations

import gc
import json
import os

from helpers.serving import DEFAULT_MAX_BYTES

CONTENT_TYPES = ("application/json", "text/csv", "application/x-parquet")
ERROR_CODES = {400: "BAD_REQUEST", 404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "REQUEST_TOO_LARGE",
               415: "UNSUPPORTED_MEDIA_TYPE"}


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error_code": ERROR_CODES.get(status, "BAD_REQUEST"), "message": message}).encode()


class RequestGuard:
    """Pure ASGI middleware in front of the scoring app (see the module docstring)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = self._json_errors(send)
        if scope["path"] != "/invocations" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        names = [name for name, _ in scope["headers"]]
        if names.count(b"content-type") > 1 or names.count(b"content-length") > 1:
            return await self._reply(send, 400, "Send Content-Type and Content-Length once each.")
        headers = dict(scope["headers"])
        mime = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if mime not in CONTENT_TYPES:
            return await self._reply(send, 415, f"Send the body with Content-Type: application/json (or text/csv); "
                                                f"got {mime or 'no Content-Type'}.")
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit():
            return await self._reply(send, 400, "The Content-Length header is not a number.")
        if int(declared) > self.max_bytes:
            return await self._reply(send, 413, self._too_large())
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._reply(send, 413, self._too_large())
            if not message.get("more_body"):
                break
        if mime == "application/json":
            try:
                json.loads(body)
            except RecursionError:
                return await self._reply(send, 400, "The JSON is nested too deeply to parse.")
            except ValueError:
                pass  # MLflow's own parser answers invalid JSON with a clear 400
        sent = False

        async def replay():
            nonlocal sent
            if sent:  # the app asks again only to watch for a disconnect
                return await receive()
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (f"The request body is over the server's limit of {self.max_bytes:,} bytes: "
                f"send fewer rows per request or score large batches with Spark (notebook 05).")

    @staticmethod
    async def _reply(send, status: int, message: str) -> None:
        body = error_body(status, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _json_errors(send):
        """Wraps `send` so that a 4xx reply in plain text reaches the client as MLflow-style JSON."""
        start = None
        chunks = []

        async def wrapped(message):
            nonlocal start
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if 400 <= message["status"] < 500 and not content_type.startswith(b"application/json"):
                    start = message  # hold it back until the whole text has arrived
                    return
                return await send(message)
            if start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                text = b"".join(chunks).decode("utf-8", "replace").strip()
                await RequestGuard._reply(send, start["status"], text)

        return wrapped


def create_app():
    """The guarded app for the model at COURSE_SERVING_MODEL_URI (called once by uvicorn at start-up)."""
    from mlflow.pyfunc import load_model
    from mlflow.pyfunc.scoring_server import init

    model = load_model(os.environ["COURSE_SERVING_MODEL_URI"])
    guarded = RequestGuard(init(model), int(os.environ.get("COURSE_SERVING_MAX_BYTES", DEFAULT_MAX_BYTES)))
    gc.collect()
    gc.freeze()
    return guarded
