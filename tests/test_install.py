"""course.py's install, for real, into new virtual environments: uv behind this network's TLS interception with no
certificate variable set (a corporate laptop whose proxy CA is only in the system trust store), pip from the same
lock when uv fails, and one sentence for a lock that cannot be satisfied."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT

pytestmark = pytest.mark.slow  # each test builds a virtual environment and downloads from the package index
# Every variable through which a program may be told where certificates are (SSL_CERT_FILE, PIP_CERT,
# REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS, ...), and uv's own.
CERTIFICATE_VARIABLE = re.compile(r"CERT|CA_BUNDLE|SSL|^UV_")


def course_script():
    spec = importlib.util.spec_from_file_location("course_script", REPO_ROOT / "course.py")
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    return course


def locked_entry(name: str) -> str:
    """One package's entry of requirements.lock, hashes included."""
    text = (REPO_ROOT / "requirements.lock").read_text()
    return re.search(rf"^{name}==.*?(?=\n\S)", text, flags=re.M | re.S).group(0) + "\n"


def install(tmp_path: Path, lock_text: str, venv_name: str = "venv", **env: str
            ) -> tuple[subprocess.CompletedProcess, Path]:
    """Runs course.py's install of `lock_text` into a new virtual environment, with no certificate variable and an
    empty uv cache (so uv must download through the network as it is)."""
    target = tmp_path / venv_name
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    lock = tmp_path / "test.lock"
    lock.write_text(lock_text)
    clean = {name: value for name, value in os.environ.items() if not CERTIFICATE_VARIABLE.search(name)}
    clean.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), **env)
    code = f"import course; from pathlib import Path; course.install(Path({str(python)!r}), Path({str(lock)!r}), None)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=clean, capture_output=True, text=True,
                          timeout=300)
    return done, python


def test_uv_installs_through_a_tls_intercepting_proxy_with_no_certificate_variable(tmp_path):
    done, python = install(tmp_path, locked_entry("six"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pip" not in done.stdout  # uv did it, without falling back
    assert subprocess.run([str(python), "-c", "import six"]).returncode == 0
    assert list((tmp_path / "uv-cache").rglob("six-1.17.0*"))  # downloaded now, not found in a cache


def test_reinstalls_leave_one_copy_of_a_source_package_in_the_uv_cache(tmp_path):
    # This network's proxy strips the index's cache headers, so uv downloads a source package again at every install
    # and keeps every copy: pyspark's come to about 1 GB each. six built from its source stands in for pyspark.
    six_source = "six==1.17.0 --hash=sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81\n"
    for name in ("first", "second"):
        done, python = install(tmp_path, six_source, venv_name=name, UV_NO_BINARY_PACKAGE="six")
        assert done.returncode == 0, done.stdout + done.stderr
    assert subprocess.run([str(python), "-c", "import six"]).returncode == 0
    builds = [path for path in (tmp_path / "uv-cache").glob("sdists-*/pypi/six/1.17.0/*") if path.is_dir()]
    assert len(builds) == 1, builds


def test_pip_installs_the_same_lock_when_uv_fails(tmp_path):
    # uv's index on a loopback port where nothing listens: a network failure that pip (which ignores uv's settings)
    # does not share, as a proxy that only pip is configured for would be.
    done, python = install(tmp_path, locked_entry("six"), UV_DEFAULT_INDEX="http://127.0.0.1:9/simple")
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("uv could not install"))
    assert line.endswith("installing them with pip from the same lock instead (a few minutes).")
    assert "127.0.0.1:9" in done.stderr  # uv's own message is shown, not swallowed
    assert subprocess.run([str(python), "-c", "import six"]).returncode == 0


def test_a_lock_naming_a_package_that_does_not_exist_fails_in_one_sentence_without_trying_pip(tmp_path):
    done, _ = install(tmp_path, "no-such-package-mlflow-spark-course==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert done.returncode == 2
    assert "test.lock cannot be installed: a package or version it names is not on the package index" in done.stderr
    assert "pip" not in done.stdout


def test_the_course_lock_is_installed_with_hashes_compiled_and_the_system_trust_store():
    course = course_script()
    assert "requirements.lock" in course.INSTALL_INPUTS  # a changed lock re-installs
    uv = course.uv_installer(Path(sys.executable))
    assert uv is not None and "--system-certs" in uv  # a TLS-intercepting proxy's CA is in the system store
    commands = course.install_commands(uv, REPO_ROOT / "requirements.lock", REPO_ROOT)
    assert commands[0][-3:] == ["--require-hashes", "-r", str(REPO_ROOT / "requirements.lock")]
    assert commands[1][-3:] == ["--no-deps", "-e", str(REPO_ROOT)]  # the helpers package adds no dependency
    # Compiled at install, or every process compiles MLflow from source where PYTHONDONTWRITEBYTECODE is set.
    assert "--compile-bytecode" in uv and "--compile" in course.pip_installer(Path(sys.executable))
