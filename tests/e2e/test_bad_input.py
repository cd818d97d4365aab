"""Bad input gets a SOAP 1.1 Client fault (text/xml, HTTP 500, a sentence a person can act on),
never an HTML page, a traceback or a 200; and the contracts are served over HTTP."""
from __future__ import annotations

import re

import pytest
from lxml import etree

from sandbox.store import seed_users
from services.models import CONTRACTS, to_xml
from tests.e2e.conftest import delivered, get, make_args, post

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_NS = "http://ws.chinaunicom.cn/bssFault"


def envelope(service: str, operation: str, args: dict, encoding: str = "utf-8") -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soapenv": SOAP})
    etree.SubElement(env, f"{{{SOAP}}}Body").append(to_xml(CONTRACTS[service], operation, args))
    return etree.tostring(env, xml_declaration=True, encoding=encoding)


def balance_request(**body) -> bytes:
    u = seed_users("51")[0]
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn),
                     SERIAL_NUMBER=u.msisdn, **body)
    return envelope("BankPayment", "QueryBalance", args)


def assert_client_fault(status, ctype, body, code: str, *words: str):
    assert status == 500, body[:300]
    assert ctype.startswith("text/xml"), ctype
    assert b"<html" not in body.lower() and b"Traceback" not in body
    doc = etree.fromstring(body)
    fault = doc.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None, body
    assert fault.findtext("faultcode").split(":", 1)[-1] == code
    text = fault.findtext("faultstring")
    assert text and text[0].isupper() and text.rstrip().endswith(".") or text.endswith(")"), text
    for word in words:
        assert word in text, text
    detail = fault.find(f"detail/{{{FAULT_NS}}}BssFault")
    assert detail is not None and detail.findtext(f"{{{FAULT_NS}}}RSP_CODE")
    return fault


@pytest.fixture(scope="module")
def ws(sqlite_bus):
    return f"{sqlite_bus.url}/ws/BankPayment"


def test_a_valid_request_gets_200(ws):
    status, ctype, body = post(ws, balance_request())
    assert status == 200 and ctype.startswith("text/xml") and b"QueryBalanceResponse" in body


def test_malformed_xml(ws):
    assert_client_fault(*post(ws, balance_request()[:-30]), "Client.MalformedRequest", "not well-formed XML")


@pytest.mark.parametrize("payload", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;'
    b'</soapenv:Body></soapenv:Envelope>',
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><a>&lol3;</a>',
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/evil.dtd"><a/>',
], ids=["xxe", "billion-laughs", "external-dtd"])
def test_doctype_and_entities_are_refused(ws, payload):
    assert_client_fault(*post(ws, payload), "Client.MalformedRequest", "DOCTYPE")


def test_body_over_the_size_limit(ws, sqlite_bus):
    limit = sqlite_bus.settings.max_body_bytes
    big = balance_request().replace(b"<soapenv:Body>", b"<soapenv:Body>" + b" " * (limit + 10))
    assert_client_fault(*post(ws, big), "Client.LimitExceeded", "bus.max_body_bytes", str(limit))


def test_nesting_deeper_than_the_limit(ws):
    deep = b"<a>" * 100 + b"</a>" * 100
    body = balance_request().replace(b"</soapenv:Body>", deep + b"</soapenv:Body>")
    body = body.replace(b"<soapenv:Header/>", b"")
    status, ctype, out = post(ws, body)
    assert_client_fault(status, ctype, out, "Client.LimitExceeded", "bus.max_depth")


def test_wrong_namespace(ws):
    body = balance_request().replace(b"http://ws.chinaunicom.cn/BankPayment/unibssBody",
                                     b"http://example.com/other")
    assert_client_fault(*post(ws, body), "Client.UnknownOperation", "namespace")


def test_missing_required_element(ws):
    body = re.sub(rb"<([a-z0-9]+:)?SERIAL_NUMBER>\d+</([a-z0-9]+:)?SERIAL_NUMBER>", b"", balance_request())
    assert_client_fault(*post(ws, body), "Client.ValidationError", "SERIAL_NUMBER")


def test_value_breaking_a_pattern(ws):
    u = seed_users("51")[0]
    body = balance_request().replace(f">{u.msisdn}<".encode(), b">1234<")
    assert_client_fault(*post(ws, body), "Client.ValidationError", "1234")


def test_unknown_operation(ws):
    body = balance_request().replace(b"QueryBalance", b"QueryEverything")
    assert_client_fault(*post(ws, body), "Client.UnknownOperation", "QueryEverything", "Pay")


def test_unknown_service(sqlite_bus):
    assert_client_fault(*post(f"{sqlite_bus.url}/ws/NoSuchService", balance_request()),
                        "Client.UnknownOperation", "NoSuchService", "BankPayment")


