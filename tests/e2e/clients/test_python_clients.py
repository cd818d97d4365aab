"""zeep and suds, loading each service's ?wsdl from the running bus, call every operation
through the service's SOAP 1.1 port (``<Service>Soap11``), named explicitly.

zeep is the bus's own client library (but here it reads the served contract, not the files in
wsdl/); suds is the older Python client some province systems still run.
"""
from __future__ import annotations

import pytest

from tests.e2e.clients.cases import cases_for, verify
from tests.e2e.clients.support import SERVICES, ClientRun, ToolError, unavailable, wsdl_url

pytestmark = pytest.mark.clients

ZEEP_CASES = cases_for("zeep")
SUDS_CASES = cases_for("suds")


def _call_all(run: ClientRun, cases, call) -> None:
    for case in cases:
        try:
            run.answers[case.id] = {"ok": True, "result": call(case)}
        except ToolError:
            raise
        except Exception as exc:  # a fault or a client error: reported on the case's test
            run.answers[case.id] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


@pytest.fixture(scope="module")
def zeep_run(clients_bus):
    import requests
    import zeep
    from zeep.helpers import serialize_object
    from zeep.transports import Transport

    def body(run: ClientRun):
        transport = Transport(session=requests.Session(), timeout=30, operation_timeout=30)
        settings = zeep.Settings(strict=True, forbid_dtd=True)
        try:
            services = {name: zeep.Client(wsdl_url(clients_bus.url, name), transport=transport,
                                          settings=settings).bind(name, f"{name}Soap11") for name in SERVICES}
        except Exception as exc:
            raise ToolError(f"zeep cannot load the WSDLs: {type(exc).__name__}: {exc}") from exc
        _call_all(run, ZEEP_CASES, lambda case: serialize_object(
            getattr(services[case.service], case.operation)(**case.args), dict))

    return ClientRun.attempt("zeep", body)


@pytest.fixture(scope="module")
def suds_run(clients_bus):
    def body(run: ClientRun):
        try:
            from suds.client import Client
            from suds.sudsobject import Object, asdict
        except ImportError:
            unavailable("suds", ".venv/bin/pip install 'suds>=1.1'")

        def plain(value):
            if isinstance(value, Object):
                return {k: plain(v) for k, v in asdict(value).items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        try:
            services = {name: Client(wsdl_url(clients_bus.url, name), cache=None,
                                     timeout=30).service[f"{name}Soap11"] for name in SERVICES}
        except Exception as exc:
            raise ToolError(f"suds cannot load the WSDLs: {type(exc).__name__}: {exc}") from exc
        _call_all(run, SUDS_CASES, lambda case: plain(
            getattr(services[case.service], case.operation)(**case.args)))

    return ClientRun.attempt("suds", body)


@pytest.mark.parametrize("case", ZEEP_CASES, ids=lambda c: c.id)
def test_zeep(case, zeep_run, clients_bus):
    verify(case, zeep_run.answer(case), clients_bus)


@pytest.mark.parametrize("case", SUDS_CASES, ids=lambda c: c.id)
def test_suds(case, suds_run, clients_bus):
    verify(case, suds_run.answer(case), clients_bus)
