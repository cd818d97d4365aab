"""Unknown outcomes for money: a payment or a top-up whose answer is lost is asked about, never guessed.

Each case makes a sandbox billing slow through ``/control`` (sandbox/app.py): ``delay_after_ms``
posts and then answers too late (the answer is lost), ``delay_ms`` answers too late before
posting (the request is still on its way). The bus waits 1 s for a province Billing and a
slow peer takes 3 s: margins that hold on a busy machine.
"""
from __future__ import annotations

import time

import pytest
import zeep
from sqlalchemy import func, select
from zeep.helpers import serialize_object

from config.settings import load_settings
from sandbox import store
from sandbox.store import seed_cards, seed_users
from services.client import BusClient
from services.models import CONTRACTS
from services.models.common import WSDL_DIR
from tests.conftest import PG_URL
from tests.e2e.conftest import embedded_on, control, make_args, wait_for


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if PG_URL else []))
def slow_billing(request, tmp_path_factory):
    """A bus (its journal on SQLite, and on PostgreSQL when configured) that waits 1 s for a
    province Billing, with a sandbox of its own."""
    work = tmp_path_factory.mktemp(f"outcome-{request.param}")
    override = work / "timeouts.yaml"
    override.write_text("peers:\n  province_billing:\n    timeout: 1.0\n    breaker: {failures: 50}\n",
                        encoding="utf-8")
    settings = load_settings(override, env={})
    with embedded_on(request.param, work, settings) as embedded:
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
    control(slow_billing.sandbox_url, peer="BILLING-71", delay_after_ms=3000, operations=["Pay"])
    try:
        args, result = pay(client, u, f"LOST{int(time.time() * 1000)}")
    finally:
        control(slow_billing.sandbox_url, peer="BILLING-71")
    assert result.fault_code is None and result.rsp_code == "0000", result.fault_string
    assert result.body["AMOUNT"] == 3300 and result.body["BALANCE"] == before + 3300 and result.body["BILL_SERIAL"]
    assert "asked" in result.head["RESPONSE"]["RSP_DESC"]
    time.sleep(3.0)
    assert balance(client, u) == before + 3300, "posted once"
    out = [(op, status, fault) for op, status, fault, _ in out_hops(slow_billing, args)]
    assert out == [("Pay", "fault", "Server.PeerTimeout"), ("QueryPayment", "ok", None)]


def test_not_known_in_time_is_never_called_a_failure(slow_billing):
    client, u = BusClient(slow_billing.url), seed_users("71")[6]
    before = balance(client, u)
    control(slow_billing.sandbox_url, peer="BILLING-71", delay_ms=3000, operations=["Pay"])   # posts after 3 s
    try:
        args, result = pay(client, u, f"SLOW{int(time.time() * 1000)}")
    finally:
        control(slow_billing.sandbox_url, peer="BILLING-71")
    assert result.fault_code == "Server.OutcomeUnknown"
    assert "retry with the same serial" in result.fault_string
    out = [op for op, *_ in out_hops(slow_billing, args)]
    assert out == ["Pay", "QueryPayment", "Pay"], "asked first, then sent once more"
    time.sleep(6.5)   # both slow requests arrive at the billing now
    assert balance(client, u) == before + 3300, "posted once although it was sent twice"
    again = pay(client, u, args["UNI_BSS_BODY"]["BANK_SERIAL"])[1]   # the caller's retry, same serial
    assert again.rsp_code == "0000" and again.body["BALANCE"] == before + 3300


def test_a_bank_serial_the_billing_holds_for_another_payment_is_not_called_posted(slow_billing):
    """The serial was used at the billing for another amount (sent past the bus). This payment
    times out; asked, the billing shows the other one: Client.DuplicateKey, never its success."""
    client, u = BusClient(slow_billing.url), seed_users("71")[7]
    taken = f"PDUP{int(time.time() * 1000)}"
    contract = CONTRACTS["BankPayment"]
    direct = zeep.Client(str(WSDL_DIR / contract.wsdl)).create_service(
        f"{{{contract.namespace}}}BankPaymentSoap11Binding", f"{slow_billing.sandbox_url}/peers/province_billing/71/BankPayment")
    first_args = make_args("BankPayment", "Pay", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
                           AMOUNT=1000, BANK_SERIAL=taken)
    first = serialize_object(direct.Pay(**first_args), dict)
    assert first["UNI_BSS_HEAD"]["RESPONSE"]["RSP_CODE"] == "0000"
    before = balance(client, u)
    control(slow_billing.sandbox_url, peer="BILLING-71", delay_after_ms=3000, operations=["Pay"])
    try:
        args, result = pay(client, u, taken, amount=2000)
    finally:
        control(slow_billing.sandbox_url, peer="BILLING-71")
    assert result.fault_code == "Client.DuplicateKey", result
    assert taken in result.fault_string and "not posted" in result.fault_string
    assert [op for op, *_ in out_hops(slow_billing, args)] == ["Pay", "QueryPayment"]
    time.sleep(3.0)
    assert balance(client, u) == before, "nothing posted for the second payment"