@pytest.mark.parametrize("data, ctype, words", [
    (b"\xff\xfe\xfa", "text/xml; charset=utf-8", ("UTF-8",)),
    (None, "text/xml; charset=klingon", ("klingon",)),
    (b"\x81\x20", "text/xml; charset=gbk", ("gbk",)),
])
def test_undecodable_charset(ws, data, ctype, words):
    body = balance_request()
    if data is not None:
        body = body.replace(b"<soapenv:Body>", b"<soapenv:Body>" + data)
    assert_client_fault(*post(ws, body, ctype), "Client.MalformedRequest", *words)


def test_soap12_envelope_is_accepted_and_answered_in_soap12(ws):
    """SOAP 1.2 is served at the same address (more in test_soap12.py)."""
    soap12 = "http://www.w3.org/2003/05/soap-envelope"
    body = balance_request().replace(SOAP.encode(), soap12.encode())
    status, ctype, out = post(ws, body, 'application/soap+xml; charset=utf-8; action="QueryBalance"')
    assert status == 200, out[:300]
    assert ctype == "application/soap+xml; charset=utf-8"
    doc = etree.fromstring(out)
    assert doc.tag == f"{{{soap12}}}Envelope"
    assert etree.QName(doc.find(f"{{{soap12}}}Body")[0]).localname == "QueryBalanceResponse"
    assert doc.xpath("string(//*[local-name()='RSP_CODE'])") == "0000"


def test_empty_body(ws):
    assert_client_fault(*post(ws, b""), "Client.MalformedRequest", "empty")


def test_bad_input_is_journalled(ws, sqlite_bus):
    post(ws, b"<not-xml")
    rows = sqlite_bus.bus.journal.search(status="fault", limit=5)
    assert any(r["request"] == b"<not-xml" and r["fault_code"] == "Client.MalformedRequest" for r in rows)


def test_gbk_request_with_chinese_names_is_accepted_and_stored(sqlite_bus):
    name = "欧阳娜娜"
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("00", "51"), SYNC_SEQ=1)
    args["UNI_BSS_BODY"]["CUSTOMER"]["CUST_NAME"] = name
    raw = envelope("AccountSync", "SyncThreeAccount", args, encoding="gbk")
    assert name.encode("gbk") in raw
    status, ctype, body = post(f"{sqlite_bus.url}/ws/AccountSync", raw, "text/xml; charset=GBK")
    assert status == 200, body
    assert "gbk" in ctype.lower(), "a GBK caller is answered in GBK"
    answer = etree.fromstring(body)
    assert answer.xpath("string(//*[local-name()='RSP_CODE'])") == "0000"
    assert answer.xpath("string(//*[local-name()='MSG_SENDER'])") == "BUS", "one-way: accepted by the bus"
    hops = sqlite_bus.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert hops[0]["request"] == raw, "the journal keeps the bytes exactly as received"
    assert name.encode("gbk") in hops[0]["request"]
    out = delivered(sqlite_bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], "BILLING-51", "HQ-CRM")
    assert all(name.encode("utf-8") in hop["request"] for hop in out.values()), "each peer got the name intact"


def test_non_soap_paths_answer_plain_text_never_html(sqlite_bus):
    status, ctype, body = get(f"{sqlite_bus.url}/no/such/page")
    assert status == 404 and ctype.startswith("text/plain") and b"<html" not in body.lower()
    status, ctype, body = get(f"{sqlite_bus.url}/healthz")
    assert status == 200 and b'"database": "ok"' in body


def test_wsdl_is_the_contract_file_with_the_address_rewritten(sqlite_bus):
    for name, contract in CONTRACTS.items():
        status, ctype, body = get(f"{sqlite_bus.url}/ws/{name}?wsdl")
        assert status == 200 and ctype.startswith("text/xml")
        doc = etree.fromstring(body)
        # both ports, SOAP 1.1 (soap:address) and SOAP 1.2 (soap12:address), name where it is served
        ports = doc.xpath("//*[local-name()='port']/*[local-name()='address']")
        assert [etree.QName(a).namespace for a in ports] == ["http://schemas.xmlsoap.org/wsdl/soap/",
                                                             "http://schemas.xmlsoap.org/wsdl/soap12/"]
        assert [a.get("location") for a in ports] == [f"{sqlite_bus.url}/ws/{name}"] * 2
        original = etree.parse(str(contract.wsdl_path)).getroot()
        assert [e.tag for e in doc.iter()] == [e.tag for e in original.iter()], "served = the file itself"
        # every import resolves over HTTP, transitively
        seen, todo = set(), list(doc.xpath("//@schemaLocation"))
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            shared = url.startswith(f"{sqlite_bus.url}/ws/common?xsd=")
            assert shared or url.startswith(f"{sqlite_bus.url}/ws/{name}?xsd="), url
            assert shared == (url.endswith("UniBssHead.xsd") or url.endswith("BssTypes.xsd")), url
            status, _, xsd = get(url)
            assert status == 200, url
            todo += etree.fromstring(xsd).xpath("//@schemaLocation")
        assert len(seen) >= 3


