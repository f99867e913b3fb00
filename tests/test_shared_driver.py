"""The runner's shared Spark driver: notebooks attach to one JVM in turn, each with a session of its own."""
import re
import socket

import nbformat
import pytest

from helpers import runner
from helpers.spark import SHARED_DRIVER
from tests.sandbox import clean_env
from tests.test_runner import write_notebook

pytestmark = pytest.mark.slow

# What a notebook of these tests prints about its Spark: the driver JVM's process id, and what it inherited.
REPORT = """
import os, subprocess, sys
from helpers.spark import start_spark
spark = start_spark(quiet=True)
child = subprocess.run([sys.executable, "-c", "import os; print({variable!r} in os.environ)"], capture_output=True,
                       text=True).stdout.strip()
print("jvm", spark._jvm.java.lang.ProcessHandle.current().pid(), "partitions",
      spark.conf.get("spark.sql.shuffle.partitions"), "views", len(spark.catalog.listTables()),
      "kernel sees the driver", {variable!r} in os.environ, "child sees it", child)
spark.conf.set("spark.sql.shuffle.partitions", "7")
spark.range(3).createOrReplaceTempView("left_behind")
spark.range(5).write.format("delta").mode("append").saveAsTable("attached")
print("rows", spark.read.table("attached").count())
""".format(variable=SHARED_DRIVER)


def printed(executed, name):
    return "".join(o.get("text", "") for o in nbformat.read(executed / name, as_version=4).cells[0].outputs)


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", folder)
    return folder


def test_notebooks_attach_in_turn_to_one_driver_each_with_a_session_of_its_own(workspace, notebooks, capsys):
    for name in ("00_first.ipynb", "01_second.ipynb"):
        write_notebook(notebooks / name, REPORT)
    assert runner.main([]) == 0
    assert re.search(r"^\(shared Spark driver\) +passed +\d+\.\d$", capsys.readouterr().out, flags=re.M)
    first, second = (printed(workspace / "executed", n) for n in ("00_first.ipynb", "01_second.ipynb"))
    pids = [re.search(r"^jvm (\d+) ", text, flags=re.M).group(1) for text in (first, second)]
    assert pids[0] == pids[1], (first, second)  # one JVM for both notebooks
    # The second notebook's session starts clean: default settings, no temporary view of the first ...
    assert "partitions 4 views 1 " in second  # ... only the workspace's Delta table, re-registered
    assert "rows 10" in second  # ... and the first notebook's Delta write is there
    # The kernel forgets the driver once attached, so a project run or job it starts gets a driver of its own.
    assert "kernel sees the driver False child sees it False" in first


def test_each_notebook_starts_its_own_driver_without_one(workspace, notebooks):
    for name in ("00_first.ipynb", "01_second.ipynb"):
        write_notebook(notebooks / name, REPORT)
    assert runner.main(["--driver-per-notebook"]) == 0
    pids = {re.search(r"^jvm (\d+) ", printed(workspace / "executed", n), flags=re.M).group(1)
            for n in ("00_first.ipynb", "01_second.ipynb")}
    assert len(pids) == 2


def test_a_kernel_whose_shared_driver_is_gone_starts_its_own(workspace, tmp_path):
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = clean_env(workspace, **{SHARED_DRIVER: f"{port}:not-a-secret"})
    result = subprocess.run([sys.executable, "-c", REPORT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rows 5" in result.stdout


def test_a_driver_that_died_is_reported_as_gone(workspace):
    from helpers.spark import SharedDriver

    driver = SharedDriver.start()
    assert driver is not None and driver.release()  # nothing attached yet: nothing to stop, and it answers
    driver.gateway.proc.kill()
    driver.gateway.proc.wait(timeout=30)
    assert driver.release() is False  # the runner then lets the next notebooks start their own
