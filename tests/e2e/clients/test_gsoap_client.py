"""gSOAP (C++): `wsdl2h` reads the four services' ?wsdl from the running bus into one header,
`soapcpp2` generates the stubs and serializers (default settings; -C only leaves out the
server side), g++ builds them with src/bss_client.cpp against libgsoap++, and one run calls
every operation.

src/bss_client.cpp reads each request with the generated deserializer, calls the generated
``soap_call___nsN__Op`` stub (to the endpoint the WSDL names) and writes the answer with the
generated serializer; the header's RSP_CODE and MSG_SENDER are also read from the generated
classes.
"""
from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import (SERVICES, SRC, ClientRun, need, need_files, read_answers, run,
                                       run_parallel, warnings_in, write_plan, wsdl_url)

pytestmark = pytest.mark.clients

CASES = cases_for("gsoap")
GSOAP_IMPORT = "/usr/share/gsoap/import"        # stlvector.h & co., #imported by wsdl2h's header
INSTALL = "apt-get install gsoap libgsoap-dev g++"


@pytest.fixture(scope="module")
def gsoap_run(clients_bus, tmp_path_factory):
    work = tmp_path_factory.mktemp("gsoap")

    def body(out: ClientRun):
        need("wsdl2h", "soapcpp2", how="apt-get install gsoap")
        need("g++", how="apt-get install g++")
        need_files("/usr/include/stdsoap2.h", f"{GSOAP_IMPORT}/stlvector.h", how=INSTALL)
        # The order fixes wsdl2h's prefixes: ns1 BankPayment, ns2 header, ns3 simple types,
        # ns4 OrderSync, ns5 CardActivation, ns6 AccountSync (bss_client.cpp relies on them).
        out.logs["wsdl2h"] = run(["wsdl2h", "-o", "bss.h",
                                  *(wsdl_url(clients_bus.url, s) for s in SERVICES)], cwd=work)
        out.logs["soapcpp2"] = run(["soapcpp2", "-C", f"-I{GSOAP_IMPORT}", "bss.h"], cwd=work)
        shutil.copy(SRC / "bss_client.cpp", work)
        run_parallel([["g++", "-O0", "-c", unit] for unit in ("soapC.cpp", "soapClient.cpp", "bss_client.cpp")],
                     cwd=work)
        run(["g++", "-o", "bss_client", "bss_client.o", "soapC.o", "soapClient.o", "-lgsoap++"], cwd=work)
        plan = write_plan(work / "calls", CASES, "xml")
        out.answers = read_answers(run([str(work / "bss_client"), str(plan)], cwd=work), plan)

    return ClientRun.attempt("gSOAP", body, folder=work)


def test_wsdl2h_and_soapcpp2_generate_without_warnings(gsoap_run):
    found = {name: warnings_in(log, ("warning", "error")) for name, log in gsoap_run.built().logs.items()}
    assert not any(found.values()), f"gSOAP warned about the contracts: {found}"


def test_gsoap_generates_a_soap11_client(gsoap_run):
    """A stray SOAP 1.2 namespace in a WSDL makes wsdl2h emit a SOAP 1.2 client (DESIGN.md)."""
    header = (gsoap_run.built().folder / "bss.h").read_text(encoding="utf-8")
    protocols = set(re.findall(r"^//gsoap \S+\s+service method-protocol:\s+\S+\s+(\S+)", header, re.M))
    assert protocols == {"SOAP"}, f"wsdl2h chose the protocols {protocols} (SOAP is 1.1)"
    assert "soap12" not in header and "2003/05/soap-envelope" not in header
    nsmap = (gsoap_run.folder / "BankPaymentSoap11Binding.nsmap").read_text(encoding="utf-8")
    assert '"SOAP-ENV", "http://schemas.xmlsoap.org/soap/envelope/"' in nsmap


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gsoap(case, gsoap_run):
    verify(case, gsoap_run.answer(case))
