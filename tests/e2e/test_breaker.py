"""CircuitBreaker over real HTTP: a province Billing that keeps failing is cut off (calls fail
fast with Server.PeerUnavailable naming it, and never reach it), other provinces carry on,
and once it is back a probe after the cool-down closes the breaker again.

The bus here has small thresholds for the province Billings (peers.province_billing.breaker:
3 failures, a 3 s cool-down; a 1 s timeout). Assertions are about behaviour; waits are
polls with generous bounds."""
from __future__ import annotations

import json
import urllib.request

import pytest
from sqlalchemy import func, select

from bus.embedded import EmbeddedBus
from config.settings import load_settings
from sandbox import store
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import control, make_args, wait_for

FAILURES = 3


def user(province):
    return next(u for u in seed_users(province) if u.user_state == "00")


def received(bus, trans_idos) -> int:
    """How many of these TRANS_IDOs reached a sandbox peer."""
    with bus.sandbox.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.received).where(
            store.received.c.trans_ido.in_(list(trans_idos)))).scalar()


@pytest.fixture(scope="module")
def breaker_bus(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("breaker")
    override = workdir / "breaker.yaml"
    override.write_text("peers:\n  province_billing:\n    timeout: 1\n"
                        f"    breaker: {{failures: {FAILURES}, cooldown_seconds: 3}}\n", encoding="utf-8")
    with EmbeddedBus(load_settings(override, env={}), workdir=workdir) as embedded:
        yield embedded


def query(client, u, msisdn=None):
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", msisdn or u.msisdn),
                     SERIAL_NUMBER=msisdn or u.msisdn)
    return args["UNI_BSS_HEAD"]["TRANS_IDO"], client.call("BankPayment", "QueryBalance", args)


def breakers(bus) -> dict:
    with urllib.request.urlopen(f"{bus.url}/healthz", timeout=10) as resp:
        return json.loads(resp.read())["breakers"]


def test_a_billing_that_keeps_timing_out_is_cut_off_and_a_probe_brings_it_back(breaker_bus):
    bus, client, u = breaker_bus, BusClient(breaker_bus.url), user("38")
    control(bus.sandbox_url, peer="BILLING-38", delay_ms=3000)
    try:
        slow = [query(client, u) for _ in range(FAILURES)]
        assert [r.fault_code for _, r in slow] == ["Server.PeerTimeout"] * FAILURES
        fast = [query(client, u) for _ in range(3)]
        for trans_ido, r in fast:
            assert r.fault_code == "Server.PeerUnavailable", r.fault_string
            assert "BILLING-38" in r.fault_string and "circuit breaker is open since" in r.fault_string
            assert "did not answer QueryBalance" in r.fault_string, "it gives the last failure's reason"
            out = [h for h in bus.bus.journal.hops(trans_ido) if h["direction"] == "out"]
            assert [(h["status"], h["fault_code"], h["target"]) for h in out] == \
                [("fault", "Server.PeerUnavailable", "BILLING-38")]
            assert out[0]["request"] is None, "nothing went on the wire"
        # other provinces, and HQ Billing, are not affected
        for province, sender in (("18", "BILLING-18"), ("11", "HQ-BILLING")):
            _, r = query(client, user(province))
            assert (r.fault_code, r.rsp_code, r.sender) == (None, "0000", sender)
        state = breakers(bus)
        assert state["BILLING-38"]["state"] == "open" and state["BILLING-38"]["failures"] == FAILURES
        assert state["BILLING-38"]["opened_at"]
        assert state["BILLING-18"] == {"state": "closed", "failures": 0, "opened_at": None}
        # the slow peer records each request it got once its delay is over: the timed-out ones
        # arrive, the ones that failed fast never do
        wait_for(lambda: received(bus, [t for t, _ in slow]) == FAILURES)
        assert received(bus, [t for t, _ in fast]) == 0
    finally:
        control(bus.sandbox_url, peer="BILLING-38")
    # back: after the cool-down one probe goes through and closes the breaker
    attempts = []

    def answered():
        attempts.append(query(client, u))
        return attempts[-1][1].fault_code is None

    wait_for(answered)
    *refused, (probe, ok) = attempts
    assert (ok.rsp_code, ok.sender) == ("0000", "BILLING-38")
    assert {r.fault_code for _, r in refused} <= {"Server.PeerUnavailable"}
    assert received(bus, [probe]) == 1 and received(bus, [t for t, _ in refused]) == 0
    assert breakers(bus)["BILLING-38"] == {"state": "closed", "failures": 0, "opened_at": None}
    assert query(client, u)[1].rsp_code == "0000"


def test_a_failed_probe_opens_it_again(breaker_bus):
    bus, client, u = breaker_bus, BusClient(breaker_bus.url), user("30")
    control(bus.sandbox_url, peer="BILLING-30", fault="billing database is down")
    try:
        assert [query(client, u)[1].fault_code for _ in range(FAILURES)] == ["Server.PeerFault"] * FAILURES
        _, r = query(client, u)
        assert r.fault_code == "Server.PeerUnavailable" and "billing database is down" in r.fault_string
        first_opened = breakers(bus)["BILLING-30"]["opened_at"]
        wait_for(lambda: breakers(bus)["BILLING-30"]["state"] == "half-open")
        _, probe = query(client, u)
        assert probe.fault_code == "Server.PeerFault", "the probe reached the peer, which still fails"
        _, r = query(client, u)
        assert r.fault_code == "Server.PeerUnavailable"
        assert "probe call after the cool-down failed" in r.fault_string
        state = breakers(bus)["BILLING-30"]
        assert state["state"] == "open" and state["failures"] == FAILURES + 1
        assert state["opened_at"] >= first_opened
    finally:
        control(bus.sandbox_url, peer="BILLING-30")
    wait_for(lambda: breakers(bus)["BILLING-30"]["state"] == "half-open")
    _, r = query(client, u)
    assert (r.fault_code, r.rsp_code, r.sender) == (None, "0000", "BILLING-30")
    assert breakers(bus)["BILLING-30"]["state"] == "closed"


def test_a_business_refusal_is_an_answer_not_a_failure(breaker_bus):
    client, u = BusClient(breaker_bus.url), user("75")
    known = {s.msisdn for s in seed_users("75")}
    unknown = next(n for n in (u.msisdn[:7] + f"{i:04d}" for i in range(10000)) if n not in known)
    for _ in range(FAILURES + 2):
        _, r = query(client, u, unknown)
        assert (r.fault_code, r.rsp_code, r.sender) == (None, "2099", "BILLING-75")
    assert breakers(breaker_bus)["BILLING-75"] == {"state": "closed", "failures": 0, "opened_at": None}
