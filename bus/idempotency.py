"""IdempotentConsumer (EIP): a repeated message gets the first answer, and its peer is not
called again.

The key of a message is its operation's business key where it has one (a payment: bank code
and bank serial; a reversal: bank code and its own serial; a top-up: its serial; a work
order: its trade id; an order: TRANS_IDO and order id), else the caller's ORIG_DOMAIN and
TRANS_IDO. Two copies arriving at once (two threads, workers or nodes) are handled once:
one claims the key, the other waits for its answer. Only a peer's answer is remembered; a
fault releases the key, so a retry after an outage is handled afresh.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from typing import Callable

from bus.faults import BusFault, Busy, ClientFault
from bus.message import Message, Reply
from bus.security import RECONCILIATION_DOMAIN
from dao.idempotency import IdempotencyStore

def _recon(message: Message) -> str:
    """The bus's own reconciliation corrections have keys of their own: a serial the bank sent
    itself (answered, say, 1547 after midnight) is still corrected; the billing posts a serial
    once whoever sends it."""
    return "RECON" if message.caller == RECONCILIATION_DOMAIN else ""


BUSINESS_KEYS: dict[tuple[str, str], Callable[[Message], str]] = {
    ("BankPayment", "Pay"): lambda m: f"{_recon(m)}PAY:{m.body['BANK_CODE']}:{m.body['BANK_SERIAL']}",
    ("BankPayment", "Reverse"): lambda m: f"{_recon(m)}REV:{m.body['BANK_CODE']}:{m.body['BANK_SERIAL']}",
    ("TopUp", "TopUp"): lambda m: f"TOPUP:{m.body['TOPUP_SERIAL']}",
    ("Provisioning", "SubmitWorkOrder"): lambda m: f"WO:{m.body['TRADE_ID']}",
    ("OrderSync", "SyncOrder"): lambda m: f"ORDER:{m.caller}:{m.trans_ido}:{m.body['ORDER_ID']}",
}


class DuplicateKey(ClientFault):
    """The key (a bank serial, a TRANS_IDO...) was already used for a different request."""
    code = "Client.DuplicateKey"
    rsp_code = "8007"


def key_of(message: Message) -> str:
    make = BUSINESS_KEYS.get((message.service, message.operation))
    key = make(message) if make else f"T:{message.caller}:{message.trans_ido}"
    return key[:160]


class IdempotentConsumer:
    """Runs a handler at most once per key and answers repeats from the store."""

    def __init__(self, store: IdempotencyStore, ttl: timedelta, wait_seconds: float = 30.0):
        self.store = store
        self.ttl = ttl
        self.wait_seconds = wait_seconds

    def run(self, message: Message, handler: Callable[[Message], tuple[Reply, object]]):
        """(reply, decision) of ``handler(message)``, or of the first message with its key
        (then decision is None and ``message.duplicate_of`` names the first message)."""
        key = key_of(message)
        stale = timedelta(seconds=self.wait_seconds)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            held = self.store.claim(key, message.service, message.operation, message.msg_id, self.ttl, stale)
            if held is None:
                break
            if held["status"] == "done":
                first = json.loads(held["reply"])
                if first.get("fingerprint") != fingerprint(message):
                    raise DuplicateKey(f"{_what(key)} was already used for a different request (message "
                                       f"{held['msg_id']}); send a new one for a new request.", message.trans_ido)
                message.duplicate_of = held["msg_id"]
                return _reply(first, message), None
            if time.monotonic() > deadline:
                raise Busy(f"A message with the same key ({key}) is still being handled; try again later.",
                           message.trans_ido)
            time.sleep(0.05)
        try:
            reply, decision = handler(message)
        except BaseException:
            self.store.release(key, message.msg_id)
            raise
        self.store.complete(key, message.msg_id, stored(reply, message))
        return reply, decision


def stored(reply: Reply, message: Message) -> str:
    """What the store keeps of the first answer to ``message``: the reply and the request's
    fingerprint (a repeat with another body is a different request)."""
    return json.dumps({"head": reply.head, "body": reply.body, "peer": reply.peer,
                       "fingerprint": fingerprint(message)}, ensure_ascii=False, default=str)


def fingerprint(message: Message) -> str:
    """What makes two requests with one key the same request: the operation and the body."""
    text = json.dumps([message.service, message.operation, message.body], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _what(key: str) -> str:
    kind, _, rest = key.partition(":")
    return {"PAY": "Bank code and serial", "REV": "Bank code and serial", "RECONPAY": "Bank code and serial",
            "RECONREV": "Bank code and serial", "TOPUP": "Top-up serial",
            "WO": "Trade id", "ORDER": "TRANS_IDO and order id", "T": "TRANS_IDO"}.get(kind, "Key") + f" {rest}"


def _reply(data: dict, message: Message) -> Reply:
    head = dict(data["head"], TRANS_IDO=message.trans_ido)
    return Reply(head=head, body=data["body"], peer=data["peer"])


__all__ = ["IdempotentConsumer", "Busy", "DuplicateKey", "key_of", "fingerprint", "stored", "BusFault"]
