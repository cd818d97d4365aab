"""The Message (EIP Message): what one inbound SOAP request becomes inside the bus."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

#: Operations that only read (DOMAIN.md: their idempotency key is "none (read)"): QueryArrears,
#: QueryBill, ListPayments... A read is asked of its peer afresh each time, with no idempotency
#: key, and its journal row need not be durable before the answer (``bus.journal_reads``).
READ_PREFIXES = ("Query", "List")
#: Operations that move money: the journal keeps their AMOUNT (fen) for `bssbus stats`. A
#: payment's and a reversal's is in the request; a top-up's (the card's face value) in the answer.
MONEY_OPERATIONS = frozenset({("BankPayment", "Pay"), ("BankPayment", "Reverse"), ("TopUp", "TopUp")})


@dataclass
class Message:
    """A canonical request: the UNI_BSS_HEAD and UNI_BSS_BODY as plain dicts, plus the raw bytes.

    The dicts have the shape zeep uses (and wsdl/examples/ holds): element names as keys,
    repeated elements as lists. ``raw`` is the request exactly as received (for the journal).
    """

    service: str
    operation: str
    head: dict
    body: dict
    raw: bytes = b""
    charset: str = "utf-8"
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    received_at: float = field(default_factory=time.time)
    hops: list[dict] = field(default_factory=list)   # outbound hops, journalled with the reply
    duplicate_of: str | None = None                   # msg_id of the first message with its key
    accepted: bool = False                            # stored for the Forwarder, not delivered yet
    journal_id: int | None = None                     # its inbound journal row, once written
    consumer: object | None = None                    # who sent it (bus.security.Consumer), if known
    passthrough: object | None = None                 # adapters.base.Passthrough: read by the fast path
    answered_amount: int | None = None                # AMOUNT of the answer (a top-up's), once answered

    @property
    def read(self) -> bool:
        """Whether the operation only reads (:data:`READ_PREFIXES`)."""
        return self.operation.startswith(READ_PREFIXES)

    # -- the keys people and the router search by ---------------------------------------
    @property
    def trans_ido(self) -> str | None:
        return self.head.get("TRANS_IDO")

    @property
    def proc_id(self) -> str | None:
        return self.head.get("PROC_ID")

    @property
    def caller(self) -> str | None:
        return self.head.get("ORIG_DOMAIN")

    @property
    def route_type(self) -> str | None:
        return (self.head.get("ROUTING") or {}).get("ROUTE_TYPE")

    @property
    def route_value(self) -> str | None:
        return (self.head.get("ROUTING") or {}).get("ROUTE_VALUE")

    @property
    def msisdn(self) -> str | None:
        """The phone number the message is about: the routing value when routed by number,
        else the body's SERIAL_NUMBER (or the USER's)."""
        if self.route_type == "01":
            return self.route_value
        body = self.body or {}
        return body.get("SERIAL_NUMBER") or (body.get("USER") or {}).get("SERIAL_NUMBER")

    @property
    def serial(self) -> str | None:
        """The transaction's serial: a payment's or reversal's BANK_SERIAL, a top-up's TOPUP_SERIAL."""
        body = self.body or {}
        return body.get("BANK_SERIAL") or body.get("TOPUP_SERIAL")

    @property
    def order_id(self) -> str | None:
        """The order the message is about (ORDER_ID: an order, its work order, its notices)."""
        return (self.body or {}).get("ORDER_ID")

    @property
    def amount(self) -> int | None:
        """The money a payment, reversal or top-up moves, in fen (:data:`MONEY_OPERATIONS`): the
        request's AMOUNT, else the answer's (a top-up's card value); None for other operations."""
        if (self.service, self.operation) not in MONEY_OPERATIONS:
            return None
        amount = fen((self.body or {}).get("AMOUNT"))
        return self.answered_amount if amount is None else amount

    @property
    def work_state(self) -> str | None:
        """A work order's WORK_STATE as the province reports it (3: done)."""
        state = (self.body or {}).get("WORK_STATE") if self.operation == "ReportWorkOrderResult" else None
        return str(state)[:2] if state is not None else None


def fen(value) -> int | None:
    """An AMOUNT as whole fen (the contracts' xs:long; text from an untyped dict), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class Reply:
    """What a peer answered: the response head and body as dicts, and who answered."""

    head: dict
    body: dict | None
    peer: str
    raw_request: bytes = b""
    raw_response: bytes = b""
    elapsed_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rsp_code(self) -> str | None:
        return (self.head.get("RESPONSE") or {}).get("RSP_CODE")
