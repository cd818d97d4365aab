"""SOAP 1.2 at the same address as SOAP 1.1: every operation answers a SOAP 1.2 envelope whose
Body holds the same answer as over SOAP 1.1; zeep's Soap12 binding calls every service; bad
input gets a SOAP 1.2 fault (env:Sender + bss:Client.X subcode, HTTP 400) and a failing peer an
env:Receiver fault (HTTP 500). The version is the envelope's; the Content-Type only decides for
requests whose envelope could not be read."""
from __future__ import annotations

import re
import uuid

import pytest
import requests
import zeep
from lxml import etree
from zeep.transports import Transport

from sandbox.store import seed_cards, seed_users
from services.models import CONTRACTS, to_xml
from tests.e2e.conftest import control, delivered, make_args, outbox_rows, post, wait_for
from tests.e2e.test_bad_input import SOAP as SOAP11, assert_client_fault, envelope as envelope11

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
FAULT_NS = "http://ws.chinaunicom.cn/bssFault"
HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"
XML_NS = "http://www.w3.org/XML/1998/namespace"
SOAP12_TYPE = "application/soap+xml; charset=utf-8"

# The Envelope, Header, Body and Fault of the W3C SOAP 1.2 envelope schema
# (http://www.w3.org/2003/05/soap-envelope, SOAP 1.2 Part 1 section 5), written out here so the
# test needs no network; xml:lang is checked by the test (importing xml.xsd would need one).
SOAP12_XSD = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:env="http://www.w3.org/2003/05/soap-envelope"
    targetNamespace="http://www.w3.org/2003/05/soap-envelope" elementFormDefault="qualified">
  <xs:element name="Envelope">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="env:Header" minOccurs="0"/>
        <xs:element ref="env:Body"/>
      </xs:sequence>
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="Header">
    <xs:complexType>
      <xs:sequence><xs:any namespace="##other" processContents="lax" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="Body">
    <xs:complexType>
      <xs:sequence><xs:any namespace="##any" processContents="lax" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:anyAttribute namespace="##other" processContents="lax"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="Fault">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="Code" type="env:faultcode"/>
        <xs:element name="Reason" type="env:faultreason"/>
        <xs:element name="Node" type="xs:anyURI" minOccurs="0"/>
        <xs:element name="Role" type="xs:anyURI" minOccurs="0"/>
        <xs:element name="Detail" type="env:detail" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:complexType name="faultreason">
    <xs:sequence><xs:element name="Text" type="env:reasontext" maxOccurs="unbounded"/></xs:sequence>
  </xs:complexType>
  <xs:complexType name="reasontext">
    <xs:simpleContent>
      <xs:extension base="xs:string">
        <xs:anyAttribute namespace="http://www.w3.org/XML/1998/namespace" processContents="skip"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:complexType name="faultcode">
    <xs:sequence>
      <xs:element name="Value" type="env:faultcodeEnum"/>
      <xs:element name="Subcode" type="env:subcode" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:simpleType name="faultcodeEnum">
    <xs:restriction base="xs:QName">
      <xs:enumeration value="env:DataEncodingUnknown"/>
      <xs:enumeration value="env:MustUnderstand"/>
      <xs:enumeration value="env:Receiver"/>
      <xs:enumeration value="env:Sender"/>
      <xs:enumeration value="env:VersionMismatch"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:complexType name="subcode">
    <xs:sequence>
      <xs:element name="Value" type="xs:QName"/>
      <xs:element name="Subcode" type="env:subcode" minOccurs="0"/>
    </xs:sequence>
  </xs:complexType>
  <xs:complexType name="detail">
    <xs:sequence><xs:any namespace="##any" processContents="lax" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
    <xs:anyAttribute namespace="##other" processContents="lax"/>
  </xs:complexType>
