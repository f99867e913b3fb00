"""The course's site as a learner's browser shows it: every lesson page has its title, code, outputs and pictures.

The site is built from the committed notebooks (helpers/site.py) and opened in headless Chromium through
Playwright. As root on Debian or Ubuntu the test installs Chromium when it is missing, as the cluster tests do
PostgreSQL; elsewhere it says how to install it.
"""
import os
import re
import shutil
import subprocess

import nbformat
import pytest

from helpers.config import REPO_ROOT

pytestmark = pytest.mark.slow

LESSONS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LABS = sorted((REPO_ROOT / "notebooks" / "labs").glob("[0-9][0-9]_*_lab.ipynb"))
PICTURE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def chromium() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("The site test needs Chromium: install it (`sudo apt-get install chromium` on Debian or Ubuntu).")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        installed = subprocess.run(command, env=env, capture_output=True, text=True)
        assert installed.returncode == 0, f"apt-get could not install chromium: {installed.stderr[-1000:]}"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from helpers.site import build

    return build(tmp_path_factory.mktemp("site")).parent


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to run as root with its sandbox, and CI runs as root
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def open_page(browser, path):
    page = browser.new_page()
    response = page.goto(path.as_uri(), wait_until="load")
    assert response is None or response.ok, path  # file:// pages have no HTTP status
    return page


def test_the_start_page_lists_every_lesson_in_order_then_every_lab(site, browser):
    page = open_page(browser, site / "site" / "index.html")
    links = page.eval_on_selector_all("a.reference.internal", "links => links.map(a => a.getAttribute('href'))")
    pages = list(dict.fromkeys(m.group(1) for href in links if (m := re.search(r"notebooks/((labs/)?\d\d_\w+)\.html", href))))
    lessons, labs = [p.stem for p in LESSONS], [f"labs/{p.stem}" for p in LABS]
    assert pages[:len(lessons) + len(labs)] == lessons + labs
    assert pages[len(lessons) + len(labs):] == [lab.removesuffix("_lab") + "_solutions" for lab in labs]
    page.close()


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda path: path.stem[:2])
def test_every_lesson_page_shows_its_title_code_outputs_and_pictures(site, browser, notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    title = cells[0].source.splitlines()[0].removeprefix("# ").strip()
    code = [c for c in cells if c.cell_type == "code"]
    pictures = sum(len(re.findall(r"!\[[^\]]*\]\(", c.source)) for c in cells if c.cell_type == "markdown") + \
        sum(any(kind in output.get("data", {}) for kind in PICTURE_TYPES) for c in code for output in c.outputs)

    page = open_page(browser, site / "notebooks" / f"{notebook.stem}.html")
    assert page.locator("main h1").first.inner_text().strip().rstrip("#¶").strip() == title
    assert page.locator("div.cell_input").count() == len(code)
    assert page.locator("div.cell_output").count() == sum(bool(c.outputs) for c in code)
    shown = page.evaluate("() => [...document.querySelectorAll('main img')]"
                          ".filter(image => image.complete && image.naturalWidth > 0).length")
    assert shown == pictures, f"{shown} of {pictures} pictures shown"
    page.close()
