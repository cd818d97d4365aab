"""Adapter for a legacy province Billing (phase 2) with its own contract: Jiangsu (34), Henan (76).

An EIP Channel Adapter with a Message Translator on each side. The peer speaks
``wsdl/peers/LegacyBilling/LegacyBilling.wsdl``: other operation and element names, no
UNI_BSS_HEAD (SysCode/SeqNo/ReqTime in, RetCode/RetMsg/SeqNo/RspSeq/RspTime out), amounts in
yuan as decimal strings, its own user states and result codes, and GBK on the wire. This
module maps both ways so that a caller gets the canonical billing's answer, header included;
only MSG_SENDER (``BILLING-34``) says which billing answered.

=====================================  ==============  ==============================
canonical operation                    legacy           amounts (canonical fen <-> yuan)
=====================================  ==============  ==============================
BankPayment.QueryArrears               QryOweFee        OweFee, AcctBalance, ItemFee
BankPayment.QueryBalance               QryBalance       AcctBalance, OweFee
BankPayment.Pay                        PayFee           PayAmt, AcctBalance
BankPayment.Reverse                    CancelPay        CancelAmt, AcctBalance
AccountSync.SyncThreeAccount           SyncUser         (none)
=====================================  ==============  ==============================

Legacy result codes (RetCode) and the canonical RSP_CODE each becomes:

======  ==========================================  =====================================
0       success                                     0000
1001    user not found                              2099 (queries, sync); 1544 (Pay);
                                                    1548 (Reverse: not the original's number)
2001    amount invalid                              1544
2002    bank serial already used for another txn    1544
3001    original payment not found                  1545
3002    original payment already cancelled          1546
3003    original payment not of today               1547
3004    number or amount differs from the original  1548
9999    system error                                Server.PeerFault (9003), no answer
other   (unknown to the bus)                        Server.PeerFault (9003), no answer
======  ==========================================  =====================================

An answer the bus cannot map exactly (an amount that is not ``-?D.DD``, an unknown user
state, a SeqNo, number, serial or amount that differs from the request's) is a
``Server.PeerFault`` naming the peer: never a guessed value. SyncUser carries the USER of a
three-account sync (and SYNC_SEQ); the legacy contract has no customer, account, pay relation
or subscription elements, so those parts are not sent to this peer.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime

from lxml import etree
from zeep.exceptions import TransportError
from zeep.helpers import serialize_object
from zeep.loader import parse_xml

from adapters.base import Adapter, PeerTransport, _RawCapture
from adapters.money import fen_to_yuan, yuan_to_fen
from bus.faults import ClientFault, PeerFault
from bus.message import Message
from bus.security import mask_passwords
from services.inbound import charset_of
from services.models.common import WSDL_DIR

LEGACY_SERVICE = "LegacyBilling"
LEGACY_NS = "http://billing.legacy.province/ws"
LEGACY_WSDL = WSDL_DIR / "peers" / LEGACY_SERVICE / f"{LEGACY_SERVICE}.wsdl"
LEGACY_BINDING = f"{{{LEGACY_NS}}}{LEGACY_SERVICE}Soap11Binding"
SYS_CODE = "BSSBUS"              # SysCode: who calls the legacy billing
WIRE_CHARSET = "GBK"

#: canonical (service, operation) -> the legacy operation
OPERATIONS = {
    ("BankPayment", "QueryArrears"): "QryOweFee",
    ("BankPayment", "QueryBalance"): "QryBalance",
    ("BankPayment", "Pay"): "PayFee",
    ("BankPayment", "Reverse"): "CancelPay",
    ("AccountSync", "SyncThreeAccount"): "SyncUser",
}

#: canonical USER_STATE / SERVICE_STATE -> the legacy UserStatus (99, "no such number", has none:
#: the legacy billing answers RetCode 1001 instead)
USER_STATE_TO_LEGACY = {"00": "1", "01": "2", "02": "3", "03": "4", "04": "5"}
USER_STATE_FROM_LEGACY = {v: k for k, v in USER_STATE_TO_LEGACY.items()}

OK = "0"
SYSTEM_ERROR = "9999"
#: legacy RetCode -> (canonical RSP_CODE, RSP_DESC); ``{NAME}`` is a field of the canonical
#: request body (or ``{peer}``); (operation, RetCode) entries win over the plain ones.
RESULTS = {
    "1001": ("2099", "no such number"),
    "2001": ("1544", "amount {AMOUNT} fen is not a valid amount"),
    "2002": ("1544", "bank serial {BANK_SERIAL} was already used for another transaction"),
    "3001": ("1545", "original payment {ORIG_BANK_SERIAL} is unknown"),
    "3002": ("1546", "original payment {ORIG_BANK_SERIAL} was already reversed"),
    "3003": ("1547", "payment {ORIG_BANK_SERIAL} is not of today's accounting day"),
    "3004": ("1548", "number or amount differs from the original payment"),
    ("Pay", "1001"): ("1544", "number {SERIAL_NUMBER} is not a user of {peer}"),
    ("Reverse", "1001"): ("1548", "number {SERIAL_NUMBER} is not a user of {peer}"),
}

RSP_HEAD = ("RetCode", "RetMsg", "SeqNo", "RspSeq", "RspTime")
#: request header fields the canonical billing echoes in its answer
ECHOED = ("ORIG_DOMAIN", "SERVICE_NAME", "OPERATE_NAME", "ROUTING", "PROC_ID", "TRANS_IDO",
          "COM_BUS_INFO", "TEST_FLAG")

_XML_DECL = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")
_DECODE_AS = {"gbk": "gb18030", "gb2312": "gb18030"}   # legacy labels understate what they send


def now14() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S")


class Unusable(ValueError):
    """An answer of the legacy billing that cannot be mapped exactly."""


class _Fields(dict):
    def __missing__(self, key):
        return "?"


# -- the wire: GBK both ways ----------------------------------------------------------------

class WireCapture(_RawCapture):
    """The bytes as they travelled (GBK; a password masked), kept by :class:`GbkTransport` for
    the journal, rather than zeep's envelope before encoding."""

    def egress(self, envelope, http_headers, operation, binding_options):
        self.local.sent = self.local.received = b""
        return envelope, http_headers

    def ingress(self, envelope, http_headers, operation):
        return envelope, http_headers


