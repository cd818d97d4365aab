"""The inbound parser's limits (services/inbound.py Limits), each one alone, in process: every
limit exceeded is a Client.LimitExceeded naming its bus.* setting, and the defaults pass every
request the contracts allow. (tests/e2e/test_bad_input.py sends the same over HTTP.)"""
from __future__ import annotations

import copy
import io
import json

import pytest
from lxml import etree

from bus.faults import ActionMismatch, LimitExceeded, MalformedRequest
from config.settings import LIMIT_DEFAULTS, load_settings
from services.contracts import ContractFiles
from services.inbound import Limits, check_action, parse_envelope, read_request, soap_version_of
from services.models import CONTRACTS, to_xml
from services.models.common import WSDL_DIR
from services.soap import read_body

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
ENV = (b'<s:Envelope xmlns:s="' + SOAP.encode() + b'"><s:Header>%s</s:Header><s:Body>'
       b'<a xmlns="urn:x"/></s:Body></s:Envelope>')


def examples():
    for path in sorted((WSDL_DIR / "examples").glob("*.json")):
        service, operation = path.stem.split(".")
        yield service, operation, json.loads(path.read_text("utf-8"))


def envelope(service: str, operation: str, args: dict) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soapenv": SOAP})
    etree.SubElement(env, f"{{{SOAP}}}Body").append(to_xml(CONTRACTS[service], operation, args))
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


@pytest.fixture(scope="module")
def files():
    return ContractFiles()


