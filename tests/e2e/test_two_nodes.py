"""Two bus nodes sharing one PostgreSQL database (and one set of sandbox peers): the same
payment sent 50 times concurrently through both charges once, and a stored message is
delivered once although both nodes' Forwarders look at the same outbox."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from bus.core import Bus
from bus.embedded import EmbeddedBus
from bus.server import serve_in_thread
from sandbox import store
from sandbox.store import seed_users
from services.app import BusApplication
from services.client import BusClient
from tests.conftest import PG_URL, pg_schema_url
from tests.e2e.conftest import make_args
from tests.e2e.test_store_and_forward import rows_of, saf_settings, sync, wait_for

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL: set BSSBUS_TEST_PG_URL (CI does)")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    with pg_schema_url() as url, EmbeddedBus(saf_settings(), db_url=url,
                                             workdir=tmp_path_factory.mktemp("node-a")) as first:
        second = Bus(first.settings.copy()).start()
        server, second_url = serve_in_thread(BusApplication(second))
        try:
            yield first, second_url
        finally:
            server.shutdown()
            server.server_close()
            second.stop()


def test_a_payment_storm_through_two_nodes_charges_once(nodes):
    first, second_url = nodes
    clients = [BusClient(first.url), BusClient(second_url)]
    u = seed_users("90")[4]
    route = ("01", u.msisdn)
    serial = f"NODES{int(time.time() * 1000)}"
    before = clients[0].call("BankPayment", "QueryBalance", make_args(
        "BankPayment", "QueryBalance", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn)).body["BALANCE"]
    requests = [make_args("BankPayment", "Pay", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn,
                          AMOUNT=2500, BANK_SERIAL=serial) for _ in range(50)]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda ia: clients[ia[0] % 2].call("BankPayment", "Pay", ia[1]),
                                enumerate(requests)))
    assert all(a.fault_code is None and a.rsp_code == "0000" for a in answers), \
        {a.fault_code or a.rsp_code for a in answers}
    assert len({a.body["BILL_SERIAL"] for a in answers}) == 1
    after = clients[1].call("BankPayment", "QueryBalance", make_args(
        "BankPayment", "QueryBalance", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn)).body["BALANCE"]
    assert after == before + 2500
    with first.sandbox.engine.connect() as conn:
        reached = conn.execute(select(func.count()).select_from(store.received).where(
            store.received.c.trans_ido.in_([r["UNI_BSS_HEAD"]["TRANS_IDO"] for r in requests]))).scalar()
    assert reached == 1, "one call reached the billing"


def test_both_forwarders_deliver_each_stored_message_once(nodes):
    first, second_url = nodes
    users = [u for u in seed_users("90") if u.net_type == "10"] + [u for u in seed_users("97") if u.net_type == "10"]
    sent = []
    for i in range(10):
        client = BusClient(first.url if i % 2 else second_url)
        sent.append(sync(client, users[i % len(users)], 100 + i)[0]["UNI_BSS_HEAD"]["TRANS_IDO"])
    wait_for(lambda: all(r["status"] == "delivered" for t in sent for r in rows_of(first, t)))
    with first.sandbox.engine.connect() as conn:
        counts = dict(conn.execute(select(store.received.c.trans_ido, func.count()).where(
            store.received.c.trans_ido.in_(sent)).group_by(store.received.c.trans_ido)).all())
    assert counts == {t: 1 for t in sent}, "each message delivered exactly once"