def to_utf8(raw: bytes, content_type: str | None) -> bytes:
    """An answer in the charset its HTTP label (else its XML declaration) names, as UTF-8 bytes
    without a declaration, for zeep's parser. Undecodable bytes are a TransportError."""
    if not raw:
        return raw
    try:
        charset = charset_of(content_type, raw)
    except ClientFault as exc:
        raise TransportError(f"the answer's charset is unusable: {exc.message}") from None
    if charset == "utf-8":
        return raw
    try:
        text = raw.decode(_DECODE_AS.get(charset, charset))
    except UnicodeDecodeError as exc:
        raise TransportError(f"the answer is not valid {charset}: byte {exc.start} "
                             f"({raw[exc.start:exc.start + 1]!r}) cannot be decoded") from None
    return _XML_DECL.sub(b"", text.encode("utf-8"), count=1)


class GbkTransport(PeerTransport):
    """zeep Transport (an outbound plugin on the call) that posts GBK, saying so in the HTTP
    ``charset`` and the XML declaration, and reads GBK (or whatever the answer declares), at most
    the peer's ``max_answer_bytes`` of it, uncompressed (:class:`~services.client.BoundedTransport`)."""

    def __init__(self, capture: WireCapture, charset: str = WIRE_CHARSET, **kwargs):
        super().__init__(**kwargs)
        self.capture = capture
        self.charset = charset

    def post_xml(self, address, envelope, headers):
        message = etree.tostring(envelope, xml_declaration=True, encoding=self.charset)
        headers = dict(headers)
        headers["Content-Type"] = f"text/xml; charset={self.charset}"
        self.capture.local.sent = mask_passwords(message)
        response = self.post(address, message, headers)
        self.capture.local.received = response.content
        response._content = to_utf8(response.content, response.headers.get("Content-Type"))
        return response


