"""End to end over real HTTP: each service routed to the right sandbox peer in each phase,
every hop journalled, and peer failures turned into Server faults naming the peer."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import select

from bus.embedded import EmbeddedBus
from config.settings import ConfigError, load_settings
from sandbox import store
from sandbox.store import seed_cards, seed_users
from services.client import BusClient
from tests.e2e.conftest import assert_accepted, control, delivered, make_args, peer_answer, wait_for

PHASE2, PHASE3 = "51", "11"


def user(province, with_arrears=True):
    return next(u for u in seed_users(province) if (u.balance < 0) == with_arrears and u.user_state == "00")


LEGACY = "34"   # Jiangsu: its Billing speaks the legacy contract (wsdl/peers/LegacyBilling)


@pytest.mark.parametrize("province, expected", [(PHASE2, "BILLING-51"), (PHASE3, "HQ-BILLING"),
                                                (LEGACY, "BILLING-34")])
def test_bank_query_goes_to_the_billing_of_the_numbers_phase(bus, client, province, expected):
    u = user(province)
    args = make_args("BankPayment", "QueryArrears", caller="BANK", route=("01", u.msisdn),
                     SERIAL_NUMBER=u.msisdn, BANK_CODE="ICBC")
    result = client.call("BankPayment", "QueryArrears", args)
    assert result.fault_code is None, result.fault_string
    assert result.rsp_code == "0000"
    assert result.sender == expected
    assert result.head["TRANS_IDO"] == args["UNI_BSS_HEAD"]["TRANS_IDO"]
    assert result.body["ARREARS_FEE"] == -u.balance
    assert result.body["CUST_NAME"].endswith(u.cust_name[-1]) and result.body["CUST_NAME"].startswith("*")
    hops = bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert [(h["direction"], h["status"]) for h in hops] == [("in", "ok"), ("out", "ok")]
    inbound, outbound = hops
    assert inbound["source"] == "BANK" and inbound["target"] == expected
    assert inbound["msisdn"] == u.msisdn and inbound["province"] == province
    assert outbound["target"] == expected and outbound["rsp_code"] == "0000"
    assert u.msisdn.encode() in inbound["request"] and b"QueryArrearsResponse" in inbound["response"]
    if province == LEGACY:   # the peer's own contract: GBK, its own elements, no UNI_BSS_HEAD
        assert outbound["response"].startswith(b"<?xml version='1.0' encoding='GBK'?>")
        assert b"QryOweFeeResponse" in outbound["response"]
    else:
        assert expected.encode() in outbound["response"]


def test_routing_by_province_code(bus, client):
    """A province CRM's three-account change for province 51 (by code, not by number) is accepted,
    then delivered to BILLING-51 and, the user being 3G, to HQ CRM; an older change sent after it
    is delivered after it, and not applied over the newer data."""
    user_id = "U" + uuid.uuid4().hex[:15]

    def sync(seq):
        args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("00", PHASE2), SYNC_SEQ=seq)
        args["UNI_BSS_BODY"]["USER"]["USER_ID"] = args["UNI_BSS_BODY"]["PAY_RELATION"]["USER_ID"] = user_id
        return args["UNI_BSS_HEAD"]["TRANS_IDO"], client.call("AccountSync", "SyncThreeAccount", args)

    newer, result = sync(7)
    assert_accepted(result, "BILLING-51", "HQ-CRM")
    older, again = sync(6)
    assert_accepted(again, "BILLING-51", "HQ-CRM")
    first, later = (delivered(bus, t, "BILLING-51", "HQ-CRM") for t in (newer, older))
    for peer in ("BILLING-51", "HQ-CRM"):
        applied = peer_answer(first[peer])
        assert (applied["UNI_BSS_HEAD"]["MSG_SENDER"], applied["UNI_BSS_BODY"]["APPLIED"]) == (peer, "0")
        ignored = peer_answer(later[peer])
        assert (ignored["UNI_BSS_HEAD"]["RESPONSE"]["RSP_CODE"], ignored["UNI_BSS_BODY"]["APPLIED"]) == ("0000", "1"), \
            "an older sequence number must not be applied over newer data"
        assert first[peer]["started_at"] < later[peer]["started_at"], "one user's changes in the order accepted"
    with bus.sandbox.engine.connect() as conn:
        t = store.three_accounts.c
        stored = dict(conn.execute(select(t.peer, t.sync_seq).where(t.user_id == user_id)).all())
    assert stored == {"BILLING-51": 7, "HQ-CRM": 7}


@pytest.mark.parametrize("province, billing", [(PHASE2, "BILLING-51"), (PHASE3, "HQ-BILLING"),
                                               (LEGACY, "BILLING-34")])
def test_payment_changes_the_balance_and_reversal_restores_it(client, province, billing):
    u = seed_users(province)[2]
    route = ("01", u.msisdn)

    def balance():
        r = client.call("BankPayment", "QueryBalance",
                        make_args("BankPayment", "QueryBalance", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn))
        assert r.sender == billing
        return r.body["BALANCE"]

    before = balance()
    serial = "S" + make_args("BankPayment", "Pay")["UNI_BSS_HEAD"]["TRANS_IDO"][:20]
    pay = make_args("BankPayment", "Pay", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn, AMOUNT=12345,
                    BANK_SERIAL=serial)
    paid = client.call("BankPayment", "Pay", pay)
    assert (paid.rsp_code, paid.body["BALANCE"]) == ("0000", before + 12345)
    assert balance() == before + 12345
    # the same bank serial again: the first result, no second charge
    repeat = client.call("BankPayment", "Pay", make_args("BankPayment", "Pay", caller="BANK", route=route,
                                                         SERIAL_NUMBER=u.msisdn, AMOUNT=12345, BANK_SERIAL=serial))
    assert repeat.body["BILL_SERIAL"] == paid.body["BILL_SERIAL"]
    assert balance() == before + 12345
    rev = make_args("BankPayment", "Reverse", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn, AMOUNT=12345,
                    BANK_SERIAL=serial + "R", ORIG_BANK_SERIAL=serial)
    reversed_ = client.call("BankPayment", "Reverse", rev)
    assert reversed_.rsp_code == "0000" and reversed_.body["BALANCE"] == before
    twice = client.call("BankPayment", "Reverse", make_args(
        "BankPayment", "Reverse", caller="BANK", route=route, SERIAL_NUMBER=u.msisdn, AMOUNT=12345,
        BANK_SERIAL=serial + "X", ORIG_BANK_SERIAL=serial))
    assert twice.rsp_code == "1546"
    assert balance() == before


def test_order_travels_esales_hq_crm_province_crm(bus, client):
    """HQ CRM answers e-sales (sent to province, 10); its order and work order to CRM-51 are
    accepted by the bus and delivered in that order; HQ CRM learns the province's order id."""
    u = user(PHASE2)
    order_id = "ORD" + u.msisdn + uuid.uuid4().hex[:6]
    order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", u.msisdn),
                      ORDER_ID=order_id, SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=PHASE2)
    result = client.call("OrderSync", "SyncOrder", order)
    assert (result.rsp_code, result.sender, result.body["ORDER_STATE"]) == ("0000", "HQ-CRM", "10")
    assert not result.body.get("PROVINCE_ORDER_ID"), "the province has not answered HQ CRM yet"
    assert "Accepted: the bus delivers it to CRM-51" in result.head["RESPONSE"]["RSP_DESC"]
    hops = bus.bus.journal.hops(order["UNI_BSS_HEAD"]["PROC_ID"])
    assert [(h["direction"], h["source"], h["target"]) for h in hops][:2] == [
        ("in", "ESALE", "HQ-CRM"), ("out", "BUS", "HQ-CRM")]
    sent = {h["operation"]: h for h in hops if (h["direction"], h["source"]) == ("in", "UCRM")}
    assert {op: (h["target"], h["status"]) for op, h in sent.items()} == {
        "SyncOrder": ("CRM-51", "accepted"), "SubmitWorkOrder": ("CRM-51", "accepted")}
    to_province = {op: delivered(bus, h["trans_ido"], "CRM-51")["CRM-51"] for op, h in sent.items()}
    assert to_province["SyncOrder"]["started_at"] < to_province["SubmitWorkOrder"]["started_at"], \
        "the order reaches the province before its work order"
    province_order_id = peer_answer(to_province["SyncOrder"])["UNI_BSS_BODY"]["PROVINCE_ORDER_ID"]
    assert province_order_id.startswith(PHASE2)
    assert peer_answer(to_province["SubmitWorkOrder"])["UNI_BSS_BODY"]["WORK_STATE"] == "1"

    def known_at_hq():
        status = client.call("OrderSync", "QueryOrderStatus", make_args(
            "OrderSync", "QueryOrderStatus", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id))
        return status.body if (status.body or {}).get("PROVINCE_ORDER_ID") else None

    status = wait_for(known_at_hq)   # once the province reported the work order, HQ CRM asked it
    assert (status["ORDER_STATE"], status["PROVINCE_ORDER_ID"]) == ("30", province_order_id)


