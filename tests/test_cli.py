import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from helpers import cli
from helpers.config import REPO_ROOT


def test_clean_deletes_the_workspace_and_says_so(workspace, capsys):
    (workspace / "mlflow").mkdir(parents=True)
    assert cli.clean([]) == 0
    assert not workspace.exists()
    assert "Deleted the course workspace workspace" in capsys.readouterr().out
    assert cli.clean([]) == 0
    assert "Nothing to clean" in capsys.readouterr().out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_course_store(workspace):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "helpers.cli", "ui", "--port", str(port)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                    assert reply.read().decode().strip() == "OK"
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the MLflow UI did not answer /health within 90 s")
    finally:
        import os
        import signal
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert "The course's tracking store is empty" in output
    assert (workspace / "mlflow" / "mlflow.db").exists()


def test_course_script_lists_its_commands_and_refuses_unknown_ones():
    usage = subprocess.run([sys.executable, "course.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert usage.returncode == 0
    for command in ("run", "test", "lab", "ui", "connect-server", "clean", "data"):
        assert f"python3 course.py {command}" in usage.stdout
    assert subprocess.run([sys.executable, "course.py", "deploy"], cwd=REPO_ROOT, capture_output=True).returncode == 2
