"""The whole closed loop of the business over real HTTP, in both phases: order, provisioning,
completion and notice, bill and detail queries, top-up, card activation, three-account sync
to several recipients, the VAC reverse interface and the information queries.

The one-way flows (an order and its work order to the province, card activation, three-account
and VAC syncs, the work order's result and the notice to e-sales) are stored and forwarded: the
caller gets the bus's 'accepted' answer, and each test then checks what the Forwarder delivered:
the outbox rows, the peers' answers in the journal and the sandbox peers' state."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from sandbox import store
from sandbox.store import seed_cards, seed_users
from tests.e2e.conftest import assert_accepted, delivered, make_args, peer_answer, wait_for

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
    crm = f"CRM-{province}"
    order_id = f"ORD{province}{int(time.time() * 1000)}"
    order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id,
                      SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=province)
    result = client.call("OrderSync", "SyncOrder", order)
    # HQ CRM answers; the bus accepted its order and work order for the province (no answer yet)
    assert (result.rsp_code, result.sender, result.body["ORDER_STATE"]) == ("0000", "HQ-CRM", "10")
    assert not result.body.get("PROVINCE_ORDER_ID")
    accepted = [(h["operation"], h["status"]) for h in bus.bus.journal.hops(order["UNI_BSS_HEAD"]["PROC_ID"])
                if (h["direction"], h["source"], h["target"]) == ("in", "UCRM", crm)]
    assert accepted == [("SyncOrder", "accepted"), ("SubmitWorkOrder", "accepted")]

    def completed():
        status = client.call("OrderSync", "QueryOrderStatus", make_args(
            "OrderSync", "QueryOrderStatus", caller="ESALE", route=("01", u.msisdn), ORDER_ID=order_id))
        return status if status.body and status.body["ORDER_STATE"] == "30" else None

    status = wait_for(completed)
    # the province has the order under its own id, which HQ CRM asked it for once the work order was reported
    at_province = client.call("OrderSync", "QueryOrderStatus", make_args(
        "OrderSync", "QueryOrderStatus", caller="UCRM", route=("00", province), ORDER_ID=order_id))
    assert (at_province.sender, at_province.body["ORDER_STATE"]) == (crm, "30")
    assert at_province.body["PROVINCE_ORDER_ID"].startswith(province)
    assert status.body["PROVINCE_ORDER_ID"] == at_province.body["PROVINCE_ORDER_ID"]
    hops = wait_for(lambda: ("out", "BUS", "ESALES") in targets(bus, order) and targets(bus, order))
    assert hops.count(("out", "BUS", crm)) == 3    # the order, its work order, HQ CRM's question
    assert ("in", "PCRM", "HQ-CRM") in hops        # the work order's result came back
    from_hq = [h["trans_ido"] for h in bus.bus.journal.hops(order["UNI_BSS_HEAD"]["PROC_ID"]) if h["source"] == "UCRM"]
    with bus.sandbox.engine.connect() as conn:
        received = conn.execute(select(store.received.c.operation).where(
            store.received.c.peer == crm, store.received.c.operation.in_(["SyncOrder", "SubmitWorkOrder"]),
            store.received.c.trans_ido.in_(from_hq)).order_by(store.received.c.id)).scalars().all()
        work = conn.execute(select(store.work_orders).where(store.work_orders.c.order_id == order_id)).mappings().all()
        notices = conn.execute(select(store.notifications).where(
            store.notifications.c.order_id == order_id)).mappings().all()
    assert received == ["SyncOrder", "SubmitWorkOrder"], "one user's order before its work order"
    assert [(w["peer"], w["state"]) for w in work] == [(crm, "3")]
    assert [(n["peer"], n["order_state"], n["province_order_id"]) for n in notices] == [
        ("ESALES", "30", at_province.body["PROVINCE_ORDER_ID"])]


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
def test_card_activation_follows_the_cards_province(bus, client, province, target):
    card = [c for c in seed_cards(province) if c["state"] == "0"][-1]["card_no"]
    args = make_args("CardActivation", "ActivateCards", caller="UCRM", route=("00", province), PROVINCE_CODE=province,
                     CARDS={"CARD_NO": [card]})
    result = client.call("CardActivation", "ActivateCards", args)
    assert_accepted(result, target)
    hop = delivered(bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], target)[target]
    answer = peer_answer(hop)
    assert answer["UNI_BSS_HEAD"]["MSG_SENDER"] == target
    assert [(r["CARD_NO"], r["RESULT"]) for r in answer["UNI_BSS_BODY"]["RESULTS"]["CARD_RESULT"]] == [(card, "0")]
    status = client.call("CardActivation", "QueryCardStatus", make_args(
        "CardActivation", "QueryCardStatus", caller="UCRM", route=("00", province), CARD_NO=card))
    assert (status.sender, status.body["CARD_STATE"]) == (target, "1")   # the query is answered at once


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
    seq = int(time.time() * 1000)
    args = sync_args(province, u, "PCRM", seq)
    result = client.call("AccountSync", "SyncThreeAccount", args)
    assert_accepted(result, *expected)
    hops = delivered(bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], *expected)
    for peer in expected:
        answer = peer_answer(hops[peer])
        assert (answer["UNI_BSS_HEAD"]["MSG_SENDER"], answer["UNI_BSS_HEAD"]["RESPONSE"]["RSP_CODE"]) == (peer, "0000")
        assert (answer["UNI_BSS_BODY"]["USER_ID"], answer["UNI_BSS_BODY"]["APPLIED"]) == (f"U{u.msisdn}", "0")
    assert [t for d, _, t in targets(bus, args) if d == "out"] == expected   # one user's rows in order
    with bus.sandbox.engine.connect() as conn:
        t = store.three_accounts.c
        stored = dict(conn.execute(select(t.peer, t.sync_seq).where(t.user_id == f"U{u.msisdn}",
                                                                    t.sync_seq == seq)).all())
    assert stored == {peer: seq for peer in expected}


def test_three_account_sync_from_hq_crm_reaches_the_province_too(bus, client):
    u = a_user(PHASE3)
    args = sync_args(PHASE3, u, "UCRM", int(time.time() * 1000))
    result = client.call("AccountSync", "SyncThreeAccount", args)
    assert_accepted(result, "HQ-BILLING", "CRM-11")
    hops = delivered(bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], "HQ-BILLING", "CRM-11")
    assert {peer: (h["rsp_code"], peer_answer(h)["UNI_BSS_BODY"]["APPLIED"]) for peer, h in hops.items()} == {
        "HQ-BILLING": ("0000", "0"), "CRM-11": ("0000", "0")}


@pytest.mark.parametrize("net_type, code, synced", [("50", "0000", "1"), ("10", "2101", "0")])
def test_vac_change_syncs_3g_users_to_hq_and_says_so_for_others(bus, client, net_type, code, synced):
    u = a_user(PHASE2, net_type=net_type)
    args = make_args("ReverseSync", "SyncVacChange", caller="VAC", route=("00", PHASE2), SERIAL_NUMBER=u.msisdn,
                     PROVINCE_CODE=PHASE2)
    result = client.call("ReverseSync", "SyncVacChange", args)
    assert_accepted(result, "CRM-51")
    hop = delivered(bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], "CRM-51")["CRM-51"]
    answer = peer_answer(hop)   # what the province CRM decided, as the bus's journal keeps it
    assert (hop["rsp_code"], answer["UNI_BSS_HEAD"]["MSG_SENDER"]) == (code, "CRM-51")
    assert (answer["UNI_BSS_BODY"]["IS_3G"], answer["UNI_BSS_BODY"]["SYNCED"]) == (synced, synced)
    syncs = [h for h in bus.bus.journal.hops(args["UNI_BSS_HEAD"]["PROC_ID"])
             if (h["direction"], h["source"], h["operation"]) == ("in", "PCRM", "SyncThreeAccount")]
    assert len(syncs) == int(synced)
    if synced == "1":
        # "queued for HQ": the CRM's sync was accepted by the bus, then delivered to both recipients
        assert answer["UNI_BSS_HEAD"]["RESPONSE"]["RSP_DESC"] == \
            "queued for HQ: Accepted: the bus delivers it to BILLING-51, HQ-CRM."
        assert syncs[0]["status"] == "accepted"
        reached = delivered(bus, syncs[0]["trans_ido"], "BILLING-51", "HQ-CRM")
        assert {peer: h["rsp_code"] for peer, h in reached.items()} == {"BILLING-51": "0000", "HQ-CRM": "0000"}
    with bus.sandbox.engine.connect() as conn:
        v = store.vac_changes.c
        vac = conn.execute(select(store.vac_changes).where(
            v.msisdn == u.msisdn, v.vac_seq == args["UNI_BSS_BODY"]["VAC_SEQ"])).mappings().all()
        at_hq = conn.execute(select(store.three_accounts.c.trans_ido).where(
            store.three_accounts.c.peer == "HQ-CRM", store.three_accounts.c.user_id == f"U{u.msisdn}")).scalar()
    assert [(v["peer"], v["is_3g"], v["synced"]) for v in vac] == [("CRM-51", int(synced), int(synced))]
    if synced == "1":
        assert at_hq == syncs[0]["trans_ido"], "HQ CRM holds the user as the CRM's sync left it"


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
