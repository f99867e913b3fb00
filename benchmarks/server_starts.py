"""Stress: the course's model servers started and stopped again and again from a Jupyter kernel that holds an active
Spark Connect session, as notebook 06 does over SPARK_REMOTE.

    .venv/bin/python benchmarks/server_starts.py [--starts 20]

A Connect kernel has gRPC's threads; a child started with `preexec_fn` there could die at start (grpc/grpc#43055:
`epoll_wait error: Bad file descriptor`), which once failed lesson 06 over Connect in CI. The kernel logs a small
scikit-learn model, then alternates the stock `mlflow models serve` and the guarded server, sends each one prediction,
stops it, and runs a Spark query between starts so that the Connect channel is in use. It prints each start and the
count of failed starts; it exits 1 if any failed. It runs in a workspace of its own (the course's is untouched).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from helpers.config import REPO_ROOT

SETUP = """
import time
import mlflow, numpy as np, pandas as pd
from sklearn.linear_model import LinearRegression
from helpers import setup_mlflow, start_spark
from helpers.serving import ServingError, serve_model
spark = start_spark()
setup_mlflow(quiet=True)
frame = pd.DataFrame({"visits": [1.0, 2.0, 3.0, 4.0], "spend": [10.0, 20.0, 35.0, 41.0]})
with mlflow.start_run():
    uri = mlflow.sklearn.log_model(LinearRegression().fit(frame, [20.0, 30.0, 41.0, 52.0]), name="model",
                                   input_example=frame.head(2), pip_requirements=["scikit-learn"]).model_uri
body = {"dataframe_split": frame.head(1).to_dict(orient="split", index=False)}
"""
LOOP = """
import requests
failed, ready = 0, {{"stock": [], "guarded": []}}
for start in range({starts}):
    kind = "guarded" if start % 2 else "stock"
    try:
        with serve_model(uri, guarded=kind == "guarded") as server:
            reply = requests.post(server.url + "/invocations", json=body, timeout=60)
            reply.raise_for_status()
            ready[kind].append(server.ready_seconds)
            print(f"start {{start + 1:2d}} ({{kind}}): ready in {{server.ready_seconds:.1f}} s, "
                  f"prediction {{reply.json()['predictions'][0]:.2f}}", flush=True)
    except (ServingError, requests.RequestException) as error:
        failed += 1
        print(f"start {{start + 1:2d}} ({{kind}}) FAILED: {{error}}", flush=True)
    spark.range(1000).selectExpr("sum(id)").first()  # the Connect channel in use between starts
median = {{kind: float(np.median(seconds)) for kind, seconds in ready.items() if seconds}}
print(f"{{{starts} - failed}} of {starts} starts succeeded, {{failed}} failed, from a kernel with an active Spark "
      f"Connect session; median time to ready: " + ", ".join(f"{{k}} {{v:.1f}} s" for k, v in median.items()))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args(argv)
    from jupyter_client import KernelManager

    workspace = tempfile.mkdtemp(prefix="server-starts-")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "COURSE_"))}
    env.update(SPARK_REMOTE="local[2]", COURSE_WORKSPACE=workspace)
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(workspace, "kernel"))
    kernel.start_kernel(env=env, cwd=str(REPO_ROOT))
    client = kernel.client()
    client.start_channels()
    failures = []

    def show(message):
        content = message["content"]
        if message["msg_type"] == "stream" and content["name"] == "stdout":
            sys.stdout.write(content["text"])
            sys.stdout.flush()
        elif message["msg_type"] == "error":
            failures.append(f"{content['ename']}: {content['evalue']}")

    try:
        client.wait_for_ready(timeout=120)
        for code in (SETUP, LOOP.format(starts=args.starts)):
            reply = client.execute_interactive(code, timeout=1800, output_hook=show)
            if reply["content"]["status"] != "ok":
                print(f"The kernel failed: {failures[-1] if failures else reply['content']}")
                return 1
        printed = []
        client.execute_interactive("print(failed)", timeout=60,
                                   output_hook=lambda m: printed.append(m["content"].get("text", "")))
        return 0 if "".join(printed).strip() == "0" else 1
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=False)


if __name__ == "__main__":
    sys.exit(main())
