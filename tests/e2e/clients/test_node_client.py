"""Node.js: the npm package ``soap`` (node-soap) builds a client from each service's ?wsdl on
the running bus and calls every operation with the example's objects (src/bss_client.js).

The package is pinned by node/package.json and node/package-lock.json; ``npm ci`` in
tests/e2e/clients/node (which .ci/install-clients.sh runs) installs it into node_modules there.
"""
from __future__ import annotations

import pytest

from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import NODE_DIR, SRC, ClientRun, need, need_files, read_answers, run, write_plan

pytestmark = pytest.mark.clients

CASES = cases_for("node")
NODE_MODULES = NODE_DIR / "node_modules"


@pytest.fixture(scope="module")
def node_run(clients_bus, tmp_path_factory):
    work = tmp_path_factory.mktemp("node")

    def body(out: ClientRun):
        need("node", how="apt-get install nodejs npm")
        need_files(NODE_MODULES / "soap" / "package.json",
                   how="npm ci --prefix tests/e2e/clients/node --no-audit --no-fund")
        plan = write_plan(work / "calls", CASES, "json")
        stdout = run(["node", str(SRC / "bss_client.js"), clients_bus.url, str(plan)], cwd=work,
                     env={"NODE_PATH": str(NODE_MODULES)})
        out.answers = read_answers(stdout, plan)

    return ClientRun.attempt("Node soap", body, folder=work)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_node_soap(case, node_run, clients_bus):
    verify(case, node_run.answer(case), clients_bus)
