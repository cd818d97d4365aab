"""A bus and its sandbox peers on loopback for the end-to-end tests: real HTTP, real databases.

``bus`` runs the journal on SQLite, and on PostgreSQL too when BSSBUS_TEST_PG_URL is set.
"""
from __future__ import annotations

import copy
import json
import time
import urllib.request
import uuid

import pytest

from bus.embedded import EmbeddedBus
from services.client import BusClient
from services.models.common import WSDL_DIR
from tests.conftest import PG_URL, pg_schema_url


def _bus_params():
    return ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session", params=_bus_params())
def bus(request, tmp_path_factory):
    """An EmbeddedBus (``.url``, ``.sandbox_url``, ``.bus.journal``, ``.sandbox``)."""
    workdir = tmp_path_factory.mktemp(f"bus-{request.param}")
    if request.param == "sqlite":
        with EmbeddedBus(workdir=workdir) as embedded:
            yield embedded
    else:
        with pg_schema_url() as url, EmbeddedBus(workdir=workdir, db_url=url) as embedded:
            yield embedded


@pytest.fixture(scope="session")
def sqlite_bus(tmp_path_factory):
    """One SQLite-journalled bus, for tests about the wire rather than the database."""
    with EmbeddedBus(workdir=tmp_path_factory.mktemp("bus-wire")) as embedded:
        yield embedded


@pytest.fixture
def client(bus):
    return BusClient(bus.url)


def example(service: str, operation: str) -> dict:
    return json.loads((WSDL_DIR / "examples" / f"{service}.{operation}.json").read_text(encoding="utf-8"))


def make_args(service: str, operation: str, *, caller: str | None = None, route=None, **body) -> dict:
    """An example request with a fresh TRANS_IDO and PROC_ID; ``body`` fields replace the example's."""
    args = copy.deepcopy(example(service, operation))
    head = args["UNI_BSS_HEAD"]
    head["TRANS_IDO"] = "T" + uuid.uuid4().hex[:26]
    head["PROC_ID"] = "P" + uuid.uuid4().hex[:26]
    head["PROCESS_TIME"] = time.strftime("%Y%m%d%H%M%S")
    if caller:
        head["ORIG_DOMAIN"] = caller
    if route:
        head["ROUTING"] = {"ROUTE_TYPE": route[0], "ROUTE_VALUE": route[1]}
    args["UNI_BSS_BODY"].update(body)
    return args


def post(url: str, data: bytes, content_type: str = "text/xml; charset=utf-8", headers=None):
    """POST raw bytes; returns (status, content type, body) whatever the status."""
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read()


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read()


def control(sandbox_url: str, **spec) -> None:
    """Make a sandbox peer slow or failing (see sandbox/app.py); ``control(url, peer=P)`` resets it."""
    post(f"{sandbox_url}/control", json.dumps(spec).encode(), "application/json")


def wait_for(predicate, timeout: float = 20.0):
    """Poll ``predicate`` until it is true (returns its value) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("the condition did not hold in time")
