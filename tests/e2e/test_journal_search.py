"""`bssbus journal search` and `journal trace` over real traffic: a customer's payment found by
its bank serial (and by number, TRANS_IDO, PROC_ID, peer, status and time), an order by its
order id across every hop of its flow, and a stored message that failed, became a dead letter
and was replayed, traced in time order."""
from __future__ import annotations

import json
import time

import pytest

from bus.cli import main
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import _bus_params, control, delivered, embedded_on, make_args, outbox_rows, wait_for
from tests.e2e.test_store_and_forward import saf_settings


@pytest.fixture(scope="module", params=_bus_params())
def saf(request, tmp_path_factory):
    """A bus (SQLite, and PostgreSQL when configured) whose stored messages have 2 quick attempts."""
    with embedded_on(request.param, tmp_path_factory.mktemp(f"search-{request.param}"),
                     saf_settings(max_attempts=2)) as embedded:
        yield embedded


def bssbus(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def search(saf, capsys, *args) -> list[dict]:
    status, out, err = bssbus(capsys, "journal", "search", *args, "--json", "--db-url", saf.db_url)
    assert status == 0, err
    return json.loads(out)


def trace(saf, capsys, key) -> dict:
    status, out, err = bssbus(capsys, "journal", "trace", key, "--json", "--db-url", saf.db_url)
    assert status == 0, err
    return json.loads(out)


def test_a_customers_payment_by_bank_serial_and_the_peer_that_answered(saf, capsys):
    client = BusClient(saf.url)
    u = next(u for u in seed_users("51") if u.balance < 0 and u.user_state == "00")
    serial = f"ICBC{int(time.time() * 1e6)}"[:32]
    pay = make_args("BankPayment", "Pay", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
                    AMOUNT=1000, BANK_SERIAL=serial)
    result = client.call("BankPayment", "Pay", pay)
    assert result.rsp_code == "0000", result.head
    trans_ido, proc_id = pay["UNI_BSS_HEAD"]["TRANS_IDO"], pay["UNI_BSS_HEAD"]["PROC_ID"]

    hops = search(saf, capsys, "--serial", serial)
    assert [(h["direction"], h["source"], h["target"], h["status"]) for h in hops] == [
        ("out", "BUS", "BILLING-51", "ok"), ("in", "BANK", "BILLING-51", "ok")], "newest first"
    assert {(h["trans_ido"], h["serial"], h["msisdn"]) for h in hops} == {(trans_ido, serial, u.msisdn)}
    assert search(saf, capsys, "--bank-serial", serial) == hops
    for keys in (("--msisdn", u.msisdn, "--operation", "Pay"), ("--trans-ido", trans_ido), ("--proc-id", proc_id),
                 ("--service", "BankPayment", "--operation", "Pay", "--peer", "BILLING-51", "--since", "10m"),
                 ("--peer", "BILLING-51", "--status", "ok", "--direction", "out", "--since", "1h")):
        assert trans_ido in {h["trans_ido"] for h in search(saf, capsys, *keys, "--limit", "500")}, keys
    assert search(saf, capsys, "--serial", serial, "--until", "1h") == []
    assert search(saf, capsys, "--serial", serial, "--status", "fault") == []
    assert search(saf, capsys, "--serial", serial, "--peer", "BILLING-52") == []

    status, out, _ = bssbus(capsys, "journal", "search", "--serial", serial, "--db-url", saf.db_url)
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith("time (UTC)") and len(lines) == 3
    assert "BANK" in lines[2] and "BILLING-51" in lines[1] and f"serial={serial}" in lines[1]

    flow = trace(saf, capsys, trans_ido)
    assert [e["kind"] for e in flow["events"]] == ["inbound", "route", "call", "answer"]
    route, call = flow["events"][1], flow["events"][2]
    assert route["peer"] == "BILLING-51" and "-> BILLING-51" in route["route"]
    assert (call["peer"], call["status"], call["rsp_code"]) == ("BILLING-51", "ok", "0000")
    assert call["elapsed_ms"] > 0 and flow["outbox"] == []


def test_an_order_by_its_order_id_across_its_flow(saf, capsys):
    """E-sales' order goes to HQ CRM, which passes it (and its work order) on to the province
    through the bus: the order id finds every hop of them, and the trace of its PROC_ID shows
    them in time order, the stored ones with their delivery attempts."""
    client = BusClient(saf.url)
    u = next(u for u in seed_users("51") if u.net_type == "50" and u.user_state == "00")
    order_id = f"ES{int(time.time() * 1e6)}"[:32]
    order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id,
                      SERIAL_NUMBER=u.msisdn, PROVINCE_CODE="51")
    result = client.call("OrderSync", "SyncOrder", order)
    assert result.rsp_code == "0000", result.head
    proc_id = order["UNI_BSS_HEAD"]["PROC_ID"]
    stored = {h["operation"]: h["trans_ido"] for h in saf.bus.journal.hops(proc_id)
              if (h["direction"], h["source"], h["status"]) == ("in", "UCRM", "accepted")}
    assert set(stored) == {"SyncOrder", "SubmitWorkOrder"}
    for trans_ido in stored.values():
        delivered(saf, trans_ido, "CRM-51")

    hops = search(saf, capsys, "--order-id", order_id, "--limit", "500")
    seen = {(h["direction"], h["operation"], h["source"], h["target"]) for h in hops}
    assert {("in", "SyncOrder", "ESALE", "HQ-CRM"), ("out", "SyncOrder", "BUS", "HQ-CRM"),
            ("in", "SyncOrder", "UCRM", "CRM-51"), ("out", "SyncOrder", "BUS", "CRM-51"),
            ("in", "SubmitWorkOrder", "UCRM", "CRM-51"), ("out", "SubmitWorkOrder", "BUS", "CRM-51")} <= seen
    assert all(h["order_id"] == order_id for h in hops)
    times = [h["started_at"] for h in hops]
    assert times == sorted(times, reverse=True)

    flow = trace(saf, capsys, proc_id)
    numbers = {m["trans_ido"]: m["n"] for m in flow["messages"]}
    assert {order["UNI_BSS_HEAD"]["TRANS_IDO"], *stored.values()} <= set(numbers)
    at = [e["at"] for e in flow["events"]]
    assert at == sorted(at)
    attempts = [(e["operation"], e["peer"], e["status"]) for e in flow["events"] if e["kind"] == "attempt"]
    assert ("SyncOrder", "CRM-51", "ok") in attempts and ("SubmitWorkOrder", "CRM-51", "ok") in attempts
    outbox = {(r["peer"], r["status"]) for r in flow["outbox"]}
    assert {status for peer, status in outbox if peer == "CRM-51"} == {"delivered"}
    # the province's report and the completion notice to e-sales share the PROC_ID: they may be
    # on their way already when the trace is taken
    assert {peer for peer, _ in outbox} <= {"CRM-51", "HQ-CRM", "ESALES"}


