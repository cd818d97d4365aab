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
from tests.e2e.conftest import assert_accepted, control, delivered, make_args, outbox_rows, peer_answer, wait_for


def saf_settings(**redelivery):
    """The default config (the province CRMs' three-account changes, orders and work orders to a
    province are stored and forwarded there), with a quick RedeliveryPolicy."""
    settings = load_settings(env={})
    delivery = {r["name"]: r.get("delivery") for r in settings.raw["routes"]}
    assert delivery["three-account-from-province"] == delivery["order-to-province"] == delivery["work-order"] \
        == "store-and-forward"
    settings.raw["redelivery"] = dict(settings.raw.get("redelivery") or {}, poll_seconds=0.1,
                                      initial_seconds=0.1, cap_seconds=0.3, **redelivery)
    return settings


def sync(client, u, seq):
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn), SYNC_SEQ=seq)
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province,
                                        NET_TYPE_CODE=u.net_type, USER_ID=f"U{u.msisdn}")
    return args, client.call("AccountSync", "SyncThreeAccount", args)


rows_of = outbox_rows


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


def test_a_failing_recipient_retries_and_becomes_a_dead_letter_while_the_other_is_delivered(saf, capsys):
    """The three-account change of a 3G user goes to its billing and to HQ CRM. HQ CRM refuses it
    (a Server fault): its copy is tried again by the RedeliveryPolicy, each attempt journalled with
    the reason, and with its attempts spent it is a dead letter; the billing's copy was delivered
    and applied all the same. Replayed once HQ CRM is back, it is delivered."""
    client = BusClient(saf.url)
    u = next(u for u in seed_users("74") if u.net_type == "50" and u.user_state == "00")
    control(saf.sandbox_url, peer="HQ-CRM", fault="HQ CRM is in maintenance", operations=["SyncThreeAccount"])
    try:
        args, result = sync(client, u, int(time.time() * 1000))
        assert_accepted(result, "BILLING-74", "HQ-CRM")
        trans_ido = args["UNI_BSS_HEAD"]["TRANS_IDO"]
        wait_for(lambda: [(r["peer_name"], r["status"]) for r in rows_of(saf, trans_ido)] == [
            ("BILLING-74", "delivered"), ("HQ-CRM", "dead")])
    finally:
        control(saf.sandbox_url, peer="HQ-CRM")
    billing, hq = rows_of(saf, trans_ido)
    assert (billing["attempts"], hq["attempts"]) == (1, 3)
    assert "Server.PeerFault" in hq["last_error"] and "HQ CRM is in maintenance" in hq["last_error"]
    out = [h for h in saf.bus.journal.hops(trans_ido) if h["direction"] == "out"]
    assert [(h["target"], h["status"], h["rsp_code"]) for h in out] == [
        ("BILLING-74", "ok", "0000")] + [("HQ-CRM", "fault", "9003")] * 3
    assert peer_answer(out[0])["UNI_BSS_BODY"]["APPLIED"] == "0"
    assert all(b"HQ CRM is in maintenance" in h["response"] for h in out[1:]), "the journal keeps each answer"
    with saf.sandbox.engine.connect() as conn:
        t = store.three_accounts.c
        holders = conn.execute(select(t.peer).where(t.user_id == f"U{u.msisdn}", t.trans_ido == trans_ido)).scalars()
        assert sorted(holders) == ["BILLING-74"]
    assert bssbus(["dlq", "replay", str(hq["id"]), "--db-url", saf.db_url]) == 0
    capsys.readouterr()
    assert peer_answer(delivered(saf, trans_ido, "BILLING-74", "HQ-CRM")["HQ-CRM"])["UNI_BSS_BODY"]["APPLIED"] == "0"


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
    assert [(h["status"], h["source"], h["target"]) for h in audit] == [
        ("dead", "BUS", "BILLING-87"), ("replayed", "ops", "BILLING-87")], "when it became a dead letter, and its replay"
    assert bssbus(["dlq", "replay", str(row["id"]), *db]) == 2, "a delivered message is not a dead letter"


