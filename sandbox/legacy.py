"""The simulated legacy province Billing: ``/peers/legacy_billing/<province>/LegacyBilling``.

It speaks ``wsdl/peers/LegacyBilling/LegacyBilling.wsdl`` (GBK, yuan strings, its own element
names and result codes) over the same sandbox tables as the canonical province Billing of the
same province (``sandbox.store``: the accounts of peer ``BILLING-<province>``, its payments and
three-account rows). So a payment changes the balance exactly as the canonical billing's does:
one posting per bank code + serial, a reversal once and on the payment's accounting day, a
user change applied only when its sequence is newer.

Requests are read like every sandbox request (``services.inbound``: size limit, charset, the
hardened parser, no DTD) and validated against LegacyBilling.xsd, compiled once; a bad request
is a SOAP 1.1 Client fault. Answers are validated against the same schema before they leave
and are always encoded in GBK. ``requests`` keeps what arrived (operation, charset, content
type, XML declaration) so tests can check what the bus really sent.

Result codes (RetCode) of this peer: 0 success, 1001 user not found, 2001 amount invalid,
2002 bank serial already used for another transaction, 3001 original payment not found, 3002
original payment already cancelled, 3003 original payment not of today, 3004 number or amount
differs from the original, 9999 system error.
"""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import deque
from datetime import datetime
from urllib.parse import parse_qs

from lxml import etree
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bus.faults import ClientFault, UnknownOperation, ValidationFault
from sandbox import store
from sandbox.auth import CredentialGate
from services.contracts import _compile_lock
from services.inbound import SOAP11_ENV, Limits, parse_envelope, soap_body_child
from services.models.common import WSDL_DIR
from services.soap import read_body

log = logging.getLogger("bssbus.sandbox")

KIND = "legacy_billing"
SERVICE = "LegacyBilling"
NS = "http://billing.legacy.province/ws"
FOLDER = WSDL_DIR / "peers" / SERVICE
CHARSET = "GBK"
CONTENT_TYPE = f"text/xml; charset={CHARSET}"
OPERATIONS = ("QryOweFee", "QryBalance", "PayFee", "CancelPay", "SyncUser")

MESSAGES = {
    "0": "成功", "1001": "用户不存在", "2001": "缴费金额非法", "2002": "银行流水号已被其他交易使用",
    "3001": "原缴费记录不存在", "3002": "原缴费已冲正", "3003": "非当日缴费不能冲正",
    "3004": "冲正号码或金额与原缴费不符", "9999": "系统错误",
}
# this billing's own user status codes, from the sandbox's canonical USER_STATE
STATUS = {"00": "1", "01": "2", "02": "3", "03": "4", "04": "5"}

_schema: etree.XMLSchema | None = None
_schema_lock = threading.Lock()
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>")
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def legacy_schema() -> etree.XMLSchema:
    """LegacyBilling.xsd, compiled once per process (compiles are serialised with the bus's)."""
    global _schema
    with _schema_lock:
        if _schema is None:
            with _compile_lock:
                _schema = etree.XMLSchema(etree.parse(str(FOLDER / f"{SERVICE}.xsd"), _SAFE))
        return _schema


def yuan(fen: int) -> str:
    """Fen as this billing writes money: yuan with two decimals."""
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def fen(text: str) -> int:
    """Yuan text that already matched the schema pattern ``-?D{1,10}.DD``, as fen."""
    whole, cents = text.lstrip("-").split(".")
    value = int(whole) * 100 + int(cents)
    return -value if text.startswith("-") else value


def now14() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S")


def today() -> str:
    return datetime.now().strftime("%Y%m%d")


