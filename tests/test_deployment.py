"""The shared deployment's pieces, for real: PostgreSQL from the machine, `mlflow server --app-name basic-auth` on it,
and the one-sentence errors for a bad master URL, a dead tracking server and a database that refuses us."""
from __future__ import annotations

import os

import pytest
import requests

from helpers.deployment import Credentials, DeploymentError, Postgres, check_database, start_mlflow_server
from helpers.serving import free_port

API = "/api/2.0/mlflow"
TEST_DATABASE = "course_mlflow_test"  # never the cluster command's own database, which may be in use


def test_an_unreachable_master_is_one_sentence():
    from helpers.spark import SparkStartError, check_master

    master = f"spark://127.0.0.1:{free_port()}"
    with pytest.raises(SparkStartError, match=r"^Nothing answers at the Spark master spark://127\.0\.0\.1:\d+: start "):
        check_master(master)


def test_an_unreachable_tracking_server_is_one_sentence(workspace, monkeypatch):
    from helpers.tracking import TrackingServerError, setup_mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TrackingServerError, match="does not answer: start it, or fix or unset MLFLOW_TRACKING_URI"):
        setup_mlflow(quiet=True)


def test_learners_sharing_the_deployment_get_their_own_names_and_workspaces(tmp_path):
    from helpers.deployment import ADMIN, Deployment

    credentials = Credentials(postgres="p", admin="a", learners={"alice": "1", "bob": "2"})
    shared = Deployment(tmp_path, "http://127.0.0.1:5000", "spark://127.0.0.1:7077", credentials, [], None, 6)
    alice, bob = shared.environment("alice"), shared.environment("bob")
    assert (alice["COURSE_NAME_PREFIX"], bob["COURSE_NAME_PREFIX"]) == ("alice_", "bob_")
    assert alice["COURSE_WORKSPACE"] != bob["COURSE_WORKSPACE"]
    assert (alice["MLFLOW_TRACKING_USERNAME"], alice["MLFLOW_TRACKING_PASSWORD"]) == ("alice", "1")
    assert (alice["COURSE_WEBHOOK_ADMIN_USERNAME"], alice["COURSE_WEBHOOK_ADMIN_PASSWORD"]) == (ADMIN, "a")
    alone = Deployment(tmp_path, "http://127.0.0.1:5000", "spark://127.0.0.1:7077",
                       Credentials(postgres="p", admin="a", learners={"learner": "1"}), [], None, 3)
    assert "COURSE_NAME_PREFIX" not in alone.environment("learner")  # one learner: the same names as locally


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """PostgreSQL (started if it was down) with fresh test databases, and an auth-enabled server for alice and bob."""
    postgres = Postgres.start()
    credentials = Credentials.from_environment(["alice", "bob"])
    database, auth_database = postgres.fresh_databases(TEST_DATABASE, credentials.postgres)
    tracking = start_mlflow_server(database, auth_database, tmp_path_factory.mktemp("server"), credentials)
    yield tracking, credentials, database
    tracking.stop()
    postgres.stop()


def call(server, path: str, user: str | None, body: dict | None = None, method: str = "POST") -> requests.Response:
    tracking, credentials, _ = server
    auth = (user, credentials.learners[user]) if user else None
    if method == "GET":
        return requests.get(tracking.url + API + path, params=body, auth=auth, timeout=30)
    return requests.request(method, tracking.url + API + path, json=body, auth=auth, timeout=30)


@pytest.fixture(scope="module")
def alices_model(server):
    """alice's registered model with one version (from a run of hers), @champion on it and stage Staging."""
    experiment = call(server, "/experiments/create", "alice", {"name": "alice_experiment"}).json()["experiment_id"]
    run = call(server, "/runs/create", "alice", {"experiment_id": experiment}).json()["run"]["info"]["run_id"]
    for path, body in (("/registered-models/create", {"name": "alice_model"}),
                       ("/model-versions/create", {"name": "alice_model", "source": f"runs:/{run}/model",
                                                   "run_id": run}),
                       ("/registered-models/alias", {"name": "alice_model", "alias": "champion", "version": "1"}),
                       ("/model-versions/transition-stage", {"name": "alice_model", "version": "1",
                                                             "stage": "Staging", "archive_existing_versions": False})):
        reply = call(server, path, "alice", body)
        assert reply.status_code == 200, reply.text
    return "alice_model"


