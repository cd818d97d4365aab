"""adapters/credentials.py: what the bus adds to a request for a peer with ``auth``, what the
journal keeps of it, and which peer answers mean "your credentials are refused". The calls
themselves, over HTTP to sandbox peers that demand credentials, are in
tests/e2e/test_outbound_credentials.py."""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import pytest
import zeep
from lxml import etree

from adapters import ADAPTERS
from adapters.base import FAILURE, SUCCESS, breaker_verdict
from adapters.credentials import Credentials, basic_authorization, refused_credentials
from bus.security import mask_passwords
from bus.faults import PeerFault
from config.settings import PeerAuth, PeerConfig
from tests.e2e.conftest import example

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"


def auth(scheme, username="bus-{province}", password="s3cr&t<pw>"):
    return PeerAuth(scheme=scheme, username=username, password=password, where="peers.x.auth")


def envelope():
    """A canonical request envelope as zeep builds it (nothing is sent)."""
    peer = PeerConfig(key="province_billing", adapter="province_billing", name="BILLING-{province}",
                      url="http://127.0.0.1:9/peers/province_billing/{province}")
    adapter = ADAPTERS["province_billing"](peer)
    client = adapter.client("BankPayment")
    proxy = adapter.proxy("BankPayment", "http://127.0.0.1:9/x")
    return client.create_message(proxy, "QueryBalance", **example("BankPayment", "QueryBalance"))