</xs:schema>"""
ENVELOPE_SCHEMA = etree.XMLSchema(etree.fromstring(SOAP12_XSD))


def envelope12(service: str, operation: str, args: dict, encoding: str = "utf-8") -> bytes:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12})
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(to_xml(CONTRACTS[service], operation, args))
    return etree.tostring(env, xml_declaration=True, encoding=encoding)


def post12(url: str, data: bytes, action: str | None = None, charset: str = "utf-8"):
    ctype = f"application/soap+xml; charset={charset}" + (f'; action="{action}"' if action else "")
    return post(url, data, ctype)


def soap12_envelope(body: bytes) -> etree._Element:
    """The answer parsed and checked against the SOAP 1.2 envelope schema."""
    doc = etree.fromstring(body)
    assert doc.tag == f"{{{SOAP12}}}Envelope", body[:300]
    ENVELOPE_SCHEMA.assertValid(doc)
    return doc


def body_child(doc: etree._Element, ns: str) -> etree._Element:
    (body,) = doc.findall(f"{{{ns}}}Body")
    (child,) = [c for c in body if isinstance(c.tag, str)]
    return child


def assert_soap12_fault(status, ctype, body, code: str, *words: str, receiver: bool = False):
    """A SOAP 1.2 fault: env:Sender (400) or env:Receiver (500), the bus's code as the subcode
    bss:<code>, the reason in English, BssFault in env:Detail. Returns the env:Fault element."""
    assert status == (500 if receiver else 400), body[:300]
    assert ctype == SOAP12_TYPE, ctype
    assert b"<html" not in body.lower() and b"Traceback" not in body
    # valid against the envelope schema: Code/Value one of its five codes, Subcode/Value a QName
    # whose prefix is in scope, Reason/Text, Detail
    fault = body_child(soap12_envelope(body), SOAP12)
    assert fault.tag == f"{{{SOAP12}}}Fault", body
    value = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value")
    assert _resolve(value) == etree.QName(SOAP12, "Receiver" if receiver else "Sender").text, value.text
    subcode = fault.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    assert _resolve(subcode) == etree.QName(FAULT_NS, code).text, subcode.text
    assert subcode.text == f"bss:{code}"
    (text,) = fault.findall(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text")
    assert text.get(f"{{{XML_NS}}}lang") == "en"
    reason = text.text
    assert reason and reason[0].isupper(), reason
    if not receiver:   # a sentence of the bus's own (a Receiver fault may quote the peer)
        assert reason.rstrip().endswith(".") or reason.endswith(")"), reason
    for word in words:
        assert word in reason, reason
    detail = fault.find(f"{{{SOAP12}}}Detail/{{{FAULT_NS}}}BssFault")
    assert detail is not None and detail.findtext(f"{{{FAULT_NS}}}RSP_CODE")
    assert detail.findtext(f"{{{FAULT_NS}}}RSP_DESC") == reason
    return fault


def _resolve(value: etree._Element) -> str:
    """A QName-valued element's text as {namespace}local, by the prefixes in scope."""
    prefix, _, local = value.text.strip().rpartition(":")
    return etree.QName(value.nsmap[prefix or None], local).text


def paths(element: etree._Element, prefix: str = "") -> list[tuple[str, etree._Element]]:
    """(path of Clark names, element) of ``element`` and everything under it, in document order."""
    path = f"{prefix}/{element.tag}"
    out = [(path, element)]
    for child in element:
        if isinstance(child.tag, str):
            out += paths(child, path)
    return out


def shape(element: etree._Element) -> list[str]:
    """The element paths under ``element``: its shape, not its values."""
    return [path for path, _ in paths(element)]


PER_CALL = {f"{{{HEAD_NS}}}{name}" for name in ("TRANS_IDO", "PROC_ID", "TRANS_IDH", "PROCESS_TIME")}


def values(element: etree._Element) -> list[tuple[str, str]]:
    """(path, text) of every leaf but the per-call header fields."""
    return [(path, (el.text or "").strip()) for path, el in paths(element)
            if len(el) == 0 and el.tag not in PER_CALL]


def one_off_keys(service: str, operation: str, done: dict) -> dict:
    """Body fields that make a repeat of a one-off example a first call of its own. Only TopUp
    needs them (a card tops up once); QueryTopUp then asks for the top-up this test made. The
    other examples answer a repeat as they answered the first call (idempotent by their keys)."""
    if (service, operation) == ("TopUp", "TopUp"):
        example = make_args(service, operation)["UNI_BSS_BODY"]
        active = [c["card_no"] for c in seed_cards(example["CARD_NO"][1:3]) if c["state"] == "1"]
        n = done.setdefault("topups", 0)
        done["topups"] += 1
        done["TOPUP_SERIAL"] = f"S12{uuid.uuid4().hex[:16]}"
        # from the third-last active card down: the closed-loop test takes the last one
        return {"CARD_NO": active[-3 - n], "TOPUP_SERIAL": done["TOPUP_SERIAL"]}
    if (service, operation) == ("TopUp", "QueryTopUp") and "TOPUP_SERIAL" in done:
        return {"TOPUP_SERIAL": done["TOPUP_SERIAL"]}
    return {}


@pytest.fixture(scope="module")
def schemas(sqlite_bus):
    return sqlite_bus.app.files.schemas