def alices_state(server) -> tuple:
    model = call(server, "/registered-models/get", "alice", {"name": "alice_model"}, "GET").json()["registered_model"]
    version = call(server, "/model-versions/get", "alice", {"name": "alice_model", "version": "1"}, "GET").json()
    return ([(a["alias"], a["version"]) for a in model.get("aliases", [])],
            version["model_version"]["current_stage"], version["model_version"].get("description", ""))


@pytest.mark.slow  # PostgreSQL and an mlflow server (installs PostgreSQL as root when missing)
def test_another_learner_can_read_but_not_change_a_model(server, alices_model):
    before = alices_state(server)
    assert before == ([("champion", "1")], "Staging", "")
    assert call(server, "/registered-models/get", "bob", {"name": alices_model}, "GET").status_code == 200
    refused = {
        "delete": call(server, "/registered-models/delete", "bob", {"name": alices_model}, method="DELETE"),
        "re-alias": call(server, "/registered-models/alias", "bob",
                         {"name": alices_model, "alias": "champion", "version": "2"}),
        "drop alias": call(server, "/registered-models/alias", "bob",
                           {"name": alices_model, "alias": "champion"}, method="DELETE"),
        "transition": call(server, "/model-versions/transition-stage", "bob",
                           {"name": alices_model, "version": "1", "stage": "Production",
                            "archive_existing_versions": True}),
        "edit": call(server, "/model-versions/update", "bob",
                     {"name": alices_model, "version": "1", "description": "bob was here"}, method="PATCH"),
        "delete version": call(server, "/model-versions/delete", "bob", {"name": alices_model, "version": "1"},
                               method="DELETE"),
    }
    assert {what: reply.status_code for what, reply in refused.items()} == dict.fromkeys(refused, 403)
    assert all("Permission denied" in reply.text for reply in refused.values())
    assert alices_state(server) == before  # nothing the refused calls asked for happened


@pytest.mark.slow
def test_anonymous_requests_are_refused_and_change_nothing(server, alices_model):
    before = alices_state(server)
    assert call(server, "/registered-models/get", None, {"name": alices_model}, "GET").status_code == 401
    assert call(server, "/registered-models/delete", None, {"name": alices_model}, method="DELETE").status_code == 401
    assert call(server, "/registered-models/create", None, {"name": "nobodys_model"}).status_code == 401
    assert call(server, "/registered-models/get", "alice", {"name": "nobodys_model"}, "GET").status_code == 404
    assert alices_state(server) == before


@pytest.mark.slow
def test_each_learner_owns_what_they_create(server, alices_model):
    assert call(server, "/registered-models/create", "bob", {"name": "bob_model"}).status_code == 200
    assert call(server, "/registered-models/delete", "alice", {"name": "bob_model"}, method="DELETE").status_code == 403
    assert call(server, "/registered-models/delete", "bob", {"name": "bob_model"}, method="DELETE").status_code == 200


@pytest.mark.slow
def test_the_client_side_check_names_a_refused_user(server, workspace, monkeypatch):
    from helpers.tracking import TrackingServerError, setup_mlflow

    tracking, credentials, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not alice's password")
    with pytest.raises(TrackingServerError, match="refused user 'alice' \\(401\\): set MLFLOW_TRACKING_USERNAME"):
        setup_mlflow(quiet=True)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials.learners["alice"])
    assert setup_mlflow(quiet=True) == tracking.url


@pytest.mark.slow
def test_only_the_admin_manages_webhooks_and_the_learner_gets_their_own_identity_back(server, workspace,
                                                                                      monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from helpers.deployment import ADMIN
    from helpers.webhooks import WebhookPermissionError, as_webhook_admin

    tracking, credentials, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials.learners["alice"])
    client = MlflowClient(tracking.url)
    hook = dict(name="ci-gate", url="http://127.0.0.1:9/", events=["model_version.created"])
    with pytest.raises(WebhookPermissionError, match="only its admins manage webhooks .*COURSE_WEBHOOK_ADMIN_USERNAME"):
        with as_webhook_admin():  # no admin account given: the call goes as alice, and MLflow refuses it
            client.create_webhook(**hook)
    monkeypatch.setenv("COURSE_WEBHOOK_ADMIN_USERNAME", ADMIN)
    monkeypatch.setenv("COURSE_WEBHOOK_ADMIN_PASSWORD", credentials.admin)
    with as_webhook_admin():
        webhook = client.create_webhook(**hook)
        assert [w.webhook_id for w in client.list_webhooks()] == [webhook.webhook_id]
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"  # after the block the calls go as alice again
    with pytest.raises(MlflowException, match="403"):
        client.delete_webhook(webhook.webhook_id)
    with as_webhook_admin():
        client.delete_webhook(webhook.webhook_id)
        assert len(client.list_webhooks()) == 0


