#!/usr/bin/env python3
"""The course's one task script. Needs only Python 3.11+ (what the pinned numpy, scikit-learn and ipykernel need);
it creates .venv/ and installs the course on first use.

    python3 course.py run     # install if needed, then run every notebook in order (prints a summary table)
    python3 course.py test    # install if needed, then run the whole test suite (unit tests + nbval)
    python3 course.py cluster # the course on PostgreSQL + mlflow server (basic-auth) + a Spark standalone cluster
    python3 course.py lab     # JupyterLab on the course environment, opened in notebooks/ (the labs in labs/)
    python3 course.py generate-labs  # write the labs' learner versions from their solutions (maintainers; keeps
                                     # a learner version someone changed unless --force)
    python3 course.py canary  # the course on the newest releases that resolve together, in .canary/ (maintainers)
    python3 course.py standin serverless  # the course's Databricks branches in a local stand-in of a workspace
    python3 course.py ui      # the MLflow UI on the course's tracking store
    python3 course.py connect-server  # a Spark Connect server for thin clients (SPARK_REMOTE=sc://127.0.0.1:15002)
    python3 course.py site    # the course as a static site (README, executed lessons, docs/) in workspace/site/
    python3 course.py clean   # delete the course workspace (resets the course)
    python3 course.py data    # regenerate data/ from its fixed seed

Arguments after the command go to the tool behind it (`run --only 00 01`, `test -k java`, `ui --port 5001`).
Inside an activated virtualenv or conda environment, that environment is used instead of .venv/.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
INSTALL_INPUTS = ("requirements.lock", "pyproject.toml")  # a change to either re-installs
INSTALL_RECIPE = b"compiled bytecode"  # a change to how the course installs re-installs too


def fail(message: str) -> None:
    print(f"course.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def environment_python() -> Path:
    """The interpreter of the course environment: the active venv/conda env if any, else .venv/ (created)."""
    if sys.prefix != sys.base_prefix or os.environ.get("CONDA_PREFIX") == sys.prefix:
        return Path(sys.executable)
    python = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"Creating the course environment in {VENV.name}/ ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    return python


# uv's words for a lock that cannot be satisfied (a package or version that does not exist): pip would fail the same
# way, so that is reported as it is; any other failure of uv (a proxy's certificate, a network error) falls back to pip.
UNSATISFIABLE = ("No solution found", "not found in the package registry", "there is no version of")


def uv_installer(python: Path) -> list[str] | None:
    """`uv pip install` into `python`'s environment (seconds), bootstrapping the locked uv with pip; None without uv."""
    # --system-certs: uv otherwise trusts only its own root list and refuses a TLS-intercepting proxy's certificates.
    # Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines), Python
    # would otherwise compile MLflow, pandas and SQLAlchemy from source in every process, about 3 s each (docs/).
    uv = [str(python), "-m", "uv", "pip", "install", "--python", str(python), "-q", "--compile-bytecode",
          "--system-certs"]
    if subprocess.run([*uv[:3], "--version"], capture_output=True).returncode != 0:
        uv_pin = re.search(r"^uv==([\w.]+)", (ROOT / "requirements.lock").read_text(), flags=re.M).group(1)
        bootstrap = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", f"uv=={uv_pin}"]
        if subprocess.run(bootstrap).returncode != 0:
            return None
    return uv


