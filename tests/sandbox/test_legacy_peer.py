"""The simulated legacy Billing (sandbox/legacy.py) on its own: its contract, GBK, refusals and
business rules, through the sandbox's WSGI application (no bus involved)."""
from __future__ import annotations

import io
import re
import uuid

import pytest
import zeep
from lxml import etree
from sqlalchemy import select, update

from bus.server import serve_in_thread
from sandbox import store
from sandbox.app import SandboxApplication
from sandbox.legacy import NS, fen, legacy_schema, yuan
from sandbox.store import seed_users
from services.inbound import SOAP11_ENV

PROVINCE = "34"
PATH = f"/peers/legacy_billing/{PROVINCE}/LegacyBilling"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("legacy-peer") / "sandbox.db"
    application = SandboxApplication(f"sqlite:///{db}", provinces={"34", "76", "51"})
    yield application
    application.engine.dispose()


def wsgi(app, method="POST", path=PATH, body=b"", content_type="text/xml; charset=GBK", query=""):
    status = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "CONTENT_TYPE": content_type,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
               "HTTP_HOST": "sandbox.test:8081", "SERVER_NAME": "sandbox.test", "SERVER_PORT": "8081"}
    out = b"".join(app(environ, lambda s, headers: status.append((s, dict(headers)))))
    return status[0][0], status[0][1]["Content-Type"], out


def request(op, fields, seq=None, encoding="GBK"):
    seq = seq or "T" + uuid.uuid4().hex[:20]
    head = f"<lb:SysCode>BSSBUS</lb:SysCode><lb:SeqNo>{seq}</lb:SeqNo><lb:ReqTime>20261127103000</lb:ReqTime>"
    inner = "".join(f"<lb:{k}>{v}</lb:{k}>" for k, v in fields)
    text = (f'<?xml version="1.0" encoding="{encoding}"?><soap:Envelope xmlns:soap="{SOAP11_ENV}" '
            f'xmlns:lb="{NS}"><soap:Body><lb:{op}>{head}{inner}</lb:{op}></soap:Body></soap:Envelope>')
    return text.encode(encoding)


def answer(raw):
    """(RetCode, {field: text}) of a legacy answer, after checking it is GBK and valid."""
    assert re.match(rb"<\?xml[^>]*encoding=['\"]GBK['\"]", raw)
    env = etree.fromstring(raw)
    response = env.find(f"{{{SOAP11_ENV}}}Body")[0]
    assert legacy_schema().validate(response), legacy_schema().error_log
    ret = response[0]
    fields = {etree.QName(c).localname: (c.text if len(c) == 0 else c) for c in ret}
    return fields["RetCode"], fields


def fault(raw):
    env = etree.fromstring(raw)
    el = env.find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    return el.findtext("faultcode"), el.findtext("faultstring")


def post(app, op, fields, **kwargs):
    status, ctype, raw = wsgi(app, body=request(op, fields, **kwargs))
    assert ctype == "text/xml; charset=GBK"
    return status, raw


def user(arrears=True):
    return next(u for u in seed_users(PROVINCE) if (u.balance < 0) == arrears and u.user_state == "00")


def test_money_helpers_of_the_peer_are_exact():
    for value, text in ((0, "0.00"), (1, "0.01"), (-1, "-0.01"), (12345, "123.45"), (-999_999_999_999, "-9999999999.99")):
        assert yuan(value) == text and fen(text) == value


def test_arrears_query_in_yuan_and_gbk(app):
    u = user()
    status, raw = post(app, "QryOweFee", [("MsisdnNo", u.msisdn), ("BankCode", "ICBC")])
    assert status == "200 OK"
    code, f = answer(raw)
    assert code == "0" and f["RetMsg"] == "成功"
    assert fen(f["AcctBalance"]) == u.balance and fen(f["OweFee"]) == -u.balance
    assert f["UserStatus"] == "1" and f["CustName"].endswith(u.cust_name[-1])
    items = f["OweItems"]
    assert sum(fen(i.findtext(f"{{{NS}}}ItemFee")) for i in items) == -u.balance
    assert "月租费".encode("gbk") in raw


