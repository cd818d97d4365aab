"""Unknown outcomes for money: when a payment or a reversal times out, ask before answering.

A billing that did not answer ``Pay`` in time may have posted it or not. The bus never
retries blindly and never guesses: it asks the same billing for the outcome of that bank
serial (``QueryPayment``). Posted: the caller gets the success the billing would have given.
Not posted: the bus sends the payment once more (the billing posts a serial at most once) and
answers what comes back. No answer either way: ``Server.OutcomeUnknown``, which tells the
caller to retry with the same serial, so the caller is never told "success" for money that
was not posted, nor "failure" for money that was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bus.faults import BusFault, PeerTimeout, ServerFault
from bus.message import Message, Reply

NOT_FOUND = "1549"   # QueryPayment: the billing has no transaction with this serial


class OutcomeUnknown(ServerFault):
    code = "Server.OutcomeUnknown"
    rsp_code = "9005"


@dataclass(frozen=True)
class OutcomeCheck:
    """How to ask for the outcome of one money operation and turn the answer into its reply."""

    query: str
    reply_body: Callable[[dict], dict]


def _pay_body(found: dict) -> dict:
    return {k: found[k] for k in ("BANK_SERIAL", "BILL_SERIAL", "SERIAL_NUMBER", "AMOUNT", "BALANCE", "ACCT_DATE")}


def _reverse_body(found: dict) -> dict:
    return {k: found[k] for k in ("BANK_SERIAL", "ORIG_BANK_SERIAL", "SERIAL_NUMBER", "AMOUNT", "BALANCE")}


CHECKS = {
    ("BankPayment", "Pay"): OutcomeCheck("QueryPayment", _pay_body),
    ("BankPayment", "Reverse"): OutcomeCheck("QueryPayment", _reverse_body),
}


def settle(bus, message: Message, decision, timeout: PeerTimeout) -> Reply:
    """The reply to a money ``message`` whose call timed out (see the module docstring)."""
    check = CHECKS[(message.service, message.operation)]
    serial = message.body.get("BANK_SERIAL")
    query = Message(service=message.service, operation=check.query,
                    head=dict(message.head, OPERATE_NAME=check.query),
                    body={"BANK_CODE": message.body["BANK_CODE"], "BANK_SERIAL": serial},
                    msg_id=message.msg_id, hops=message.hops)
    unknown = (f"{decision.peer_name} did not answer {message.operation} of bank serial {serial} in time, "
               "and the bus could not learn whether it was posted; retry with the same serial "
               "(it is never posted twice) or check it at reconciliation.")
    try:
        found = bus.deliver(query, decision)
    except BusFault:
        raise OutcomeUnknown(unknown, message.trans_ido, peer=decision.peer_name) from timeout
    if found.rsp_code == "0000" and found.body:
        head = dict(found.head, OPERATE_NAME=message.operation, TRANS_IDO=message.trans_ido,
                    RESPONSE={"RSP_TYPE": "0", "RSP_CODE": "0000",
                              "RSP_DESC": f"posted (the answer of {decision.peer_name} was lost; the bus asked)"})
        return Reply(head=head, body=check.reply_body(found.body), peer=found.peer)
    if found.rsp_code == NOT_FOUND:
        try:
            return bus.deliver(message, decision)   # not posted: send it once more
        except BusFault:
            raise OutcomeUnknown(unknown, message.trans_ido, peer=decision.peer_name) from timeout
    raise OutcomeUnknown(unknown, message.trans_ido, peer=decision.peer_name) from timeout
