"""bus.outcome.settle against a billing that answers from a script (the e2e tests use the
sandbox; these cover answers the sandbox never gives)."""
from __future__ import annotations

import pytest

from bus import outcome
from bus.faults import PeerTimeout
from bus.idempotency import DuplicateKey
from bus.message import Message, Reply


class ScriptedBilling:
    """Stands in for the Bus's ``deliver``: answers each call with the next scripted reply."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def deliver(self, message, decision):
        self.calls.append((message.operation, message.head["TRANS_IDO"], dict(message.body)))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        code, body = answer
        return Reply(head={"RESPONSE": {"RSP_CODE": code}}, body=body, peer="BILLING-74")


class Decision:
    peer_name = "BILLING-74"


TOP_UP = {"TOPUP_SERIAL": "TU1", "SERIAL_NUMBER": "13100000001", "CARD_NO": "740000000000001",
          "TRADE_TIME": "20261127100000"}
POSTED = dict(TOP_UP, AMOUNT=5000, BALANCE=7000, BILL_SERIAL="TU000000000007", ACCT_DATE="20261127",
              TOPUP_STATE="0")


def settle(billing, operation="TopUp", service="TopUp", body=TOP_UP):
    message = Message(service=service, operation=operation, head={"TRANS_IDO": "T1", "OPERATE_NAME": operation},
                      body=dict(body))
    return outcome.settle(billing, message, Decision(), PeerTimeout("slow", "T1", peer="BILLING-74"))


def test_a_resend_refused_as_posted_already_is_asked_about_again():
    """Not found, then the resend hears "serial exists" (01030): the first send was posted in
    between. The bus asks once more and answers that posting, never the refusal."""
    billing = ScriptedBilling(("01031", None), ("01030", None), ("0000", POSTED))
    reply = settle(billing)
    assert reply.rsp_code == "0000" and reply.body["BILL_SERIAL"] == "TU000000000007"
    assert [op for op, *_ in billing.calls] == ["QueryTopUp", "TopUp", "QueryTopUp"]


def test_every_query_has_a_trans_ido_of_its_own_and_the_resend_keeps_the_callers():
    billing = ScriptedBilling(("01031", None), ("01030", None), ("0000", POSTED))
    settle(billing)
    (_, q1, _), (_, resend, _), (_, q2, _) = billing.calls
    assert resend == "T1"
    assert len({q1, q2, "T1"}) == 3 and all(0 < len(t) <= 28 for t in (q1, q2))


def test_a_record_of_another_payment_is_a_duplicate_key_not_a_success():
    pay = {"BANK_CODE": "ICBC", "BANK_SERIAL": "B1", "SERIAL_NUMBER": "13100000001", "AMOUNT": 2000}
    other = {"BANK_SERIAL": "B1", "TXN_TYPE": "0", "SERIAL_NUMBER": "13100000001", "AMOUNT": 1000,
             "BALANCE": 1, "BILL_SERIAL": "X", "ACCT_DATE": "20261127", "TXN_STATE": "0"}
    with pytest.raises(DuplicateKey):
        settle(ScriptedBilling(("0000", other)), "Pay", "BankPayment", pay)
    reversal = dict(other, AMOUNT=2000, TXN_TYPE="1", ORIG_BANK_SERIAL="B0")
    with pytest.raises(DuplicateKey):   # the serial is a reversal's, not this payment's
        settle(ScriptedBilling(("0000", reversal)), "Pay", "BankPayment", pay)
    reply = settle(ScriptedBilling(("0000", dict(other, AMOUNT=2000))), "Pay", "BankPayment", pay)
    assert reply.rsp_code == "0000" and reply.body["AMOUNT"] == 2000


def test_a_second_refusal_after_asking_again_is_an_unknown_outcome():
    billing = ScriptedBilling(("01031", None), ("01030", None), ("01031", None))
    with pytest.raises(outcome.OutcomeUnknown):
        settle(billing)