def test_card_activation_and_status(bus, client):
    """ActivateCards is accepted, then delivered to the card system, which answers per card; the
    card's state (QueryCardStatus, answered by the card system) shows the activation."""
    card = next(c for c in seed_cards(PHASE3) if c["state"] == "0")["card_no"]
    args = make_args("CardActivation", "ActivateCards", caller="UCRM", route=("00", PHASE3),
                     PROVINCE_CODE=PHASE3, CARDS={"CARD_NO": [card, "900000000000000"]})
    result = client.call("CardActivation", "ActivateCards", args)
    assert_accepted(result, "TOPUP")
    hop = delivered(bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], "TOPUP")["TOPUP"]
    answer = peer_answer(hop)
    assert (answer["UNI_BSS_HEAD"]["MSG_SENDER"], hop["rsp_code"]) == ("TOPUP", "0000")
    assert [(r["CARD_NO"], r["RESULT"]) for r in answer["UNI_BSS_BODY"]["RESULTS"]["CARD_RESULT"]] == [
        (card, "0"), ("900000000000000", "2")]
    status = client.call("CardActivation", "QueryCardStatus", make_args(
        "CardActivation", "QueryCardStatus", caller="UCRM", route=("00", PHASE3), CARD_NO=card))
    assert (status.sender, status.body["CARD_STATE"]) == ("TOPUP", "1")


