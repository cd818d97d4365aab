"""Unknown outcomes for money: a payment whose answer is lost is asked about, never guessed.

Each case makes a sandbox billing slow through ``/control`` (sandbox/app.py): ``delay_after_ms``
posts and then answers too late (the answer is lost), ``delay_ms`` answers too late before
posting (the request is still on its way). The bus waits 0.5 s for a province Billing.
"""
from __future__ import annotations

import time

import pytest

from bus.embedded import EmbeddedBus
from config.settings import load_settings
from sandbox.store import seed_users
from services.client import BusClient
from tests.conftest import PG_URL, pg_schema_url
from tests.e2e.conftest import control, make_args


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if PG_URL else []))
def slow_billing(request, tmp_path_factory):
    """A bus (its journal on SQLite, and on PostgreSQL when configured) that waits 0.5 s for a
    province Billing, with a sandbox of its own."""
    work = tmp_path_factory.mktemp(f"outcome-{request.param}")
    override = work / "timeouts.yaml"
    override.write_text("peers:\n  province_billing:\n    timeout: 0.5\n    breaker: {failures: 50}\n",
                        encoding="utf-8")
    settings = load_settings(override, env={})
    if request.param == "sqlite":
        with EmbeddedBus(settings, workdir=work) as embedded:
            yield embedded
    else:
        with pg_schema_url() as url, EmbeddedBus(settings, workdir=work, db_url=url) as embedded:
            yield embedded


def out_hops(bus, args):
    """(operation, status, fault code, RSP_CODE) of each call the bus made for ``args``."""
    return [(h["operation"], h["status"], h["fault_code"], h["rsp_code"])
            for h in bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"]) if h["direction"] == "out"]


# -- BankPayment.Pay (asked with QueryPayment) ----------------------------------------------

def balance(client, u):
    return client.call("BankPayment", "QueryBalance", make_args(
        "BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)).body["BALANCE"]


def pay(client, u, serial, amount=3300):
    args = make_args("BankPayment", "Pay", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
                     AMOUNT=amount, BANK_SERIAL=serial)
    return args, client.call("BankPayment", "Pay", args)


def test_posted_but_the_answer_was_lost_is_a_success(slow_billing):
    client, u = BusClient(slow_billing.url), seed_users("71")[5]
    before = balance(client, u)
    control(slow_billing.sandbox_url, peer="BILLING-71", delay_after_ms=1500, operations=["Pay"])
    try:
        args, result = pay(client, u, f"LOST{int(time.time() * 1000)}")
    finally:
        control(slow_billing.sandbox_url, peer="BILLING-71")
    assert result.fault_code is None and result.rsp_code == "0000", result.fault_string
    assert result.body["AMOUNT"] == 3300 and result.body["BALANCE"] == before + 3300 and result.body["BILL_SERIAL"]
    assert "asked" in result.head["RESPONSE"]["RSP_DESC"]
    time.sleep(1.5)
    assert balance(client, u) == before + 3300, "posted once"
    out = [(op, status, fault) for op, status, fault, _ in out_hops(slow_billing, args)]
    assert out == [("Pay", "fault", "Server.PeerTimeout"), ("QueryPayment", "ok", None)]


def test_not_known_in_time_is_never_called_a_failure(slow_billing):
    client, u = BusClient(slow_billing.url), seed_users("71")[6]
    before = balance(client, u)
    control(slow_billing.sandbox_url, peer="BILLING-71", delay_ms=1500, operations=["Pay"])   # posts after 1.5 s
    try:
        args, result = pay(client, u, f"SLOW{int(time.time() * 1000)}")
    finally:
        control(slow_billing.sandbox_url, peer="BILLING-71")
    assert result.fault_code == "Server.OutcomeUnknown"
    assert "retry with the same serial" in result.fault_string
    out = [op for op, *_ in out_hops(slow_billing, args)]
    assert out == ["Pay", "QueryPayment", "Pay"], "asked first, then sent once more"
    time.sleep(3.5)   # both slow requests arrive at the billing now
    assert balance(client, u) == before + 3300, "posted once although it was sent twice"
    again = pay(client, u, args["UNI_BSS_BODY"]["BANK_SERIAL"])[1]   # the caller's retry, same serial
    assert again.rsp_code == "0000" and again.body["BALANCE"] == before + 3300