@pytest.mark.slow
def test_a_kept_database_keeps_its_users_and_work_and_a_changed_admin_password_is_one_sentence(server, alices_model,
                                                                                                tmp_path):
    tracking, credentials, database = server  # more servers on the same two databases, as with COURSE_POSTGRES_URI

    def bring_up_again(folder: str, admin: str, learners: dict[str, str]):
        kept = Credentials(postgres=credentials.postgres, admin=admin, learners=learners)
        return start_mlflow_server(database, database + "_auth", tmp_path / folder, kept)

    def carol_reads_alices_model(url: str, password: str) -> int:
        return requests.get(url + API + "/registered-models/get", params={"name": alices_model},
                            auth=("carol", password), timeout=30).status_code

    bring_up_again("second", credentials.admin, {"carol": "carols-first-password"}).stop()  # carol joins
    third = bring_up_again("third", credentials.admin, {"carol": "carols-second-password"})
    try:  # carol is kept, with the password of this bring-up; alice's model is still there
        assert carol_reads_alices_model(third.url, "carols-second-password") == 200
        assert carol_reads_alices_model(third.url, "carols-first-password") == 401
    finally:
        third.stop()
    with pytest.raises(DeploymentError, match="already has an admin whose password is not COURSE_MLFLOW_ADMIN"):
        bring_up_again("fourth", "not-the-first-admin-password", {"dave": "daves-password-1"})


def test_a_team_database_needs_a_postgres_uri_and_the_admin_password(monkeypatch, tmp_path):
    from helpers.deployment import bring_up, postgres_uri

    monkeypatch.setenv("COURSE_POSTGRES_URI", "postgres://mlflow:p%40ss@db.example:5432/mlflow")
    monkeypatch.delenv("COURSE_POSTGRES_AUTH_URI", raising=False)
    assert postgres_uri("COURSE_POSTGRES_AUTH_URI") == "postgresql+psycopg://mlflow:p%40ss@db.example:5432/mlflow"
    monkeypatch.setenv("COURSE_POSTGRES_AUTH_URI", "mysql://mlflow@db.example/auth")
    with pytest.raises(DeploymentError, match="^COURSE_POSTGRES_AUTH_URI must be a PostgreSQL URI such as"):
        postgres_uri("COURSE_POSTGRES_AUTH_URI")
    monkeypatch.delenv("COURSE_MLFLOW_ADMIN_PASSWORD", raising=False)
    with pytest.raises(DeploymentError, match="^With COURSE_POSTGRES_URI, set COURSE_MLFLOW_ADMIN_PASSWORD too"):
        bring_up(["learner"], root=tmp_path)  # refused before anything starts


@pytest.mark.slow
def test_a_database_that_refuses_us_is_one_sentence(server):
    _, credentials, database = server
    with pytest.raises(DeploymentError, match="password authentication failed.*: check the user, password and "
                                              "database in COURSE_POSTGRES_URI"):
        check_database(database.replace(credentials.postgres, "wrong-password"))
    with pytest.raises(DeploymentError, match='database "no_such_database" does not exist'):
        check_database(database.rsplit("/", 1)[0] + "/no_such_database")
    check_database(database)  # the right ones pass


@pytest.mark.slow
def test_stopping_the_server_leaves_no_process(server):
    import psutil

    tracking = server[0]
    pids = tracking.process_ids()
    assert pids and tracking.running
    tracking.stop()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    with pytest.raises(requests.ConnectionError):
        requests.get(tracking.url + "/health", timeout=5)


@pytest.mark.parametrize("name", ["Alice", "bob-2", "_carol", "admin"])
def test_a_learner_name_that_cannot_be_a_user_prefix_and_variable_is_refused(name, capsys):
    from helpers.deployment import main

    with pytest.raises(SystemExit) as stopped:
        main(["--learner", "alice", "--learner", name])  # refused before anything starts
    assert stopped.value.code == 2
    assert f"is not 'admin': {name!r} does not fit." in capsys.readouterr().err
