"""The runner's shared Spark driver: notebooks attach to one JVM in turn, each with a session of its own."""
import re
import socket

import nbformat
import pytest

from helpers import execution, runner
from helpers.spark import SHARED_DRIVER
from tests.sandbox import clean_env
from tests.test_runner import write_notebook

pytestmark = pytest.mark.slow

# What a process of these tests prints about its Spark: the driver JVM's process id, its settings and tables.
SHOW = """
def show(spark, who):
    print(who, "jvm", spark._jvm.java.lang.ProcessHandle.current().pid(), "partitions",
          spark.conf.get("spark.sql.shuffle.partitions"), "views",
          sorted(t.name for t in spark.catalog.listTables() if t.isTemporary), "rows",
          spark.read.table("attached").count() if spark.catalog.tableExists("attached") else 0)
"""
# A process a notebook starts (a project run, the job): it should join the notebook's driver, with its own session.
CHILD = SHOW + """
from helpers.spark import start_spark
spark = start_spark(quiet=True)
show(spark, "child")
spark.range(2).write.format("delta").mode("append").saveAsTable("attached")
"""
# A notebook: its session, then a child process, then its session again.
REPORT = SHOW + """
import subprocess, sys
from helpers.spark import start_spark
spark = start_spark(quiet=True)
show(spark, "kernel")
spark.conf.set("spark.sql.shuffle.partitions", "7")
spark.range(3).createOrReplaceTempView("left_behind")
spark.range(5).write.format("delta").mode("append").saveAsTable("attached")
child = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True, timeout=300)
print(child.stdout.strip() or child.stderr[-2000:])
show(spark, "kernel again")
""".format(child=CHILD)


def jvm(text, who):
    return re.search(rf"^{who} jvm (\d+) ", text, flags=re.M).group(1)


def printed(executed, name):
    return "".join(o.get("text", "") for o in nbformat.read(executed / name, as_version=4).cells[0].outputs)


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(execution, "NOTEBOOK_DIR", folder)
    return folder


def test_notebooks_attach_in_turn_to_one_driver_each_with_a_session_of_its_own(workspace, notebooks, capsys):
    for name in ("00_first.ipynb", "01_second.ipynb"):
        write_notebook(notebooks / name, REPORT)
    assert runner.main([]) == 0
    assert re.search(r"^\(shared Spark driver\) +passed +\d+\.\d$", capsys.readouterr().out, flags=re.M)
    first, second = (printed(workspace / "executed", n) for n in ("00_first.ipynb", "01_second.ipynb"))
    # One JVM for both notebooks and the processes they started.
    assert {jvm(text, who) for text in (first, second) for who in ("kernel", "child")} == {jvm(first, "kernel")}
    # The child's session is its own: default settings, none of the kernel's temporary views, the same tables ...
    assert "child jvm" in first and " partitions 4 views [] rows 5" in first.split("child jvm")[1].splitlines()[0]
    # ... and the kernel's session is untouched by it, and sees the child's Delta write.
    assert re.search(r"^kernel again jvm \d+ partitions 7 views \['left_behind'\] rows 7$", first, flags=re.M), first
    # The second notebook's session starts clean too, and sees both writes of the first notebook's run.
    assert re.search(r"^kernel jvm \d+ partitions 4 views \[\] rows 7$", second, flags=re.M), second


def test_each_notebook_starts_its_own_driver_without_one(workspace, notebooks):
    for name in ("00_first.ipynb", "01_second.ipynb"):
        write_notebook(notebooks / name, REPORT)
    assert runner.main(["--driver-per-notebook"]) == 0
    first, second = (printed(workspace / "executed", n) for n in ("00_first.ipynb", "01_second.ipynb"))
    assert jvm(first, "kernel") != jvm(second, "kernel")
    # As in Jupyter: a process the notebook starts still joins that notebook's own driver.
    assert jvm(first, "child") == jvm(first, "kernel") and jvm(second, "child") == jvm(second, "kernel")


def test_a_kernel_whose_shared_driver_is_gone_starts_its_own(workspace, tmp_path):
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = clean_env(workspace, **{SHARED_DRIVER: f"{port}:not-a-secret"})
    result = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^kernel again jvm \d+ partitions 7 views \['left_behind'\] rows 7$", result.stdout, flags=re.M), \
        result.stdout


def test_a_driver_that_died_is_reported_as_gone(workspace):
    from helpers.spark import SharedDriver

    driver = SharedDriver.start()
    assert driver is not None and driver.release()  # nothing attached yet: nothing to stop, and it answers
    driver.gateway.proc.kill()
    driver.gateway.proc.wait(timeout=30)
    assert driver.release() is False  # the runner then lets the next notebooks start their own


def test_a_process_of_another_workspace_never_joins_the_driver(workspace, tmp_path):
    import subprocess
    import sys

    # The notebook of the other tests, whose child process is given another workspace.
    code = "import os\n" + REPORT.replace("text=True, timeout=300)",
                                           "text=True, timeout=300, env={**os.environ, 'COURSE_WORKSPACE': sys.argv[1]})")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "other")], env=clean_env(workspace),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # The child's settings say another warehouse: it starts a driver of its own, and writes to its own workspace.
    assert jvm(result.stdout, "child") != jvm(result.stdout, "kernel"), result.stdout
    assert re.search(r"^child jvm \d+ partitions 4 views \[\] rows 0$", result.stdout, flags=re.M), result.stdout
    assert re.search(r"^kernel again jvm \d+ partitions 7 views \['left_behind'\] rows 5$", result.stdout, flags=re.M)


# A notebook for nbval's own run: it writes the process id of the JVM its Spark runs in to the workspace.
JVM_OF_NOTEBOOK = """# NBVAL_IGNORE_OUTPUT
import os, pathlib
from helpers.spark import start_spark
spark = start_spark(quiet=True)
pid = spark._jvm.java.lang.ProcessHandle.current().pid()
pathlib.Path(os.environ["COURSE_WORKSPACE"], "jvm-{name}").write_text(str(pid))
"""


@pytest.mark.parametrize("shared", ["1", "0"])
def test_nbvals_classic_run_attaches_its_notebooks_to_one_driver_and_stops_it(tmp_path, shared):
    import os
    import subprocess
    import sys

    import psutil

    from helpers.config import REPO_ROOT

    folder = tmp_path / "lessons"
    folder.mkdir()
    for name in ("00_a", "01_b"):
        write_notebook(folder / f"{name}.ipynb", JVM_OF_NOTEBOOK.format(name=name))
    workspace = tmp_path / "workspace"
    env = clean_env(workspace, COURSE_NBVAL_SHARED_DRIVER=shared)
    env.pop(SHARED_DRIVER, None)
    done = subprocess.run([sys.executable, "-m", "pytest", str(folder / "00_a.ipynb"), str(folder / "01_b.ipynb"),
                           "-q", "-p", "no:cacheprovider", "-n", "0", "-c", str(REPO_ROOT / "pyproject.toml"),
                           "--rootdir", str(REPO_ROOT)], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    first, second = (int((workspace / f"jvm-{name}").read_text()) for name in ("00_a", "01_b"))
    assert (first == second) == (shared == "1")  # one JVM for both notebooks, or one each with the variable at 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in {first, second})  # and nothing left running after the notebooks
