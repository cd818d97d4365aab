"""Masking of personal data (bus/privacy.py): each kind of field, XML in any charset and
namespace, XML that does not parse, data, free text, the configuration and the logs."""
from __future__ import annotations

import logging

import pytest

from bus import privacy
from bus.privacy import MaskRule, Privacy, decode_xml
from config.settings import ConfigError, load_settings

NAME, CERT, ADDR = "王建国", "370102198507123456", "山东省济南市历下区泉城路180号"
ACCOUNT, OTHER = "6222021234567890128", "18603011234"   # a Luhn-valid UnionPay number


@pytest.fixture(scope="module")
def p() -> Privacy:
    return Privacy.from_settings(load_settings(env={}))


def envelope(charset: str = "utf-8", prefix: str = "b") -> bytes:
    return (f'<?xml version="1.0" encoding="{charset}"?>'
            '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<{prefix}:SyncThreeAccount xmlns:{prefix}="http://ws.chinaunicom.cn/AccountSync/unibssBody">'
            f'<{prefix}:CUSTOMER><{prefix}:CUST_ID>1724031500012345</{prefix}:CUST_ID>'
            f'<{prefix}:CUST_NAME>{NAME}</{prefix}:CUST_NAME><{prefix}:CERT_TYPE>02</{prefix}:CERT_TYPE>'
            f'<{prefix}:CERT_NUM>{CERT}</{prefix}:CERT_NUM><{prefix}:CUST_ADDR>{ADDR}</{prefix}:CUST_ADDR>'
            f'</{prefix}:CUSTOMER><{prefix}:ACCOUNT><{prefix}:PAY_NAME>{NAME}</{prefix}:PAY_NAME>'
            f'<{prefix}:BANK_ACCT_NO>{ACCOUNT}</{prefix}:BANK_ACCT_NO></{prefix}:ACCOUNT>'
            f'<{prefix}:OTHER_PARTY>{OTHER}</{prefix}:OTHER_PARTY>'
            f'</{prefix}:SyncThreeAccount></soap:Body></soap:Envelope>').encode(charset)


def assert_clean(text: str) -> None:
    for value in (NAME, CERT, ADDR, ACCOUNT, OTHER):
        assert value not in text, f"{value} shown unmasked in {text}"


def test_each_kind_keeps_only_what_its_rule_says(p):
    assert p.rule("CUST_NAME").mask(NAME) == "王**"
    assert p.rule("PAY_NAME").mask("欧阳娜娜") == "欧***"
    assert p.rule("CERT_NUM").mask(CERT) == "370102********3456"
    assert p.rule("BANK_ACCT_NO").mask(ACCOUNT) == "*" * 15 + "0128"
    assert p.rule("CUST_ADDR").mask(ADDR) == "山东省济南市" + "*" * 10
    assert p.rule("OTHER_PARTY").mask(OTHER) == "186****1234"
    assert p.rule("CustName").mask(NAME) == "王**"   # the legacy Billing's element
    assert p.rule("CUST_ID") is None and p.rule("SERIAL_NUMBER") is None


