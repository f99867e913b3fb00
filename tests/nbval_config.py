"""pytest plugin for nbval: the notebooks run in one fresh course workspace, on one Spark driver that each notebook's
kernel attaches to in turn (as `course.py run` runs them), and stderr is never compared.

Spark, MLflow and Jupyter write warnings to stderr that vary between runs and machines; a lesson's meaning is in
stdout and rich outputs, which stay compared in full (with the narrow sanitizer in nbval_sanitize.cfg).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

# The variables the kernels must see as the test run began: unit tests and libraries may change them in this
# process (mlflow.set_tracking_uri sets MLFLOW_TRACKING_URI, mlflow.set_experiment sets MLFLOW_EXPERIMENT_ID), and a
# kernel inherits what it finds: `mlflow run --experiment-name` in notebook 07 refuses a leaked MLFLOW_EXPERIMENT_ID.
KERNEL_VARIABLES = ("COURSE_WORKSPACE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                    "COURSE_SPARK_MASTER", "DATABRICKS_RUNTIME_VERSION", "COURSE_SPARK_DRIVER")
_kernel_environment: dict[str, str | None] = {}
_made_workspace: list[str] = []  # the workspace this process made, deleted after a passing run
# The runner's shared driver (helpers.spark.SharedDriver), started for the first notebook of a classic local run:
# each notebook then pays no JVM start and warm-up, as in `course.py run`. Spark Connect runs (tests/test_connect.py)
# and cluster runs (tests/test_cluster.py) start a driver per notebook, as Jupyter does, and so does every run with
# COURSE_NBVAL_SHARED_DRIVER=0; tests/test_shared_driver.py runs nbval both ways.
_shared: dict[str, object] = {}


def pytest_configure(config):
    # An xdist worker runs under execnet's bootstrap, whose __main__ has neither __spec__ nor __file__: pyspark's
    # Spark Connect ML modules (which mlflow.spark.log_model imports) then take the process for a doctest run and
    # call sys.exit(0). Give __main__ the file attribute every real program has.
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__file__ = "<pytest-xdist worker>"
    # A fresh workspace for the notebooks, unless the caller chose one (to point them at a cluster, say).
    if not os.environ.get("COURSE_WORKSPACE"):
        os.environ["COURSE_WORKSPACE"] = tempfile.mkdtemp(prefix="course-nbval-")
        _made_workspace.append(os.environ["COURSE_WORKSPACE"])
    _kernel_environment.update({name: os.environ.get(name) for name in KERNEL_VARIABLES})


def shared_driver_wanted() -> bool:
    from helpers.spark import SPARK_REMOTE

    return not os.environ.get(SPARK_REMOTE) and not os.environ.get("COURSE_SPARK_MASTER") \
        and os.environ.get("COURSE_NBVAL_SHARED_DRIVER", "1") != "0"


def attach_next_notebook() -> None:
    """Before a notebook's kernel starts: the previous notebook's SparkContext is stopped, and the kernel will find
    the shared driver through the variable it inherits (started on first use; without one, notebooks start their
    own, as they would in Jupyter)."""
    from helpers.spark import SHARED_DRIVER, SharedDriver

    driver = _shared.get("driver")
    if "driver" not in _shared:
        driver = _shared["driver"] = SharedDriver.start()
        if driver is None:
            sys.stderr.write("nbval: the shared Spark driver did not start; each notebook starts its own (slower)\n")
    elif driver is not None and not driver.release():
        driver = _shared["driver"] = None  # it stopped answering: the next notebooks start their own
    if driver is not None:
        os.environ[SHARED_DRIVER] = driver.address


def close_shared_driver() -> None:
    from helpers.spark import SHARED_DRIVER

    driver = _shared.pop("driver", None)
    if driver is not None:
        driver.close()
        os.environ.pop(SHARED_DRIVER, None)  # no later process may try to join a stopped driver


@pytest.hookimpl(trylast=True)  # after pytest's own teardown, which shuts the notebook's kernel down
def pytest_runtest_teardown(item, nextitem):
    if type(item).__name__ == "IPyNbCell" and type(nextitem).__name__ != "IPyNbCell":
        close_shared_driver()  # the last notebook of the unit is done: its JVM is not kept for the unit tests


def pytest_sessionfinish(session, exitstatus):
    close_shared_driver()
    # Kept after a failure, to read what the notebooks left behind; otherwise each run would leave one in /tmp.
    # (xdist's workers inherit the controller's variable, so only the process that made the folder deletes it.)
    if _made_workspace and exitstatus == 0:
        shutil.rmtree(_made_workspace[0], ignore_errors=True)


def pytest_collectstart(collector):
    if type(collector).__name__ == "IPyNbFile":
        collector.skip_compare = (*collector.skip_compare, "stderr")


# Modules that bring up the machine's one PostgreSQL (and stop it again): never two at once.
POSTGRESQL_MODULES = ("tests/test_deployment.py", "tests/test_cluster.py")


def work_unit(nodeid: str) -> str:
    """What one xdist worker runs as a whole, in collection order: all notebooks (in one workspace, in course order,
    as the course runs), the PostgreSQL modules, or one test module (its module fixtures then start once)."""
    path = nodeid.split("::")[0]
    if path.startswith("notebooks/"):
        return "notebooks"
    return "postgresql" if path in POSTGRESQL_MODULES else path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own `--dist loadgroup` renames node ids, which pytest 9 no longer allows (it silently spread one
    # notebook's cells over both workers); a scheduler that splits by our own units needs no renaming.
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # its reordering (most items first) would undo LONGEST_UNITS' order

    class CourseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return CourseScheduling(config, log)


# The longest work units, each a whole course run or more (classic nbval, every lesson in the Databricks stand-in,
# every lab both ways, the Connect runs): under xdist they go first, one a worker, and the shorter units fill in
# around them. xdist's own order, by item count, left the Connect run (five items) to start after 20 minutes; with
# the stand-in left to its turn, it started after 25 minutes and one worker idled for five at the end.
LONGEST_UNITS = ("notebooks", "tests/test_standin.py", "tests/test_labs.py", "tests/test_connect.py")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m filter reads the markers
def pytest_collection_modifyitems(config, items):
    # Every notebook cell starts or uses Spark: `-m "not slow"` keeps the quick unit tests only.
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            item.add_marker(pytest.mark.slow)
    if hasattr(config, "workerinput"):  # an xdist worker; in one process, the unit tests still come first
        def rank(item):
            unit = work_unit(item.nodeid)
            return LONGEST_UNITS.index(unit) if unit in LONGEST_UNITS else len(LONGEST_UNITS)
        items.sort(key=rank)  # stable: each unit keeps its own order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Runs before the notebook's kernel is started (by its collector's setup), so the kernel inherits these.
    if type(item).__name__ == "IPyNbCell":
        for name, value in _kernel_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if item.parent is not _shared.get("notebook") and shared_driver_wanted():
            _shared["notebook"] = item.parent  # its first cell: the kernel starts after this hook
            attach_next_notebook()