def test_unknown_xsd_is_a_404(sqlite_bus):
    status, ctype, body = get(f"{sqlite_bus.url}/ws/BankPayment?xsd=../../etc/passwd")
    assert status == 404 and ctype.startswith("text/plain")


@pytest.mark.parametrize("cards, card_range, word", [
    (None, None, "neither"),
    ({"CARD_NO": ["951000000000001"]}, {"BEGIN_CARD_NO": "951000000000001", "END_CARD_NO": "951000000000002"}, "both"),
])
def test_activate_cards_needs_exactly_one_of_cards_and_range(sqlite_bus, cards, card_range, word):
    args = make_args("CardActivation", "ActivateCards", caller="UCRM", route=("00", "51"))
    args["UNI_BSS_BODY"].pop("CARDS", None)
    if cards:
        args["UNI_BSS_BODY"]["CARDS"] = cards
    if card_range:
        args["UNI_BSS_BODY"]["CARD_RANGE"] = card_range
    status, ctype, body = post(f"{sqlite_bus.url}/ws/CardActivation", envelope("CardActivation", "ActivateCards", args))
    assert_client_fault(status, ctype, body, "Client.ValidationError", "CARDS", word)


def test_gbk_text_labelled_gb2312_is_read_as_gbk(sqlite_bus):
    """镕 is in GBK, not in GB2312: legacy senders label GBK text GB2312 all the same."""
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("00", "51"), SYNC_SEQ=1)
    args["UNI_BSS_BODY"]["CUSTOMER"]["CUST_NAME"] = "朱镕"
    raw = envelope("AccountSync", "SyncThreeAccount", args, encoding="gbk")
    status, _, body = post(f"{sqlite_bus.url}/ws/AccountSync", raw, "text/xml; charset=gb2312")
    assert status == 200, body
    out = delivered(sqlite_bus, args["UNI_BSS_HEAD"]["TRANS_IDO"], "BILLING-51", "HQ-CRM")["BILLING-51"]
    assert "朱镕".encode("utf-8") in out["request"]


def test_unknown_service_with_a_broken_content_length_is_still_a_client_fault(sqlite_bus):
    status, ctype, body = post(f"{sqlite_bus.url}/ws/NoSuchService", balance_request(),
                               headers={"Content-Length": "many"})
    assert_client_fault(status, ctype, body, "Client.UnknownOperation", "NoSuchService")


# -- the parser's limits over HTTP (services/inbound.py Limits; unit tests: tests/services/test_limits.py)

def with_header_block(payload: bytes) -> bytes:
    """balance_request() with ``payload`` in a SOAP Header block (the limits hold wherever it is)."""
    return balance_request().replace(b"<soapenv:Body>", b"<soapenv:Header><x>" + payload + b"</x></soapenv:Header>"
                                     b"<soapenv:Body>")


LIMIT_CASES = [
    ("max_elements", b"<a/>" * 10_001),
    ("max_attributes", b"<a " + b" ".join(b'n%d="1"' % i for i in range(33)) + b"/>"),
    ("max_namespaces", b"<a " + b" ".join(b'xmlns:p%d="urn:%d"' % (i, i) for i in range(257)) + b"/>"),
    ("max_text_chars", b"<a>" + b"x" * 16_385 + b"</a>"),
    ("max_attribute_chars", b'<a b="' + b"x" * 4_097 + b'"/>'),
    ("max_depth", b"<a>" * 10_000 + b"</a>" * 10_000),
    ("max_name_chars", b"<" + b"n" * 40_000 + b"/>"),
]