# -- every operation answers SOAP 1.2 like SOAP 1.1 ----------------------------------------------
@pytest.mark.parametrize("service", list(CONTRACTS))
def test_every_operation_answers_soap12_as_it_answers_soap11(sqlite_bus, schemas, service):
    """Each example of the service, in the contract's order (a query finds what the call before
    it made), sent over SOAP 1.1 and then over SOAP 1.2 with fresh ids."""
    url = f"{sqlite_bus.url}/ws/{service}"
    ns = CONTRACTS[service].namespace
    done: dict = {}
    for operation in CONTRACTS[service].operations:
        args11 = make_args(service, operation, **one_off_keys(service, operation, done))
        status11, ctype11, body11 = post(url, envelope11(service, operation, args11))
        args = make_args(service, operation, **one_off_keys(service, operation, done))
        status, ctype, body = post12(url, envelope12(service, operation, args), action=operation)
        assert (status11, status) == (200, 200), (operation, body[:500])
        assert ctype11 == "text/xml; charset=utf-8" and ctype == SOAP12_TYPE

        doc = soap12_envelope(body)
        assert [etree.QName(c).localname for c in doc] == ["Body"], "no Header: UNI_BSS_HEAD is in the Result"
        answer = body_child(doc, SOAP12)
        assert answer.tag == f"{{{ns}}}{operation}Response"
        schemas[service].assertValid(answer)   # the contract's own response element, every child
        (result,) = answer
        assert result.tag == f"{{{ns}}}{operation}Result"
        head = result.find(f"{{{HEAD_NS}}}UNI_BSS_HEAD")
        accepted = head is not None and head.findtext(f"{{{HEAD_NS}}}MSG_SENDER") == "BUS"  # store and forward
        assert head is not None and (accepted or result.find(f"{{{ns}}}UNI_BSS_BODY") is not None), (operation, body)
        assert head.findtext(f"{{{HEAD_NS}}}TRANS_IDO") == args["UNI_BSS_HEAD"]["TRANS_IDO"]
        assert head.findtext(f"{{{HEAD_NS}}}RESPONSE/{{{HEAD_NS}}}RSP_CODE") == "0000", (operation, body)

        answer11 = body_child(etree.fromstring(body11), SOAP11)
        assert shape(answer) == shape(answer11), f"{operation}: the same Body over SOAP 1.1 and 1.2"
        if accepted:   # one-way: the next operation (a query) finds its effect once it is delivered
            for sent in (args11, args):   # (a repeated work order is a duplicate: no rows of its own)
                trans_ido = sent["UNI_BSS_HEAD"]["TRANS_IDO"]
                wait_for(lambda: all(r["status"] == "delivered" for r in outbox_rows(sqlite_bus, trans_ido)))
        if operation.startswith("Query"):   # a query answers the same data twice
            assert values(answer) == values(answer11), operation


def test_a_soap12_call_is_journalled_as_received(sqlite_bus):
    u = seed_users("51")[0]
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
    raw = envelope12("BankPayment", "QueryBalance", args)
    status, _, body = post12(f"{sqlite_bus.url}/ws/BankPayment", raw)
    assert status == 200
    inbound, outbound = sqlite_bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert inbound["request"] == raw and inbound["response"] == body and inbound["status"] == "ok"
    assert SOAP11.encode() in outbound["request"], "the bus calls its peers in SOAP 1.1"


def test_gbk_over_soap12_is_answered_in_gbk(sqlite_bus):
    name = "欧阳娜娜"
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("00", "51"), SYNC_SEQ=1)
    args["UNI_BSS_BODY"]["CUSTOMER"]["CUST_NAME"] = name
    raw = envelope12("AccountSync", "SyncThreeAccount", args, encoding="gbk")
    status, ctype, body = post12(f"{sqlite_bus.url}/ws/AccountSync", raw, charset="GBK")
    assert status == 200, body
    assert ctype == "application/soap+xml; charset=gbk"
    assert body.startswith(b"<?xml version='1.0' encoding='gbk'?>")
    assert soap12_envelope(body).xpath("string(//*[local-name()='RSP_CODE'])") == "0000"
    out = delivered(sqlite_bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], "BILLING-51", "HQ-CRM")["BILLING-51"]
    assert name.encode("utf-8") in out["request"], "the peer got the name intact"