def test_cut_over_in_config_moves_billing_traffic_to_hq(tmp_path):
    """Province 51 moved to phase 3 in a --config file: its billing traffic goes to HQ Billing."""
    override = tmp_path / "cutover.yaml"
    override.write_text('provinces:\n  "51": 3\n', encoding="utf-8")
    u = user(PHASE2)
    with EmbeddedBus(load_settings(override, env={}), workdir=tmp_path) as embedded:
        args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn),
                         SERIAL_NUMBER=u.msisdn)
        result = BusClient(embedded.url).call("BankPayment", "QueryBalance", args)
        assert result.sender == "HQ-BILLING"
        hops = embedded.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
        assert {h["target"] for h in hops} == {"HQ-BILLING"}
        assert "phase 3" in hops[0]["route"]


def test_cut_over_at_run_time_while_traffic_flows(tmp_path):
    """Province 51 moves to phase 3 while four callers keep querying its users: no call fails,
    calls before the change go to BILLING-51, calls made after every process re-read the table
    go to HQ-BILLING, and the change is recorded with who made it."""
    override = tmp_path / "fast-refresh.yaml"
    override.write_text("bus:\n  phase_refresh_seconds: 0.2\n", encoding="utf-8")
    u = user(PHASE2)
    with EmbeddedBus(load_settings(override, env={}), workdir=tmp_path) as embedded:
        client = BusClient(embedded.url)
        results, stop, changed = [], threading.Event(), {}

        def caller():
            while not stop.is_set():
                started = time.monotonic()
                r = client.call("BankPayment", "QueryBalance", make_args(
                    "BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn))
                results.append((started, time.monotonic(), r))

        threads = [threading.Thread(target=caller) for _ in range(4)]
        for t in threads:
            t.start()
        while len(results) < 20:
            time.sleep(0.01)
        changed["set"] = time.monotonic()
        embedded.bus.phase_store.set(PHASE2, 3, changed_by="ops-test", reason="cut-over drill")
        changed["at"] = time.monotonic()
        # enough calls started after every process re-read the table (0.2 s), however busy the machine
        deadline = time.monotonic() + 30
        while (len([1 for start, _, _ in list(results) if start > changed["at"] + 0.3]) < 4
               and time.monotonic() < deadline):
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
    assert all(r.fault_code is None and r.rsp_code == "0000" for _, _, r in results), \
        [r.fault_string for _, _, r in results if r.fault_code]
    # answered before the change was made: routed by the old phase; started after every
    # process re-read the table (0.2 s): routed by the new one
    before = {r.sender for _, done, r in results if done < changed["set"]}
    after = {r.sender for start, _, r in results if start > changed["at"] + 0.3}
    assert before == {"BILLING-51"} and after == {"HQ-BILLING"}
    assert len([1 for start, _, _ in results if start > changed["at"] + 0.3]) >= 4
    history = embedded.bus.phase_store.history("51")
    assert (history[0]["old_phase"], history[0]["new_phase"], history[0]["changed_by"]) == (2, 3, "ops-test")


@pytest.mark.parametrize("route, code, words", [
    (("01", "19999999999"), "Client.UnknownNumber", "19999999999"),
    (("00", "42"), "Client.UnknownProvince", "'42'"),
    (("02", "51"), "Client.UnknownRoute", "ROUTE_TYPE"),
])
def test_unroutable_messages_are_client_faults_saying_what_was_not_found(bus, client, route, code, words):
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=route)
    if route[0] == "02":  # the contract itself refuses a ROUTE_TYPE outside 00/01
        code, words = "Client.ValidationError", "ROUTE_TYPE"
    result = client.call("BankPayment", "QueryBalance", args)
    assert result.fault_code == code and words in result.fault_string
    hops = bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert hops and hops[0]["status"] == "fault" and hops[0]["fault_code"] == code


def test_no_route_for_the_caller(client):
    args = make_args("OrderSync", "SyncOrder", caller="BANK", route=("00", PHASE2))
    result = client.call("OrderSync", "SyncOrder", args)
    assert result.fault_code == "Client.UnknownRoute"
    assert "ESALE" in result.fault_string and "UCRM" in result.fault_string


def test_a_peer_fault_becomes_a_server_fault_naming_the_peer(sqlite_bus):
    client = BusClient(sqlite_bus.url)
    u = user("74")
    control(sqlite_bus.sandbox_url, peer="BILLING-74", fault="billing database is down")
    try:
        args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
        result = client.call("BankPayment", "QueryBalance", args)
    finally:
        control(sqlite_bus.sandbox_url, peer="BILLING-74")
    assert result.fault_code == "Server.PeerFault"
    assert "BILLING-74" in result.fault_string and "billing database is down" in result.fault_string
    out = sqlite_bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])[-1]
    assert (out["direction"], out["status"], out["target"]) == ("out", "fault", "BILLING-74")
    assert u.msisdn.encode() in out["request"], "the journal keeps what the bus sent"
    assert b"billing database is down" in out["response"], "and what the peer answered"