class LegacyBillingPeer:
    """The legacy Billing of every province, over the sandbox database.

    ``serve(environ, province)`` answers one HTTP request (POST: SOAP; GET: ``?wsdl`` /
    ``?xsd=LegacyBilling.xsd``) with ``(status, content type, body)``. ``behaviour`` is the
    sandbox's ``/control`` table (peer name -> delay_ms / fault), honoured as the canonical
    peers honour it.
    """

    def __init__(self, engine: Engine, behaviour: dict | None = None, max_body_bytes: int = 1 << 20,
                 max_depth: int = 64, credentials: CredentialGate | None = None):
        self.engine = engine
        self.credentials = credentials or CredentialGate()   # what each province's billing demands
        self.behaviour = behaviour if behaviour is not None else {}
        self.max_body_bytes = max_body_bytes
        self.limits = Limits(max_body_bytes=max_body_bytes, max_depth=max_depth)
        self.schema = legacy_schema()
        self.wsdl_bytes = (FOLDER / f"{SERVICE}.wsdl").read_bytes()
        self.xsd_bytes = (FOLDER / f"{SERVICE}.xsd").read_bytes()
        self.requests: deque[dict] = deque(maxlen=500)   # what arrived, newest last

    # -- HTTP ------------------------------------------------------------------------------
    def serve(self, environ: dict, province: str) -> tuple[str, str, bytes]:
        if environ.get("REQUEST_METHOD", "GET") != "POST":
            return self._document(environ)
        sender = store.billing_peers(province)[0]
        behaviour = self.behaviour.get(sender, {})
        if behaviour.get("delay_ms"):
            time.sleep(behaviour["delay_ms"] / 1000)
        if behaviour.get("fault"):
            return self._fault("Server", behaviour["fault"])
        try:
            raw = read_body(environ, self.max_body_bytes)
            envelope, charset = parse_envelope(raw, environ.get("CONTENT_TYPE"), self.limits)
            wrapper = soap_body_child(envelope)
            operation = self._operation(wrapper)
            if not self.schema.validate(wrapper):
                error = self.schema.error_log[0]
                raise ValidationFault(f"The request does not match LegacyBilling.xsd: {error.message} "
                                      f"(line {error.line})")
        except ClientFault as fault:
            return self._fault("Client", fault.message)
        refused = self.credentials.check(KIND, province, environ.get("HTTP_AUTHORIZATION"), envelope)
        if refused is not None:   # before any work; basic authentication answers 401
            status, ctype, body = self._fault(refused.code, refused.message)
            return ("401 Unauthorized" if refused.basic else status), ctype, body
        declared = _XML_DECL.match(raw)
        fields = {etree.QName(child).localname: child.text for child in wrapper if isinstance(child.tag, str)}
        self.requests.append({"province": province, "operation": operation, "charset": charset,
                              "content_type": environ.get("CONTENT_TYPE"), "seq_no": fields.get("SeqNo"),
                              "declaration": declared.group(0) if declared else b""})
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(store.received).values(peer=sender, service=SERVICE, operation=operation,
                                                           trans_ido=fields.get("SeqNo")))
            code, body = getattr(self, operation)(sender, fields)
        except Exception:  # a legacy billing answers its own system error, not a fault
            log.exception("sandbox legacy billing %s failed on %s", sender, operation)
            code, body = "9999", []
        return self._answer(operation, fields, code, body)

    def _operation(self, wrapper: etree._Element) -> str:
        qname = etree.QName(wrapper)
        if qname.namespace != NS or qname.localname not in OPERATIONS:
            raise UnknownOperation(f"{qname.localname} in namespace {qname.namespace!r} is not an operation of "
                                   f"{SERVICE} ({NS}): {', '.join(OPERATIONS)}.")
        return qname.localname

    def _document(self, environ: dict) -> tuple[str, str, bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
        address = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{environ.get('PATH_INFO', '')}"
        if "xsd" in query:
            if query["xsd"][0] != f"{SERVICE}.xsd":
                return "404 Not Found", "text/plain; charset=utf-8", f"No schema {query['xsd'][0]!r} here.\n".encode()
            return "200 OK", "text/xml; charset=utf-8", self.xsd_bytes
        if "wsdl" in query or "WSDL" in query:
            data = self.wsdl_bytes.replace(b'schemaLocation="LegacyBilling.xsd"',
                                           f'schemaLocation="{address}?xsd={SERVICE}.xsd"'.encode())
            start = data.index(b'<soap:address location="') + len(b'<soap:address location="')
            end = data.index(b'"', start)
            return "200 OK", "text/xml; charset=utf-8", data[:start] + address.encode() + data[end:]
        return "200 OK", "text/plain; charset=utf-8", \
            f"{SERVICE} (legacy province Billing): POST SOAP 1.1 in GBK here. Contract: {address}?wsdl\n".encode()

    # -- answers ---------------------------------------------------------------------------
    def _answer(self, operation: str, fields: dict, code: str, body: list) -> tuple[str, str, bytes]:
        env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV, "lb": NS})
        response = etree.SubElement(etree.SubElement(env, f"{{{SOAP11_ENV}}}Body"), f"{{{NS}}}{operation}Response")
        ret = etree.SubElement(response, f"{{{NS}}}{operation}Return")
        head = [("RetCode", code), ("RetMsg", MESSAGES.get(code, "")), ("SeqNo", fields["SeqNo"]),
                ("RspSeq", f"LB{uuid.uuid4().hex[:24].upper()}"), ("RspTime", now14())]
        _fill(ret, head + (body if code == "0" else []))
        if not self.schema.validate(response):   # the simulator's own bug, never a silent bad answer
            error = self.schema.error_log[0]
            log.error("sandbox legacy billing built an invalid %sResponse: %s", operation, error.message)
            return self._fault("Server", f"the simulated legacy billing built an invalid answer: {error.message}")
        return "200 OK", CONTENT_TYPE, etree.tostring(env, xml_declaration=True, encoding=CHARSET)

    @staticmethod
    def _fault(code: str, text: str) -> tuple[str, str, bytes]:
        env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
        fault = etree.SubElement(etree.SubElement(env, f"{{{SOAP11_ENV}}}Body"), f"{{{SOAP11_ENV}}}Fault")
        etree.SubElement(fault, "faultcode").text = f"soap:{code}"
        etree.SubElement(fault, "faultstring").text = text
        return "500 Internal Server Error", CONTENT_TYPE, etree.tostring(env, xml_declaration=True, encoding=CHARSET)

    # -- the billing -----------------------------------------------------------------------
    def _account(self, conn, sender, msisdn):
        a = store.accounts.c
        return conn.execute(select(store.accounts).where(a.peer == sender, a.msisdn == msisdn)).mappings().first()

    def _payment(self, conn, sender, bank_code, serial):
        p = store.payments.c
        return conn.execute(select(store.payments).where(p.peer == sender, p.bank_code == bank_code,
                                                         p.bank_serial == serial)).mappings().first()

    def QryOweFee(self, sender, f):  # noqa: N802 - the contract's operation names
        with self.engine.connect() as conn:
            acct = self._account(conn, sender, f["MsisdnNo"])
            if acct is None:
                return "1001", []
            owed = max(0, -acct["balance"])
            items = []
            if owed:
                items = [[("BillMonth", r.bill_cycle), ("ItemName", r.item_name), ("ItemFee", yuan(r.fee))]
                         for r in conn.execute(select(store.bill_items).where(
                             store.bill_items.c.msisdn == acct["msisdn"]))]
        body = [("MsisdnNo", acct["msisdn"]), ("CustName", store.mask_name(acct["cust_name"])),
                ("UserStatus", STATUS[acct["user_state"]]), ("OweFee", yuan(owed)),
                ("AcctBalance", yuan(acct["balance"]))]
        if items:
            body.append(("OweItems", [("OweItem", item) for item in items]))
        return "0", body

    def QryBalance(self, sender, f):  # noqa: N802
        with self.engine.connect() as conn:
            acct = self._account(conn, sender, f["MsisdnNo"])
        if acct is None:
            return "1001", []
        return "0", [("MsisdnNo", acct["msisdn"]), ("UserStatus", STATUS[acct["user_state"]]),
                     ("AcctBalance", yuan(acct["balance"])), ("OweFee", yuan(max(0, -acct["balance"])))]

    def PayFee(self, sender, f):  # noqa: N802
        bank, serial, msisdn, amount = f["BankCode"], f["BankSeq"], f["MsisdnNo"], fen(f["PayAmt"])
        try:
            with self.engine.begin() as conn:
                first = self._payment(conn, sender, bank, serial)
                if first is None:
                    if self._account(conn, sender, msisdn) is None:
                        return "1001", []
                    if amount <= 0:
                        return "2001", []
                    conn.execute(update(store.accounts).where(
                        store.accounts.c.peer == sender, store.accounts.c.msisdn == msisdn)
                        .values(balance=store.accounts.c.balance + amount))
                    balance = self._account(conn, sender, msisdn)["balance"]
                    conn.execute(insert(store.payments).values(
                        peer=sender, bank_code=bank, bank_serial=serial, kind="pay", msisdn=msisdn,
                        amount=amount, acct_date=today(), balance_after=balance, trans_ido=f["SeqNo"]))
                    first = self._payment(conn, sender, bank, serial)
        except IntegrityError:  # the same serial posted concurrently: the first one stands
            with self.engine.connect() as conn:
                first = self._payment(conn, sender, bank, serial)
        if first["kind"] != "pay" or first["msisdn"] != msisdn or first["amount"] != amount:
            return "2002", []
        return "0", [("BankSeq", serial), ("BillSeq", f"{sender[:2]}{first['id']:012d}"), ("MsisdnNo", msisdn),
                     ("PayAmt", yuan(amount)), ("AcctBalance", yuan(first["balance_after"])),
                     ("AcctDate", first["acct_date"])]

    def CancelPay(self, sender, f):  # noqa: N802
        bank, serial, orig = f["BankCode"], f["BankSeq"], f["OrigBankSeq"]
        msisdn, amount = f["MsisdnNo"], fen(f["CancelAmt"])
        with self.engine.begin() as conn:
            done = self._payment(conn, sender, bank, serial)
            if done is not None:
                if done["kind"] != "reverse" or done["orig_serial"] != orig:
                    return "2002", []
            else:
                original = self._payment(conn, sender, bank, orig)
                if original is None or original["kind"] != "pay":
                    return "3001", []
                if original["reversed"]:
                    return "3002", []
                if original["acct_date"] != today():
                    return "3003", []
                if original["msisdn"] != msisdn or original["amount"] != amount:
                    return "3004", []
                conn.execute(update(store.accounts).where(
                    store.accounts.c.peer == sender, store.accounts.c.msisdn == msisdn)
                    .values(balance=store.accounts.c.balance - amount))
                conn.execute(update(store.payments).where(store.payments.c.id == original["id"]).values(reversed=1))
                balance = self._account(conn, sender, msisdn)["balance"]
                conn.execute(insert(store.payments).values(
                    peer=sender, bank_code=bank, bank_serial=serial, kind="reverse", orig_serial=orig,
                    msisdn=msisdn, amount=amount, acct_date=today(), balance_after=balance, trans_ido=f["SeqNo"]))
                done = self._payment(conn, sender, bank, serial)
        return "0", [("BankSeq", serial), ("OrigBankSeq", orig), ("MsisdnNo", msisdn),
                     ("CancelAmt", yuan(amount)), ("AcctBalance", yuan(done["balance_after"]))]

    def SyncUser(self, sender, f):  # noqa: N802
        user_id, seq = f["UserId"], int(f["SyncSeq"])
        t = store.three_accounts.c
        with self.engine.begin() as conn:
            row = conn.execute(select(store.three_accounts).where(
                t.peer == sender, t.user_id == user_id)).mappings().first()
            if row is not None and row["sync_seq"] >= seq:
                return "0", [("UserId", user_id), ("SyncSeq", str(seq)), ("DealFlag", "1")]
            values = dict(msisdn=f["MsisdnNo"], sync_seq=seq, trans_ido=f["SeqNo"])
            if row is None:
                conn.execute(insert(store.three_accounts).values(peer=sender, user_id=user_id, **values))
            else:
                conn.execute(update(store.three_accounts).where(
                    t.peer == sender, t.user_id == user_id).values(**values))
        return "0", [("UserId", user_id), ("SyncSeq", str(seq)), ("DealFlag", "0")]


def _fill(parent: etree._Element, fields: list) -> None:
    """Children of ``parent`` in the given order: (name, text) or (name, [nested fields])."""
    for name, value in fields:
        child = etree.SubElement(parent, f"{{{NS}}}{name}")
        if isinstance(value, list):
            _fill(child, value)
        else:
            child.text = value