def test_a_sandbox_peer_speaks_soap12_too(sqlite_bus):
    u = seed_users("51")[0]
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
    status, ctype, body = post12(f"{sqlite_bus.sandbox_url}/peers/province_billing/51/BankPayment",
                                 envelope12("BankPayment", "QueryBalance", args))
    assert (status, ctype) == (200, SOAP12_TYPE), body[:500]
    doc = soap12_envelope(body)
    assert doc.xpath("string(//*[local-name()='MSG_SENDER'])") == "BILLING-51"
    bad = envelope12("BankPayment", "QueryBalance", args).replace(b"QueryBalance", b"QueryEverything")
    assert_soap12_fault(*post12(f"{sqlite_bus.sandbox_url}/peers/province_billing/51/BankPayment", bad),
                        "Client.UnknownOperation", "QueryEverything")


# -- zeep, through the WSDL's SOAP 1.2 binding ----------------------------------------------------
def zeep_soap12(sqlite_bus, service: str):
    session = requests.Session()
    session.trust_env = False
    transport = Transport(session=session, timeout=30, operation_timeout=30)
    url = f"{sqlite_bus.url}/ws/{service}"
    # the contract as a caller gets it, ?wsdl then its ?xsd= imports (so external loads allowed)
    client = zeep.Client(f"{url}?wsdl", transport=transport,
                         settings=zeep.Settings(strict=True, forbid_dtd=True, forbid_external=False))
    return client.create_service(f"{{{CONTRACTS[service].namespace}}}{service}Soap12Binding", url)


# one operation a service whose example succeeds on its own, whatever ran before
ZEEP_CALLS = {"BankPayment": "QueryBalance", "OrderSync": "SyncOrder", "CardActivation": "QueryCardStatus",
              "AccountSync": "SyncThreeAccount", "BillQuery": "QueryBill", "Provisioning": "SubmitWorkOrder",
              "TopUp": "QueryBalance", "ReverseSync": "SyncVacChange", "InfoQuery": "QueryProducts"}


def test_zeep_calls_cover_every_service():
    assert set(ZEEP_CALLS) == set(CONTRACTS)


@pytest.mark.parametrize("service", list(CONTRACTS))
def test_zeep_calls_every_service_through_its_soap12_binding(sqlite_bus, service):
    operation = ZEEP_CALLS[service]
    args = make_args(service, operation)
    result = getattr(zeep_soap12(sqlite_bus, service), operation)(**args)
    head = zeep.helpers.serialize_object(result, dict)["UNI_BSS_HEAD"]
    assert head["RESPONSE"]["RSP_CODE"] == "0000" and head["TRANS_IDO"] == args["UNI_BSS_HEAD"]["TRANS_IDO"]
    inbound = sqlite_bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])[0]
    assert etree.fromstring(inbound["request"]).tag == f"{{{SOAP12}}}Envelope", "zeep sent SOAP 1.2"


def test_zeep_reads_a_soap12_fault(sqlite_bus):
    args = make_args("OrderSync", "SyncOrder", caller="BANK", route=("00", "51"))
    with pytest.raises(zeep.exceptions.Fault) as caught:
        zeep_soap12(sqlite_bus, "OrderSync").SyncOrder(**args)
    fault = caught.value
    assert fault.code == "env:Sender"
    assert fault.subcodes == [etree.QName(FAULT_NS, "Client.UnknownRoute")]
    assert "ESALE" in fault.message
    assert fault.detail.findtext(f"{{{FAULT_NS}}}BssFault/{{{FAULT_NS}}}TRANS_IDO") == args["UNI_BSS_HEAD"]["TRANS_IDO"]


# -- bad input over SOAP 1.2 ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(sqlite_bus):
    return f"{sqlite_bus.url}/ws/BankPayment"


def balance12(route=None) -> bytes:
    u = seed_users("51")[0]
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=route or ("01", u.msisdn),
                     SERIAL_NUMBER=u.msisdn)
    return envelope12("BankPayment", "QueryBalance", args)


def test_malformed_xml(ws):
    assert_soap12_fault(*post12(ws, balance12()[:-30]), "Client.MalformedRequest", "not well-formed XML")


@pytest.mark.parametrize("payload", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>&xxe;'
    b'</env:Body></env:Envelope>',
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/evil.dtd"><a/>',
], ids=["xxe", "external-dtd"])
def test_doctype(ws, payload):
    assert_soap12_fault(*post12(ws, payload), "Client.MalformedRequest", "DOCTYPE")


def test_missing_required_element(ws):
    body = re.sub(rb"<([a-z0-9]+:)?SERIAL_NUMBER>\d+</([a-z0-9]+:)?SERIAL_NUMBER>", b"", balance12())
    fault = assert_soap12_fault(*post12(ws, body), "Client.ValidationError", "SERIAL_NUMBER")
    trans_ido = etree.fromstring(body).xpath("string(//*[local-name()='TRANS_IDO'])")
    assert fault.findtext(f".//{{{FAULT_NS}}}TRANS_IDO") == trans_ido


