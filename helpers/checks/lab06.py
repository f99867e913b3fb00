"""Checks for lab 06: a scikit-learn model served over REST, one good request, three bad ones, the server stopped."""
from __future__ import annotations

import urllib.error
import urllib.request

from helpers.checks import expect, logged_sklearn_model, task

EXPERIMENT = "lab-06-serving"
COLUMNS = ["num_invoices", "avg_hour", "share_vintage", "share_gaming"]
PROTOCOL_KEYS = {"dataframe_split", "dataframe_records", "inputs", "instances"}
CASES = ("missing column", "wrong type", "unknown key")


def _logged_model(model_uri):
    """The learner's logged model: a scikit-learn model with the four columns' signature, from a run of the lab."""
    from helpers import course_experiment

    info = logged_sklearn_model(model_uri, course_experiment(EXPERIMENT))
    inputs = info.signature.inputs.input_names()
    expect(inputs == COLUMNS, f"the signature's inputs are {inputs}, not {COLUMNS}",
           "infer the signature from customers[model_columns]")
    return info


def _expected(model_uri: str, rows: int = 3) -> list[float]:
    """The model's predictions for the first `rows` customers by CustomerID, computed here without the server."""
    import mlflow
    from pyspark.sql import SparkSession

    first = (SparkSession.builder.getOrCreate().read.table("retail_features").select("CustomerID", *COLUMNS)
             .orderBy("CustomerID").limit(rows).toPandas())
    return [float(p) for p in mlflow.pyfunc.load_model(model_uri).predict(first[COLUMNS])]


def _close(ours, theirs) -> bool:
    try:
        values = [float(value) for value in theirs]
    except (TypeError, ValueError):
        return False
    return len(values) == len(ours) and all(abs(a - b) < 1e-9 for a, b in zip(ours, values))


def _answers_ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _servers() -> tuple[type, ...]:
    """What serve_model returns: a local server, or on Databricks a Model Serving endpoint."""
    from helpers.model_serving import ServingEndpoint
    from helpers.serving import ModelServer

    return ModelServer, ServingEndpoint


def _running_server(server, model_uri: str):
    expect(server is not None, "`server` is still None", "start it with server = serve_model(model_uri)")
    expect(isinstance(server, _servers()), f"`server` is a {type(server).__name__}, not what serve_model returns",
           "start it with server = serve_model(model_uri)")
    expect(server.running and _answers_ping(server.url), "the server in `server` is not running",
           "run Task 2 again: server = serve_model(model_uri), and stop it only in Task 4")
    expect(model_uri in server.command, "the server in `server` serves another model than Task 1's",
           "start it with serve_model(model_uri)")
    return server


def _post(server, payload):
    import requests

    return requests.post(server.url + "/invocations", json=payload, timeout=60)


def _payload_columns(payload) -> list | None:
    """The columns a dataframe_split or dataframe_records payload sends, or None for another shape."""
    if isinstance(payload.get("dataframe_split"), dict):
        return list(payload["dataframe_split"].get("columns", []))
    if isinstance(payload.get("dataframe_records"), list):
        return sorted({key for record in payload["dataframe_records"] if isinstance(record, dict) for key in record})
    return None


def _payload_values(payload) -> list:
    if isinstance(payload.get("dataframe_split"), dict):
        return [value for row in payload["dataframe_split"].get("data", []) for value in row]
    return [value for record in payload.get("dataframe_records", []) for value in record.values()]


def _rows_fit_columns(payload) -> bool:
    """Whether every row of a dataframe_split payload has one value per column (records always do)."""
    split = payload.get("dataframe_split")
    if not isinstance(split, dict):
        return True
    width = len(split.get("columns", []))
    return all(isinstance(row, list) and len(row) == width for row in split.get("data", []))


def _is_kind(case: str, payload) -> bool:
    """Whether a payload is malformed the way its case says, and only that way."""
    keys = set(payload)
    if case == "unknown key":
        return bool(keys) and not keys & PROTOCOL_KEYS
    columns = _payload_columns(payload)
    if columns is None or not _rows_fit_columns(payload):  # else pandas refuses it before the model's schema can
        return False
    if case == "missing column":
        return bool(set(COLUMNS) - set(columns)) and set(columns) <= set(COLUMNS)
    return set(COLUMNS) <= set(columns) and any(isinstance(value, str) for value in _payload_values(payload))


@task(1, hint="set `model_uri` to `info.model_uri`, where info = mlflow.sklearn.log_model(...)")
def task1(model_uri) -> str:
    info = _logged_model(model_uri)
    types = {column.name: column.type.name for column in info.signature.inputs.inputs}
    expect(types["num_invoices"] == "long", f"the signature says num_invoices is {types['num_invoices']}, not long",
           "infer the signature from customers[model_columns], where num_invoices is an integer column")
    expect(info.saved_input_example_info, "the model has no input example", "pass input_example=X.head(1)")
    return f"a scikit-learn model whose signature takes {', '.join(COLUMNS)}."


