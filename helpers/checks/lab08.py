"""Checks for lab 08: MLflow's webhook signature by hand, the receiver's checks, a signed delivery, and refusals."""
from __future__ import annotations

import json
import time
import uuid

from helpers.checks import Wrong, expect, task
from helpers.webhooks import (DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, DeliveryRejected,
                              verify_delivery)

ALIAS, VERSION, FORGED_VERSION = "champion", "3", "13"


def _model_name() -> str:
    from helpers.tracking import course_model_name

    return course_model_name("lab-08-webhooks")


def _sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The check's own copy of MLflow's signature (mlflow/webhooks/delivery.py), to make deliveries with."""
    import base64
    import hashlib
    import hmac

    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _genuine(secret: str, headers, body: bytes) -> bool:
    """Whether the signature is right (whatever the delivery's age or whether it was seen before)."""
    timestamp = {name.lower(): value for name, value in headers.items()}.get(TIMESTAMP_HEADER.lower(), "")
    try:
        verify_delivery(secret, headers, body, now=int(timestamp) if timestamp.isdigit() else None)
    except DeliveryRejected:
        return False
    return True


def _sent(reply, variable: str) -> tuple[dict, bytes]:
    """The headers and body of the request that got `reply` (requests keeps it as reply.request)."""
    expect(reply is not None, f"`{variable}` is still None", f"set `{variable}` to what requests.post(...) returns")
    expect(hasattr(reply, "status_code") and hasattr(reply, "request"),
           f"`{variable}` is a {type(reply).__name__}, not the answer of requests.post",
           f"{variable} = requests.post(receiver.url, data=..., headers=..., timeout=10)")
    body = reply.request.body
    body = body.encode() if isinstance(body, str) else (body or b"")
    return dict(reply.request.headers), body


def _alias_event(body: bytes, variable: str) -> dict:
    try:
        payload = json.loads(body)
    except ValueError:
        raise Wrong(f"the body sent for `{variable}` is not JSON ({body[:60]!r})",
                    "send json.dumps({...}).encode() as `data=`") from None
    data = payload.get("data") if isinstance(payload, dict) else None
    expect(isinstance(data, dict) and (payload.get("entity"), payload.get("action"))
           == ("model_version_alias", "created") and data.get("name") == _model_name()
           and data.get("alias") == ALIAS,
           f"the body sent for `{variable}` is {body.decode(errors='replace')[:160]}, not a "
           f"model_version_alias.created event for @{ALIAS} of {_model_name()}",
           f"send {{\"entity\": \"model_version_alias\", \"action\": \"created\", \"data\": {{\"name\": model_name, "
           f"\"alias\": \"{ALIAS}\", \"version\": ...}}}}")
    return data


def _wait_for(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@task(1, hint="mlflow_signature must return a string, \"v1,\" + base64.b64encode(digest).decode()")
def task1(secret, captured, mlflow_signature, genuine, tampered) -> str:
    expect(callable(mlflow_signature), f"`mlflow_signature` is {mlflow_signature!r}, not a function",
           "define it with def mlflow_signature(secret, delivery_id, timestamp, body), returning \"v1,\" and the base64 "
           "of the HMAC")
    # The learner's signature must be one the course's verify_delivery (written against MLflow's) accepts.
    body = json.dumps({"entity": "model_version", "action": "created",
                       "data": {"name": _model_name(), "version": "7"}}).encode()
    delivery_id, timestamp = str(uuid.uuid4()), str(int(time.time()))
    signature = mlflow_signature(secret, delivery_id, timestamp, body)
    expect(isinstance(signature, str) and signature.startswith("v1,"),
           f"mlflow_signature returned {signature!r}, not a string starting with 'v1,'",
           "return \"v1,\" + base64.b64encode(digest).decode()")
    headers = {DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    expect(_genuine(secret, headers, body), "a delivery signed with your mlflow_signature is refused by the course's "
           "verify_delivery: the signature is not MLflow's",
           "hmac.new(secret.encode(), f\"{delivery_id}.{timestamp}.\".encode() + body, hashlib.sha256).digest(), "
           "then base64")
    other = mlflow_signature(secret + "x", delivery_id, timestamp, body)
    expect(other != signature, "mlflow_signature gives the same signature for another secret",
           "key the HMAC with the `secret` argument")
    expect(genuine is not None, "`genuine` is still None",
           "genuine = hmac.compare_digest(mlflow_signature(secret, delivery_id, timestamp, captured[\"body\"]), "
           "captured's X-MLflow-Signature)")
    expect(genuine is True, f"`genuine` is {genuine!r}, but the captured delivery's signature is MLflow's own",
           "read the delivery id and timestamp from captured[\"headers\"] and sign captured[\"body\"] unchanged")
    expect(tampered is not None, "`tampered` is still None",
           "compare the captured signature with mlflow_signature(...) of the body with example_model replaced")
    altered = captured["body"].replace(b"example_model", _model_name().encode())
    expect(altered != captured["body"], "the captured body has no `example_model` to replace",
           "run the Setup cell again: it captures MLflow's example delivery")
    expect(tampered is False and not _genuine(secret, captured["headers"], altered),
           f"`tampered` is {tampered!r}: the captured signature cannot match an altered body",
           "sign captured[\"body\"].replace(b\"example_model\", model_name.encode()) and compare with "
           "hmac.compare_digest")
    return "your signatures are MLflow's: the captured delivery is genuine, and its altered copy is not."


def _cases(secret: str):
    """(what it is, headers, body, hint) in the order the check sends them; each against the same `seen`."""
    now = int(time.time())
    body = json.dumps({"entity": "model_version_alias", "action": "created",
                       "data": {"name": _model_name(), "alias": ALIAS, "version": VERSION}}).encode()
    other = body.replace(f'"{VERSION}"'.encode(), f'"{FORGED_VERSION}"'.encode())

    def headers(delivery_id, timestamp=now, key=secret, signed=None, lower=False):
        made = {DELIVERY_ID_HEADER: delivery_id, TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: _sign(key, delivery_id, str(timestamp), signed or body)}
        return {name.lower(): value for name, value in made.items()} if lower else made

    first, second, later = (str(uuid.uuid4()) for _ in range(3))
    unsigned = headers(str(uuid.uuid4()))
    del unsigned[SIGNATURE_HEADER]
    garbled = headers(str(uuid.uuid4()))
    garbled[SIGNATURE_HEADER] = "v1,not base64!"
    accented = headers(str(uuid.uuid4()))
    accented[SIGNATURE_HEADER] = "v1,é" + accented[SIGNATURE_HEADER][4:]  # compare_digest refuses such a str
    signature = "recompute the signature with mlflow_signature(secret, ...) and compare it with hmac.compare_digest"
    header = "look headers up with .get(...) and return False when one is missing or malformed"
    fresh = "refuse a timestamp more than 300 seconds from time.time(), before or after"
    return [
        ("a genuine, fresh delivery", headers(first), body, signature),
        ("the same delivery again (a replay)", headers(first), body,
         "keep the ids you accepted in `seen` and refuse an id already there"),
        ("a genuine delivery with lower-case header names", headers(second, lower=True), body,
         "look headers up by name.lower(): HTTP header names are case-insensitive"),
        ("a body altered after signing", headers(str(uuid.uuid4()), signed=body), other, signature),
        ("a delivery signed with another secret", headers(str(uuid.uuid4()), key="guessed"), body, signature),
        ("a delivery without X-MLflow-Signature", unsigned, body, header),
        ("a signature that is not base64", garbled, body, header),
        ("a signature with a character that is not ASCII", accented, body,
         "compare bytes, not strings: hmac.compare_digest(a.encode(), b.encode())"),
        ("a genuinely signed timestamp that is not a number, \"soon\"", headers(str(uuid.uuid4()), timestamp="soon"),
         body, "refuse a timestamp that is not digits (timestamp.isdigit()) before int(timestamp)"),
        ("a genuine delivery signed ten minutes ago", headers(str(uuid.uuid4()), timestamp=now - 600), body, fresh),
        ("a genuine delivery dated ten minutes ahead", headers(str(uuid.uuid4()), timestamp=now + 600), body, fresh),
        ("a forged delivery that claims the id of a genuine one to come", headers(later, key="guessed"), body,
         signature),
        ("the genuine delivery whose id the forged one claimed", headers(later), body,
         "add the id to `seen` only after every check passed"),
    ]


@task(2, hint="accept(headers, body, seen) must return True or False")
def task2(secret, accept) -> str:
    expect(callable(accept), f"`accept` is {accept!r}, not a function",
           "define it with def accept(headers, body, seen): ... return True or False")
    theirs, ours = set(), set()
    accepted = refused = 0
    for what, headers, body, hint in _cases(secret):
        try:
            verify_delivery(secret, headers, body, seen=ours)
            wanted = True
        except DeliveryRejected:
            wanted = False
        try:
            got = accept(dict(headers), body, theirs)
        except Exception as error:
            raise Wrong(f"accept raised {type(error).__name__} on {what} ({str(error).splitlines()[0][:100] if str(error) else 'no message'})",
                        f"a malformed delivery is a refusal, never an error: {hint}") from None
        expect(got in (True, False), f"accept returned {got!r} on {what}, not True or False",
               "return True only when all three checks pass, False otherwise")
        expect(got == wanted, f"accept returned {got} on {what}; it must be {'accepted' if wanted else 'refused'}",
               hint)
        accepted, refused = accepted + wanted, refused + (not wanted)
    expect(len(theirs) == len(ours), f"after the check's deliveries, `seen` holds {len(theirs)} ids; "
           f"{len(ours)} deliveries were accepted", "add an id to `seen` only when you accept its delivery")
    return f"your function agrees with verify_delivery on all {accepted + refused}: {accepted} accepted, {refused} refused."


@task(3, hint="`reply` must be what requests.post(receiver.url, ...) returned")
def task3(receiver, reply, deployed) -> str:
    headers, body = _sent(reply, "reply")
    data = _alias_event(body, "reply")
    expect(str(data.get("version")) == VERSION, f"your delivery says @{ALIAS} names version {data.get('version')!r}",
           f"set \"version\": \"{VERSION}\" in its data")
    sent = {name.lower(): value for name, value in headers.items()}
    expect(all(sent.get(name.lower()) for name in (DELIVERY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)),
           f"your request's X-MLflow headers are {[n for n in headers if n.lower().startswith('x-mlflow-')]}",
           "send X-MLflow-Delivery-Id, X-MLflow-Timestamp and X-MLflow-Signature")
    expect(_genuine(receiver.secret, headers, body), "your delivery's signature is not the one MLflow would make "
           "with the webhook's secret", "sign with mlflow_signature(secret, delivery_id, timestamp, my_body), "
           "exactly the bytes you send as data=")
    delivery_id = sent[DELIVERY_ID_HEADER.lower()]
    expect(reply.status_code == 200, f"the receiver answered {reply.status_code}: "
           f"{reply.text[:160]}", "use a new delivery id (str(uuid.uuid4())) and the current time, "
           "str(int(time.time()))")
    expect(any(d["delivery_id"] == delivery_id for d in receiver.accepted),
           "the receiver has no record of accepting your delivery", "post it to receiver.url, the running receiver")
    expect(_wait_for(lambda: deployed.get(ALIAS) == VERSION), f"the CI job did not deploy version {VERSION}: "
           f"`deployed` is {deployed}", "wait a moment and run the check again: the CI job runs in the receiver's "
           "own thread")
    return f"the receiver accepted it, and the CI job deployed version {VERSION} for @{ALIAS}."


@task(4, hint="`forged_reply` and `replayed_reply` must be what requests.post(receiver.url, ...) returned")
def task4(receiver, reply, forged_reply, replayed_reply, deployed) -> str:
    forged_headers, forged_body = _sent(forged_reply, "forged_reply")
    replayed_headers, replayed_body = _sent(replayed_reply, "replayed_reply")
    mine_headers, mine_body = _sent(reply, "reply")
    data = _alias_event(forged_body, "forged_reply")
    expect(str(data.get("version")) == FORGED_VERSION,
           f"the forged delivery says @{ALIAS} names version {data.get('version')!r}",
           f"the attacker's delivery names version \"{FORGED_VERSION}\"")
    forged = {name.lower(): value for name, value in forged_headers.items()}
    expect(forged.get(SIGNATURE_HEADER.lower()) and forged.get(DELIVERY_ID_HEADER.lower()),
           "the forged delivery has no X-MLflow-Signature or no X-MLflow-Delivery-Id",
           "sign it with mlflow_signature(\"guessed\", delivery_id, timestamp, forged_body): a guessed secret")
    expect(not _genuine(receiver.secret, forged_headers, forged_body),
           "the forged delivery is signed with the webhook's real secret", "sign it with a guessed secret instead")
    expect(forged_reply.status_code == 401, f"the receiver answered the forged delivery {forged_reply.status_code}",
           "send fresh headers (a new id, the current time) signed with a guessed secret, to receiver.url")
    expect(replayed_reply is not reply, "`replayed_reply` is Task 3's answer, not the answer to a second request",
           "post my_body with my_headers again: replayed_reply = requests.post(receiver.url, data=my_body, ...)")
    mine = {name.lower(): value for name, value in mine_headers.items()}
    replayed = {name.lower(): value for name, value in replayed_headers.items()}
    same = all(replayed.get(name.lower()) == mine.get(name.lower())
               for name in (DELIVERY_ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)) and replayed_body == mine_body
    expect(same, "the replayed request is not your Task 3 delivery sent again unchanged",
           "post my_body with my_headers again, exactly as in Task 3")
    refusal = next((r for r in reversed(receiver.rejected)
                    if r["delivery_id"] == mine.get(DELIVERY_ID_HEADER.lower())), None)
    expect(replayed_reply.status_code in (401, 409) and refusal is not None,
           f"the receiver answered the replay {replayed_reply.status_code}",
           "post it to receiver.url, the receiver that accepted it in Task 3")
    expect(deployed.get(ALIAS) == VERSION, f"`deployed` is {deployed}: it should still name version {VERSION}",
           "run Task 3 again, then this task")
    why = ("as already seen (409)" if replayed_reply.status_code == 409
           else "as too old (401), since more than five minutes passed")
    return f"the forged delivery was refused as not genuine (401) and the replay {why}; version {VERSION} stays deployed."
