"""Java JAX-WS: `wsimport` generates a client from each service's ?wsdl on the running bus,
one `javac` pass compiles them all with src/BssClient.java, and one JVM calls every operation.

What a bank's Java team does: one wsimport a WSDL (package ``bss.<service>``), then the
generated ``<Service>`` class (it loads the WSDL from the bus at run time) and its SOAP 1.1
port, ``get<Service>Soap11()`` (it posts to the soap:address that port names), and the port
type's typed method of each operation. Without ``-extension`` wsimport generates no SOAP 1.2
port: it says so once a WSDL, the one warning expected here.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import (SERVICES, SRC, ClientRun, need, need_files, read_answers, run,
                                       warnings_in, write_plan, wsdl_url)

pytestmark = pytest.mark.clients

CASES = cases_for("java")
# The JAX-WS RI of Debian's libjaxws-java; its manifest's Class-Path brings JAXB, SAAJ & co.
JAXWS_RT = "/usr/share/java/jaxws-rt.jar"
INSTALL = "apt-get install jaxws default-jdk-headless"
# JAX-WS 2.x wsimport leaves out a SOAP 1.2 port unless given -extension; BssClient uses the SOAP 1.1 one.
SOAP12_PORT_SKIPPED = re.compile(
    r'\[WARNING\] Ignoring SOAP port "(\w+)": it uses non-standard SOAP 1\.2 binding\.')


@pytest.fixture(scope="module")
def java_run(clients_bus, tmp_path_factory):
    work = tmp_path_factory.mktemp("java")
    src, classes = work / "src", work / "classes"

    def body(out: ClientRun):
        need("wsimport", "javac", "java", how=INSTALL)
        need_files(JAXWS_RT, how=INSTALL)
        src.mkdir()
        classes.mkdir()
        # One wsimport a WSDL, as a bank's team does (all of them in one run is tested below).
        for service in SERVICES:
            out.logs[f"wsimport {service}"] = run(
                ["wsimport", "-Xnocompile", "-keep", "-s", str(src), "-d", str(src),
                 "-p", f"bss.{service.lower()}", wsdl_url(clients_bus.url, service)], cwd=work)
        shutil.copy(SRC / "BssClient.java", src)
        sources = sorted(str(p) for p in src.rglob("*.java"))
        out.logs["javac"] = run(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", JAXWS_RT,
                                 "-d", str(classes), *sources], cwd=work)
        plan = write_plan(work / "calls", CASES, "xml")
        stdout = run(["java", "-cp", f"{classes}:{JAXWS_RT}", "BssClient", str(plan)], cwd=work)
        out.answers = read_answers(stdout, plan)

    return ClientRun.attempt("Java JAX-WS", body, folder=work)


def test_wsimport_generates_without_warnings(java_run):
    """No warning but the expected one: the WSDL's SOAP 1.2 port, left out."""
    found, skipped = {}, {}
    for name, log in java_run.built().logs.items():
        if not name.startswith("wsimport"):
            continue
        lines = warnings_in(log, ("[WARNING]", "[ERROR]"))
        skipped[name] = [m.group(1) for m in map(SOAP12_PORT_SKIPPED.search, lines) if m]
        found[name] = [line for line in lines if not SOAP12_PORT_SKIPPED.search(line)]
    assert not any(found.values()), f"wsimport warned about the contracts: {found}"
    assert skipped == {f"wsimport {s}": [f"{s}Soap12"] for s in SERVICES}, skipped


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_java_jaxws(case, java_run, clients_bus):
    verify(case, java_run.answer(case), clients_bus)


def test_wsimport_reads_every_wsdl_in_one_run(clients_bus, tmp_path):
    """A client team that imports every bssbus contract in one wsimport run (one shared header
    package) must be able to: the bus serves each shared schema at one address for every service."""
    need("wsimport", how=INSTALL)
    result = subprocess.run(["wsimport", "-Xnocompile", "-keep", "-s", str(tmp_path), "-d", str(tmp_path),
                             *(wsdl_url(clients_bus.url, s) for s in SERVICES)],
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "[ERROR]" not in result.stdout + result.stderr, \
        (result.stdout + result.stderr)[-3000:]
