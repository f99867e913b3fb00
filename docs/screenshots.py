"""Takes the screenshots of the MLflow UI that the lessons show, from the course's own runs and models:

    python3 course.py run                      # the runs and models to show (once)
    .venv/bin/python docs/screenshots.py       # starts the UI on the course's store, writes docs/images/ui-*.png

It drives the system's Chromium (`apt-get install chromium`) through Playwright, as the site's test does. MLflow 3
opens in its GenAI view; the pages below ask for the model-training view (`workflowType=machine_learning`), and the
script closes the assistant panel that MLflow opens on a first visit.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.tracking import course_experiment, course_model_name, setup_mlflow, tracking_uri  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"
TRAINING_VIEW = "workflowType=machine_learning"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pages() -> dict[str, str]:
    """Screenshot name -> the UI's route for it, found in the course's store."""
    from mlflow import MlflowClient

    setup_mlflow(quiet=True)
    client = MlflowClient()
    tracking = client.get_experiment_by_name(course_experiment("linregexp"))
    first_run = client.search_runs([tracking.experiment_id], "attributes.run_name = 'linear-regression'",
                                   order_by=["attributes.start_time DESC"], max_results=1)[0]
    return {
        "ui-runs": f"/#/experiments/{tracking.experiment_id}?{TRAINING_VIEW}",
        "ui-run": f"/#/experiments/{tracking.experiment_id}/runs/{first_run.info.run_id}?{TRAINING_VIEW}",
        "ui-model": f"/#/models/{course_model_name('retail_age_model')}?{TRAINING_VIEW}",
    }


def main() -> int:
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        print("docs/screenshots.py needs Chromium: `sudo apt-get install chromium` on Debian or Ubuntu.", file=sys.stderr)
        return 2
    routes = pages()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if requests.get(f"{base}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            for name, route in routes.items():
                page.goto(base + route, wait_until="load")
                page.wait_for_timeout(5000)  # the UI keeps polling, so no "network idle": give it time to render
                assistant = page.get_by_role("button", name="Close", exact=True)  # MLflow 3's chat panel, opened once
                if assistant.count():
                    assistant.first.click()
                    page.wait_for_timeout(500)
                page.screenshot(path=str(IMAGES / f"{name}.png"))
                print(f"wrote docs/images/{name}.png ({route})")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
