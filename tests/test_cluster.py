"""The course on the loopback deployment (`python3 course.py cluster`): notebooks under nbval against a Spark
standalone master with two one-core workers and the PostgreSQL-backed, auth-enabled `mlflow server`, compared with
the outputs committed from a local run. Then nothing the deployment started may be left running.

CI runs 00 and 01 (about 7 minutes). COURSE_CLUSTER_NOTEBOOKS adds notebooks by number prefix, up to 06:
COURSE_CLUSTER_NOTEBOOKS="02 03 04 05 06" .venv/bin/python -m pytest tests/test_cluster.py
(08 prints which tracking server delivers its webhooks: its own locally, the deployment's here, by design.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import psutil
import pytest
import requests

from helpers.config import REPO_ROOT
from helpers.deployment import bring_up
from helpers.runner import course_notebooks

NOTEBOOKS = [str(path.relative_to(REPO_ROOT))
             for path in course_notebooks(["00", "01", *os.environ.get("COURSE_CLUSTER_NOTEBOOKS", "").split()])]


@pytest.mark.slow
def test_notebooks_give_their_committed_outputs_on_the_cluster_and_nothing_is_left_running(tmp_path, monkeypatch):
    for name in ("COURSE_POSTGRES_URI", "COURSE_POSTGRES_AUTH_URI"):  # never a team's own database
        monkeypatch.delenv(name, raising=False)
    deployment = bring_up(["learner"], root=tmp_path / "deployment", database="course_mlflow_cluster_test")
    try:
        master_ui = deployment.services[1].url
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("MLFLOW_", "COURSE_", "PYSPARK_"))}
        env.update(deployment.environment("learner"))
        result = subprocess.run([sys.executable, "-m", "pytest", *NOTEBOOKS, "-q", "-p", "no:cacheprovider"],
                                cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200 * len(NOTEBOOKS))
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=10) as reply:
            master = json.load(reply)
        learner = (deployment.environment("learner")["MLFLOW_TRACKING_USERNAME"],
                   deployment.environment("learner")["MLFLOW_TRACKING_PASSWORD"])
        experiments = requests.get(f"{deployment.tracking_uri}/api/2.0/mlflow/experiments/search",
                                   params={"max_results": 50}, auth=learner, timeout=30).json()["experiments"]
        anonymous = requests.get(f"{deployment.tracking_uri}/api/2.0/mlflow/experiments/search",
                                 params={"max_results": 1}, timeout=30).status_code
        pids = deployment.process_ids()
    finally:
        deployment.stop()

    assert result.returncode == 0, result.stdout[-4000:]
    assert len(master["completedapps"]) >= len(NOTEBOOKS)  # each notebook's Spark ran on the standalone cluster
    assert deployment.workers == 2 and [(w["state"], w["cores"]) for w in master["workers"]] == [("ALIVE", 1)] * 2
    assert {app["cores"] for app in master["completedapps"]} == {1}  # one core each, so the two of 07-09 can run at once
    assert "linregexp" in {e["name"] for e in experiments}  # 01's runs went to the PostgreSQL-backed server
    assert anonymous == 401
    assert pids and not [pid for pid in pids if psutil.pid_exists(pid)
                         and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