def test_a_short_value_still_hides_a_third_of_it():
    cert = MaskRule("certificate", 6, 4)
    assert cert.mask("E12345678") == "E12***678"
    assert MaskRule("name", 1).mask("王") == "*"
    assert MaskRule("name", 1).mask("王五") == "王*"
    assert cert.mask("") == ""
    for value in ("1", "12", "123456", "1234567890", CERT):
        assert cert.mask(value).count("*") >= -(-len(value) // 3)
        assert cert.mask(cert.mask(value)) == cert.mask(value)   # masking twice changes nothing


@pytest.mark.parametrize("charset", ["utf-8", "gbk", "gb18030"])
@pytest.mark.parametrize("prefix", ["b", "ns0"])
def test_xml_is_masked_by_local_name_in_any_charset_and_namespace(p, charset, prefix):
    shown = p.mask_xml(envelope(charset, prefix))
    assert_clean(shown)
    for masked in ("王**", "370102********3456", "山东省济南市**********", "***************0128", "186****1234"):
        assert masked in shown
    assert "<b:CUST_ID>1724031500012345<" in shown.replace("ns0:", "b:")   # no personal data: untouched
    assert f'encoding="{charset}"' in shown


def test_xml_attributes_and_nested_content_are_masked(p):
    shown = p.mask_xml(f'<r xmlns:x="urn:x"><x:CUST_NAME><given>{NAME}</given>tail{NAME}</x:CUST_NAME>'
                       f'<item x:CERT_NUM="{CERT}" note="for {NAME}"/><!-- {CERT} --></r>')
    assert_clean(shown)
    assert "370102********3456" in shown


def test_a_fault_that_echoes_a_value_of_the_document_is_masked(p):
    response = ('<Envelope><Body><Fault><faultstring>customer 王建国 (cert 370102198507123456) unknown'
                '</faultstring><detail><CUST_NAME>王建国</CUST_NAME></detail></Fault></Body></Envelope>')
    shown = p.mask_xml(response)
    assert_clean(shown)
    assert "customer 王** (cert 370102********3456) unknown" in shown


@pytest.mark.parametrize("broken", [
    envelope()[:-60],                                        # cut off
    envelope().replace(b"</soap:Body>", b""),                # not well-formed
    envelope("gbk").replace(b"?>", b"?><!DOCTYPE x [<!ENTITY e 'x'>]>", 1)[:-30],
    b"\xff\xfe" + envelope("gbk"),                           # bytes of no charset
    "<CUST_NAME>王建国<CERT_NUM>370102198507123456</CERT_NUM>".encode("gbk"),   # GBK, no declaration
    envelope().replace(b"<b:CUST_NAME>" + NAME.encode(), b"<b:CUST_NAME><![CDATA[" + NAME.encode() + b"]]>"),
])
def test_xml_that_does_not_parse_is_masked_by_patterns_never_shown_raw(p, broken):
    shown = p.mask_xml(broken)
    assert isinstance(shown, str)
    assert_clean(shown)


def test_decode_xml_honours_the_declaration_and_never_fails():
    assert decode_xml(envelope("gbk")).count(NAME) == 2
    assert decode_xml("<x>王</x>".encode("gbk")) == "<x>王</x>"   # undeclared GBK: GB18030 after UTF-8
    assert decode_xml(b'<?xml version="1.0" encoding="no-such"?><x/>').endswith("<x/>")
    assert isinstance(decode_xml(bytes(range(256))), str)


def test_data_is_masked_by_key_and_its_other_text_as_free_text(p):
    body = {"SYNC_SEQ": 1, "CUSTOMER": {"CUST_ID": "1724031500012345", "CUST_NAME": NAME, "CERT_NUM": CERT,
                                        "CUST_ADDR": ADDR},
            "ACCOUNT": [{"PAY_NAME": NAME, "BANK_ACCT_NO": ACCOUNT}], "NOTE": f"{NAME} moved", "AMOUNT": 100}
    shown = p.mask_data(body)
    assert_clean(repr(shown))
    assert shown["CUSTOMER"]["CUST_ID"] == "1724031500012345" and shown["AMOUNT"] == 100
    assert shown["ACCOUNT"][0]["PAY_NAME"] == "王**" and shown["NOTE"] == "王** moved"
    assert body["CUSTOMER"]["CUST_NAME"] == NAME   # a copy: the message itself is untouched


@pytest.mark.parametrize("text", [
    f"Element 'CERT_NUM': [facet 'maxLength'] The value '{CERT}99999999999999' has a length of 32",
    f"Element '{{http://ws.chinaunicom.cn/AccountSync/unibssBody}}CUST_NAME': '{NAME}' is not valid",
    f"{{'CUST_NAME': '{NAME}', 'CERT_NUM': '{CERT}', 'cust_addr': '{ADDR}'}}",
    f'{{"CUST_NAME": "{NAME}", "BANK_ACCT_NO": "{ACCOUNT}"}}',
    f'"{{\\"CUST_NAME\\": \\"{NAME}\\"}}"',
    f"CUST_NAME={NAME} CERT_NUM: {CERT}; OTHER_PARTY={OTHER}",
    f'<ns1:CUST_NAME xml:lang="zh">{NAME}</ns1:CUST_NAME> and &lt;CUST_ADDR&gt;{ADDR}&lt;/CUST_ADDR&gt;',
    f"b'<CUST_NAME>{NAME}</CUST_NAME>'",
    f"holder of {CERT} paid with card {ACCOUNT}",
    f"身份证{CERT}号, 卡号{ACCOUNT}。",
])
def test_free_text_is_masked_by_field_names_and_number_shapes(p, text):
    assert_clean(p.mask_text(text))


def test_free_text_keeps_what_is_no_personal_data(p):
    text = ("TRANS_IDO=UCRM17202403151420300000017 CUST_ID 1724031500012345 ORDER_ID ES2024031500001234 "
            "number 18603011234 card 310000000000123 amount 12000 serial ICBC20240315103012000001 "
            "6222021234567890123")   # not Luhn-valid: no card number
    assert p.mask_text(text) == text
    assert p.mask_text(None) is None and p.mask_text("") == ""


def test_known_values_are_masked_as_whole_values_only(p):
    known = {"10010": "100**"}
    assert p.mask_text("call 10010 from UCRM10010123", known) == "call 100** from UCRM10010123"


def test_a_journal_hop_is_masked_across_its_request_response_and_reason(p):
    row = {"id": 1, "request": envelope("gbk"), "response": f"<r><RSP_DESC>{NAME} refused</RSP_DESC></r>".encode(),
           "error": f"peer said: no customer {NAME}", "route": "r", "trans_ido": "T1"}
    shown = p.mask_hop(row)
    assert_clean(shown["request"] + shown["response"] + shown["error"])
    assert shown["error"] == "peer said: no customer 王**" and shown["trans_ido"] == "T1"
    assert row["error"].endswith(NAME)   # the row itself is untouched


@pytest.mark.parametrize("section, words", [
    ({"fields": {"CUST_NAME": "nmae"}, "kinds": {"name": {"first": 1}}}, ['unknown kind', 'did you mean "name"']),
    ({"fields": {}, "kinds": {"name": {"first": -1}}}, ["privacy.kinds.name"]),
    ({"fields": {}, "kinds": {"name": {"frist": 1}}}, ["privacy.kinds.name"]),
    ({"fields": ["CUST_NAME"]}, ["privacy.fields"]),
])
def test_a_bad_privacy_section_is_a_config_error_naming_it(section, words):
    with pytest.raises(ConfigError) as err:
        Privacy.from_config(section)
    assert all(w in str(err.value) for w in words), err.value


def test_every_log_record_is_masked_whatever_its_logger_and_arguments(caplog):
    privacy.install_log_masking()
    privacy.install_log_masking()   # idempotent
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("bssbus.test").warning("customer %s: %r", CERT, {"CUST_NAME": NAME})
        logging.getLogger("zeep.transports").debug("HTTP Post to %s:\n%s", "http://x", envelope())
        logging.getLogger("bssbus.test").info("percent %s %%", "fine")
        try:
            raise ValueError(f"bad CUST_ADDR={ADDR} card {ACCOUNT}")
        except ValueError:
            logging.getLogger("third.party").exception("failed for %s", f"<CUST_NAME>{NAME}</CUST_NAME>")
        logging.getLogger("bssbus.test").error("a bad format %s %s", CERT)
    assert_clean(caplog.text)
    assert "customer 370102********3456" in caplog.text and "percent fine %" in caplog.text
    assert "ValueError: bad CUST_ADDR=" in caplog.text   # the traceback is there, masked


@pytest.mark.parametrize("unit", ["CUST_NAME: '", "Element 'CERT_NUM': '", "&lt;CUST_NAME x", "<CUST_NAME x",
                                  '"CUST_NAME": "', "CERT_NUM=", "6" * 17 + " "])
def test_text_made_of_unfinished_fields_is_masked_in_linear_time(p, unit):
    import time
    text = unit * (400_000 // len(unit))     # a hostile request body of about 400 KB
    started = time.perf_counter()
    p.mask_text(text)
    p.mask_xml(text.encode())
    assert time.perf_counter() - started < 5


def test_a_username_token_password_is_hidden_whole(p):
    token = ('<wsse:Security xmlns:wsse="urn:wsse"><wsse:UsernameToken><wsse:Username>ICBC</wsse:Username>'
             '<wsse:Password Type="urn:PasswordText">s3cret-pw</wsse:Password></wsse:UsernameToken></wsse:Security>')
    for shown in (p.mask_xml(token), p.mask_text(f"sent {token}"), p.mask_text("password=s3cret-pw")):
        assert "s3cret-pw" not in shown and "*********" in shown
    assert ">ICBC<" in p.mask_xml(token)