def test_a_slow_peer_times_out_and_an_absent_one_is_unavailable(tmp_path):
    override = tmp_path / "peers.yaml"
    override.write_text("peers:\n  province_billing:\n    timeout: 0.5\n"
                        "  hq_billing:\n    url: http://127.0.0.1:9/peers/hq_billing\n"
                        "security:\n  authentication: 'off'\n", encoding="utf-8")   # a real peer's address
    with EmbeddedBus(load_settings(override, env={}), workdir=tmp_path) as embedded:
        client = BusClient(embedded.url)
        u = user("76")
        control(embedded.sandbox_url, peer="BILLING-76", delay_ms=3000)
        slow = client.call("BankPayment", "QueryBalance", make_args(
            "BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn))
        assert slow.fault_code == "Server.PeerTimeout" and "BILLING-76" in slow.fault_string
        assert slow.elapsed_ms < 2500, "the bus must answer at its timeout, not wait for the peer"
        u3 = user(PHASE3)
        down = client.call("BankPayment", "QueryBalance", make_args(
            "BankPayment", "QueryBalance", caller="BANK", route=("01", u3.msisdn), SERIAL_NUMBER=u3.msisdn))
        assert down.fault_code == "Server.PeerUnavailable" and "HQ-BILLING" in down.fault_string


def test_a_slow_province_holds_at_most_its_share_of_calls_and_the_others_are_served(tmp_path):
    """peers.<key>.max_in_flight: a province answering slowly gets no more than its limit of
    calls at once; the next is Server.Busy at once, naming it, and other provinces are served."""
    override = tmp_path / "peers.yaml"
    override.write_text("peers:\n  province_billing:\n    max_in_flight: 2\n", encoding="utf-8")
    with EmbeddedBus(load_settings(override, env={}), workdir=tmp_path) as embedded:
        client = BusClient(embedded.url)
        slow_user, other = user("51"), user("71")
        control(embedded.sandbox_url, peer="BILLING-51", delay_ms=1500)

        def query(u):
            return client.call("BankPayment", "QueryBalance", make_args(
                "BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn))
        results = []
        callers = [threading.Thread(target=lambda: results.append(query(slow_user))) for _ in range(2)]
        for t in callers:
            t.start()
        wait_for(lambda: embedded.bus.adapters.in_flight["BILLING-51"] == 2)
        third = query(slow_user)
        assert third.fault_code == "Server.Busy"
        assert "BILLING-51" in third.fault_string and "peers.province_billing.max_in_flight" in third.fault_string
        assert third.elapsed_ms < 1000, "over its limit, the bus answers at once"
        elsewhere = query(other)
        assert elsewhere.rsp_code == "0000" and elsewhere.sender == "BILLING-71"
        for t in callers:
            t.join(10)
        assert [r.rsp_code for r in results] == ["0000", "0000"]
        assert embedded.bus.adapters.in_flight["BILLING-51"] == 0
        control(embedded.sandbox_url, peer="BILLING-51", delay_ms=0)
        assert query(slow_user).rsp_code == "0000"


def test_a_peer_limit_that_is_not_a_positive_whole_number_is_refused(tmp_path):
    override = tmp_path / "peers.yaml"
    override.write_text("peers:\n  province_billing:\n    max_in_flight: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="peers.province_billing.max_in_flight: 0 is not a whole number"):
        load_settings(override, env={"BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"}).peers
