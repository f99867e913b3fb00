"""Small learner commands behind `course.py`: the MLflow UI on the course's store, and resetting the workspace."""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys

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


def clean(argv: list[str]) -> int:
    workspace = settings().workspace
    if not workspace.exists():
        print(f"Nothing to clean: {display_path(workspace)} does not exist.")
        return 0
    shutil.rmtree(workspace)
    print(f"Deleted the course workspace {display_path(workspace)}; the next run starts from scratch.")
    return 0


if __name__ == "__main__":
    commands = {"ui": ui, "clean": clean}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: python -m helpers.cli {{{','.join(commands)}}} [options]")
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