def test_a_utf8_request_is_read_and_still_answered_in_gbk(app):
    u = user(False)
    status, ctype, raw = wsgi(app, body=request("QryBalance", [("MsisdnNo", u.msisdn)], encoding="UTF-8"),
                              content_type="text/xml; charset=utf-8")
    code, f = answer(raw)
    assert (status, ctype, code, fen(f["AcctBalance"]), f["OweFee"]) == (
        "200 OK", "text/xml; charset=GBK", "0", u.balance, "0.00")
    assert app.legacy.requests[-1]["charset"] == "utf-8"


def test_payment_rules(app):
    u = user()
    serial = "B" + uuid.uuid4().hex[:16]
    pay = [("BankCode", "ICBC"), ("BankSeq", serial), ("MsisdnNo", u.msisdn), ("PayAmt", "0.01"),
           ("PayTime", "20261127103000")]
    code, first = answer(post(app, "PayFee", pay)[1])
    assert code == "0" and first["PayAmt"] == "0.01"
    code, again = answer(post(app, "PayFee", pay)[1])
    assert code == "0" and again["BillSeq"] == first["BillSeq"] and again["AcctBalance"] == first["AcctBalance"]
    with app.engine.connect() as conn:
        balance = conn.execute(select(store.accounts.c.balance).where(
            store.accounts.c.peer == f"BILLING-{PROVINCE}", store.accounts.c.msisdn == u.msisdn)).scalar()
    assert yuan(balance) == first["AcctBalance"]
    assert answer(post(app, "PayFee", [(k, "0.02" if k == "PayAmt" else v) for k, v in pay])[1])[0] == "2002"
    zero = [(k, {"PayAmt": "0.00", "BankSeq": serial + "Z"}.get(k, v)) for k, v in pay]
    assert answer(post(app, "PayFee", zero)[1])[0] == "2001"
    nobody = [(k, {"MsisdnNo": "19999999999", "BankSeq": serial + "N"}.get(k, v)) for k, v in pay]
    assert answer(post(app, "PayFee", nobody)[1])[0] == "1001"


def test_cancellation_rules(app):
    u = user(False)
    serial = "B" + uuid.uuid4().hex[:16]
    pay = [("BankCode", "CCB"), ("BankSeq", serial), ("MsisdnNo", u.msisdn), ("PayAmt", "50.00"),
           ("PayTime", "20261127103000")]
    assert answer(post(app, "PayFee", pay)[1])[0] == "0"

    def cancel(seq, orig=serial, amount="50.00", msisdn=u.msisdn):
        return answer(post(app, "CancelPay", [("BankCode", "CCB"), ("BankSeq", seq), ("OrigBankSeq", orig),
                                              ("MsisdnNo", msisdn), ("CancelAmt", amount),
                                              ("CancelTime", "20261127103500")])[1])

    assert cancel(serial + "C0", amount="49.99")[0] == "3004"
    assert cancel(serial + "C0", orig=serial + "NONE")[0] == "3001"
    code, f = cancel(serial + "C1")
    assert code == "0" and f["CancelAmt"] == "50.00" and fen(f["AcctBalance"]) == u.balance
    assert cancel(serial + "C1")[0] == "0"            # the same cancellation again: its first answer
    assert cancel(serial + "C2")[0] == "3002"
    assert cancel(serial, orig=serial)[0] == "2002"   # a payment's serial reused for a cancellation
    old = "B" + uuid.uuid4().hex[:16]
    assert answer(post(app, "PayFee", [(k, old if k == "BankSeq" else v) for k, v in pay])[1])[0] == "0"
    with app.engine.begin() as conn:
        conn.execute(update(store.payments).where(store.payments.c.bank_serial == old).values(acct_date="20200101"))
    assert cancel(old + "C", orig=old)[0] == "3003"


def test_user_sync_follows_the_sequence(app):
    base = [("UserId", "U" + uuid.uuid4().hex[:10]), ("MsisdnNo", user().msisdn), ("CustId", "C1"),
            ("ProductId", "P1"), ("NetType", "50"), ("PrepayFlag", "0"), ("UserStatus", "1"),
            ("ProvCode", PROVINCE), ("AreaCode", "025"), ("ChgTime", "20261127103000")]
    assert answer(post(app, "SyncUser", base + [("SyncSeq", "5")])[1])[1]["DealFlag"] == "0"
    assert answer(post(app, "SyncUser", base + [("SyncSeq", "5")])[1])[1]["DealFlag"] == "1"
    assert answer(post(app, "SyncUser", base + [("SyncSeq", "4")])[1])[1]["DealFlag"] == "1"
    assert answer(post(app, "SyncUser", base + [("SyncSeq", "6")])[1])[1]["DealFlag"] == "0"


