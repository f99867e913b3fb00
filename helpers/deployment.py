"""The course on a small real deployment on 127.0.0.1, changed by configuration only (`python3 course.py cluster`).

    PostgreSQL (the operating system's)  <-  mlflow server --app-name basic-auth --serve-artifacts  <-  notebooks
    Spark standalone master + two one-core workers per learner (spark-class, from pyspark)        <-  notebooks

The notebooks learn nothing new: they receive COURSE_SPARK_MASTER, MLFLOW_TRACKING_URI and the learner's
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as they would for a team's own cluster and tracking server
(plus the admin account 08 registers its webhook with, and with several learners a COURSE_NAME_PREFIX each).
Artifacts travel through the tracking server (proxied artifact serving), so no client needs the server's disk.
Credentials come from environment variables (see docs/cluster.md); unset ones are made up for
this one bring-up and never committed. Everything started here is stopped on the way out, also on
failure, Ctrl-C or SIGTERM; PostgreSQL is stopped only if this command started it.

    python3 course.py cluster                 # bring it up, run every notebook against it, tear it down
    python3 course.py cluster --only 00 01    # runner arguments pass through
    python3 course.py cluster --learner alice --learner bob   # two learners at once, each with a log
    python3 course.py cluster --up            # bring it up, print how to use it, wait for Ctrl-C
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from helpers.config import REPO_ROOT
from helpers.serving import ModelServer, ServingError, free_port
from helpers.webhooks import TrackingServer, start_tracking_server

DEPLOYMENT_ROOT = REPO_ROOT / "cluster-workspace"  # services/ (logs, artifacts, Spark work) and course/ (workspace)
DATABASE = "course_mlflow"  # its user has the same name; the auth store is DATABASE + "_auth"
ADMIN = "admin"
# Notebooks 07-09 run two Spark applications at once (the kernel, and the training project or the `course-cd4ml`
# command it starts), and each application gets one core (see start_spark_cluster).
WORKERS_PER_LEARNER, WORKER_MEMORY = 2, "3g"


class DeploymentError(RuntimeError):
    """The deployment could not come up; the message says what to do."""


@dataclass
class Credentials:
    """Passwords from the environment, or made up for this bring-up (then known only to this process tree)."""
    postgres: str
    admin: str
    learners: dict[str, str]
    flask_secret: str = field(default_factory=lambda: secrets.token_hex(32))

    @classmethod
    def from_environment(cls, learners: list[str]) -> "Credentials":
        env = os.environ
        return cls(postgres=env.get("COURSE_POSTGRES_PASSWORD") or secrets.token_hex(16),
                   admin=env.get("COURSE_MLFLOW_ADMIN_PASSWORD") or secrets.token_hex(16),
                   learners={name: env.get(f"COURSE_PASSWORD_{name.upper()}") or secrets.token_hex(16)
                             for name in learners})


# --- PostgreSQL ------------------------------------------------------------------------------------------------------

def _as_postgres_user(command: list[str]) -> list[str]:
    """Runs a PostgreSQL admin command as the `postgres` operating-system user (peer authentication)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return ["sudo", "-n", "-u", "postgres", *command]


def _as_root(command: list[str]) -> list[str]:
    return command if os.geteuid() == 0 else ["sudo", "-n", *command]


def _run(command: list[str], what: str, timeout: float = 300) -> str:
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise DeploymentError(f"{what} needs `{command[0]}`, which is not installed.") from None
    if finished.returncode != 0:
        raise DeploymentError(f"{what} failed (`{' '.join(command[:4])} ...` exited {finished.returncode}): "
                              f"{(finished.stderr or finished.stdout).strip()[-800:]}")
    return finished.stdout