def test_a_dead_letter_and_its_replay_in_the_trace(saf, capsys):
    """A stored three-account change to a billing that is down: two failed attempts, a dead
    letter, an operator's replay, the delivery; the trace lists them in that order."""
    client = BusClient(saf.url)
    u = next(u for u in seed_users("87") if u.net_type == "10")     # a GSM user: billing only
    control(saf.sandbox_url, peer="BILLING-87", fault="billing is being upgraded")
    try:
        args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn),
                         SYNC_SEQ=int(time.time() * 1000))
        args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province,
                                            NET_TYPE_CODE=u.net_type, USER_ID=f"U{u.msisdn}")
        assert client.call("AccountSync", "SyncThreeAccount", args).rsp_code == "0000"
        trans_ido, proc_id = args["UNI_BSS_HEAD"]["TRANS_IDO"], args["UNI_BSS_HEAD"]["PROC_ID"]
        wait_for(lambda: [r["status"] for r in outbox_rows(saf, trans_ido)] == ["dead"])
    finally:
        control(saf.sandbox_url, peer="BILLING-87")
    (row,) = outbox_rows(saf, trans_ido)
    dead = search(saf, capsys, "--status", "dead", "--peer", "BILLING-87", "--limit", "500")
    assert trans_ido in {h["trans_ido"] for h in dead}
    assert bssbus(capsys, "dlq", "replay", str(row["id"]), "--by", "ops", "--db-url", saf.db_url)[0] == 0
    delivered(saf, trans_ido, "BILLING-87")

    flow = trace(saf, capsys, proc_id)
    events = [(e["kind"], e.get("peer"), e.get("status"), e.get("attempt")) for e in flow["events"]]
    assert events == [
        ("inbound", None, None, None), ("route", "BILLING-87", None, None), ("answer", None, "accepted", None),
        ("attempt", "BILLING-87", "fault", 1), ("attempt", "BILLING-87", "fault", 2),
        ("dead letter", "BILLING-87", "dead", None), ("replay", "BILLING-87", "replayed", None),
        ("attempt", "BILLING-87", "ok", 1)]
    assert "billing is being upgraded" in flow["events"][5]["reason"] and flow["events"][6]["by"] == "ops"
    assert [(r["peer"], r["status"], r["attempts"]) for r in flow["outbox"]] == [("BILLING-87", "delivered", 1)]
    assert trace(saf, capsys, trans_ido)["events"] == flow["events"]
    replays = search(saf, capsys, "--proc-id", proc_id, "--direction", "adm")
    assert [h["status"] for h in replays] == ["replayed", "dead"]

    status, out, _ = bssbus(capsys, "journal", "trace", proc_id, "--db-url", saf.db_url)
    assert status == 0
    kinds = [line.split()[3] for line in out.splitlines() if line[:2] == "20"]
    assert kinds == ["inbound", "route", "answer", "attempt", "attempt", "dead", "replay", "attempt"]
    assert "Outbox now:" in out and "-> BILLING-87: delivered after 1 attempt(s)" in out
    assert "attempt 2: fault Server.PeerFault" in out and "dead letter after 2 attempt(s)" in out
