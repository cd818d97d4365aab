"""Unknown outcomes for money: when a payment, a reversal or a top-up times out, ask first.

A billing that did not answer ``Pay`` or ``TopUp`` in time may have posted it or not. The bus
never retries blindly and never guesses: it asks the same billing for the outcome of that
serial (``BankPayment.QueryPayment`` for a payment or a reversal, ``TopUp.QueryTopUp`` for a
top-up). Posted: the caller gets the success the billing would have given. Not posted: the bus
sends the request once more (the billing posts a serial at most once) and answers what comes
back. No answer either way: ``Server.OutcomeUnknown``, which tells the caller to retry with
the same serial, so the caller is never told "success" for money that was not posted, nor
"failure" for money that was.

Each operation's :class:`OutcomeCheck` says how to ask and how to read the answer; ``CHECKS``
lists the operations the bus treats so (``bus.core`` settles a timeout of those only).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable

from bus.faults import BusFault, PeerTimeout, ServerFault
from bus.idempotency import DuplicateKey
from bus.message import Message, Reply


class OutcomeUnknown(ServerFault):
    code = "Server.OutcomeUnknown"
    rsp_code = "9005"


@dataclass(frozen=True)
class OutcomeCheck:
    """How to ask for the outcome of one money operation and turn the answer into its reply.

    ``query`` is the operation (of the same service, at the same billing) that looks the
    transaction up; ``query_body`` builds its body from the original request's body;
    ``not_found`` is the query's RSP_CODE for "no such transaction" (not posted: the bus may
    send it once more); ``reply_body`` turns the record found into the original operation's
    reply body; ``serial`` names the request's serial in what the caller is told. ``same``
    says whether the record found is this request's: a serial the billing holds for another
    transaction means this one was not posted (``Client.DuplicateKey``). ``exists`` lists the
    RSP_CODEs with which the operation refuses a serial it has posted already: when the second
    send meets one (the first send was posted after all, between the query and the resend),
    the bus asks once more instead of passing that refusal on.
    """

    query: str
    query_body: Callable[[dict], dict]
    not_found: str
    reply_body: Callable[[dict], dict]
    serial: Callable[[dict], str]
    same: Callable[[dict, dict], bool]
    exists: frozenset[str] = frozenset()


def _fields(*names: str) -> Callable[[dict], dict]:
    def reply_body(found: dict) -> dict:
        return {k: found.get(k) for k in names}
    return reply_body


def _payment_query(body: dict) -> dict:
    return {"BANK_CODE": body["BANK_CODE"], "BANK_SERIAL": body["BANK_SERIAL"]}


def _bank_serial(body: dict) -> str:
    return f"bank serial {body.get('BANK_SERIAL')}"


def _same(**fixed: str) -> Callable[[dict, dict], bool]:
    """The record found is the request's when it has the request's values of the fields named
    in ``fixed`` (a field name -> "" for the request's own value, else the record's required value)."""
    def same(request: dict, found: dict) -> bool:
        return all(str(found.get(k)) == str(v or request.get(k)) for k, v in fixed.items())
    return same


PAYMENT_NOT_FOUND = "1549"   # QueryPayment: the billing has no transaction with this bank serial
TOP_UP_NOT_FOUND = "01031"   # QueryTopUp: the billing has no top-up with this serial

CHECKS = {
    ("BankPayment", "Pay"): OutcomeCheck(
        "QueryPayment", _payment_query, PAYMENT_NOT_FOUND,
        _fields("BANK_SERIAL", "BILL_SERIAL", "SERIAL_NUMBER", "AMOUNT", "BALANCE", "ACCT_DATE"), _bank_serial,
        _same(TXN_TYPE="0", SERIAL_NUMBER="", AMOUNT="")),
    ("BankPayment", "Reverse"): OutcomeCheck(
        "QueryPayment", _payment_query, PAYMENT_NOT_FOUND,
        _fields("BANK_SERIAL", "ORIG_BANK_SERIAL", "SERIAL_NUMBER", "AMOUNT", "BALANCE"), _bank_serial,
        _same(TXN_TYPE="1", ORIG_BANK_SERIAL="", SERIAL_NUMBER="", AMOUNT="")),
    ("TopUp", "TopUp"): OutcomeCheck(
        "QueryTopUp", lambda body: {"TOPUP_SERIAL": body["TOPUP_SERIAL"]}, TOP_UP_NOT_FOUND,
        _fields("TOPUP_SERIAL", "SERIAL_NUMBER", "CARD_NO", "AMOUNT", "BALANCE", "BILL_SERIAL", "ACCT_DATE"),
        lambda body: f"top-up serial {body.get('TOPUP_SERIAL')}", _same(SERIAL_NUMBER="", CARD_NO=""),
        exists=frozenset({"01030"})),
}


def settle(bus, message: Message, decision, timeout: PeerTimeout) -> Reply:
    """The reply to a money ``message`` whose call timed out (see the module docstring)."""
    check = CHECKS[(message.service, message.operation)]
    peer, serial = decision.peer_name, check.serial(message.body)
    unknown = OutcomeUnknown(
        f"{peer} did not answer {message.operation} of {serial} in time, and the bus could not learn "
        "whether it was posted; retry with the same serial (it is never posted twice) or check it at "
        "reconciliation.", message.trans_ido, peer=peer)
    found = _ask(bus, message, decision, check, unknown, timeout)
    if found.rsp_code == check.not_found:
        try:
            reply = bus.deliver(message, decision)   # not posted: send it once more
        except BusFault:
            raise unknown from timeout
        if reply.rsp_code not in check.exists:
            return reply
        found = _ask(bus, message, decision, check, unknown, timeout)   # posted late, after all
    if found.rsp_code == "0000" and found.body:
        return _posted(message, decision, check, found, timeout)
    raise unknown from timeout


def _ask(bus, message: Message, decision, check: OutcomeCheck, unknown: OutcomeUnknown,
         timeout: PeerTimeout) -> Reply:
    """The billing's record of the request's serial. The query has a TRANS_IDO of its own: a
    billing that answers a repeated TRANS_IDO from memory must not take the resend for it."""
    head = dict(message.head, OPERATE_NAME=check.query, TRANS_IDO=f"BUSQ{uuid.uuid4().hex[:24]}")
    query = Message(service=message.service, operation=check.query, head=head,
                    body=check.query_body(message.body), msg_id=message.msg_id, hops=message.hops)
    try:
        return bus.deliver(query, decision)
    except BusFault:
        raise unknown from timeout


def _posted(message: Message, decision, check: OutcomeCheck, found: Reply, timeout: PeerTimeout) -> Reply:
    """The reply to ``message`` from the billing's record of it (``found``)."""
    peer, serial = decision.peer_name, check.serial(message.body)
    if not check.same(message.body, found.body):
        raise DuplicateKey(
            f"{peer} did not answer {message.operation} of {serial} in time; asked, it holds that serial "
            f"for another transaction, so this one was not posted: send a new serial for a new request.",
            message.trans_ido) from timeout
    body = check.reply_body(found.body)
    missing = [k for k, v in body.items() if v is None]
    if missing:
        raise OutcomeUnknown(
            f"{peer} did not answer {message.operation} of {serial} in time; asked, it says it was posted, "
            f"but its {check.query} answer lacks {', '.join(missing)}, so the bus cannot give the answer of "
            f"{message.operation}. It is posted: do not post it again; {check.query} or reconciliation "
            "shows it.", message.trans_ido, peer=peer) from timeout
    head = dict(found.head, OPERATE_NAME=message.operation, TRANS_IDO=message.trans_ido,
                RESPONSE={"RSP_TYPE": "0", "RSP_CODE": "0000",
                          "RSP_DESC": f"posted (the answer of {peer} was lost; the bus asked)"})
    return Reply(head=head, body=body, peer=found.peer)
