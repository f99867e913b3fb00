"""Registry webhooks for real: the signature check on its own, then a real `mlflow server` delivering signed events to
the receiver, forged and replayed requests refused, and no process left once both are stopped.

The unit tests of `verify_delivery` need no server; the others share one `mlflow server` (SQLite store in tmp_path)
and run in file order, the last one stopping it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import types
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from helpers.webhooks import DeliveryRejected, WebhookReceiver, start_tracking_server, verify_delivery
from tests.processes import wait_until_gone

SECRET = "course-ci-secret"
NOW = 1_800_000_000
BODY = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}).encode()
MODEL = "webhook_demo"
slow = pytest.mark.slow  # only the tests that start servers


def signed(body: bytes = BODY, secret: str = SECRET, delivery_id: str = "d-1", timestamp: int = NOW) -> dict:
    """The headers MLflow sends, signed independently of helpers.webhooks."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": str(timestamp),
            "X-MLflow-Signature": "v1," + base64.b64encode(digest).decode(), "Content-Type": "application/json"}


def rejection(headers: dict, body: bytes = BODY, now: float = NOW, seen: set | None = None) -> DeliveryRejected:
    with pytest.raises(DeliveryRejected) as caught:
        verify_delivery(SECRET, headers, body, now=now, seen=seen)
    return caught.value


# --- verify_delivery on its own -------------------------------------------------------------------------------------

def test_a_signed_delivery_passes_and_returns_its_payload():
    seen: set[str] = set()
    assert verify_delivery(SECRET, signed(), BODY, now=NOW + 300, seen=seen) == json.loads(BODY)
    assert seen == {"d-1"}
    lower = {name.lower(): value for name, value in signed(delivery_id="d-2").items()}
    assert verify_delivery(SECRET, lower, BODY, now=NOW - 300)["data"]["version"] == "1"  # header case is free


def test_mlflows_own_signing_function_is_what_we_verify():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    headers = {"X-MLflow-Delivery-Id": "abc", "X-MLflow-Timestamp": str(NOW),
               "X-MLflow-Signature": _generate_hmac_signature(SECRET, "abc", str(NOW), BODY.decode())}
    assert verify_delivery(SECRET, headers, BODY, now=NOW)["entity"] == "model_version"


def test_wrong_secret_and_altered_deliveries_are_refused():
    mismatch = "The signature does not match"
    assert rejection(signed(secret="someone-else")).reason.startswith(mismatch)
    assert rejection(signed(), body=BODY.replace(b'"1"', b'"2"')).reason.startswith(mismatch)
    altered_id = {**signed(), "X-MLflow-Delivery-Id": "d-9"}
    later = {**signed(), "X-MLflow-Timestamp": str(NOW + 1)}  # an attacker refreshing the timestamp
    for headers in (altered_id, later):
        assert rejection(headers).reason.startswith(mismatch) and rejection(headers).status == 401


@pytest.mark.parametrize("header, status", [("X-MLflow-Delivery-Id", 400), ("X-MLflow-Timestamp", 400),
                                            ("X-MLflow-Signature", 401)])
def test_each_missing_header_is_named(header, status):
    headers = signed()
    del headers[header]
    refused = rejection(headers)
    assert (refused.reason, refused.status) == (f"The {header} header is missing.", status)


@pytest.mark.parametrize("signature, reason", [
    ("sha256=" + "A" * 44, "does not start with 'v1,'"),
    ("v1,not base64!", "is not a base64 HMAC-SHA256"),
    ("v1," + base64.b64encode(b"short").decode(), "is not a base64 HMAC-SHA256"),
])
def test_malformed_signatures_are_refused(signature, reason):
    refused = rejection({**signed(), "X-MLflow-Signature": signature})
    assert reason in refused.reason and refused.status == 401


def test_a_malformed_timestamp_and_a_non_json_body_are_bad_requests():
    refused = rejection(signed(timestamp="yesterday"))  # type: ignore[arg-type]
    assert (refused.status, refused.reason) == (400, "The X-MLflow-Timestamp header is not a Unix time in seconds.")
    refused = rejection(signed(body=b"<xml/>"), body=b"<xml/>")
    assert (refused.status, refused.reason) == (400, "The body is not JSON.")


