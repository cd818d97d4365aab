"""The whole closed loop of the business over real HTTP, in both phases: order, provisioning,
completion and notice, bill and detail queries, top-up, card activation, three-account sync
to several recipients, the VAC reverse interface and the information queries."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from sandbox import store
from sandbox.store import seed_cards, seed_users
from tests.e2e.conftest import control, make_args, wait_for

PHASE2, PHASE3 = "51", "11"
BILLING = {PHASE2: "BILLING-51", PHASE3: "HQ-BILLING"}


def a_user(province, *, net_type="50", arrears=None):
    return next(u for u in seed_users(province) if u.net_type == net_type and u.user_state == "00"
                and (arrears is None or (u.balance < 0) == arrears))


def targets(bus, args):
    """(direction, source, target) of every hop of the message's business flow (its PROC_ID)."""
    return [(h["direction"], h["source"], h["target"]) for h in bus.bus.journal.hops(args["UNI_BSS_HEAD"]["PROC_ID"])]


@pytest.mark.parametrize("province", [PHASE2, PHASE3])
def test_order_provisioning_completion_and_notice(bus, client, province):
    u = a_user(province)
    order_id = f"ORD{province}{int(time.time() * 1000)}"
    order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id,
                      SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=province)
    result = client.call("OrderSync", "SyncOrder", order)
    assert (result.rsp_code, result.sender, result.body["ORDER_STATE"]) == ("0000", "HQ-CRM", "20")
    hops = targets(bus, order)
    assert ("in", "UCRM", f"CRM-{province}") in hops            # the order to the province CRM
    assert hops.count(("out", "BUS", f"CRM-{province}")) == 2    # the order and its work order

    def completed():
        status = client.call("OrderSync", "QueryOrderStatus", make_args(
            "OrderSync", "QueryOrderStatus", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id))
        return status if status.body and status.body["ORDER_STATE"] == "30" else None

    status = wait_for(completed)
    assert status.body["PROVINCE_ORDER_ID"] == result.body["PROVINCE_ORDER_ID"]
    hops = wait_for(lambda: ("out", "BUS", "ESALES") in targets(bus, order) and targets(bus, order))
    assert ("in", "PCRM", "HQ-CRM") in hops                     # the work order's result came back
    with bus.sandbox.engine.connect() as conn:
        notices = conn.execute(select(store.notifications).where(
            store.notifications.c.order_id == order_id)).mappings().all()
    assert [(n["peer"], n["order_state"]) for n in notices] == [("ESALES", "30")]


@pytest.mark.parametrize("province", [PHASE2, PHASE3])
def test_bill_and_detail_queries_reach_the_billing_that_owns_the_user(bus, client, province):
    u = a_user(province, arrears=True)
    owner = f"CRM-{province}" if province == PHASE2 else "HQ-BILLING"
    bill = make_args("BillQuery", "QueryBill", caller="ESALE", route=("01", u.msisdn),
                     SERIAL_NUMBER=u.msisdn, BILL_CYCLE="202610")
    result = client.call("BillQuery", "QueryBill", bill)
    assert (result.rsp_code, result.sender) == ("0000", "HQ-CRM")
    assert result.body["TOTAL_FEE"] == -u.balance == result.body["UNPAID_FEE"]
    assert sum(i["FEE"] for i in result.body["BILL_ITEMS"]["BILL_ITEM"]) == -u.balance
    assert targets(bus, bill) == [("in", "ESALE", "HQ-CRM"), ("out", "BUS", "HQ-CRM"),
                                  ("in", "UCRM", owner), ("out", "BUS", owner)]
    details = client.call("BillQuery", "QueryCallDetails", make_args(
        "BillQuery", "QueryCallDetails", caller="ESALE", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
        BILL_CYCLE="202610", DETAIL_TYPE="1", PAGE_NO=2, PAGE_SIZE=5))
    assert details.body["TOTAL_COUNT"] == 12 and len(details.body["CALL_DETAILS"]["CALL_DETAIL"]) == 5
    balance = client.call("BillQuery", "QueryBalance", make_args(
        "BillQuery", "QueryBalance", caller="ESALE", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn))
    assert balance.body["ARREARS_FEE"] == -u.balance