def token_of(env):
    tokens = env.findall(f"{{*}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    assert len(tokens) == 1
    return tokens[0]


def test_username_token_with_a_password_text_for_the_calls_province():
    plugin = Credentials(auth("username_token"))
    plugin.use("51")
    env, headers = plugin.egress(envelope(), {}, None, {})
    token = token_of(env)
    assert token.findtext(f"{{{WSSE}}}Username") == "bus-51"
    password = token.find(f"{{{WSSE}}}Password")
    assert (password.get("Type"), password.text) == (f"{PROFILE}#PasswordText", "s3cr&t<pw>")
    assert "Authorization" not in headers


def test_username_token_digest_is_sha1_of_nonce_created_and_password_with_a_fresh_nonce():
    plugin = Credentials(auth("username_token_digest", username="bssbus"))
    nonces = set()
    for _ in range(2):
        token = token_of(plugin.egress(envelope(), {}, None, {})[0])
        password = token.find(f"{{{WSSE}}}Password")
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce"))
        created = token.findtext(f"{{{WSU}}}Created")
        assert password.get("Type") == f"{PROFILE}#PasswordDigest"
        assert password.text == base64.b64encode(
            hashlib.sha1(nonce + created.encode() + "s3cr&t<pw>".encode()).digest()).decode()
        assert created.endswith("Z")
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
        assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60
        assert len(nonce) == 16
        nonces.add(nonce)
        assert b"s3cr" not in etree.tostring(token), "the password itself is not sent"
    assert len(nonces) == 2, "every request has its own nonce"


def test_basic_authentication_is_an_http_header_and_leaves_the_envelope_alone():
    plugin = Credentials(auth("basic", username="bssbus", password="päss:word"))
    env, headers = plugin.egress(envelope(), {"SOAPAction": '"x"'}, None, {})
    assert headers["Authorization"] == "Basic " + base64.b64encode("bssbus:päss:word".encode()).decode()
    assert headers["Authorization"] == basic_authorization("bssbus", "päss:word")
    assert env.find("{*}Header") is None or len(env.find("{*}Header")) == 0


def test_no_auth_adds_nothing():
    env, headers = Credentials(None).egress(envelope(), {}, None, {})
    assert b"Security" not in etree.tostring(env) and headers == {}


def test_the_journal_gets_the_request_with_its_password_masked():
    plugin = Credentials(auth("username_token"))
    plugin.use("51")
    raw = etree.tostring(plugin.egress(envelope(), {}, None, {})[0], encoding="utf-8")
    assert b"s3cr&amp;t&lt;pw&gt;" in raw
    masked = mask_passwords(raw)
    assert b"s3cr" not in masked
    assert b'#PasswordText">********</wsse:Password>' in masked
    assert etree.fromstring(masked).find(".//{*}Username").text == "bus-51", "still XML, the user still named"
    gbk = etree.tostring(etree.fromstring(raw), xml_declaration=True, encoding="GBK")
    assert b"s3cr" not in mask_passwords(gbk)
    digest = etree.tostring(Credentials(auth("username_token_digest")).egress(envelope(), {}, None, {})[0])
    assert b">********</wsse:Password><wsse:Nonce" in mask_passwords(digest), "a digest is masked too"
    assert mask_passwords(b"<a><Password/></a>") == b"<a><Password/></a>"
    assert mask_passwords(b"") == b""


def test_the_capture_plugin_masks_what_it_keeps():
    peer = PeerConfig(key="hq_billing", adapter="hq_billing", name="HQ-BILLING", url="http://127.0.0.1:9/x",
                      auth=auth("username_token", username="bssbus"))
    adapter = ADAPTERS["hq_billing"](peer)
    env, headers = adapter.credentials.egress(envelope(), {}, None, {})
    adapter.capture.egress(env, headers, None, {})
    sent, _ = adapter.capture.take()
    assert b"<wsse:Username>bssbus</wsse:Username>" in sent and b"s3cr" not in sent
    assert b"s3cr" in etree.tostring(env), "what goes on the wire keeps the password"


@pytest.mark.parametrize("exc, refusal", [
    (zeep.exceptions.Fault("no", code="soap:Client.FailedAuthentication"), "soap:Client.FailedAuthentication"),
    (zeep.exceptions.Fault("no", code="wsse:FailedAuthentication"), "wsse:FailedAuthentication"),
    (zeep.exceptions.Fault("no", code="wsse:InvalidSecurityToken"), "wsse:InvalidSecurityToken"),
    (zeep.exceptions.Fault("no", code="env:Sender", subcodes=[etree.QName(WSSE, "FailedAuthentication")]),
     f"{{{WSSE}}}FailedAuthentication"),
    (zeep.exceptions.TransportError("401", status_code=401), "HTTP 401"),
    (zeep.exceptions.TransportError("403", status_code=403), "HTTP 403"),
    (zeep.exceptions.Fault("no", code="soap:Client.ValidationError"), None),
    (zeep.exceptions.Fault("no", code="soap:Server"), None),
    (zeep.exceptions.Fault("no", code=None), None),
    (zeep.exceptions.TransportError("500", status_code=500), None),
    (ValueError("x"), None),
])
def test_which_answers_refuse_the_bus_s_credentials(exc, refusal):
    assert refused_credentials(exc) == refusal


def test_a_refusal_of_the_credentials_is_a_failure_for_the_breaker_though_the_peer_blames_the_client():
    peer = PeerConfig(key="hq_billing", adapter="hq_billing", name="HQ-BILLING", url="http://127.0.0.1:9/x")
    adapter = ADAPTERS["hq_billing"](peer)

    class Decision:
        peer_name, province = "HQ-BILLING", None

    class Msg:
        operation, trans_ido = "QueryBalance", "T1"

    fault = adapter.credentials_refused(Msg, Decision, "soap:Client.FailedAuthentication")
    assert isinstance(fault, PeerFault) and fault.code == "Server.PeerFault"
    assert fault.message == ("Peer HQ-BILLING refused the bus's credentials for QueryBalance "
                             "(soap:Client.FailedAuthentication): the bus sends it none; configure "
                             "peers.hq_billing.auth.")
    fault.sent = b"<x/>"
    assert breaker_verdict(fault) == FAILURE
    client_fault = PeerFault("Peer X answered with a SOAP fault", peer="X")
    try:
        try:
            raise zeep.exceptions.Fault("no", code="soap:Client.ValidationError")
        except zeep.exceptions.Fault:
            raise client_fault from None
    except PeerFault:
        client_fault.sent = b"<x/>"
    assert breaker_verdict(client_fault) == SUCCESS, "other Client faults still mean the peer is up"