def test_stale_and_future_deliveries_are_refused():
    assert "s old, older than the 300 s allowed" in rejection(signed(), now=NOW + 301).reason
    assert "in the future" in rejection(signed(), now=NOW - 301).reason


@pytest.mark.parametrize("uri, answer", [("sqlite:///course.db", None), ("http://127.0.0.1:5000", "same"),
                                         ("http://localhost:5000", "same"), ("https://mlflow.example.com", "refused")])
def test_08_uses_only_a_tracking_server_on_this_machine(uri, answer, monkeypatch):
    from helpers.webhooks import tracking_server_in_use

    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri sets it too; monkeypatch puts it back after
    mlflow.set_tracking_uri(uri)
    try:
        if answer == "refused":  # its webhooks could never reach the receiver on this machine's loopback
            with pytest.raises(RuntimeError, match="cannot deliver webhooks to a receiver on this machine's loopback"):
                tracking_server_in_use()
        else:
            assert tracking_server_in_use() == (uri if answer == "same" else None)
    finally:
        mlflow.set_tracking_uri(previous)


def test_a_replayed_delivery_id_is_refused_but_forgeries_do_not_burn_ids():
    seen: set[str] = set()
    rejection(signed(secret="forger", delivery_id="d-7"), seen=seen)
    assert not seen  # a forged request must not block the genuine delivery that carries the same id
    verify_delivery(SECRET, signed(delivery_id="d-7"), BODY, now=NOW, seen=seen)
    replay = rejection(signed(delivery_id="d-7"), seen=seen)
    assert (replay.status, replay.reason) == (409, "This delivery id was already received: a replay.")


# --- a real mlflow server and a real receiver ----------------------------------------------------------------------

class Identity(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """`mlflow server` in tmp_path, a receiver with the webhook's secret, and a webhook from one to the other."""
    folder = tmp_path_factory.mktemp("webhooks")
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    calls: list[dict] = []

    def on_delivery(payload: dict) -> None:  # stands in for the CI job
        calls.append(payload)
        if payload["entity"] == "model_version_alias":
            raise RuntimeError("the CI job failed")

    server = start_tracking_server(folder / "store")
    receiver = WebhookReceiver(SECRET, on_delivery=on_delivery, log_path=folder / "deliveries.jsonl")
    try:
        receiver.start()
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        webhook = client.create_webhook(name="ci", url=receiver.url, secret=SECRET,
                                        events=["model_version.created", "model_version_alias.created"])
        yield types.SimpleNamespace(server=server, receiver=receiver, client=client, webhook=webhook, calls=calls,
                                    log=folder / "deliveries.jsonl")
    finally:
        receiver.stop()
        server.stop()
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # None also clears the variable it had set
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])  # None does not: cleared below
        if saved["MLFLOW_REGISTRY_URI"] is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="module")
def version(registry):
    """A tiny model registered through the server: MLflow then delivers `model_version.created`."""
    experiment = registry.client.create_experiment("webhooks")
    with mlflow.start_run(experiment_id=experiment):  # no global experiment is set, none is left behind
        mlflow.pyfunc.log_model(name="model", python_model=Identity(), registered_model_name=MODEL,
                                pip_requirements=["mlflow"])
    return registry.client.search_model_versions(f"name = '{MODEL}'")[0]


def names(payload: dict, entity: str) -> bool:
    return payload["entity"] == entity and payload["data"].get("name") == MODEL


