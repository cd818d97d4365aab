"""The synchronous Recipient List (bus/core.py): a route with further recipients (`also:`) and
`delivery: sync` calls every recipient while the caller waits, lists their answers in
RECIPIENTS, and turns RESPONSE into 9100 (PARTIAL_DELIVERY) when one was not reached.

config/bus.yaml stores and forwards every route with further recipients (the three-account
syncs), so this runs on a configuration that makes one of them synchronous again, as an
operator may.
"""
from __future__ import annotations

import time

import pytest

from bus.core import PARTIAL_DELIVERY
from bus.embedded import EmbeddedBus
from config.settings import load_settings
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import control, make_args, outbox_rows

ROUTE = "three-account-from-province"


@pytest.fixture(scope="module")
def sync_bus(tmp_path_factory):
    settings = load_settings(env={})
    routes = settings.raw["routes"]
    assert next(r for r in routes if r["name"] == ROUTE).get("also"), f"{ROUTE} has no further recipients"
    settings.raw["routes"] = [dict(r, delivery="sync") if r["name"] == ROUTE else r for r in routes]
    with EmbeddedBus(settings, workdir=tmp_path_factory.mktemp("recipient-list")) as embedded:
        yield embedded


def sync(client, u):
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn),
                     SYNC_SEQ=int(time.time() * 1000))
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province, NET_TYPE_CODE=u.net_type,
                                        USER_ID=f"U{u.msisdn}")
    return args, client.call("AccountSync", "SyncThreeAccount", args)


def a_user(province, net_type="50"):
    return next(u for u in seed_users(province) if u.net_type == net_type and u.user_state == "00")


@pytest.mark.parametrize("net_type, expected", [("50", ["BILLING-51", "HQ-CRM"]), ("10", ["BILLING-51"])])
def test_each_recipient_is_called_while_the_caller_waits(sync_bus, net_type, expected):
    args, result = sync(BusClient(sync_bus.url), a_user("51", net_type))
    assert (result.rsp_code, result.sender, result.body["APPLIED"]) == ("0000", "BILLING-51", "0")
    recipients = (result.body.get("RECIPIENTS") or {}).get("RECIPIENT") or []
    assert [(r["PEER"], r["RSP_CODE"]) for r in recipients] == (
        [(peer, "0000") for peer in expected] if len(expected) > 1 else [])   # one peer: no list
    trans_ido = args["UNI_BSS_HEAD"]["TRANS_IDO"]
    hops = sync_bus.bus.journal.hops(trans_ido)
    assert hops[0]["status"] == "ok"
    assert [(h["target"], h["status"]) for h in hops if h["direction"] == "out"] == [(p, "ok") for p in expected]
    assert outbox_rows(sync_bus, trans_ido) == [], "nothing stored: delivered while the caller waited"


def test_a_recipient_that_fails_is_reported_and_journalled(sync_bus):
    client = BusClient(sync_bus.url)
    control(sync_bus.sandbox_url, peer="HQ-CRM", fault="HQ CRM is in maintenance")
    try:
        args, result = sync(client, a_user("74"))
    finally:
        control(sync_bus.sandbox_url, peer="HQ-CRM")
    assert result.fault_code is None
    assert result.rsp_code == PARTIAL_DELIVERY == "9100"
    assert "HQ-CRM" in result.head["RESPONSE"]["RSP_DESC"] and "HQ CRM is in maintenance" in \
        result.head["RESPONSE"]["RSP_DESC"]
    outcomes = {r["PEER"]: r["RSP_CODE"] for r in result.body["RECIPIENTS"]["RECIPIENT"]}
    assert outcomes == {"BILLING-74": "0000", "HQ-CRM": "9003"}
    hops = sync_bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert [(h["target"], h["status"]) for h in hops if h["direction"] == "out"] == [
        ("BILLING-74", "ok"), ("HQ-CRM", "fault")]