def test_a_dead_letter_holds_its_users_later_messages_until_it_is_discarded(saf, capsys):
    """Delivery in order per user: the second sync of a user never overtakes the first, not
    even when the first is a dead letter; an operator discarding it lets the second go on."""
    client = BusClient(saf.url)
    u = next(u for u in seed_users("88") if u.net_type == "10")     # a GSM user: billing only
    control(saf.sandbox_url, peer="BILLING-88", fault="billing is being upgraded")
    try:
        first, result = sync(client, u, 1)
        first = first["UNI_BSS_HEAD"]["TRANS_IDO"]
        wait_for(lambda: [r["status"] for r in rows_of(saf, first)] == ["dead"])
        second, result = sync(client, u, 2)
        assert result.rsp_code == "0000"
        second = second["UNI_BSS_HEAD"]["TRANS_IDO"]
    finally:
        control(saf.sandbox_url, peer="BILLING-88")
    time.sleep(1.0)   # several forwarder passes with the billing up again
    (held,) = rows_of(saf, second)
    assert (held["status"], held["attempts"]) == ("pending", 0), "it waits behind its user's dead letter"
    dead = rows_of(saf, first)[0]
    db = ["--db-url", saf.db_url]
    assert bssbus(["dlq", "show", str(dead["id"]), *db]) == 0
    assert '"waiting_behind": 1' in capsys.readouterr().out
    assert bssbus(["dlq", "discard", str(dead["id"]), "--reason", "superseded by SYNC_SEQ 2", "--dry-run", *db]) == 0
    assert "would discard" in capsys.readouterr().out and rows_of(saf, first)[0]["status"] == "dead"
    assert bssbus(["dlq", "discard", str(dead["id"]), "--reason", "superseded by SYNC_SEQ 2", "--by", "ops", *db]) == 0
    wait_for(lambda: rows_of(saf, second)[0]["status"] == "delivered")
    assert rows_of(saf, second)[0]["rsp_code"] == "0000"
    assert rows_of(saf, first)[0]["status"] == "discarded"
    audit = [(h["status"], h["source"]) for h in saf.bus.journal.hops(first) if h["direction"] == "adm"]
    assert audit == [("dead", "BUS"), ("discarded", "ops")]
    assert bssbus(["dlq", "discard", str(dead["id"]), "--reason", "again", *db]) == 2, "no longer a dead letter"


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """A bus whose messages outlast a peer's outage (100 quick attempts)."""
    with EmbeddedBus(saf_settings(max_attempts=100), workdir=tmp_path_factory.mktemp("patient")) as embedded:
        yield embedded


def test_an_order_and_its_work_order_reach_a_province_in_order_after_its_outage(patient):
    """HQ CRM sends a province that is down an order and its work order: HQ CRM is answered at
    once ('accepted'), the order is retried, the work order waits behind it without an attempt
    of its own (one user's messages in order), and once the province is back it gets the order,
    then the work order; the loop then closes (the province reports, HQ CRM learns its order id)."""
    bus, client = patient, BusClient(patient.url)
    u = next(u for u in seed_users("90") if u.net_type == "50" and u.user_state == "00")
    order_id = f"ORD90{int(time.time() * 1000)}"
    control(bus.sandbox_url, peer="CRM-90", fault="CRM is down for the night")
    try:
        order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id,
                          SERIAL_NUMBER=u.msisdn, PROVINCE_CODE="90")
        result = client.call("OrderSync", "SyncOrder", order)
        assert (result.rsp_code, result.sender, result.body["ORDER_STATE"]) == ("0000", "HQ-CRM", "10")
        sent = {h["operation"]: h["trans_ido"] for h in bus.bus.journal.hops(order["UNI_BSS_HEAD"]["PROC_ID"])
                if (h["direction"], h["source"], h["status"]) == ("in", "UCRM", "accepted")}
        assert set(sent) == {"SyncOrder", "SubmitWorkOrder"}
        wait_for(lambda: rows_of(bus, sent["SyncOrder"])[0]["attempts"] >= 2)
        (work,) = rows_of(bus, sent["SubmitWorkOrder"])
        assert (work["status"], work["attempts"]) == ("pending", 0), "the work order waits behind its order"
    finally:
        control(bus.sandbox_url, peer="CRM-90")
    first = delivered(bus, sent["SyncOrder"], "CRM-90")["CRM-90"]
    then = delivered(bus, sent["SubmitWorkOrder"], "CRM-90")["CRM-90"]
    assert first["finished_at"] <= then["started_at"]
    with bus.sandbox.engine.connect() as conn:
        got = conn.execute(select(store.received.c.operation).where(
            store.received.c.peer == "CRM-90", store.received.c.trans_ido.in_(list(sent.values())))
            .order_by(store.received.c.id)).scalars().all()
    assert got == ["SyncOrder", "SubmitWorkOrder"]
    province_order_id = peer_answer(first)["UNI_BSS_BODY"]["PROVINCE_ORDER_ID"]

    def completed():
        status = client.call("OrderSync", "QueryOrderStatus", make_args(
            "OrderSync", "QueryOrderStatus", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id))
        return status.body if (status.body or {}).get("ORDER_STATE") == "30" else None

    assert wait_for(completed)["PROVINCE_ORDER_ID"] == province_order_id


def test_one_users_messages_stay_in_order_and_do_not_hold_up_others(patient):
    bus = patient
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
            wait_for(lambda: bus.bus.adapters.breakers.refusing() == ["BILLING-88"])
            # the second attempt's outcome is written after its failure opened the breaker
            wait_for(lambda: (lambda r: r["attempts"] == 2 and "in progress" not in (r["last_error"] or ""))(
                rows_of(bus, trans_ido)[0]))
            hops = len(bus.bus.journal.hops(trans_ido))
            time.sleep(1.5)   # many Forwarder passes (every 0.1 s) while the breaker stays open
            row = rows_of(bus, trans_ido)[0]
            assert (row["status"], row["attempts"]) == ("pending", 2), "held, its third attempt unspent"
            assert len(bus.bus.journal.hops(trans_ido)) == hops, "left alone: not claimed, not journalled"
            assert row["locked_until"] is None
        finally:
            control(bus.sandbox_url, peer="BILLING-88")
        wait_for(lambda: rows_of(bus, trans_ido)[0]["status"] == "delivered")
