""".NET (Mono): `wsdl -protocol:SOAP` generates a proxy class from each service's ?wsdl on the
running bus (namespace ``Bss.<Service>``) for its SOAP 1.1 binding (``-protocol:SOAP12`` would
take the SOAP 1.2 one), `mcs` compiles them with src/BssClient.cs, and one `mono` run calls
every operation through the generated proxies (System.Web.Services, the classic "web
reference" a .NET bank client is built from).
"""
from __future__ import annotations

import shutil

import pytest

from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import (SERVICES, SRC, ClientRun, need, read_answers, run, warnings_in,
                                       write_plan, wsdl_url)

pytestmark = pytest.mark.clients

CASES = cases_for("dotnet")


@pytest.fixture(scope="module")
def dotnet_run(clients_bus, tmp_path_factory):
    work = tmp_path_factory.mktemp("dotnet")

    def body(out: ClientRun):
        need("wsdl", "mcs", "mono", how="apt-get install mono-devel")
        for service in SERVICES:
            out.logs[f"wsdl {service}"] = run(["wsdl", "-nologo", "-protocol:SOAP", f"-out:{service}.cs",
                                               f"-namespace:Bss.{service}", wsdl_url(clients_bus.url, service)],
                                              cwd=work)
        shutil.copy(SRC / "BssClient.cs", work)
        out.logs["mcs"] = run(["mcs", "-nologo", "-out:BssClient.exe", "-r:System.Web.Services.dll",
                               "-r:System.Xml.dll", "BssClient.cs", *(f"{s}.cs" for s in SERVICES)], cwd=work)
        plan = write_plan(work / "calls", CASES, "xml")
        out.answers = read_answers(run(["mono", "BssClient.exe", str(plan)], cwd=work), plan)

    return ClientRun.attempt(".NET (Mono wsdl)", body, folder=work)


def test_wsdl_generates_without_warnings(dotnet_run):
    found = {name: warnings_in(log, ("warning", "error"))
             for name, log in dotnet_run.built().logs.items() if name.startswith("wsdl")}
    assert not any(found.values()), f"Mono's wsdl warned about the contracts: {found}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_dotnet_wsdl_proxy(case, dotnet_run, clients_bus):
    verify(case, dotnet_run.answer(case), clients_bus)
