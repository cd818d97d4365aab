"""gSOAP (C++): `wsdl2h -Nbss` reads every service's ?wsdl from the running bus into one header,
`soapcpp2` generates the stubs and serializers (default settings; -C only leaves out the
server side), g++ builds them with src/bss_client.cpp against libgsoap++, and one run calls
every operation.

Each WSDL binds its port type with SOAP 1.1 and with SOAP 1.2. ``-Nbss`` makes wsdl2h turn each
binding into a service of its own (bss, bss2, bss3, ...: without it wsdl2h merges the two and
warns), so the client picks the SOAP 1.1 binding by name: src/bss_client.cpp reads each request
with the generated deserializer, calls the SOAP 1.1 binding's ``soap_call___bssK__Op`` stub (to
the endpoint the WSDL names) as SOAP 1.1 and writes the answer with the generated serializer;
the header's RSP_CODE and MSG_SENDER are also read from the generated classes. Which nsN and
bssK belong to which service is read from wsdl2h's header into bss_operations.h (every
operation of every contract), which bss_client.cpp includes.
"""
from __future__ import annotations

import re
import shutil

import pytest
from lxml import etree

from services.models import CONTRACTS
from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import (SERVICES, SRC, ClientRun, ToolError, need, need_files, read_answers, run,
                                       run_parallel, warnings_in, write_plan, wsdl_url)

pytestmark = pytest.mark.clients

CASES = cases_for("gsoap")
GSOAP_IMPORT = "/usr/share/gsoap/import"        # stlvector.h & co., #imported by wsdl2h's header
INSTALL = "apt-get install gsoap libgsoap-dev g++"


def operations_header(header: str) -> str:
    """bss_operations.h: ``OPERATION(nsN, bssK, Service, Op)`` for every operation of every
    contract, with the prefix wsdl2h gave the service's body namespace (nsN) and the gSOAP
    service it made of the service's SOAP 1.1 binding (bssK), both read from wsdl2h's header."""
    prefixes = {ns: p for p, ns in re.findall(r"^//gsoap (\S+)\s+schema namespace:\s+(\S+)", header, re.M)}
    bindings = {b: p for p, b in re.findall(r"^//gsoap (\S+)\s+service name:\s+(\S+)", header, re.M)}
    lines = []
    for service, contract in CONTRACTS.items():
        ns, binding = prefixes.get(contract.namespace), bindings.get(f"{service}Soap11Binding")
        if ns is None or binding is None:
            raise ToolError(f"wsdl2h's header has no prefix for {contract.namespace} ({ns}) or no service "
                            f"for {service}Soap11Binding ({binding})")
        lines += [f"OPERATION({ns}, {binding}, {service}, {op})" for op in contract.operations]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def gsoap_run(clients_bus, tmp_path_factory):
    work = tmp_path_factory.mktemp("gsoap")

    def body(out: ClientRun):
        need("wsdl2h", "soapcpp2", how="apt-get install gsoap")
        need("g++", how="apt-get install g++")
        need_files("/usr/include/stdsoap2.h", f"{GSOAP_IMPORT}/stlvector.h", how=INSTALL)
        # The order fixes wsdl2h's prefixes: ns1 BankPayment, ns2 header, ns3 simple types,
        # ns4 OrderSync, ..., and the services of the bindings bss, bss2 (BankPayment SOAP 1.1,
        # 1.2), bss3, bss4 (OrderSync)...; bss_operations.h names them for bss_client.cpp.
        out.logs["wsdl2h"] = run(["wsdl2h", "-Nbss", "-o", "bss.h",
                                  *(wsdl_url(clients_bus.url, s) for s in SERVICES)], cwd=work)
        (work / "bss_operations.h").write_text(operations_header((work / "bss.h").read_text(encoding="utf-8")),
                                               encoding="utf-8")
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


def test_gsoap_makes_a_service_of_each_binding(gsoap_run):
    """wsdl2h -Nbss: one gSOAP service a WSDL binding, SOAP 1.1 then SOAP 1.2 for each contract,
    numbered in the order the contracts were given."""
    header = (gsoap_run.built().folder / "bss.h").read_text(encoding="utf-8")
    services = dict(re.findall(r"^//gsoap (\S+)\s+service name:\s+(\S+)", header, re.M))  # prefix -> binding
    bindings = [f"{s}Soap{v}Binding" for s in SERVICES for v in ("11", "12")]
    assert services == {("bss" if n == 0 else f"bss{n + 1}"): b for n, b in enumerate(bindings)}
    for service in SERVICES:
        assert (gsoap_run.folder / f"{service}Soap11Binding.nsmap").is_file()


def test_gsoap_client_speaks_soap11(gsoap_run, clients_bus):
    """The SOAP 1.2 bindings make wsdl2h import soap12.h (a SOAP 1.2 envelope by default):
    bss_client.cpp runs on a SOAP 1.1 namespace table, and the bus received SOAP 1.1 envelopes only."""
    gsoap_run.built()
    for case in CASES:
        hops = clients_bus.bus.journal.hops(case.trans_ido)
        assert hops, f"the bus journalled nothing for {case.id}"
        envelope = etree.fromstring(hops[0]["request"])
        assert etree.QName(envelope).namespace == "http://schemas.xmlsoap.org/soap/envelope/", case.id


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gsoap(case, gsoap_run, clients_bus):
    verify(case, gsoap_run.answer(case), clients_bus)