@pytest.mark.parametrize("setting, payload", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_each_limit_over_http(ws, setting, payload):
    assert_client_fault(*post(ws, with_header_block(payload)), "Client.LimitExceeded", f"bus.{setting}")


@pytest.mark.parametrize("setting, payload", LIMIT_CASES[:2], ids=[c[0] for c in LIMIT_CASES[:2]])
def test_a_limit_in_soap12_is_a_sender_fault(ws, setting, payload):
    body = with_header_block(payload).replace(SOAP.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    status, ctype, out = post(ws, body, "application/soap+xml; charset=utf-8")
    assert status == 400 and ctype.startswith("application/soap+xml"), out[:300]
    assert b"bss:Client.LimitExceeded" in out and f"bus.{setting}".encode() in out


@pytest.mark.parametrize("setting, payload", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_the_sandbox_peers_hold_the_same_limits(sqlite_bus, setting, payload):
    url = f"{sqlite_bus.sandbox_url}/peers/province_billing/51/BankPayment"
    assert_client_fault(*post(url, with_header_block(payload)), "Client.LimitExceeded", f"bus.{setting}")


def test_the_legacy_billing_peer_holds_the_depth_limit(sqlite_bus):
    status, _, out = post(f"{sqlite_bus.sandbox_url}/peers/legacy_billing/34/LegacyBilling",
                          with_header_block(b"<a>" * 300 + b"</a>" * 300))
    assert status == 500 and b"bus.max_depth" in out.decode("gbk").encode()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_a_client_fault(ws, encoding):
    import gzip
    status, ctype, out = post(ws, gzip.compress(balance_request()), headers={"Content-Encoding": encoding})
    assert_client_fault(status, ctype, out, "Client.MalformedRequest", "Content-Encoding")


def test_a_gzip_bomb_is_never_expanded(ws):
    import gzip
    bomb = gzip.compress(b"<a>" + b" " * (100 << 20) + b"</a>", 9)    # 100 MB in about 100 KB
    assert len(bomb) < 200_000
    assert_client_fault(*post(ws, bomb, headers={"Content-Encoding": "gzip"}), "Client.MalformedRequest",
                        "Content-Encoding")


@pytest.mark.parametrize("action", ["Pay", '"Pay"', "urn:x:Reverse", "NoSuchOperation"])
def test_a_soapaction_naming_another_operation_is_refused(ws, action):
    assert_client_fault(*post(ws, balance_request(), headers={"SOAPAction": action}),
                        "Client.ActionMismatch", "QueryBalance")


@pytest.mark.parametrize("action", ["QueryBalance", '"QueryBalance"', '""'])
def test_a_soapaction_naming_the_operation_is_fine(ws, action):
    status, _, body = post(ws, balance_request(), headers={"SOAPAction": action})
    assert status == 200, body[:300]


def test_a_soap12_action_naming_another_operation_is_refused(ws):
    body = balance_request().replace(SOAP.encode(), b"http://www.w3.org/2003/05/soap-envelope")
    status, ctype, out = post(ws, body, 'application/soap+xml; charset=utf-8; action="Pay"')
    assert status == 400 and b"bss:Client.ActionMismatch" in out, out[:300]


@pytest.fixture(scope="module")
def tight_bus(tmp_path_factory):
    """A bus whose config lowers every limit: the settings reach the endpoints."""
    from bus.embedded import EmbeddedBus
    from config.settings import load_settings

    settings = load_settings(env={})
    settings.raw["bus"].update(max_body_bytes=3000, max_depth=12, max_elements=40, max_attributes=4,
                               max_text_chars=40, max_attribute_chars=60)
    with EmbeddedBus(settings=settings, workdir=tmp_path_factory.mktemp("tight")) as embedded:
        yield embedded


@pytest.mark.parametrize("setting, payload", [
    ("max_body_bytes", b" " * 3000), ("max_depth", b"<a>" * 10 + b"</a>" * 10), ("max_elements", b"<a/>" * 20),
    ("max_attributes", b'<a b="" c="" d="" e="" f=""/>'), ("max_text_chars", b"<a>" + b"x" * 41 + b"</a>"),
    ("max_attribute_chars", b'<a b="' + b"x" * 61 + b'"/>'),
])
def test_configured_limits_hold(tight_bus, setting, payload):
    ws = f"{tight_bus.url}/ws/BankPayment"
    assert post(ws, balance_request())[0] == 200, "a normal request is within even these limits"
    assert_client_fault(*post(ws, with_header_block(payload)), "Client.LimitExceeded", f"bus.{setting}")


def test_a_value_split_by_a_comment_reaches_the_peer_whole(ws):
    """The contract XSD reads <SERIAL_NUMBER>130<!---->75...</SERIAL_NUMBER> as one number; the
    peer must get that number, not "130" (comments are dropped at the parse)."""
    u = seed_users("51")[0]
    body = balance_request().replace(f">{u.msisdn}<".encode(), f">{u.msisdn[:3]}<!--x-->{u.msisdn[3:]}<".encode(), 1)
    assert b"<!--x-->" in body
    status, _, out = post(ws, body)
    assert status == 200, out[:500]
    assert etree.fromstring(out).xpath("string(//*[local-name()='RSP_CODE'])") == "0000"
