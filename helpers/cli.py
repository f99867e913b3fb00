"""Small learner commands behind `course.py`: the MLflow UI on the course's store, a Spark Connect server for thin
clients, and resetting the workspace."""
from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import time

from helpers.config import display_path, settings
from helpers.tracking import local_store, tracking_uri


def ui(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="course.py ui", description="Open the MLflow UI on the course's store.")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    uri = tracking_uri()
    if uri.startswith("sqlite:") and not local_store().exists():
        print("The course's tracking store is empty: run notebook 01 (or `python3 course.py run`) first.")
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it). Runs and models are under the "
          "'Model training' switch at the top left.", flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(args.port)]
    server = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())  # `kill` stops the UI too, not only this process
    try:
        return server.wait()
    except KeyboardInterrupt:  # the terminal sent the UI its Ctrl-C as well: let it finish stopping
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # course.py forwards the Ctrl-C once more
        server.wait()
        return 0


def connect_server(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="course.py connect-server",
                                     description="Run a Spark Connect server with the course's settings, for thin "
                                                 "clients (SPARK_REMOTE=sc://127.0.0.1:PORT), until Ctrl-C.")
    parser.add_argument("--port", type=int, default=15002)
    args = parser.parse_args(argv)
    from helpers.config import workspace_dir
    from helpers.spark import connect_server_command

    command, env = connect_server_command(args.port)
    log = workspace_dir("logs") / "connect-server.log"
    with open(log, "ab") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        deadline = time.monotonic() + 300  # the first start downloads the Delta jars
        while server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    server.terminate()
                time.sleep(0.5)
        if server.poll() is not None:
            print(f"The Spark Connect server did not start; its log is {display_path(log)}.")
            return server.wait() or 1
        print(f"Spark Connect server ready for thin clients: SPARK_REMOTE=sc://127.0.0.1:{args.port} (lessons that log "
              f"a Spark model stop there: a thin client has no JVM for MLflow's Spark flavor). Ctrl-C stops it; its "
              f"log is {display_path(log)}.", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.terminate()
        server.wait()
        return 0


def clean(argv: list[str]) -> int:
    workspace = settings().workspace
    if not workspace.exists():
        print(f"Nothing to clean: {display_path(workspace)} does not exist.")
        return 0
    shutil.rmtree(workspace)
    print(f"Deleted the course workspace {display_path(workspace)}; the next run starts from scratch.")
    return 0


if __name__ == "__main__":
    commands = {"ui": ui, "connect-server": connect_server, "clean": clean}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: python -m helpers.cli {{{','.join(commands)}}} [options]")
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