# -- TopUp.TopUp (asked with QueryTopUp) ----------------------------------------------------
# Hunan (74, phase 2): BILLING-74, apart from the payments' BILLING-71 and its circuit breaker.

TOPUP_PROVINCE, TOPUP_BILLING = "74", "BILLING-74"
ACTIVE_CARDS = [c for c in seed_cards(TOPUP_PROVINCE) if c["state"] == "1"]


def top_up_balance(client, u):
    return client.call("TopUp", "QueryBalance", make_args(
        "TopUp", "QueryBalance", caller="TOPUP", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)).body["BALANCE"]


def top_up_args(u, card, serial):
    return make_args("TopUp", "TopUp", caller="TOPUP", route=("01", u.msisdn), TOPUP_SERIAL=serial,
                     CARD_NO=card["card_no"], SERIAL_NUMBER=u.msisdn, TRADE_TIME=time.strftime("%Y%m%d%H%M%S"))


def query_top_up(client, u, serial):
    return client.call("TopUp", "QueryTopUp", make_args("TopUp", "QueryTopUp", caller="TOPUP",
                                                        route=("01", u.msisdn), TOPUP_SERIAL=serial))


def card_use(bus, card):
    """(the card's state, how many top-ups the billing holds with it) in the sandbox's store."""
    with bus.sandbox.engine.connect() as conn:
        state = conn.execute(select(store.cards.c.state).where(store.cards.c.card_no == card["card_no"])).scalar()
        used = conn.execute(select(func.count()).select_from(store.topups).where(
            store.topups.c.card_no == card["card_no"])).scalar()
    return state, used


def arrived(bus, args, operation="TopUp"):
    """How many calls of ``operation`` with ``args``'s TRANS_IDO reached the billing."""
    with bus.sandbox.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.received).where(
            store.received.c.peer == TOPUP_BILLING, store.received.c.operation == operation,
            store.received.c.trans_ido == args["UNI_BSS_HEAD"]["TRANS_IDO"])).scalar()


def top_up_slowly(bus, args, **behaviour):
    control(bus.sandbox_url, peer=TOPUP_BILLING, **behaviour)
    try:
        return BusClient(bus.url).call("TopUp", "TopUp", args)
    finally:
        control(bus.sandbox_url, peer=TOPUP_BILLING)


def serial(tag):
    return f"{tag}{time.time_ns() // 1000}"[:28]


def test_a_top_up_posted_whose_answer_was_lost_is_that_success(slow_billing):
    client, u, card = BusClient(slow_billing.url), seed_users(TOPUP_PROVINCE)[2], ACTIVE_CARDS[0]
    before = top_up_balance(client, u)
    args = top_up_args(u, card, serial("TULOST"))
    result = top_up_slowly(slow_billing, args, delay_after_ms=3000, operations=["TopUp"])
    assert result.fault_code is None and result.rsp_code == "0000", result.fault_string
    assert "asked" in result.head["RESPONSE"]["RSP_DESC"] and result.sender == TOPUP_BILLING
    posted = query_top_up(client, u, args["UNI_BSS_BODY"]["TOPUP_SERIAL"]).body
    assert result.body == {"TOPUP_SERIAL": args["UNI_BSS_BODY"]["TOPUP_SERIAL"], "SERIAL_NUMBER": u.msisdn,
                           "CARD_NO": card["card_no"], "AMOUNT": card["face_value"],
                           "BALANCE": before + card["face_value"], "BILL_SERIAL": posted["BILL_SERIAL"],
                           "ACCT_DATE": posted["ACCT_DATE"]}
    assert result.body["BILL_SERIAL"].startswith("TU")
    assert out_hops(slow_billing, args) == [("TopUp", "fault", "Server.PeerTimeout", "9002"),
                                            ("QueryTopUp", "ok", None, "0000")], "asked, not sent again"
    assert arrived(slow_billing, args, "QueryTopUp") == 0, \
        "the query has a TRANS_IDO of its own: a billing answering repeats from memory must not mix them up"
    assert top_up_balance(client, u) == before + card["face_value"], "credited once"
    assert card_use(slow_billing, card) == ("2", 1), "the card used once"


def test_a_top_up_not_posted_in_time_is_sent_once_more(slow_billing):
    """The first call is slow (it posts after 1.5 s); the bus asks, hears "no such top-up"
    (01031), sends it once more and answers what the billing answers that time."""
    client, u, card = BusClient(slow_billing.url), seed_users(TOPUP_PROVINCE)[3], ACTIVE_CARDS[1]
    before = top_up_balance(client, u)
    args = top_up_args(u, card, serial("TUSLOW"))
    result = top_up_slowly(slow_billing, args, delay_ms=3000, operations=["TopUp"], calls=1)
    assert result.fault_code is None and result.rsp_code == "0000", result.fault_string
    assert result.body["BALANCE"] == before + card["face_value"] and result.body["BILL_SERIAL"]
    assert out_hops(slow_billing, args) == [("TopUp", "fault", "Server.PeerTimeout", "9002"),
                                            ("QueryTopUp", "ok", None, "01031"),
                                            ("TopUp", "ok", None, "0000")], "asked first, then sent once more"
    wait_for(lambda: arrived(slow_billing, args) == 2)   # the slow first call reaches the billing too
    time.sleep(0.2)
    assert top_up_balance(client, u) == before + card["face_value"], "credited once although sent twice"
    assert card_use(slow_billing, card) == ("2", 1)


