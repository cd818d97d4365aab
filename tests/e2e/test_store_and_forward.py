"""Store and forward over real HTTP: accepted once stored, delivered by the Forwarder with
retries, dead letters replayed, one user's messages in order without holding up others."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from bus.cli import main as bssbus
from bus.embedded import EmbeddedBus
from config.settings import load_settings
from sandbox import store
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import control, make_args, wait_for


def saf_settings(**redelivery):
    """The default config with the province CRMs' three-account changes stored and forwarded."""
    settings = load_settings(env={})
    settings.raw["routes"] = [dict(r, delivery="store-and-forward") if r["name"] == "three-account-from-province"
                              else r for r in settings.raw["routes"]]
    settings.raw["redelivery"] = dict(settings.raw.get("redelivery") or {}, poll_seconds=0.1,
                                      initial_seconds=0.1, cap_seconds=0.3, **redelivery)
    return settings


def sync(client, u, seq):
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn), SYNC_SEQ=seq)
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province,
                                        NET_TYPE_CODE=u.net_type, USER_ID=f"U{u.msisdn}")
    return args, client.call("AccountSync", "SyncThreeAccount", args)


def rows_of(bus, trans_ido):
    return [r for r in bus.bus.outbox.list(status=None, limit=10000) if r["trans_ido"] == trans_ido]


@pytest.fixture(scope="module")
def saf(tmp_path_factory):
    with EmbeddedBus(saf_settings(max_attempts=3), workdir=tmp_path_factory.mktemp("saf")) as embedded:
        yield embedded


def test_accepted_when_stored_then_delivered_to_every_recipient(saf):
    client = BusClient(saf.url)
    u = next(u for u in seed_users("51") if u.net_type == "50")
    args, result = sync(client, u, 1)
    assert (result.rsp_code, result.sender) == ("0000", "BUS") and result.body is None
    assert "BILLING-51" in result.head["RESPONSE"]["RSP_DESC"] and "HQ-CRM" in result.head["RESPONSE"]["RSP_DESC"]
    trans_ido = args["UNI_BSS_HEAD"]["TRANS_IDO"]
    wait_for(lambda: [r["status"] for r in rows_of(saf, trans_ido)] == ["delivered", "delivered"])
    hops = saf.bus.journal.hops(trans_ido)
    assert hops[0]["status"] == "accepted"
    assert sorted(h["target"] for h in hops if h["direction"] == "out") == ["BILLING-51", "HQ-CRM"]
    with saf.sandbox.engine.connect() as conn:
        got = conn.execute(select(store.received.c.peer).where(store.received.c.trans_ido == trans_ido)).scalars()
        assert sorted(got) == ["BILLING-51", "HQ-CRM"]


def test_spent_attempts_make_a_dead_letter_that_an_operator_replays(saf, capsys):
    client = BusClient(saf.url)
    u = next(u for u in seed_users("87") if u.net_type == "10")     # a GSM user: billing only
    control(saf.sandbox_url, peer="BILLING-87", fault="billing is being upgraded")
    try:
        args, result = sync(client, u, 1)
        assert result.rsp_code == "0000"
        trans_ido = args["UNI_BSS_HEAD"]["TRANS_IDO"]
        wait_for(lambda: [r["status"] for r in rows_of(saf, trans_ido)] == ["dead"])
    finally:
        control(saf.sandbox_url, peer="BILLING-87")
    row = rows_of(saf, trans_ido)[0]
    assert row["attempts"] == 3 and "billing is being upgraded" in row["last_error"]
    assert [h["status"] for h in saf.bus.journal.hops(trans_ido) if h["direction"] == "out"] == ["fault"] * 3
    db = ["--db-url", saf.db_url]
    assert bssbus(["dlq", "list", *db]) == 0 and str(row["id"]) in capsys.readouterr().out
    assert bssbus(["dlq", "replay", str(row["id"]), "--dry-run", *db]) == 0
    assert "would replay" in capsys.readouterr().out and rows_of(saf, trans_ido)[0]["status"] == "dead"
    assert bssbus(["dlq", "replay", "--all", "--target", "BILLING-87", "--by", "ops", *db]) == 0
    wait_for(lambda: rows_of(saf, trans_ido)[0]["status"] == "delivered")
    audit = [h for h in saf.bus.journal.hops(trans_ido) if h["direction"] == "adm"]
    assert [(h["status"], h["source"], h["target"]) for h in audit] == [("replayed", "ops", "BILLING-87")]
    assert bssbus(["dlq", "replay", str(row["id"]), *db]) == 2, "a delivered message is not a dead letter"


def test_one_users_messages_stay_in_order_and_do_not_hold_up_others(tmp_path):
    with EmbeddedBus(saf_settings(max_attempts=100), workdir=tmp_path) as bus:
        client = BusClient(bus.url)
        slow_user = next(u for u in seed_users("59") if u.net_type == "10")
        other = next(u for u in seed_users("74") if u.net_type == "10")
        control(bus.sandbox_url, peer="BILLING-59", fault="down for an hour")
        try:
            sent = [sync(client, slow_user, seq)[0]["UNI_BSS_HEAD"]["TRANS_IDO"] for seq in range(1, 6)]
            other_ido = sync(client, other, 1)[0]["UNI_BSS_HEAD"]["TRANS_IDO"]
            wait_for(lambda: rows_of(bus, other_ido)[0]["status"] == "delivered")
            assert {rows_of(bus, t)[0]["status"] for t in sent} == {"pending"}
            assert all(rows_of(bus, t)[0]["attempts"] == 0 for t in sent[1:]), "only the oldest is tried"
        finally:
            control(bus.sandbox_url, peer="BILLING-59")
        wait_for(lambda: all(rows_of(bus, t)[0]["status"] == "delivered" for t in sent))
        with bus.sandbox.engine.connect() as conn:
            order = [t for (t,) in conn.execute(select(store.received.c.trans_ido).where(
                store.received.c.peer == "BILLING-59", store.received.c.trans_ido.in_(sent))
                .order_by(store.received.c.id))]
            applied = conn.execute(select(store.three_accounts.c.sync_seq).where(
                store.three_accounts.c.user_id == f"U{slow_user.msisdn}",
                store.three_accounts.c.peer == "BILLING-59")).scalar()
        assert order == sent and applied == 5


def test_an_open_breaker_holds_messages_without_spending_their_attempts(tmp_path):
    settings = saf_settings(max_attempts=3)
    settings.raw["breaker"] = dict(settings.raw.get("breaker") or {}, failures=2, cooldown_seconds=4)
    with EmbeddedBus(settings, workdir=tmp_path) as bus:
        client = BusClient(bus.url)
        u = next(u for u in seed_users("88") if u.net_type == "10")
        control(bus.sandbox_url, peer="BILLING-88", fault="down")
        try:
            trans_ido = sync(client, u, 1)[0]["UNI_BSS_HEAD"]["TRANS_IDO"]
            wait_for(lambda: "breaker is open" in (rows_of(bus, trans_ido)[0]["last_error"] or ""))
            time.sleep(1.5)   # many Forwarder passes (every 0.1 s) while the breaker stays open
            row = rows_of(bus, trans_ido)[0]
            assert (row["status"], row["attempts"]) == ("pending", 2), "held, its third attempt unspent"
        finally:
            control(bus.sandbox_url, peer="BILLING-88")
        wait_for(lambda: rows_of(bus, trans_ido)[0]["status"] == "delivered")