def prune_uv_cache(uv: list[str]) -> None:
    """Drops the copies of source packages that uv's cache no longer uses. Behind a TLS-intercepting proxy that strips
    the index's cache headers, uv downloads pyspark's 450 MB source again at every install and keeps each copy
    (about 1 GB a build): without this, the stand-ins' environments and a few re-installs fill a disk."""
    try:
        subprocess.run([*uv[:3], "cache", "prune", "-q"], capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:  # another uv holds the cache: the next install prunes
        pass


def pip_installer(python: Path) -> list[str]:
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--compile"]


def install_commands(installer: list[str], lock: Path, project: Path | None) -> list[list[str]]:
    """The lock, every package pinned with hashes, then the project itself (which adds no dependency)."""
    commands = [[*installer, "--require-hashes", "-r", str(lock)]]
    return commands + ([[*installer, "--no-deps", "-e", str(project)]] if project else [])


def install(python: Path, lock: Path, project: Path | None = ROOT) -> None:
    """Installs `lock` and `project` into `python`'s environment: with uv, else with pip from the same lock."""
    uv = uv_installer(python)
    if uv is not None:
        for command in install_commands(uv, lock, project):
            done = subprocess.run(command, capture_output=True, text=True)
            print(done.stdout, end="")
            if done.returncode != 0:
                break
        else:
            prune_uv_cache(uv)
            return
        print(done.stderr, end="", file=sys.stderr)
        if any(words in done.stderr for words in UNSATISFIABLE):
            fail(f"{lock.name} cannot be installed: a package or version it names is not on the package index "
                 "(uv's reason is above).")
        reason = next((line.strip(" ×╰─▶") for line in reversed(done.stderr.splitlines()) if line.strip()), "")
        print(f"uv could not install the packages ({reason}); installing them with pip from the same lock instead "
              "(a few minutes).", flush=True)
    else:
        print("Could not install uv; installing with pip instead (a few minutes).", flush=True)
    for command in install_commands(pip_installer(python), lock, project):
        if subprocess.run(command).returncode != 0:
            fail("the requirements could not be installed; read pip's message above (network or proxy settings? "
                 "docs/configuration.md, 'Behind a proxy').")


def ensure_installed(python: Path) -> None:
    """Installs requirements.lock (every package pinned, with hashes) and the helpers package, unless done already."""
    inputs = b"".join((ROOT / name).read_bytes() for name in INSTALL_INPUTS)
    digest = hashlib.sha256(inputs + INSTALL_RECIPE).hexdigest()
    prefix = Path(subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    stamp = prefix / "mlflow-spark-course.installed"
    if stamp.exists() and stamp.read_text() == f"{digest} {ROOT}":
        return
    print("Installing the course's locked requirements (about a minute the first time) ...", flush=True)
    install(python, ROOT / "requirements.lock")
    stamp.write_text(f"{digest} {ROOT}")


# The test suite starts dozens of short-lived JVMs (each test module's Spark, the model servers, the cluster's) on CI's
# two cores, where CPU is the limit: compiling with C1 alone and collecting with the serial collector spent about a
# quarter less CPU on the same notebooks. Lessons keep the JVM's defaults: their driver lives for the whole course,
# and with these options 05's native scoring ran at half its speed (docs/measured-figures.md).
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        fail(f"the course needs Python 3.11 or newer (its pinned packages do); this is {sys.version.split()[0]}.")
    commands = {
        "run": ["-m", "helpers.runner"],
        # Three workers on two cores: the three longest units start at once, one a worker, and the rest fill in
        # (tests/nbval_config.py); measured 1,915 s of pytest against about 2,094 s with two (docs/measured-figures.md).
        "test": ["-m", "pytest", "-n", "3"],
        "cluster": ["-m", "helpers.deployment"],
        "lab": ["-m", "jupyterlab", f"--notebook-dir={ROOT / 'notebooks'}"],
        "generate-labs": ["-m", "helpers.labs"],  # named far from `lab`: it writes notebooks/labs/
        "canary": ["-m", "helpers.canary"],
        "standin": ["-m", "helpers.standin.workspace"],
        "ui": ["-m", "helpers.cli", "ui"],
        "connect-server": ["-m", "helpers.cli", "connect-server"],
        "clean": ["-m", "helpers.cli", "clean"],
        "data": ["-m", "helpers.data"],
        "site": ["-m", "helpers.site"],
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        if argv and argv[0] not in ("-h", "--help"):
            import difflib

            close = difflib.get_close_matches(argv[0], commands, n=1)
            print(f"course.py: no command {argv[0]!r}" + (f"; did you mean `{close[0]}`?" if close else "."))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    python = environment_python()
    ensure_installed(python)
    env = dict(os.environ)
    if argv[0] == "test":
        env.setdefault("JAVA_TOOL_OPTIONS", TEST_JVM_OPTIONS)  # every JVM reads it; a maintainer's own value wins
    child = subprocess.Popen([str(python), *commands[argv[0]], *argv[1:]], cwd=ROOT, env=env)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))  # `kill` tears down like Ctrl-C
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # let the command clean up (`cluster` tears its deployment down), never kill it
            child.send_signal(signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