def refused(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(LimitExceeded) as err:
        parse_envelope(data, "text/xml; charset=utf-8", limits or Limits())
    assert err.value.code == "Client.LimitExceeded" and err.value.rsp_code == "8008"
    return err.value.message


def test_the_defaults_are_the_settings_defaults():
    assert Limits() == Limits(**LIMIT_DEFAULTS)
    assert load_settings(env={}).limits == LIMIT_DEFAULTS, "config/bus.yaml says the same"


@pytest.mark.parametrize("name, payload, words", [
    ("max_depth", b"<a>" * 70 + b"</a>" * 70, ("64 levels", "bus.max_depth")),
    ("max_depth", b"<a>" * 10_000 + b"</a>" * 10_000, ("64 levels", "bus.max_depth")),   # past libxml2's 256
    ("max_elements", b"<a/>" * 10_001, ("10000 elements", "bus.max_elements")),
    ("max_attributes", b"<a " + b" ".join(b'n%d="1"' % i for i in range(33)) + b"/>",
     ("<a>", "33 attributes", "bus.max_attributes")),
    ("max_namespaces", b"<a " + b" ".join(b'xmlns:p%d="urn:%d"' % (i, i) for i in range(257)) + b"/>",
     ("more than 256 namespaces", "bus.max_namespaces")),
    ("max_text_chars", b"<a>" + b"x" * 16_385 + b"</a>", ("<a>", "16385 characters", "bus.max_text_chars")),
    ("max_text_chars", "<a>".encode() + "中".encode() * 16_385 + b"</a>", ("16385 characters",)),
    ("max_text_chars", b"<a/>" + b"x" * 16_385 + b"<b/>", ("after element <a>", "bus.max_text_chars")),
    ("max_text_chars", b"<a/>" + b"x" * 16_385, ("after element <a>",)),
    ("max_attribute_chars", b'<a b="' + b"x" * 4_097 + b'"/>', ("4097 characters", "bus.max_attribute_chars")),
    ("max_attribute_chars", b'<a xmlns:p="' + b"x" * 4_097 + b'"/>', ("namespace name", "bus.max_attribute_chars")),
    ("max_name_chars", b"<" + b"n" * 257 + b"/>", ("element's name has 257 characters", "bus.max_name_chars")),
    ("max_name_chars", b"<a " + b"n" * 257 + b'="1"/>', ("attribute name of element <a>", "bus.max_name_chars")),
    ("max_name_chars", b"<a xmlns:" + b"p" * 257 + b'="urn:x"/>', ("namespace prefix", "bus.max_name_chars")),
])
def test_each_limit_is_refused_naming_its_setting(name, payload, words):
    message = refused(ENV % payload)
    assert message[0].isupper() and message.endswith(".")
    for word in words:
        assert word in message, message


def test_a_request_just_at_each_limit_is_read():
    at = b"<a>" * 62 + b"</a>" * 62                         # envelope, header: 64 levels in all
    at += b"<b " + b" ".join(b'n%d="1"' % i for i in range(32)) + b"/>"
    at += b"<c>" + b"x" * 16_384 + b"</c>" + b'<d e="' + b"y" * 4_096 + b'"/>'
    at += b"<" + b"f" * 256 + b" " + b"g" * 256 + b'="1"/>'
    root, _ = parse_envelope(ENV % at, None, Limits())
    assert soap_version_of(root) == "1.1"
    elements = b"<e/>" * (10_000 - 4 - 62 - 4)             # envelope, header, body, a; a..., b c d f
    parse_envelope(ENV % (at + elements), None, Limits())


def test_a_gsoap_envelope_declaring_every_namespace_it_knows_is_read():
    """gSOAP declares its whole namespace table on the Envelope: 33 namespaces for these
    contracts, more for a client generated from more WSDLs."""
    declarations = b" ".join(b'xmlns:ns%d="http://ws.chinaunicom.cn/ns%d"' % (i, i) for i in range(120))
    data = ENV.replace(b"<s:Envelope ", b"<s:Envelope " + declarations + b" ") % b""
    parse_envelope(data, None, Limits())


@pytest.mark.parametrize("field, value, payload", [
    ("max_depth", 5, b"<a><b><c><d/></c></b></a>"),             # Envelope, Header, a, b, c, d: 6
    ("max_elements", 20, b"<x/>" * 30),
    ("max_attributes", 1, b'<a b="1" c="2"/>'),
    ("max_namespaces", 1, b'<a xmlns:b="urn:b" xmlns:c="urn:c"/>'),
    ("max_text_chars", 10, b"<a>12345678901</a>"),
    ("max_attribute_chars", 3, b'<a b="1234"/>'),
    ("max_name_chars", 3, b"<abcd/>"),
])
def test_limits_are_configurable(field, value, payload):
    parse_envelope(ENV % payload, None, Limits())
    message = refused(ENV % payload, Limits(**{field: value}))
    assert f"bus.{field}" in message and str(value) in message


def test_text_split_by_comments_is_one_value_as_the_contract_reads_it(files):
    """The XSD reads all the text of an element, spyne only its first text node: with comments
    kept, <AMOUNT>1<!---->00000</AMOUNT> was valid as 100000 and paid as 1. Comments are dropped."""
    args = json.loads((WSDL_DIR / "examples" / "BankPayment.Pay.json").read_text("utf-8"))
    amount = str(args["UNI_BSS_BODY"]["AMOUNT"])
    data = envelope("BankPayment", "Pay", args).replace(
        f"<AMOUNT>{amount}</AMOUNT>".encode(), f"<AMOUNT>{amount[0]}<!--x-->{amount[1:]}<?pi ?></AMOUNT>".encode())
    assert b"<!--x-->" in data
    root, charset = parse_envelope(data, None, Limits())
    request = read_request(CONTRACTS["BankPayment"], files.schemas["BankPayment"], root, charset, "1.1")
    ns = CONTRACTS["BankPayment"].namespace
    value = request.wrapper.find(f"{{{ns}}}UNI_BSS_BODY/{{{ns}}}AMOUNT")
    assert value.text == amount and len(value) == 0
    comment = ENV % (b"<!--" + b"x" * 100_000 + b"-->")      # a comment is never kept, whatever its size
    assert len(parse_envelope(comment, None, Limits())[0].find(f"{{{SOAP}}}Header")) == 0


def test_gbk_text_is_measured_in_characters():
    text = "欧阳娜娜" * 4_096                                   # 16,384 characters, 32,768 bytes in GBK
    data = ('<?xml version="1.0" encoding="GBK"?>' + (ENV % b"%s").decode().replace("%s", f"<n>{text}</n>"))
    parse_envelope(data.encode("gbk"), "text/xml; charset=GBK", Limits())
    data = data.replace(text, text + "欧")
    assert "16385 characters" in refused_charset(data.encode("gbk"))


def refused_charset(data: bytes) -> str:
    with pytest.raises(LimitExceeded) as err:
        parse_envelope(data, "text/xml; charset=GBK", Limits())
    return err.value.message


@pytest.mark.parametrize("service, operation, args", list(examples()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_request_is_within_the_limits(files, service, operation, args):
    data = envelope(service, operation, args)
    root, charset = parse_envelope(data, "text/xml; charset=utf-8", Limits())
    read_request(CONTRACTS[service], files.schemas[service], root, charset, "1.1", [operation, ""])


def test_the_largest_requests_the_contracts_allow_are_within_the_limits(files):
    """1,000 cards in one activation (the XSD's maxOccurs) and a three-account sync with 500
    subscriptions and every string at its XSD maximum length."""
    args = json.loads((WSDL_DIR / "examples" / "CardActivation.ActivateCards.json").read_text("utf-8"))
    args["UNI_BSS_BODY"]["CARDS"] = {"CARD_NO": [f"95100000{i:07d}" for i in range(1000)]}
    args["UNI_BSS_BODY"].pop("CARD_RANGE", None)
    root, charset = parse_envelope(envelope("CardActivation", "ActivateCards", args), None, Limits())
    read_request(CONTRACTS["CardActivation"], files.schemas["CardActivation"], root, charset, "1.1")

    args = json.loads((WSDL_DIR / "examples" / "AccountSync.SyncThreeAccount.json").read_text("utf-8"))
    subscriptions = args["UNI_BSS_BODY"].get("SUBSCRIPTIONS", {}).get("SUBSCRIPTION") or []
    if subscriptions:
        one = subscriptions[0] if isinstance(subscriptions, list) else subscriptions
        args["UNI_BSS_BODY"]["SUBSCRIPTIONS"]["SUBSCRIPTION"] = [copy.deepcopy(one) for _ in range(500)]
    args["UNI_BSS_BODY"]["CUSTOMER"]["CUST_NAME"] = "名" * 256
    data = envelope("AccountSync", "SyncThreeAccount", args)
    assert len(data) < LIMIT_DEFAULTS["max_body_bytes"]
    parse_envelope(data, None, Limits())


# -- the body: size and Content-Encoding ------------------------------------------------------------

def environ(body: bytes, **headers) -> dict:
    env = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    env.update(headers)
    return env


def test_a_body_over_the_size_limit_names_it():
    with pytest.raises(LimitExceeded, match=r"bus\.max_body_bytes\) is 100\."):
        read_body(environ(b"x" * 101), 100)
    chunked = {"wsgi.input": io.BytesIO(b"x" * 101)}          # no Content-Length: read up to the limit
    with pytest.raises(LimitExceeded, match="bus.max_body_bytes"):
        read_body(chunked, 100)
    assert read_body(environ(b"x" * 100), 100) == b"x" * 100


def test_a_body_the_server_cannot_read_is_a_client_fault():
    class Broken:
        def read(self, size=-1):
            raise ValueError("Invalid chunk size")   # what gunicorn's reader raises (a ParseException)

    with pytest.raises(MalformedRequest, match=r"could not be read \(ValueError\); check its Content-Length"):
        read_body({"wsgi.input": Broken()}, 100)
    with pytest.raises(MalformedRequest, match="could not be read"):
        read_body({"CONTENT_LENGTH": "1000", "wsgi.input": Broken()}, 100)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-gzip", "gzip, identity", "compress"])
def test_a_compressed_body_is_refused_not_parsed(encoding):
    with pytest.raises(MalformedRequest, match="Content-Encoding") as err:
        read_body(environ(b"\x1f\x8b\x08\x00", HTTP_CONTENT_ENCODING=encoding), 100)
    assert err.value.code == "Client.MalformedRequest"


@pytest.mark.parametrize("encoding", ["", "identity", "Identity "])
def test_identity_is_no_encoding(encoding):
    assert read_body(environ(b"<a/>", HTTP_CONTENT_ENCODING=encoding), 100) == b"<a/>"


# -- charsets that are no character set ------------------------------------------------------------

@pytest.mark.parametrize("label", ["utf-7", "unicode_escape", "raw_unicode_escape", "zlib", "base64", "rot13",
                                   "idna", "punycode", "undefined", "x" * 500])
def test_escape_schemes_and_byte_codecs_are_no_charset(label):
    with pytest.raises(MalformedRequest, match="not a known character set") as err:
        parse_envelope(ENV % b"", f"text/xml; charset={label}", Limits())
    assert len(err.value.message) < 200


# -- the action ------------------------------------------------------------------------------

@pytest.mark.parametrize("actions", [[], [""], ['""'], ["QueryBalance"], ['"QueryBalance"'],
                                     ["urn:bank:QueryBalance"], ["http://ws.chinaunicom.cn/BankPayment/QueryBalance"],
                                     ["QueryBalance", "QueryBalance"]])
def test_an_action_naming_the_body_operation_or_none_is_fine(actions):
    check_action(actions, "QueryBalance")


@pytest.mark.parametrize("actions", [["Pay"], ['"Pay"'], ["urn:bank:Pay"], ["QueryBalance", "Pay"],
                                     ["QueryBalanceX"], ["x" * 5000]])
def test_an_action_naming_another_operation_is_refused(actions):
    with pytest.raises(ActionMismatch) as err:
        check_action(actions, "QueryBalance", "T1")
    fault = err.value
    assert fault.code == "Client.ActionMismatch" and fault.trans_ido == "T1"
    assert "QueryBalance" in fault.message and len(fault.message) < 300