@pytest.mark.parametrize("body, content_type, why", [
    (request("PayFee", [("BankCode", "ICBC"), ("BankSeq", "X"), ("MsisdnNo", "18603011234"),
                        ("PayAmt", "1.5"), ("PayTime", "20261127103000")]), None, "LegacyBilling.xsd"),
    (request("PayFee", [("BankCode", "ICBC"), ("BankSeq", "X"), ("MsisdnNo", "18603011234"),
                        ("PayAmt", "1e3"), ("PayTime", "20261127103000")]), None, "LegacyBilling.xsd"),
    (request("QryOweFee", [("MsisdnNo", "18603011234")]), None, "LegacyBilling.xsd"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>', None, "DOCTYPE"),
    (b"<soap:Envelope xmlns:soap='%s'><soap:Body><lb:Nope xmlns:lb='%s'/></soap:Body></soap:Envelope>"
     % (SOAP11_ENV.encode(), NS.encode()), None, "not an operation"),
    (request("QryBalance", [("MsisdnNo", "18603011234")]).replace(b"18603011234", b"\xff\xfe"), None, "not valid"),
    (b"not xml", None, "well-formed"),
    (b"", None, "empty"),
])
def test_bad_requests_are_client_faults_in_gbk(app, body, content_type, why):
    status, ctype, raw = wsgi(app, body=body, content_type=content_type or "text/xml; charset=GBK")
    assert status.startswith("500") and ctype == "text/xml; charset=GBK"
    code, text = fault(raw)
    assert code == "soap:Client" and why in text


def test_unknown_province_or_path_is_not_the_legacy_peer(app):
    status, _, _ = wsgi(app, method="GET", path="/peers/legacy_billing/00/LegacyBilling", query="wsdl")
    assert status.startswith("404")
    status, _, _ = wsgi(app, method="GET", path="/peers/legacy_billing/34/BankPayment", query="wsdl")
    assert status.startswith("404")


def test_wsdl_is_served_with_its_address_and_zeep_can_use_it(app):
    status, _, raw = wsgi(app, method="GET", query="wsdl")
    assert status == "200 OK"
    assert b'location="http://sandbox.test:8081' + PATH.encode() + b'"' in raw
    assert b'schemaLocation="http://sandbox.test:8081' + PATH.encode() + b'?xsd=LegacyBilling.xsd"' in raw
    status, _, xsd = wsgi(app, method="GET", query="xsd=LegacyBilling.xsd")
    assert status == "200 OK" and b'targetNamespace="http://billing.legacy.province/ws"' in xsd
    assert wsgi(app, method="GET", query="xsd=BssTypes.xsd")[0].startswith("404")
    # over real HTTP, as SoapUI or a client generator would load it
    server, url = serve_in_thread(app)
    try:
        client = zeep.Client(f"{url}{PATH}?wsdl", settings=zeep.Settings(forbid_dtd=True, forbid_entities=True))
        service = client.bind("LegacyBilling", "LegacyBillingSoap11")
        result = service.QryBalance(SysCode="SOAPUI", SeqNo="S1", ReqTime="20261127103000",
                                    MsisdnNo=user(False).msisdn)
        assert result.RetCode == "0" and result.SeqNo == "S1" and result.OweFee == "0.00"
    finally:
        server.shutdown()
        server.server_close()


def test_control_makes_the_legacy_peer_fail_like_the_others(app):
    app.behaviour["BILLING-76"] = {"delay_ms": 0, "fault": "down"}
    try:
        status, ctype, raw = wsgi(app, path="/peers/legacy_billing/76/LegacyBilling",
                                  body=request("QryBalance", [("MsisdnNo", "18603011234")]))
        assert status.startswith("500") and fault(raw) == ("soap:Server", "down")
    finally:
        app.behaviour.pop("BILLING-76")