@task(2, hint="send the payload with requests.post(server.url + \"/invocations\", json=good_request) and keep "
              "reply.status_code and reply.json()[\"predictions\"]")
def task2(model_uri, server, good_request, good_status, good_predictions) -> str:
    _logged_model(model_uri)
    _running_server(server, model_uri)
    expect(isinstance(good_request, dict) and isinstance(good_request.get("dataframe_split"), dict),
           f"`good_request` is {type(good_request).__name__}, not a dataframe_split payload",
           "set good_request = {\"dataframe_split\": customers[model_columns].head(3).to_dict(orient=\"split\", "
           "index=False)}")
    reply = _post(server, good_request)
    expect(reply.status_code == 200, f"the server answers `good_request` with {reply.status_code}, not 200: "
           f"{reply.text[:120]}", "send the model_columns of the first three rows of customers, nothing else")
    expected = _expected(model_uri)
    expect(_close(expected, reply.json()["predictions"]), "`good_request` does not hold the first three rows of "
           "`customers`", "use customers[model_columns].head(3)")
    expect(good_status == 200, f"`good_status` is {good_status!r}, and the server answers 200",
           "set it to reply.status_code")
    expect(isinstance(good_predictions, list) and _close(expected, good_predictions),
           f"`good_predictions` is {good_predictions!r}, not the server's predictions",
           "set it to reply.json()[\"predictions\"], a list of three numbers")
    return "the server answered 200 with the same three predictions as the model loaded here."


@task(3, hint="`answers` must map each case to (reply.status_code, reply.json()[\"error_code\"], "
              "reply.json()[\"message\"])")
def task3(model_uri, server, bad_requests, answers) -> str:
    _logged_model(model_uri)
    _running_server(server, model_uri)
    expect(isinstance(bad_requests, dict) and set(bad_requests) == set(CASES),
           f"`bad_requests` is {bad_requests if not isinstance(bad_requests, dict) else sorted(bad_requests)!r}, "
           f"not a dictionary with the keys {list(CASES)}", "make one payload for each of the three cases")
    expect(isinstance(answers, dict) and set(answers) == set(CASES),
           f"`answers` is {answers if not isinstance(answers, dict) else sorted(answers)!r}, not a dictionary with "
           f"the keys {list(CASES)}", "record one answer for each case of `bad_requests`")
    hints = {"missing column": "drop one column and its values: {\"dataframe_split\": {\"columns\": "
                               "good[\"columns\"][1:], \"data\": [row[1:] for row in good[\"data\"]]}}",
             "wrong type": "keep all the columns and put a string such as \"many\" in place of one number",
             "unknown key": "put the rows under a key such as \"rows\" instead of \"dataframe_split\""}
    codes = []
    for case in CASES:
        payload = bad_requests[case]
        expect(isinstance(payload, dict) and _is_kind(case, payload),
               f"`bad_requests[{case!r}]` is not a {case} payload"
               + (": its rows do not have one value per column" if isinstance(payload, dict)
                  and not _rows_fit_columns(payload) else ""), hints[case])
        reply = _post(server, payload)
        expect(400 <= reply.status_code < 500, f"the server answers `bad_requests[{case!r}]` with "
               f"{reply.status_code}, not a 4xx", hints[case])
        body = reply.json()
        real = (reply.status_code, body.get("error_code"), body.get("message"))
        recorded = answers[case]
        expect(isinstance(recorded, (tuple, list)) and len(recorded) == 3,
               f"`answers[{case!r}]` is {recorded!r}, not a (status, error code, message) tuple",
               "record (reply.status_code, body[\"error_code\"], body[\"message\"]) with body = reply.json()")
        for what, mine, theirs in zip(("status", "error code", "message"), real, recorded):
            expect(mine == theirs, f"for {case!r} you recorded the {what} {str(theirs)[:60]!r}, and the server "
                   f"answers {str(mine)[:60]!r}", f"record the reply's {what} as it is, from the reply to the "
                   "request you sent")
        codes.append(f"{case} {real[0]} {real[1]}")
    return f"the server refused all three: {', '.join(codes)}."


@task(4, hint="set `predictions_after` to reply.json()[\"predictions\"], then call server.stop()")
def task4(model_uri, server, predictions_after) -> str:
    _logged_model(model_uri)
    expect(isinstance(predictions_after, list) and _close(_expected(model_uri), predictions_after),
           f"`predictions_after` is {predictions_after!r}, not the server's predictions for `good_request`",
           "send good_request again before stopping, and keep reply.json()[\"predictions\"]")
    expect(isinstance(server, _servers()), f"`server` is {type(server).__name__}, not what serve_model returns",
           "run Task 2 to start the server, then stop it here")
    expect(not server.running, "the server is still running", "stop it with server.stop()")
    expect(not _answers_ping(server.url), f"something still answers at {server.url}", "call server.stop()")
    expect(not server.process_ids(), "some of the server's processes are still alive", "call server.stop()")
    return "the server answered the good request as before, and it is stopped."