@pytest.mark.parametrize("province", [PHASE2, PHASE3])
def test_top_up_and_the_card_states_result_codes(bus, client, province):
    cards = seed_cards(province)
    u = a_user(province, arrears=False)
    route = ("01", u.msisdn)

    def top_up(card_no, serial):
        return client.call("TopUp", "TopUp", make_args(
            "TopUp", "TopUp", caller="TOPUP", route=route, TOPUP_SERIAL=serial, CARD_NO=card_no,
            SERIAL_NUMBER=u.msisdn))

    def balance():
        return client.call("TopUp", "QueryBalance", make_args(
            "TopUp", "QueryBalance", caller="TOPUP", route=route, SERIAL_NUMBER=u.msisdn)).body["BALANCE"]

    active = [c for c in cards if c["state"] == "1"][-1]
    before = balance()
    serial = f"TU{province}{int(time.time() * 1000)}"
    done = top_up(active["card_no"], serial)
    assert (done.rsp_code, done.sender, done.body["AMOUNT"]) == ("0000", BILLING[province], active["face_value"])
    assert balance() == before + active["face_value"]
    again = top_up(active["card_no"], serial)                            # the same top-up again:
    assert (again.rsp_code, again.body["BILL_SERIAL"]) == ("0000", done.body["BILL_SERIAL"])   # the first answer
    other = top_up(next(c for c in cards if c["state"] == "0")["card_no"], serial)
    assert other.fault_code == "Client.DuplicateKey" and serial in other.fault_string   # serial reused
    assert top_up(active["card_no"], serial + "B").rsp_code == "21003"    # the card is used now
    assert top_up(next(c for c in cards if c["state"] == "0")["card_no"], serial + "C").rsp_code == "21001"
    assert top_up(next(c for c in cards if c["state"] == "3")["card_no"], serial + "D").rsp_code == "21004"
    assert top_up("900000000000000", serial + "E").rsp_code == "21002"
    assert balance() == before + active["face_value"]
    query = client.call("TopUp", "QueryTopUp", make_args("TopUp", "QueryTopUp", caller="TOPUP", route=route,
                                                         TOPUP_SERIAL=serial))
    assert (query.body["CARD_NO"], query.body["AMOUNT"]) == (active["card_no"], active["face_value"])


@pytest.mark.parametrize("province, target", [(PHASE2, "CRM-51"), (PHASE3, "TOPUP")])
def test_card_activation_follows_the_cards_province(client, province, target):
    card = [c for c in seed_cards(province) if c["state"] == "0"][-1]["card_no"]
    result = client.call("CardActivation", "ActivateCards", make_args(
        "CardActivation", "ActivateCards", caller="UCRM", route=("00", province), PROVINCE_CODE=province,
        CARDS={"CARD_NO": [card]}))
    assert result.sender == target
    assert result.body["RESULTS"]["CARD_RESULT"][0]["RESULT"] == "0"


def sync_args(province, u, caller, seq):
    args = make_args("AccountSync", "SyncThreeAccount", caller=caller, route=("01", u.msisdn), SYNC_SEQ=seq)
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=province, NET_TYPE_CODE=u.net_type,
                                        USER_ID=f"U{u.msisdn}")
    return args


@pytest.mark.parametrize("province, net_type, expected", [
    (PHASE2, "50", ["BILLING-51", "HQ-CRM"]),
    (PHASE2, "10", ["BILLING-51"]),
    (PHASE3, "50", ["HQ-BILLING", "HQ-CRM"]),
])
def test_three_account_sync_from_a_province_goes_to_each_recipient(bus, client, province, net_type, expected):
    u = a_user(province, net_type=net_type)
    args = sync_args(province, u, "PCRM", int(time.time() * 1000))
    result = client.call("AccountSync", "SyncThreeAccount", args)
    assert result.rsp_code == "0000", result.head
    recipients = (result.body.get("RECIPIENTS") or {}).get("RECIPIENT") or []
    assert [r["PEER"] for r in recipients] == (expected if len(expected) > 1 else [])
    assert all(r["RSP_CODE"] == "0000" for r in recipients)
    assert [t for d, _, t in targets(bus, args) if d == "out"] == expected