@slow
def test_registering_a_model_delivers_a_signed_model_version_created(registry, version):
    delivery = registry.receiver.wait_for(lambda d: names(d["payload"], "model_version"), timeout=15)
    payload = delivery["payload"]
    assert (payload["action"], payload["data"]["version"]) == ("created", version.version)
    assert uuid.UUID(delivery["delivery_id"]) and abs(delivery["timestamp"] - time.time()) < 120
    verify_delivery(SECRET, delivery["headers"], delivery["body"])  # checked again, independently of the server
    lines = [json.loads(line) for line in registry.log.read_text().splitlines()]
    assert {"event": "accepted", "delivery_id": delivery["delivery_id"], "timestamp": delivery["timestamp"],
            "payload": payload} in lines
    deadline = time.monotonic() + 5
    while payload not in registry.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert payload in registry.calls


@slow
def test_setting_an_alias_delivers_it_and_a_failing_callback_is_only_logged(registry, version):
    registry.client.set_registered_model_alias(MODEL, "champion", version.version)
    delivery = registry.receiver.wait_for(lambda d: names(d["payload"], "model_version_alias"), timeout=15)
    assert delivery["payload"]["data"]["alias"] == "champion"
    assert delivery["payload"]["data"]["version"] == version.version
    deadline = time.monotonic() + 5
    while "callback_failed" not in registry.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    failure = [json.loads(line) for line in registry.log.read_text().splitlines() if "callback_failed" in line]
    assert failure == [{"event": "callback_failed", "delivery_id": delivery["delivery_id"],
                        "error": "RuntimeError: the CI job failed"}]
    assert registry.client.test_webhook(registry.webhook.webhook_id).success  # the receiver still answers


@slow
def test_mlflow_reports_a_delivery_signed_with_another_secret_as_refused(registry):
    wrong = registry.client.create_webhook(name="wrong-secret", url=registry.receiver.url, secret="not-the-secret",
                                           events=["model_version_tag.deleted"])  # an event no test fires
    accepted = len(registry.receiver.accepted)
    result = registry.client.test_webhook(wrong.webhook_id)
    assert (result.success, result.response_status) == (False, 401)
    assert json.loads(result.response_body)["error"].startswith("The signature does not match")
    assert registry.receiver.rejected[-1]["status"] == 401 and len(registry.receiver.accepted) == accepted


@slow
def test_forged_and_replayed_posts_are_refused_without_calling_back(registry, version):
    genuine = registry.receiver.wait_for(lambda d: names(d["payload"], "model_version"), timeout=15)
    receiver = registry.receiver
    accepted, rejected, calls = list(receiver.accepted), len(receiver.rejected), len(registry.calls)
    fresh = signed(body=genuine["body"], delivery_id=str(uuid.uuid4()), timestamp=int(time.time()))
    unsigned = {name: value for name, value in fresh.items() if name != "X-MLflow-Signature"}
    forged = signed(body=genuine["body"], secret="guessed", delivery_id=str(uuid.uuid4()), timestamp=int(time.time()))
    answers = [requests.post(receiver.url, data=genuine["body"], headers=headers, timeout=10)
               for headers in (unsigned, forged, genuine["headers"])]
    assert [answer.status_code for answer in answers] == [401, 401, 409]
    assert [answer.json()["error"] for answer in answers] == [
        "The X-MLflow-Signature header is missing.",
        "The signature does not match: wrong secret, or the body or headers were altered.",
        "This delivery id was already received: a replay."]
    assert [entry["status"] for entry in receiver.rejected[rejected:]] == [401, 401, 409]
    time.sleep(0.3)  # a callback, had one been queued, would have run by now
    assert receiver.accepted == accepted and len(registry.calls) == calls


@slow
def test_stopping_leaves_no_process_and_no_listener(tmp_path):
    # A server and receiver of its own: stopping the module's would break whichever test runs after this one.
    server = start_tracking_server(tmp_path / "store")
    receiver = WebhookReceiver(SECRET).start()
    pids = server.process_ids()
    assert len(pids) >= 2  # `mlflow server` runs uvicorn as its child
    url = receiver.url
    reply = requests.post(url, data=BODY, headers=signed(timestamp=int(time.time())), timeout=5)
    assert reply.status_code == 200
    receiver.stop()
    server.stop()
    assert not wait_until_gone(pids, seconds=5)
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data=BODY, headers=signed(), timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health", timeout=5)