def test_a_top_up_still_not_answered_is_an_unknown_outcome_and_posted_once(slow_billing):
    client, u, card = BusClient(slow_billing.url), seed_users(TOPUP_PROVINCE)[4], ACTIVE_CARDS[2]
    before = top_up_balance(client, u)
    args = top_up_args(u, card, serial("TUSTILL"))
    result = top_up_slowly(slow_billing, args, delay_ms=3000, operations=["TopUp"])   # every call slow
    assert (result.fault_code, result.rsp_code) == ("Server.OutcomeUnknown", None)
    assert args["UNI_BSS_BODY"]["TOPUP_SERIAL"] in result.fault_string
    assert "retry with the same serial" in result.fault_string
    assert out_hops(slow_billing, args) == [("TopUp", "fault", "Server.PeerTimeout", "9002"),
                                            ("QueryTopUp", "ok", None, "01031"),
                                            ("TopUp", "fault", "Server.PeerTimeout", "9002")]
    wait_for(lambda: arrived(slow_billing, args) == 2)   # both slow calls reach the billing now
    time.sleep(0.2)
    assert top_up_balance(client, u) == before + card["face_value"], "credited once although sent twice"
    assert card_use(slow_billing, card) == ("2", 1)
    posted = query_top_up(client, u, args["UNI_BSS_BODY"]["TOPUP_SERIAL"])
    assert posted.rsp_code == "0000" and posted.body["BALANCE"] == before + card["face_value"]
    # the caller retries as told (same serial, a new TRANS_IDO): it hears the first result
    retry = top_up_args(u, card, args["UNI_BSS_BODY"]["TOPUP_SERIAL"])
    again = client.call("TopUp", "TopUp", retry)
    assert (again.rsp_code, again.body["BILL_SERIAL"]) == ("0000", posted.body["BILL_SERIAL"]), again
    assert top_up_balance(client, u) == before + card["face_value"] and card_use(slow_billing, card) == ("2", 1)


def test_a_top_up_whose_query_fails_too_is_an_unknown_outcome(slow_billing):
    """TopUp and QueryTopUp both time out: the bus cannot know, so it neither answers nor
    sends it again; the top-up, posted late, is posted once."""
    client, u, card = BusClient(slow_billing.url), seed_users(TOPUP_PROVINCE)[5], ACTIVE_CARDS[3]
    before = top_up_balance(client, u)
    args = top_up_args(u, card, serial("TUQF"))
    result = top_up_slowly(slow_billing, args, delay_ms=3000, operations=["TopUp", "QueryTopUp"])
    assert result.fault_code == "Server.OutcomeUnknown", result
    assert "could not learn whether it was posted" in result.fault_string
    assert out_hops(slow_billing, args) == [("TopUp", "fault", "Server.PeerTimeout", "9002"),
                                            ("QueryTopUp", "fault", "Server.PeerTimeout", "9002")]
    wait_for(lambda: arrived(slow_billing, args) == 1 and card_use(slow_billing, card)[1] == 1)
    assert top_up_balance(client, u) == before + card["face_value"]
    assert card_use(slow_billing, card) == ("2", 1)


def test_a_top_up_serial_the_billing_holds_for_another_top_up_is_not_called_posted(slow_billing):
    """The serial was already used at the billing for another number and card (sent there
    past the bus). This top-up times out; asked, the billing shows the other one: the caller
    hears Client.DuplicateKey, not that other top-up's success."""
    client, users = BusClient(slow_billing.url), seed_users(TOPUP_PROVINCE)
    first_user, first_card, u, card = users[6], ACTIVE_CARDS[4], users[7], ACTIVE_CARDS[5]
    taken = serial("TUDUP")
    contract = CONTRACTS["TopUp"]
    direct = zeep.Client(str(WSDL_DIR / contract.wsdl)).create_service(
        f"{{{contract.namespace}}}TopUpSoap11Binding",
        f"{slow_billing.sandbox_url}/peers/province_billing/{TOPUP_PROVINCE}/TopUp")
    first = serialize_object(direct.TopUp(**top_up_args(first_user, first_card, taken)), dict)
    assert first["UNI_BSS_HEAD"]["RESPONSE"]["RSP_CODE"] == "0000"
    before = top_up_balance(client, u)
    args = top_up_args(u, card, taken)
    result = top_up_slowly(slow_billing, args, delay_after_ms=3000, operations=["TopUp"])
    assert result.fault_code == "Client.DuplicateKey", result
    assert taken in result.fault_string and "not posted" in result.fault_string
    assert [op for op, *_ in out_hops(slow_billing, args)] == ["TopUp", "QueryTopUp"]
    assert top_up_balance(client, u) == before
    assert card_use(slow_billing, card) == ("1", 0), "this card is still unused"
