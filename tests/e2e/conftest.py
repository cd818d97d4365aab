"""A bus and its sandbox peers on loopback for the end-to-end tests: real HTTP, real databases.

``bus`` runs the journal on SQLite, and on PostgreSQL too when BSSBUS_TEST_PG_URL is set.
"""
from __future__ import annotations

import copy
import contextlib
import json
import time
import urllib.request
import uuid

import pytest
from lxml import etree
from sqlalchemy import select

from bus.embedded import EmbeddedBus
from dao.models import OutboxEntry
from services.client import BusClient
from services.models import CONTRACTS, from_xml
from services.models.common import WSDL_DIR
from tests.conftest import PG_URL, pg_schema_url


def _bus_params():
    return ["sqlite"] + (["postgresql"] if PG_URL else [])


@contextlib.contextmanager
def embedded_on(database: str, workdir, settings=None, **options):
    """An EmbeddedBus whose journal is on SQLite (``database`` "sqlite") or on a fresh
    PostgreSQL schema ("postgresql")."""
    if database == "sqlite":
        with EmbeddedBus(settings, workdir=workdir, **options) as embedded:
            yield embedded
    else:
        with pg_schema_url() as url, EmbeddedBus(settings, workdir=workdir, db_url=url, **options) as embedded:
            yield embedded


@pytest.fixture(scope="session", params=_bus_params())
def bus(request, tmp_path_factory):
    """An EmbeddedBus (``.url``, ``.sandbox_url``, ``.bus.journal``, ``.sandbox``)."""
    with embedded_on(request.param, tmp_path_factory.mktemp(f"bus-{request.param}")) as embedded:
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


# -- store and forward: what the Forwarder did with an accepted message ---------------------

def assert_accepted(result, *peers: str) -> None:
    """The bus's answer to a one-way message it stored: RSP_CODE 0000, MSG_SENDER BUS, no body,
    and the description names every recipient, in order."""
    assert result.fault_code is None, result.fault_string
    assert (result.rsp_code, result.sender, result.body) == ("0000", "BUS", None), (result.head, result.body)
    assert result.head["RESPONSE"]["RSP_DESC"] == f"Accepted: the bus delivers it to {', '.join(peers)}.", \
        result.head["RESPONSE"]


def outbox_rows(embedded, trans_ido: str) -> list[dict]:
    """The outbox rows of a message (one per recipient), oldest first."""
    t = OutboxEntry.__table__
    with embedded.bus.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).where(t.c.trans_ido == trans_ido).order_by(t.c.id))
                .mappings()]


def peer_answer(hop: dict) -> dict:
    """What a (canonical) peer answered on an outbound hop, as the journal keeps it:
    ``{"UNI_BSS_HEAD": ..., "UNI_BSS_BODY": ...}``, every value as text."""
    envelope = etree.fromstring(hop["response"])
    body = next(el for el in envelope if etree.QName(el).localname == "Body")
    return from_xml(CONTRACTS[hop["service"]], hop["operation"], body[0], response=True)


def delivered(embedded, trans_ido: str, *peers: str, timeout: float = 20.0) -> dict[str, dict]:
    """Wait until the Forwarder delivered the message to exactly ``peers`` (its outbox rows
    ``delivered``); returns each peer's journalled outbound hop (the last attempt's) by name."""
    def done():
        rows = outbox_rows(embedded, trans_ido)
        return sorted(r["peer_name"] for r in rows) == sorted(peers) and all(
            r["status"] == "delivered" for r in rows)

    try:
        wait_for(done, timeout)
    except AssertionError:
        rows = [(r["peer_name"], r["status"], r["last_error"]) for r in outbox_rows(embedded, trans_ido)]
        raise AssertionError(f"{trans_ido} not delivered to {peers}: outbox {rows}") from None
    hops = [h for h in embedded.bus.journal.hops(trans_ido) if h["direction"] == "out" and h["trans_ido"] == trans_ido]
    return {h["target"]: h for h in hops}