def test_three_account_sync_from_hq_crm_reaches_the_province_too(bus, client):
    u = a_user(PHASE3)
    args = sync_args(PHASE3, u, "UCRM", int(time.time() * 1000))
    result = client.call("AccountSync", "SyncThreeAccount", args)
    assert [r["PEER"] for r in result.body["RECIPIENTS"]["RECIPIENT"]] == ["HQ-BILLING", "CRM-11"]


def test_a_recipient_that_fails_is_reported_and_journalled(sqlite_bus):
    from services.client import BusClient
    client = BusClient(sqlite_bus.url)
    u = a_user("74")
    control(sqlite_bus.sandbox_url, peer="HQ-CRM", fault="HQ CRM is in maintenance")
    try:
        args = sync_args("74", u, "PCRM", int(time.time() * 1000))
        result = client.call("AccountSync", "SyncThreeAccount", args)
    finally:
        control(sqlite_bus.sandbox_url, peer="HQ-CRM")
    assert result.fault_code is None
    assert result.rsp_code == "9100" and "HQ-CRM" in result.head["RESPONSE"]["RSP_DESC"]
    outcomes = {r["PEER"]: r["RSP_CODE"] for r in result.body["RECIPIENTS"]["RECIPIENT"]}
    assert outcomes == {"BILLING-74": "0000", "HQ-CRM": "9003"}
    hops = sqlite_bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert [(h["target"], h["status"]) for h in hops if h["direction"] == "out"] == [
        ("BILLING-74", "ok"), ("HQ-CRM", "fault")]


@pytest.mark.parametrize("net_type, code, synced", [("50", "0000", "1"), ("10", "2101", "0")])
def test_vac_change_syncs_3g_users_to_hq_and_says_so_for_others(bus, client, net_type, code, synced):
    u = a_user(PHASE2, net_type=net_type)
    args = make_args("ReverseSync", "SyncVacChange", caller="VAC", route=("00", PHASE2), SERIAL_NUMBER=u.msisdn,
                     PROVINCE_CODE=PHASE2)
    result = client.call("ReverseSync", "SyncVacChange", args)
    assert result.fault_code is None
    assert (result.rsp_code, result.sender, result.body["SYNCED"]) == (code, "CRM-51", synced)
    hops = targets(bus, args)
    assert (("in", "PCRM", "BILLING-51") in hops) == (synced == "1")
    assert (("out", "BUS", "HQ-CRM") in hops) == (synced == "1")


def test_information_queries_come_from_hq_crm(client):
    for operation, body, key in [("QueryProducts", {"PROVINCE_CODE": PHASE2}, ("PRODUCTS", "PRODUCT")),
                                 ("QueryNumbers", {"PROVINCE_CODE": PHASE2, "MAX_COUNT": 5},
                                  ("NUMBERS", "NUMBER_INFO")),
                                 ("QueryChannels", {"PROVINCE_CODE": PHASE2}, ("CHANNELS", "CHANNEL"))]:
        args = make_args("InfoQuery", operation, caller="ESALE", route=("00", PHASE2), **body)
        for drop in [k for k in args["UNI_BSS_BODY"] if k not in body]:
            del args["UNI_BSS_BODY"][drop]
        result = client.call("InfoQuery", operation, args)
        assert (result.rsp_code, result.sender) == ("0000", "HQ-CRM"), operation
        assert result.body[key[0]][key[1]], operation
    numbers = client.call("InfoQuery", "QueryNumbers", make_args(
        "InfoQuery", "QueryNumbers", caller="ESALE", route=("00", PHASE2), PROVINCE_CODE=PHASE2, MAX_COUNT=5))
    from bus.segments import SegmentTable
    from config.settings import load_settings
    table = SegmentTable.from_files(load_settings(env={}).segments_file)
    assert all(table.lookup(n["SERIAL_NUMBER"]).province_code == PHASE2
               for n in numbers.body["NUMBERS"]["NUMBER_INFO"])