def install_postgres() -> None:
    """Installs PostgreSQL from the operating system's packages (Debian/Ubuntu, as root), or says how to."""
    if shutil.which("pg_lsclusters"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DeploymentError("PostgreSQL is not installed: install it (`sudo apt-get install postgresql` on "
                              "Debian or Ubuntu), or set COURSE_POSTGRES_URI to a PostgreSQL database you have.")
    print("Installing PostgreSQL from the operating system's packages (apt-get install postgresql) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "postgresql"]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        if subprocess.run(command, env=env, capture_output=True).returncode != 0:
            raise DeploymentError("apt-get could not install postgresql; run `apt-get install postgresql` to see "
                                  "why (network or package sources?).")


@dataclass
class Postgres:
    """The machine's PostgreSQL cluster (Debian's pg_ctlcluster layout); stopped at the end only if we started it."""
    version: str
    name: str
    port: int
    started_here: bool = False

    @classmethod
    def start(cls) -> "Postgres":
        install_postgres()
        clusters = [line.split() for line in _run(["pg_lsclusters", "--no-header"], "Listing PostgreSQL clusters")
                    .splitlines() if line.strip()]
        if not clusters:
            raise DeploymentError("PostgreSQL is installed but has no cluster: create one with "
                                  "`pg_createcluster <version> main`, then try again.")
        version, name, port, status = clusters[0][:4]
        server = cls(version, name, int(port))
        if status != "online":
            _run(_as_root(["pg_ctlcluster", version, name, "start"]), "Starting PostgreSQL")
            server.started_here = True
        return server

    def sql(self, statement: str, database: str = "postgres") -> str:
        return _run(_as_postgres_user(["psql", "-p", str(self.port), "-d", database, "-v", "ON_ERROR_STOP=1",
                                       "-qAt", "-c", statement]), "A PostgreSQL admin command")

    def fresh_databases(self, name: str, password: str) -> tuple[str, str]:
        """(Re)creates the user `name` and two empty databases it owns, `name` (tracking) and `name`_auth (users
        and permissions); returns their URIs."""
        quoted = password.replace("'", "''")
        self.sql(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        self.sql(f"ALTER ROLE {name} PASSWORD '{quoted}'")
        for database in (name, f"{name}_auth"):
            self.sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            self.sql(f"CREATE DATABASE {database} OWNER {name}")
        base = f"postgresql+psycopg://{name}:{quote(password, safe='')}@127.0.0.1:{self.port}"
        return f"{base}/{name}", f"{base}/{name}_auth"

    def stop(self) -> None:
        if self.started_here:
            subprocess.run(_as_root(["pg_ctlcluster", self.version, self.name, "stop"]), capture_output=True)


def postgres_uri(variable: str) -> str:
    """The URI in COURSE_POSTGRES_URI (or _AUTH_URI, which defaults to it) with the driver the course installs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    value = os.environ.get(variable) or os.environ["COURSE_POSTGRES_URI"]
    try:
        url = make_url(value)
    except ArgumentError:
        url = None
    if url is None or url.get_backend_name() not in ("postgres", "postgresql"):
        raise DeploymentError(f"{variable} must be a PostgreSQL URI such as "
                              "postgresql://user:password@host:5432/mlflow.")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def check_database(uri: str) -> None:
    """One clear sentence when PostgreSQL is down or refuses the configured user, password or database."""
    import psycopg

    plain = uri.replace("postgresql+psycopg://", "postgresql://", 1)
    where = re.sub(r"//[^@/]*@", "//", plain)  # never print the password
    try:
        psycopg.connect(plain, connect_timeout=10).close()
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]
        raise DeploymentError(f"PostgreSQL at {where} refused the connection ({reason}): check the user, password "
                              "and database in COURSE_POSTGRES_URI, or that the server is running.") from None


# --- the MLflow tracking server --------------------------------------------------------------------------------------

def start_mlflow_server(database_uri: str, auth_database_uri: str, folder: Path, credentials: Credentials,
                        artifacts_dir: Path | None = None) -> TrackingServer:
    """`mlflow server` on PostgreSQL with basic-auth and proxied artifacts (in `artifacts_dir`, else in `folder`),
    plus one user per learner (kept users, from an earlier bring-up on the same database, get today's password)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "basic_auth.ini"
    config.write_text("[mlflow]\n"
                      "default_permission = READ\n"  # learners see each other's work but cannot change it
                      f"database_uri = {auth_database_uri.replace('%', '%%')}\n"  # configparser reads it
                      f"admin_username = {ADMIN}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    config.chmod(0o600)  # it holds the database password
    server = start_tracking_server(
        folder, timeout=240, backend_store_uri=database_uri, artifacts_dir=artifacts_dir,
        options=("--app-name", "basic-auth", "--serve-artifacts"),
        env={"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": credentials.admin,
             "MLFLOW_FLASK_SERVER_SECRET_KEY": credentials.flask_secret})
    try:
        for name, password in credentials.learners.items():
            create_user(server.url, (ADMIN, credentials.admin), name, password)
    except BaseException:
        server.stop()
        raise
    return server


def create_user(server_url: str, admin: tuple[str, str], username: str, password: str) -> None:
    import requests

    user = {"username": username, "password": password}
    reply = requests.post(f"{server_url}/api/2.0/mlflow/users/create", auth=admin, timeout=30, json=user)
    if reply.status_code == 401:  # MLflow creates the admin only in an empty auth database, and never resets it
        raise DeploymentError("The tracking server's auth database already has an admin whose password is not "
                              "COURSE_MLFLOW_ADMIN_PASSWORD: set that variable to the admin password it was first "
                              "brought up with (or point COURSE_POSTGRES_AUTH_URI at an empty database).")
    if reply.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in reply.text:  # a kept database: the user stays,
        reply = requests.patch(f"{server_url}/api/2.0/mlflow/users/update-password", auth=admin, timeout=30,
                               json=user)  # with today's password
    if reply.status_code != 200:
        raise DeploymentError(f"The tracking server refused to create the user {username!r} "
                              f"({reply.status_code}: {reply.text[:300]}).")


# --- Spark standalone ------------------------------------------------------------------------------------------------

class SparkDaemon(ModelServer):
    """A Spark master or worker started with `spark-class`; ready when its web UI answers `/json/`."""
    health_path = "/json/"
    shown_variables = ()


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _spark_environment(java_home: Path) -> dict[str, str]:
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "JAVA_HOME": str(java_home), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def start_spark_cluster(folder: Path, java_home: Path, workers: int) -> tuple[str, list[SparkDaemon]]:
    """A master and `workers` one-core workers on 127.0.0.1; returns the master URL and the daemons."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    env = _spark_environment(java_home)
    port, ui_port = free_port(), free_port()
    # One core per application unless it asks for more: otherwise the first application (a notebook's kernel) takes
    # every core for its whole life and the next one (the training project notebook 07 starts, another learner's
    # kernel) waits forever for an executor.
    master_env = {**env, "SPARK_MASTER_OPTS": "-Dspark.deploy.defaultCores=1"}
    master = SparkDaemon("spark master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                          "--port", str(port), "--webui-port", str(ui_port)],
                         master_env, ui_port, folder / "spark-master.log").start(timeout=180)
    master_url = f"spark://127.0.0.1:{port}"
    daemons = [master]
    try:
        for number in range(1, workers + 1):
            worker_ui = free_port()
            daemons.append(SparkDaemon(
                f"spark worker {number}",
                [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                 "--memory", WORKER_MEMORY, "--webui-port", str(worker_ui),
                 "--work-dir", str(folder / f"spark-worker-{number}"), master_url],
                env, worker_ui, folder / f"spark-worker-{number}.log").start(timeout=180))
        deadline = time.monotonic() + 120
        while alive_workers(master.url) < workers:
            if time.monotonic() > deadline:
                raise DeploymentError(f"The Spark workers did not register with the master within 120 s; see the "
                                      f"logs in {folder}.")
            time.sleep(0.5)
    except BaseException:
        for daemon in reversed(daemons):
            daemon.stop()
        raise
    return master_url, daemons


def alive_workers(master_ui: str) -> int:
    try:
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=5) as reply:
            return int(json.load(reply).get("aliveworkers", 0))
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return 0


# --- the deployment as a whole ---------------------------------------------------------------------------------------

@dataclass
class Deployment:
    """Everything one bring-up started; `environment(learner)` is what a learner's course run needs."""
    root: Path
    tracking_uri: str
    master_url: str
    credentials: Credentials
    services: list[ModelServer]
    postgres: Postgres | None
    workers: int

    def environment(self, learner: str) -> dict[str, str]:
        env = {"COURSE_SPARK_MASTER": self.master_url, "MLFLOW_TRACKING_URI": self.tracking_uri,
               "MLFLOW_TRACKING_USERNAME": learner, "MLFLOW_TRACKING_PASSWORD": self.credentials.learners[learner],
               "SPARK_LOCAL_IP": "127.0.0.1", "COURSE_WORKSPACE": str(self.root / "course" / learner),
               # MLflow's basic-auth lets only admins manage webhooks: notebook 08 registers its CI webhook as the
               # admin (helpers.webhooks.as_webhook_admin), as a team's MLflow admin would do once for its CI server.
               "COURSE_WEBHOOK_ADMIN_USERNAME": ADMIN, "COURSE_WEBHOOK_ADMIN_PASSWORD": self.credentials.admin}
        if len(self.credentials.learners) > 1:  # learners sharing the server keep their experiments and models apart
            env["COURSE_NAME_PREFIX"] = f"{learner}_"
        return env

    def process_ids(self) -> list[int]:
        return [pid for service in self.services for pid in service.process_ids()]

    def stop(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the tear-down short
        for service in reversed(self.services):  # workers, master, then the tracking server
            try:
                service.stop()
            except Exception as error:  # one failure must not leave the others running
                print(f"could not stop {service}: {error}", file=sys.stderr)
        if self.postgres:
            self.postgres.stop()

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def bring_up(learners: list[str], root: Path = DEPLOYMENT_ROOT, database: str = DATABASE) -> Deployment:
    """Starts PostgreSQL (if needed), the tracking server and the Spark cluster; stops what it started on failure.
    `database` names the PostgreSQL user and databases it makes afresh (tests use their own)."""
    from helpers.java import prepare_java

    services_dir = root / "services"
    for folder in (services_dir, root / "course"):  # a fresh store each bring-up, so fresh course workspaces too
        shutil.rmtree(folder, ignore_errors=True)
    services_dir.mkdir(parents=True)
    credentials = Credentials.from_environment(learners)
    postgres, services = None, []
    try:
        if os.environ.get("COURSE_POSTGRES_URI"):  # a team's own database: used as it is, never dropped
            if not os.environ.get("COURSE_MLFLOW_ADMIN_PASSWORD"):
                raise DeploymentError("With COURSE_POSTGRES_URI, set COURSE_MLFLOW_ADMIN_PASSWORD too: the database "
                                      "keeps the admin that the first bring-up creates, and the next bring-up must "
                                      "know its password.")
            database_uri, auth_uri = map(postgres_uri, ("COURSE_POSTGRES_URI", "COURSE_POSTGRES_AUTH_URI"))
            artifacts_dir = root / "artifacts"  # kept too: the kept runs point at them
        else:
            postgres = Postgres.start()
            database_uri, auth_uri = postgres.fresh_databases(database, credentials.postgres)
            artifacts_dir = services_dir / "artifacts"
        for uri in {database_uri, auth_uri}:
            check_database(uri)
        try:
            server = start_mlflow_server(database_uri, auth_uri, services_dir, credentials, artifacts_dir)
        except ServingError as error:
            raise DeploymentError(f"The tracking server did not start: {error}") from None
        services.append(server)
        java = prepare_java(services_dir)
        workers = WORKERS_PER_LEARNER * len(learners)
        master_url, daemons = start_spark_cluster(services_dir, java.home, workers)
        services.extend(daemons)
    except BaseException:
        for service in reversed(services):
            service.stop()
        if postgres:
            postgres.stop()
        raise
    return Deployment(root, server.url, master_url, credentials, services, postgres, workers)


def _interrupt_once() -> None:
    """Ctrl-C or SIGTERM unwinds through the `with` block, which tears everything down, once: a Ctrl-C reaches this
    process from the terminal and again from course.py, and the second must not cut the clean-up short."""
    def handler(signum, frame):
        for each in (signal.SIGINT, signal.SIGTERM):
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, handler)


def run_learners(deployment: Deployment, learners: list[str], runner_args: list[str]) -> int:
    """The course runner once per learner, all at once; one learner's output goes to the terminal as it comes, several
    learners' to a log each, whose tables are printed when all have finished. Returns the first non-zero exit code."""
    runner = [sys.executable, "-m", "helpers.runner", *runner_args]
    runs, logs = {}, {}
    for learner in learners:
        env = {**os.environ, **deployment.environment(learner)}
        if len(learners) == 1:
            output = None
        else:
            logs[learner] = deployment.root / "course" / f"{learner}.log"
            logs[learner].parent.mkdir(parents=True, exist_ok=True)
            output = logs[learner].open("w")
            print(f"{learner}: the course as MLflow user {learner!r}, names prefixed {env['COURSE_NAME_PREFIX']!r}; "
                  f"log in {logs[learner]}", flush=True)
        # A session of its own: a Ctrl-C reaches the runner once, from below, so it can stop its kernels in peace.
        runs[learner] = subprocess.Popen(runner, env=env, cwd=REPO_ROOT, stdout=output,
                                         stderr=subprocess.STDOUT if output else None, start_new_session=True)
        if output:
            output.close()
    try:
        codes = {learner: process.wait() for learner, process in runs.items()}
    except BaseException:  # Ctrl-C or SIGTERM: each runner stops its kernels before the deployment goes
        for process in runs.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in runs.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        raise
    for learner, log in logs.items():
        text = log.read_text()
        table = "notebook " + text.split("\nnotebook ", 1)[1] if "\nnotebook " in text else \
            "\n".join(text.splitlines()[-30:]) + "\n"  # it stopped before its table: its last lines say why
        print(f"\n== {learner} (exit code {codes[learner]})\n{table}", end="")
    return next((code for code in codes.values() if code), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course.py cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Other arguments go to the course runner (python3 course.py run --help).")
    parser.add_argument("--up", action="store_true", help="bring the deployment up and wait for Ctrl-C")
    parser.add_argument("--learner", action="append", metavar="NAME",
                        help="an MLflow user the course runs as (default: learner); repeat it to run the course "
                             "for several learners at once, each with their own workspace, experiments and models")
    args, runner_args = parser.parse_known_args(argv)
    learners = list(dict.fromkeys(args.learner or [os.environ.get("COURSE_LEARNER", "learner")]))
    for learner in learners:  # a name is also a prefix and part of a variable's name (COURSE_PASSWORD_ALICE)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", learner) or learner == ADMIN:
            parser.error(f"a learner's name starts with a lower-case letter, has only lower-case letters, digits "
                         f"and underscores, and is not {ADMIN!r}: {learner!r} does not fit.")
    _interrupt_once()
    started = time.perf_counter()
    try:
        deployment = bring_up(learners)
    except DeploymentError as error:
        print(f"course.py cluster: {error}", file=sys.stderr)
        return 2
    with deployment:
        print(f"Up in {time.perf_counter() - started:.0f} s: Spark {deployment.master_url} "
              f"({deployment.workers} one-core workers), MLflow {deployment.tracking_uri} (PostgreSQL, basic-auth, "
              f"proxied artifacts); logs in {deployment.root / 'services'}", flush=True)
        try:
            if args.up:
                print("Point a course run at it with these variables (Ctrl-C tears it down):")
                for learner in learners:  # passwords too: made up for this bring-up unless chosen (docs/cluster.md)
                    print(f"  for {learner}:")
                    for name, value in sorted(deployment.environment(learner).items()):
                        print(f"    {name}={value}")
                while True:
                    time.sleep(3600)
            return run_learners(deployment, learners, runner_args)
        except KeyboardInterrupt:
            print("\nInterrupted: tearing the deployment down.", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