def test_unknown_operation(ws):
    body = balance12().replace(b"QueryBalance", b"QueryEverything")
    assert_soap12_fault(*post12(ws, body), "Client.UnknownOperation", "QueryEverything", "Pay")


def test_unknown_number(ws, sqlite_bus):
    body = balance12(route=("01", "19999999999"))
    assert_soap12_fault(*post12(ws, body), "Client.UnknownNumber", "19999999999")
    trans_ido = etree.fromstring(body).xpath("string(//*[local-name()='TRANS_IDO'])")
    (hop,) = sqlite_bus.bus.journal.hops(trans_ido)
    assert hop["status"] == "fault" and hop["fault_code"] == "Client.UnknownNumber"
    assert etree.fromstring(hop["response"]).tag == f"{{{SOAP12}}}Envelope", "the journal keeps what was sent"


def test_unknown_service(sqlite_bus):
    assert_soap12_fault(*post12(f"{sqlite_bus.url}/ws/NoSuchService", balance12()),
                        "Client.UnknownOperation", "NoSuchService")


def test_empty_body(ws):
    assert_soap12_fault(*post12(ws, b""), "Client.MalformedRequest", "empty")


def test_undecodable_charset(ws):
    assert_soap12_fault(*post12(ws, balance12(), charset="klingon"), "Client.MalformedRequest", "klingon")


def test_a_peer_failure_is_a_receiver_fault(ws, sqlite_bus):
    u = seed_users("74")[0]
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
    control(sqlite_bus.sandbox_url, peer="BILLING-74", fault="billing database is down")
    try:
        answer = post12(ws, envelope12("BankPayment", "QueryBalance", args))
    finally:
        control(sqlite_bus.sandbox_url, peer="BILLING-74")
    fault = assert_soap12_fault(*answer, "Server.PeerFault", "BILLING-74", "billing database is down",
                                receiver=True)
    assert fault.findtext(f".//{{{FAULT_NS}}}RSP_CODE") == "9003"
    assert fault.findtext(f".//{{{FAULT_NS}}}TRANS_IDO") == args["UNI_BSS_HEAD"]["TRANS_IDO"]


def test_the_same_fault_in_both_versions(ws):
    """Same reason and same BssFault detail; only the envelope, the code's form and the status differ."""
    body12 = re.sub(rb"<([a-z0-9]+:)?SERIAL_NUMBER>\d+</([a-z0-9]+:)?SERIAL_NUMBER>", b"", balance12())
    body11 = body12.replace(SOAP12.encode(), SOAP11.encode())
    f12 = assert_soap12_fault(*post12(ws, body12), "Client.ValidationError")
    f11 = assert_client_fault(*post(ws, body11), "Client.ValidationError")
    assert f12.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") == f11.findtext("faultstring")
    d12, d11 = f12.find(f"{{{SOAP12}}}Detail")[0], f11.find("detail")[0]
    assert [(e.tag, e.text) for e in d12.iter()] == [(e.tag, e.text) for e in d11.iter()]


# -- which version: the envelope's, else the Content-Type's ---------------------------------------
def test_a_soap12_envelope_sent_as_text_xml_is_answered_in_soap12(ws):
    status, ctype, body = post(ws, balance12(), "text/xml; charset=utf-8")
    assert (status, ctype) == (200, SOAP12_TYPE)
    assert body_child(soap12_envelope(body), SOAP12).tag.endswith("QueryBalanceResponse")


def test_a_soap11_envelope_sent_as_soap_xml_is_answered_in_soap11(ws):
    body = balance12().replace(SOAP12.encode(), SOAP11.encode())
    status, ctype, answer = post12(ws, body)
    assert (status, ctype) == (200, "text/xml; charset=utf-8")
    assert etree.fromstring(answer).tag == f"{{{SOAP11}}}Envelope"
    bad = body.replace(b"QueryBalance", b"QueryEverything")
    assert_client_fault(*post12(ws, bad), "Client.UnknownOperation", "QueryEverything")


def test_before_the_envelope_is_read_the_content_type_decides(ws):
    assert_client_fault(*post(ws, b"<not-xml", "text/xml; charset=utf-8"), "Client.MalformedRequest")
    assert_soap12_fault(*post12(ws, b"<not-xml"), "Client.MalformedRequest")


def test_a_root_that_is_no_soap_envelope(ws):
    body = balance12().replace(SOAP12.encode(), b"http://example.com/not-soap")
    assert_soap12_fault(*post12(ws, body), "Client.MalformedRequest", SOAP12, SOAP11)
