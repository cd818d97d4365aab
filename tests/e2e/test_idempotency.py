"""IdempotentConsumer over real HTTP: a repeat gets the first answer and reaches no peer;
a storm of the same payment charges once; a failure leaves the key free for a retry."""
from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from sandbox import store
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import make_args


def received(bus, trans_idos) -> int:
    """How many of these TRANS_IDOs reached a sandbox peer."""
    with bus.sandbox.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.received).where(
            store.received.c.trans_ido.in_(list(trans_idos)))).scalar()


def test_a_repeated_trans_ido_gets_the_first_answer_whatever_happened_in_between(bus, client):
    u = seed_users("71")[3]
    route = ("01", u.msisdn)
    serial = f"ID{int(time.time() * 1000)}"
    pay = make_args("BankPayment", "Pay", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn, AMOUNT=777,
                    BANK_SERIAL=serial)
    first = client.call("BankPayment", "Pay", pay)
    assert first.rsp_code == "0000"
    reversed_ = client.call("BankPayment", "Reverse", make_args(
        "BankPayment", "Reverse", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn, AMOUNT=777,
        BANK_SERIAL=f"R{serial}", ORIG_BANK_SERIAL=serial))
    assert reversed_.rsp_code == "0000"
    again = client.call("BankPayment", "Pay", pay)
    assert again.body == first.body and again.head["TRANS_IDO"] == first.head["TRANS_IDO"]
    assert again.sender == first.sender
    trans_ido = pay["UNI_BSS_HEAD"]["TRANS_IDO"]
    assert received(bus, [trans_ido]) == 1, "the repeat must not reach the peer"
    inbound = [h for h in bus.bus.journal.hops(trans_ido) if h["direction"] == "in"]
    assert [h["status"] for h in inbound] == ["ok", "duplicate"]
    assert inbound[1]["msg_id"] in inbound[1]["route"] or inbound[0]["msg_id"] in inbound[1]["route"]


def test_a_read_is_asked_afresh_even_with_a_repeated_trans_ido(bus, client):
    """A read has no idempotency key (DOMAIN.md: "none (read)"): its repeat reaches the peer
    again (which may answer a TRANS_IDO it knows from memory, as the sandbox does), and each
    call has its own journal row."""
    u = seed_users("71")[5]
    route = ("01", u.msisdn)
    query = make_args("BankPayment", "QueryBalance", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn)
    first = client.call("BankPayment", "QueryBalance", query)
    paid = client.call("BankPayment", "Pay", make_args("BankPayment", "Pay", caller="BANK", route=route,
                                                       SERIAL_NUMBER=u.msisdn, AMOUNT=555,
                                                       BANK_SERIAL=f"RD{int(time.time() * 1000)}"))
    assert paid.rsp_code == "0000"
    again = client.call("BankPayment", "QueryBalance", query)
    assert again.rsp_code == first.rsp_code == "0000"
    trans_ido = query["UNI_BSS_HEAD"]["TRANS_IDO"]
    assert received(bus, [trans_ido]) == 2
    inbound = [h for h in bus.bus.journal.hops(trans_ido) if h["direction"] == "in"]
    assert [h["status"] for h in inbound] == ["ok", "ok"]


def test_a_storm_of_the_same_payment_charges_once(bus):
    client = BusClient(bus.url)
    u = seed_users("81")[4]
    route = ("01", u.msisdn)
    serial = f"STORM{int(time.time() * 1000)}"
    before = client.call("BankPayment", "QueryBalance", make_args(
        "BankPayment", "QueryBalance", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn)).body["BALANCE"]
    requests = [make_args("BankPayment", "Pay", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn,
                          AMOUNT=1000, BANK_SERIAL=serial) for _ in range(50)]
    with ThreadPoolExecutor(25) as pool:
        answers = list(pool.map(lambda args: client.call("BankPayment", "Pay", args), requests))
    assert all(a.fault_code is None and a.rsp_code == "0000" for a in answers), \
        {a.fault_code or a.rsp_code for a in answers}
    assert len({a.body["BILL_SERIAL"] for a in answers}) == 1, "every caller gets the same answer"
    assert [a.head["TRANS_IDO"] for a in answers] == [r["UNI_BSS_HEAD"]["TRANS_IDO"] for r in requests]
    after = client.call("BankPayment", "QueryBalance", make_args(
        "BankPayment", "QueryBalance", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn)).body["BALANCE"]
    assert after == before + 1000, "charged exactly once"
    assert received(bus, [r["UNI_BSS_HEAD"]["TRANS_IDO"] for r in requests]) == 1


def test_a_failed_call_leaves_the_key_free_for_a_retry(sqlite_bus):
    client = BusClient(sqlite_bus.url)
    u = seed_users("85")[2]
    args = make_args("BankPayment", "Pay", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
                     AMOUNT=500, BANK_SERIAL=f"RETRY{int(time.time() * 1000)}")

    def control(**spec):
        urllib.request.urlopen(urllib.request.Request(
            f"{sqlite_bus.sandbox_url}/control", data=json.dumps(spec).encode(), method="POST"), timeout=10).read()

    control(peer="BILLING-85", fault="billing is restarting")
    try:
        failed = client.call("BankPayment", "Pay", args)
    finally:
        control(peer="BILLING-85")
    assert failed.fault_code == "Server.PeerFault"
    retried = client.call("BankPayment", "Pay", args)
    assert retried.fault_code is None and retried.rsp_code == "0000"


def test_a_key_reused_for_another_request_is_a_client_fault(client):
    u = seed_users("83")[2]
    route = ("01", u.msisdn)
    serial = f"REUSE{int(time.time() * 1000)}"
    first = client.call("BankPayment", "Pay", make_args("BankPayment", "Pay", caller="BANK", route=route,
                                                        SERIAL_NUMBER=u.msisdn, AMOUNT=100, BANK_SERIAL=serial))
    assert first.rsp_code == "0000"
    other = client.call("BankPayment", "Pay", make_args("BankPayment", "Pay", caller="BANK", route=route,
                                                        SERIAL_NUMBER=u.msisdn, AMOUNT=200, BANK_SERIAL=serial))
    assert other.fault_code == "Client.DuplicateKey" and serial in other.fault_string