# -- the adapter -----------------------------------------------------------------------------

class LegacyBillingAdapter(Adapter):
    kind = "legacy_billing"
    services = ("BankPayment", "AccountSync")
    canonical = False   # its own contract: every request is mapped

    def __init__(self, peer):
        super().__init__(peer)
        self.capture = WireCapture()
        self.transport = GbkTransport(self.capture, session=self.session, timeout=peer.timeout,
                                      operation_timeout=peer.timeout, max_answer_bytes=peer.max_answer_bytes)

    # -- the contract: one WSDL for both canonical services -------------------------------
    def wsdl_path(self, service: str):
        return LEGACY_WSDL

    def binding(self, service: str) -> str:
        return LEGACY_BINDING

    def proxy(self, service: str, url: str):
        return super().proxy(LEGACY_SERVICE, url)

    def endpoint(self, service: str, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{LEGACY_SERVICE}"

    def offers(self, service: str, operation: str) -> bool:
        return (service, operation) in OPERATIONS

    def operation_of(self, message: Message, decision) -> str:
        op = OPERATIONS.get((message.service, message.operation))
        if op is None:
            raise PeerFault(f"Peer {decision.peer_name} (legacy billing) has no operation for "
                            f"{message.service}.{message.operation}.", message.trans_ido,
                            peer=decision.peer_name)
        return op

    # -- the round trip ------------------------------------------------------------------
    def exchange(self, proxy, message: Message, decision) -> tuple[dict, dict | None]:
        op = self.operation_of(message, decision)
        head, body = self.map_request(message, decision)
        result = getattr(proxy, op)(**head, **body)
        return self.reply_of(message, decision, result)

    def reply_of(self, message: Message, decision, result) -> tuple[dict, dict | None]:
        """The canonical (head, body) of a legacy ``<Op>Return`` as zeep parsed it."""
        data = serialize_object(result, dict) or {}
        if not isinstance(data, dict):
            data = {}
        head = {k: data.get(k) for k in RSP_HEAD}
        body = {k: v for k, v in data.items() if k not in RSP_HEAD and v is not None}
        return self.map_reply(message, decision, head, body)

    # -- canonical -> legacy ---------------------------------------------------------------
    def map_request(self, message: Message, decision) -> tuple[dict, dict]:
        """(legacy header fields, legacy body fields) of the legacy operation for ``message``."""
        op = self.operation_of(message, decision)
        head = {"SysCode": SYS_CODE, "SeqNo": message.trans_ido, "ReqTime": now14()}
        b = message.body or {}
        try:
            if op == "QryOweFee":
                body = {"MsisdnNo": b["SERIAL_NUMBER"], "BankCode": b["BANK_CODE"]}
            elif op == "QryBalance":
                body = {"MsisdnNo": b["SERIAL_NUMBER"]}
                if b.get("BANK_CODE"):
                    body["BankCode"] = b["BANK_CODE"]
            elif op == "PayFee":
                body = {"BankCode": b["BANK_CODE"], "BankSeq": b["BANK_SERIAL"],
                        "MsisdnNo": b["SERIAL_NUMBER"], "PayAmt": fen_to_yuan(b["AMOUNT"], signed=False),
                        "PayTime": b["TRADE_TIME"]}
            elif op == "CancelPay":
                body = {"BankCode": b["BANK_CODE"], "BankSeq": b["BANK_SERIAL"],
                        "OrigBankSeq": b["ORIG_BANK_SERIAL"], "MsisdnNo": b["SERIAL_NUMBER"],
                        "CancelAmt": fen_to_yuan(b["AMOUNT"], signed=False), "CancelTime": b["TRADE_TIME"]}
            else:  # SyncUser
                user = b["USER"]
                state = USER_STATE_TO_LEGACY.get(user["SERVICE_STATE"])
                if state is None:
                    raise ValueError(f"SERVICE_STATE {user['SERVICE_STATE']} has no legacy user status")
                body = {"UserId": user["USER_ID"], "MsisdnNo": user["SERIAL_NUMBER"],
                        "CustId": user["CUST_ID"], "ProductId": user["PRODUCT_ID"],
                        "NetType": user["NET_TYPE_CODE"], "PrepayFlag": user["PREPAY_TAG"],
                        "UserStatus": state, "ProvCode": user["PROVINCE_CODE"],
                        "AreaCode": user["EPARCHY_CODE"], "ChgTime": user["UPDATE_TIME"],
                        "SyncSeq": b["SYNC_SEQ"]}
        except (KeyError, ValueError) as exc:
            raise PeerFault(f"{message.service}.{message.operation} cannot be expressed in the "
                            f"legacy contract of {decision.peer_name}: {exc}", message.trans_ido,
                            peer=decision.peer_name) from None
        return head, body

    # -- legacy -> canonical ---------------------------------------------------------------
    def map_reply(self, message: Message, decision, head: dict, body: dict | None) -> tuple[dict, dict | None]:
        """The canonical (head, body) of a legacy answer, or a PeerFault when it cannot be mapped
        exactly or reports a system error."""
        name = decision.peer_name
        body = body or {}
        try:
            ret = head.get("RetCode")
            if not ret:
                raise Unusable("it has no RetCode")
            if head.get("SeqNo") != message.trans_ido:
                raise Unusable(f"it answers SeqNo {head.get('SeqNo')!r}, not {message.trans_ido!r}")
            if ret == OK:
                code, desc, rsp = "0000", "success", self._body(message, body)
                if message.operation == "SyncThreeAccount":
                    desc = ("applied" if rsp["APPLIED"] == "0" else
                            f"ignored: sequence {rsp['SYNC_SEQ']} is not newer than the stored one")
            elif ret == SYSTEM_ERROR:
                raise PeerFault(f"Peer {name} reported a system error to {message.operation} "
                                f"(legacy RetCode {ret}: {head.get('RetMsg') or 'no message'}).",
                                message.trans_ido, peer=name)
            else:
                known = RESULTS.get((message.operation, ret)) or RESULTS.get(ret)
                if known is None:
                    raise Unusable(f"its RetCode {ret!r} ({head.get('RetMsg') or 'no message'}) "
                                   "is not one the bus knows")
                code, template = known
                desc, rsp = template.format_map(_Fields(message.body or {}, peer=name)), None
        except (Unusable, ValueError, KeyError, TypeError) as exc:
            why = exc if isinstance(exc, Unusable) else f"{type(exc).__name__}: {exc}"
            raise PeerFault(f"Peer {name} gave an answer to {message.operation} the bus cannot use: "
                            f"{why}", message.trans_ido, peer=name) from None
        out = {k: message.head[k] for k in ECHOED if message.head.get(k) is not None}
        out.update(ACTION_CODE="1", TRANS_IDH=head.get("RspSeq") or uuid.uuid4().hex[:24],
                   PROCESS_TIME=head.get("RspTime") or now14(), MSG_SENDER=name,
                   RESPONSE={"RSP_TYPE": "0" if code == "0000" else "1", "RSP_CODE": code,
                             "RSP_DESC": desc[:512]})
        if message.head.get("ORIG_DOMAIN"):
            out["MSG_RECEIVER"] = message.head["ORIG_DOMAIN"]
        return out, rsp

    def _body(self, message: Message, got: dict) -> dict:
        """The canonical UNI_BSS_BODY of a successful legacy answer (raises Unusable)."""
        req = message.body or {}

        def need(name):
            value = got.get(name)
            if value is None or value == "":
                raise Unusable(f"it lacks {name}")
            return value

        def same(name, expected):
            value = need(name)
            if value != expected:
                raise Unusable(f"its {name} {value!r} is not the request's {expected!r}")
            return value

        def state():
            value = need("UserStatus")
            if value not in USER_STATE_FROM_LEGACY:
                raise Unusable(f"its UserStatus {value!r} is not a known user status")
            return USER_STATE_FROM_LEGACY[value]

        def amount(name, signed=True):
            try:
                return yuan_to_fen(need(name), signed=signed)
            except ValueError as exc:
                raise Unusable(f"its {name}: {exc}") from None

        op = message.operation
        if op == "QueryArrears":
            rsp = {"SERIAL_NUMBER": same("MsisdnNo", req["SERIAL_NUMBER"]), "CUST_NAME": need("CustName"),
                   "USER_STATE": state(), "ARREARS_FEE": amount("OweFee", signed=False),
                   "BALANCE": amount("AcctBalance")}
            items = (got.get("OweItems") or {}).get("OweItem") or []
            if items:
                bill = []
                for item in items:
                    try:
                        fee = yuan_to_fen(item.get("ItemFee"))
                    except ValueError as exc:
                        raise Unusable(f"its OweItem/ItemFee: {exc}") from None
                    if not item.get("BillMonth") or not item.get("ItemName"):
                        raise Unusable("an OweItem lacks BillMonth or ItemName")
                    bill.append({"BILL_CYCLE": item["BillMonth"], "ITEM_NAME": item["ItemName"], "FEE": fee})
                rsp["BILL_ITEMS"] = {"BILL_ITEM": bill}
            return rsp
        if op == "QueryBalance":
            return {"SERIAL_NUMBER": same("MsisdnNo", req["SERIAL_NUMBER"]), "USER_STATE": state(),
                    "BALANCE": amount("AcctBalance"), "ARREARS_FEE": amount("OweFee", signed=False)}
        if op == "Pay":
            rsp = {"BANK_SERIAL": same("BankSeq", req["BANK_SERIAL"]), "BILL_SERIAL": need("BillSeq"),
                   "SERIAL_NUMBER": same("MsisdnNo", req["SERIAL_NUMBER"]),
                   "AMOUNT": amount("PayAmt", signed=False), "BALANCE": amount("AcctBalance"),
                   "ACCT_DATE": need("AcctDate")}
            if rsp["AMOUNT"] != req["AMOUNT"]:
                raise Unusable(f"its PayAmt is {rsp['AMOUNT']} fen, the request's {req['AMOUNT']} fen")
            return rsp
        if op == "Reverse":
            rsp = {"BANK_SERIAL": same("BankSeq", req["BANK_SERIAL"]),
                   "ORIG_BANK_SERIAL": same("OrigBankSeq", req["ORIG_BANK_SERIAL"]),
                   "SERIAL_NUMBER": same("MsisdnNo", req["SERIAL_NUMBER"]),
                   "AMOUNT": amount("CancelAmt", signed=False), "BALANCE": amount("AcctBalance")}
            if rsp["AMOUNT"] != req["AMOUNT"]:
                raise Unusable(f"its CancelAmt is {rsp['AMOUNT']} fen, the request's {req['AMOUNT']} fen")
            return rsp
        # SyncThreeAccount
        flag = need("DealFlag")
        if flag not in ("0", "1"):
            raise Unusable(f"its DealFlag {flag!r} is not 0 or 1")
        return {"USER_ID": same("UserId", req["USER"]["USER_ID"]), "SYNC_SEQ": same("SyncSeq", req["SYNC_SEQ"]),
                "APPLIED": flag}

    # -- for tests and tools: the same mapping on literal XML ------------------------------
    def request_envelope(self, message: Message, decision) -> etree._Element:
        """The SOAP envelope this adapter would post for ``message`` (not sent)."""
        op = self.operation_of(message, decision)
        head, body = self.map_request(message, decision)
        client = self.client(LEGACY_SERVICE)
        proxy = self.proxy(message.service, "http://legacy-billing.invalid/")
        return client.create_message(proxy, op, **head, **body)

    def reply_from_xml(self, message: Message, decision, raw: bytes,
                       content_type: str | None = None) -> tuple[dict, dict | None]:
        """The canonical (head, body) of a literal legacy answer envelope (GBK or UTF-8)."""
        op = self.operation_of(message, decision)
        client = self.client(LEGACY_SERVICE)
        envelope = parse_xml(to_utf8(raw, content_type), self.transport, settings=client.settings)
        operation = client.wsdl.bindings[LEGACY_BINDING].get(op)
        return self.reply_of(message, decision, operation.process_reply(envelope))
