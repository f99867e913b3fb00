"""A Databricks workspace on this machine, as faithful as open-source packages allow, to run the course's Databricks
branches end to end:

    python3 course.py standin serverless            # every lesson, as on serverless environment 4
    python3 course.py standin standard --labs       # every lab, on standard compute of runtime 17.3 LTS
    python3 course.py standin dedicated --only 04   # one lesson, on a dedicated cluster

| a workspace has | the stand-in has |
|---|---|
| the runtime's Spark (17.3 LTS, serverless 4: Spark 4.0) | pyspark 4.0 and its delta-spark, from databricks/runtimes/spark-4.0.lock, on Python 3.12 |
| a Spark Connect session (serverless, standard) | a Spark Connect server of that pyspark; its Python workers see none of the notebook's variables |
| a classic session (dedicated) | the same settings in SPARK_CONF_DIR, so `SparkSession.builder.getOrCreate()` gets them; the Hive catalog in a Derby network server that every driver (notebooks, job tasks) shares |
| `DATABRICKS_RUNTIME_VERSION` and friends | the values each compute type sets (COMPUTE) |
| Unity Catalog volumes | `CREATE VOLUME` makes /Volumes/<catalog>/<schema>/<volume> (databricks/standin/DatabricksSql.java), a folder of the run bound at /Volumes |
| `current_version()` (MLflow's `spark_udf` reads the runtime from it) | the same extension: runtime 17.3 |
| Unity Catalog's model registry | MLflow's SQLite registry under UC's rules (helpers/standin/registry.py) |
| the workspace's MLflow tracking server | `mlflow server`, artifacts proxied |
| Jobs (with model update triggers) and Model Serving | their REST APIs, running a job's notebook task with papermill and an endpoint with `mlflow models serve` (helpers/standin/api.py) |

What it cannot have: Unity Catalog's permissions and three-level table names (tables live in Spark's own catalog,
`spark_catalog`), `dbutils` and widgets, Databricks' own builds of Spark, Delta and MLflow, serverless quotas.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers.config import REPO_ROOT, display_path
from helpers.labs import lab_notebooks
from helpers.runner import course_notebooks
from helpers.serving import free_port
from helpers.standin.api import WorkspaceApi
from helpers.standin.report import RECORDS, write_tables

RUNTIMES = REPO_ROOT / "databricks" / "runtimes"
STANDIN_DIR = REPO_ROOT / ".standin"
SQL_SOURCE = REPO_ROOT / "databricks" / "standin" / "DatabricksSql.java"
RUNTIME_PYTHON = "3.12"  # Databricks Runtime 17.3 LTS and later, and serverless environments 4 and later
COMPUTE = {
    "serverless": {"DATABRICKS_RUNTIME_VERSION": "client.4.9", "IS_SERVERLESS": "TRUE",
                   "SPARK_CONNECT_MODE_ENABLED": "1"},
    "standard": {"DATABRICKS_RUNTIME_VERSION": "17.3", "SPARK_CONNECT_MODE_ENABLED": "1",
                 "DB_CLUSTER_ID": "1207-000000-standard"},
    "dedicated": {"DATABRICKS_RUNTIME_VERSION": "17.3", "DB_CLUSTER_ID": "1207-000000-dedicated"},
}
# What a Databricks compute's Python workers have of the machine's environment: nothing of the notebook's
WORKER_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "JAVA_HOME", "PYSPARK_PYTHON")


class StandInError(RuntimeError):
    """The stand-in cannot start on this machine: the message says why and what to do."""


def runtime_python() -> str:
    """Python 3.12 (the runtimes') from pyenv or PATH, else this Python: the runtimes' packages install on both."""
    candidates = [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{RUNTIME_PYTHON}.*/bin/python"))]
    candidates += [found for found in [shutil.which(f"python{RUNTIME_PYTHON}")] if found]
    for candidate in candidates:  # a pyenv shim on PATH may name a Python that is not active
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


def runtime_environment(runtime: str = "spark-4.0") -> Path:
    """The Python of the runtime's stand-in environment, built from databricks/runtimes/<runtime>.lock with the
    canary's machinery, unless the one built last had the same lock and project file."""
    from helpers.canary import build_environment

    lock = RUNTIMES / f"{runtime}.lock"
    folder = STANDIN_DIR / runtime / "venv"
    stamp = folder / "course-lock.sha256"
    digest = hashlib.sha256(lock.read_bytes() + (REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()
    python = folder / "bin" / "python"
    if not (python.exists() and stamp.exists() and stamp.read_text() == digest):
        build_environment(folder, lock, runtime_python())
        stamp.write_text(digest)
    return python


def in_runtime(python: Path, code: str, env: dict | None = None) -> str:
    """Runs `code` with the runtime's Python and returns what it printed."""
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if done.returncode != 0:
        raise StandInError(f"The runtime's Python failed: {done.stderr.strip()[-1500:]}")
    return done.stdout


def sql_jar(python: Path, java_home: Path) -> Path:
    """The DatabricksSql extension, compiled against the runtime's own Spark jars (once per source change)."""
    jars = Path(in_runtime(python, "import pyspark, pathlib; print(pathlib.Path(pyspark.__file__).parent / 'jars')")
                .strip())
    source = SQL_SOURCE.read_bytes()
    target = python.parent.parent.parent / f"databricks-sql-{hashlib.sha256(source).hexdigest()[:12]}.jar"
    if target.exists():
        return target
    javac = java_home / "bin" / "javac"
    if not javac.exists():
        raise StandInError(f"The stand-in compiles its Databricks SQL extension (CREATE VOLUME) with `javac`, which "
                           f"{java_home} lacks: install a JDK 17 or 21 (not only a runtime) and set JAVA_HOME to it.")
    classes = target.with_suffix(".classes")
    shutil.rmtree(classes, ignore_errors=True)
    subprocess.run([str(javac), "-nowarn", "-d", str(classes), "-cp", f"{jars}/*", str(SQL_SOURCE)], check=True)
    subprocess.run([str(java_home / "bin" / "jar"), "cf", str(target), "-C", str(classes), "."], check=True)
    shutil.rmtree(classes)
    return target


def spark_options(python: Path, workspace: Path, jar: Path) -> dict[str, str]:
    """The course's Spark settings as the runtime's pyspark makes them, with the Databricks SQL extension."""
    code = ("import json; from helpers.spark import _builder, _log4j_config, prepare_java; "
            "from helpers.config import settings, workspace_dir; c = settings(); "
            "j = prepare_java(c.workspace, c.java_home); "
            "o = _builder(c.spark_master, j, _log4j_config(workspace_dir('logs')), None)._options; "
            "print(json.dumps(o))")
    options = json.loads(in_runtime(python, code, dict(os.environ, COURSE_WORKSPACE=str(workspace))))
    options["spark.sql.extensions"] += ",course.standin.DatabricksSql"
    options["spark.jars"] = ",".join(filter(None, [options.get("spark.jars"), str(jar)]))
    options.pop("spark.app.name", None)
    return options


def java_home_of(python: Path, workspace: Path) -> Path:
    code = ("from helpers.java import prepare_java; from helpers.config import settings; c = settings(); "
            "print(prepare_java(c.workspace, c.java_home).home)")
    return Path(in_runtime(python, code, dict(os.environ, COURSE_WORKSPACE=str(workspace))).strip())


def start_connect_server(python: Path, options: dict[str, str], java_home: Path, folder: Path) -> tuple:
    """A Spark Connect server of the runtime's pyspark, as a serverless or standard compute is to a notebook."""
    port = free_port()
    spark_home = Path(in_runtime(python, "import pyspark, pathlib; print(pathlib.Path(pyspark.__file__).parent)")
                      .strip())
    options = {**options, "spark.connect.grpc.binding.address": "127.0.0.1",
               "spark.connect.grpc.binding.port": str(port)}
    command = [str(spark_home / "bin" / "spark-submit"), "--class",
               "org.apache.spark.sql.connect.service.SparkConnectServer",
               *(f"--conf={key}={value}" for key, value in options.items()), "--name", "databricks-standin"]
    env = {name: os.environ[name] for name in WORKER_VARIABLES if name in os.environ}
    env.update(JAVA_HOME=str(java_home), PYSPARK_PYTHON=str(python), SPARK_HOME=str(spark_home))
    log = folder / "connect-server.log"
    server = subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=folder,
                              start_new_session=True)
    deadline = time.monotonic() + 300  # the first start downloads the Delta jars
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StandInError(f"The stand-in's Spark Connect server stopped; its log is {display_path(log)}.")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"sc://127.0.0.1:{port}"
        except OSError:
            time.sleep(1)
    stop(server)
    raise StandInError(f"The stand-in's Spark Connect server did not answer in 5 minutes; see {display_path(log)}.")


def classic_conf_dir(options: dict[str, str], folder: Path, metastore_port: int, derby_client: Path) -> Path:
    """A SPARK_CONF_DIR whose spark-defaults.conf gives a notebook's `getOrCreate()` a dedicated cluster's session."""
    conf = folder / "spark-conf"
    conf.mkdir(parents=True, exist_ok=True)
    # Each notebook, and each job task on "this cluster", starts its own driver here, so the tables' catalog lives in
    # a metastore they share, as a workspace's does: Spark's Hive catalog in a Derby network server.
    options = {**options, "spark.sql.catalogImplementation": "hive",
               "spark.hadoop.javax.jdo.option.ConnectionURL":
                   f"jdbc:derby://127.0.0.1:{metastore_port}/metastore_db;create=true",
               "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.apache.derby.jdbc.ClientDriver",
               "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
               "spark.hadoop.hive.metastore.schema.verification": "false",
               "spark.driver.extraClassPath": str(derby_client)}
    (conf / "spark-defaults.conf").write_text("".join(f"{key} {value}\n" for key, value in options.items()))
    return conf


def start_metastore(python: Path, java_home: Path, folder: Path) -> tuple[subprocess.Popen, int, Path]:
    """A Derby network server of the runtime's Derby (its network server and client jars from Maven Central, once),
    for the dedicated cluster's Hive catalog; returns the server, its port and the client jar."""
    from helpers.spark import fetch_jars_with_maven

    spark_jars = Path(in_runtime(python, "import pyspark, pathlib; print(pathlib.Path(pyspark.__file__).parent / "
                                         "'jars')").strip())
    version = next(spark_jars.glob("derby-*.jar")).stem.removeprefix("derby-")
    fetched = fetch_jars_with_maven([f"org.apache.derby:derbynet:{version}", f"org.apache.derby:derbyclient:{version}"],
                                    STANDIN_DIR / "jars" / f"derby-{version}", java_home, what="Derby's network server")
    client = next(jar for jar in fetched if jar.name.startswith("derbyclient"))
    classpath = ":".join(str(jar) for jar in [*spark_jars.glob("derby*.jar"), *fetched])
    port = free_port()
    log = folder / "metastore.log"
    server = subprocess.Popen([str(java_home / "bin" / "java"), f"-Dderby.system.home={folder}", "-cp", classpath,
                               "org.apache.derby.drda.NetworkServerControl", "start", "-h", "127.0.0.1", "-p",
                               str(port), "-noSecurityManager"], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StandInError(f"The stand-in's Derby metastore stopped; its log is {display_path(log)}.")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port, client
        except OSError:
            time.sleep(0.5)
    stop(server)
    raise StandInError(f"The stand-in's Derby metastore did not answer in a minute; see {display_path(log)}.")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def bind_volumes(folder: Path) -> None:
    """Makes /Volumes this run's folder, in a mount namespace of this process's own (nothing else sees it)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        Path("/Volumes").mkdir(exist_ok=True)
        subprocess.run(["mount", "--bind", str(folder), "/Volumes"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise StandInError(f"The stand-in could not put its volumes at /Volumes ({error}): it needs root, or a "
                           "mount namespace it may mount in (`unshare --mount --map-root-user`).") from None


def replaced_lines(executed: Path) -> list[str]:
    """The lines a notebook printed about what it did on Databricks instead of a local step (they start with "On
    Databricks" or "Skipped on Databricks")."""
    lines = []
    for cell in json.loads(executed.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", []))
            lines += [line for line in text.splitlines() if line.startswith(("On Databricks", "Skipped on Databricks"))]
    return lines


def run(compute: str, runtime: str, labs: bool, only: list[str] | None, record: bool = False) -> int:
    folder = STANDIN_DIR / "runs" / compute
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bind_volumes(folder / "Volumes")
    python = runtime_environment(runtime)
    java_home = java_home_of(python, folder / "server")
    options = spark_options(python, folder / "server", sql_jar(python, java_home))
    from helpers.standin.registry import registry_uri
    from helpers.webhooks import start_tracking_server

    tracking = start_tracking_server(folder / "tracking")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("COURSE_", "MLFLOW_", "SPARK_", "PYSPARK_", "DATABRICKS_"))}
    env.update(COMPUTE[compute], MLFLOW_TRACKING_URI=tracking.url,
               MLFLOW_REGISTRY_URI=registry_uri(folder / "registry.db"), COURSE_WORKSPACE=str(folder / "runner"))
    server = None
    api = WorkspaceApi(folder / "api", python, env)  # Jobs and Model Serving, backed by real runs and servers
    env.update(DATABRICKS_HOST=api.url, DATABRICKS_TOKEN="stand-in")
    api.start()
    try:
        if "SPARK_CONNECT_MODE_ENABLED" in COMPUTE[compute]:
            server, env["SPARK_REMOTE"] = start_connect_server(python, options, java_home, folder)
        else:
            server, port, client = start_metastore(python, java_home, folder)
            env.update(SPARK_CONF_DIR=str(classic_conf_dir(options, folder, port, client)), JAVA_HOME=str(java_home),
                       PYSPARK_PYTHON=str(python))
        print(f"Databricks stand-in: {compute} compute, {runtime} ({python.relative_to(REPO_ROOT)}); Spark "
              f"{env.get('SPARK_REMOTE', 'classic')}, MLflow {tracking.url}, Unity Catalog registry rules", flush=True)
        command = [str(python), "-m", "helpers.runner", "--fresh", *(["--labs", "--with-lessons", "--keep-going"] if labs else []),
                   *(["--only", *only] if only else [])]
        status = subprocess.run(command, env=env, cwd=REPO_ROOT).returncode
        workspace_api = api.history()
    finally:
        api.stop()
        if server is not None:
            stop(server)
        tracking.stop()
    expected = [path.stem for path in course_notebooks(only)]
    if labs:  # on Databricks nothing runs a lab's prerequisites by itself: each lesson, then its lab
        expected = [name for lesson in expected for name in
                    (lesson, *(lab.stem for lab in lab_notebooks(only) if lab.name[:3] == lesson[:3]))]
    summary = summarise(folder / "runner" / "executed", compute, runtime, labs, expected)
    summary.update(workspace_api)  # the job runs and Model Serving endpoints the notebooks asked the workspace for
    for run in summary["job_runs"]:
        print(f"job run: {run['job']} ({run['trigger']}): {run['result']}" + (f": {run['error']}" if run["error"] else ""))
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for notebook in summary["notebooks"]:
        for line in notebook["replaced"]:
            print(f"{notebook['name']}: {line}")
    if record and not only:  # a failed run is recorded too: the tables say what failed
        target = RECORDS / f"{compute}{'-labs' if labs else ''}.json"
        target.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"recorded in {display_path(target)}; `python3 course.py standin --report` updates the docs' tables")
    return status


def summarise(executed: Path, compute: str, runtime: str, labs: bool, expected: list[str]) -> dict:
    """What ran: each notebook, passed, failed (an error output) or not run, and what it replaced on Databricks."""
    notebooks = []
    for name in expected:
        path = executed / f"{name}.ipynb"
        if not path.exists():
            notebooks.append({"name": name, "status": "not run", "replaced": []})
            continue
        cells = json.loads(path.read_text())["cells"]
        failed = any(output.get("output_type") == "error" for cell in cells for output in cell.get("outputs", []))
        notebooks.append({"name": name, "status": "failed" if failed else "passed",
                          "replaced": replaced_lines(path)})
    return {"compute": compute, "runtime": runtime, "environment": COMPUTE[compute], "labs": labs,
            "date": time.strftime("%Y-%m-%d"), "notebooks": notebooks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course.py standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("compute", nargs="?", choices=sorted(COMPUTE))
    parser.add_argument("--runtime", default="spark-4.0", choices=[p.stem for p in sorted(RUNTIMES.glob("*.lock"))])
    parser.add_argument("--labs", action="store_true", help="run the labs instead of the lessons")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only the notebooks with these number prefixes")
    parser.add_argument("--record", action="store_true",
                        help=f"keep a passing full run's summary in {display_path(RECORDS)} (maintainers)")
    parser.add_argument("--report", action="store_true",
                        help="write the compute tables of README.md and docs/databricks.md from the recorded runs")
    args = parser.parse_args(argv)
    if args.report:
        for path in write_tables():
            print(f"updated {display_path(path)}")
        return 0
    if args.compute is None:
        parser.error("name a compute type: serverless, standard or dedicated (or --report)")
    if os.environ.get("COURSE_STANDIN_NAMESPACE") != "1" and shutil.which("unshare"):
        # its own mount namespace, so that /Volumes is bound for this run only
        namespace = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            namespace.insert(1, "--map-root-user")
        return subprocess.run([*namespace, sys.executable, "-m", "helpers.standin.workspace", *(argv or sys.argv[1:])],
                              env=dict(os.environ, COURSE_STANDIN_NAMESPACE="1")).returncode
    try:
        return run(args.compute, args.runtime, args.labs, args.only, args.record)
    except StandInError as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
