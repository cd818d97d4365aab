"""PHP ext/soap: ``SoapClient`` in WSDL mode loads each service's ?wsdl (and its ?xsd= imports)
from the running bus and calls every operation with the example's arrays (src/bss_client.php).
"""
from __future__ import annotations

import pytest

from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import SRC, ClientRun, ToolError, need, read_answers, run, unavailable, write_plan

pytestmark = pytest.mark.clients

CASES = cases_for("php")


@pytest.fixture(scope="module")
def php_run(clients_bus, tmp_path_factory):
    work = tmp_path_factory.mktemp("php")

    def body(out: ClientRun):
        need("php", how="apt-get install php-cli php-soap")
        try:
            run(["php", "-r", "exit(class_exists('SoapClient') ? 0 : 1);"])
        except ToolError:
            unavailable("PHP's soap extension", "apt-get install php-soap")
        plan = write_plan(work / "calls", CASES, "json")
        stdout = run(["php", "-d", "display_errors=stderr", str(SRC / "bss_client.php"), clients_bus.url,
                      str(plan)], cwd=work)
        out.answers = read_answers(stdout, plan)

    return ClientRun.attempt("PHP SoapClient", body, folder=work)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_php_soapclient(case, php_run, clients_bus):
    verify(case, php_run.answer(case), clients_bus)
