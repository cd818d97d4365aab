"""Simulated peers that demand credentials (sandbox/auth.py), through the sandbox's WSGI
application with literal requests: a UsernameToken (PasswordText; PasswordDigest checked as
Base64(SHA-1(nonce + created + password)), fresh, its nonce used once) or HTTP basic
authentication; anything else is a generic ``Client.FailedAuthentication`` fault before the
peer does any work."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree
from sqlalchemy import func, select

from config.settings import load_settings
from sandbox import store
from sandbox.app import SandboxApplication
from sandbox.auth import GENERIC, CredentialGate, Requirement, configured_requirements
from sandbox.store import seed_users
from services.inbound import SOAP11_ENV, SOAP12_ENV
from services.models import CONTRACTS, to_xml
from tests.e2e.conftest import make_args
from tests.sandbox.test_legacy_peer import request as legacy_request

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
FAULT_NS = "http://ws.chinaunicom.cn/bssFault"

TEXT = Requirement("username_token", "bus-51", "pw-51 <&>")
DIGEST = Requirement("username_token_digest", "bssbus", "pw-hq")
BASIC = Requirement("basic", "js-bus", "pw:js")
CANONICAL = "/peers/province_billing/51/BankPayment"
HQ = "/peers/hq_billing/BankPayment"
LEGACY = "/peers/legacy_billing/34/LegacyBilling"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    db = tmp_path_factory.mktemp("sandbox-auth") / "sandbox.db"
    gate = CredentialGate({("province_billing", "51"): TEXT, ("hq_billing", None): DIGEST,
                           ("legacy_billing", "34"): BASIC}, enforce=True)
    application = SandboxApplication(f"sqlite:///{db}", provinces={"11", "34", "51"}, credentials=gate)
    yield application
    application.engine.dispose()


def wsgi(app, path, body, content_type="text/xml; charset=utf-8", authorization=None):
    seen = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "CONTENT_TYPE": content_type,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
               "HTTP_HOST": "sandbox.test", "SERVER_NAME": "sandbox.test", "SERVER_PORT": "80"}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    out = b"".join(app(environ, lambda status, headers: seen.append((status, dict(headers)))))
    return seen[0][0], seen[0][1], out


def token(username, password=None, *, digest_of=None, nonce=None, created=None, kind=None):
    """A wsse:Security header: PasswordText ``password``, or the digest of ``digest_of``."""
    sec = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
    ut = etree.SubElement(sec, f"{{{WSSE}}}UsernameToken")
    etree.SubElement(ut, f"{{{WSSE}}}Username").text = username
    if digest_of is not None:
        nonce = os.urandom(16) if nonce is None else nonce
        created = created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        value = base64.b64encode(hashlib.sha1(nonce + created.encode() + digest_of.encode()).digest()).decode()
        etree.SubElement(ut, f"{{{WSSE}}}Password", Type=kind or f"{PROFILE}#PasswordDigest").text = value
        etree.SubElement(ut, f"{{{WSSE}}}Nonce").text = base64.b64encode(nonce).decode()
        etree.SubElement(ut, f"{{{WSU}}}Created").text = created
    elif password is not None:
        etree.SubElement(ut, f"{{{WSSE}}}Password", Type=kind or f"{PROFILE}#PasswordText").text = password
    return sec


def query(province="51", security=None, soap=SOAP11_ENV):
    """(TRANS_IDO, a QueryBalance envelope) for a user of ``province``, with ``security`` in its Header."""
    u = next(u for u in seed_users(province) if u.user_state == "00")
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
    env = etree.Element(f"{{{soap}}}Envelope", nsmap={"soapenv": soap})
    if security is not None:
        etree.SubElement(env, f"{{{soap}}}Header").append(security)
    etree.SubElement(env, f"{{{soap}}}Body").append(to_xml(CONTRACTS["BankPayment"], "QueryBalance", args))
    return args["UNI_BSS_HEAD"]["TRANS_IDO"], etree.tostring(env, xml_declaration=True, encoding="utf-8")


def received(app, trans_ido) -> int:
    with app.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(store.received).where(
            store.received.c.trans_ido == trans_ido)).scalar()


def answered(app, path, body, **kw):
    status, headers, out = wsgi(app, path, body, **kw)
    assert status == "200 OK", out[:400]
    return out


def refused(app, path, body, status="500 Internal Server Error", **kw):
    """Assert the generic FailedAuthentication fault (SOAP 1.1) and return the headers."""
    got, headers, out = wsgi(app, path, body, **kw)
    assert got == status, out[:400]
    fault = etree.fromstring(out).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault.findtext("faultcode") == "soap:Client.FailedAuthentication"
    assert fault.findtext("faultstring") == GENERIC, "the caller is never told what was wrong"
    return headers


def basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- UsernameToken, PasswordText ------------------------------------------------------------

def test_a_peer_demanding_a_token_refuses_a_request_without_one_before_doing_any_work(app):
    trans_ido, body = query()
    refused(app, CANONICAL, body)
    assert received(app, trans_ido) == 0, "the peer did nothing"
    detail = etree.fromstring(wsgi(app, CANONICAL, query()[1])[2]).find(f".//{{{FAULT_NS}}}BssFault")
    assert detail is not None


def test_the_right_password_text_is_let_through(app):
    trans_ido, body = query(security=token("bus-51", TEXT.password))
    out = etree.fromstring(answered(app, CANONICAL, body))
    assert out.findtext(".//{*}RESPONSE/{*}RSP_CODE") == "0000"
    assert received(app, trans_ido) == 1


@pytest.mark.parametrize("security", [
    token("bus-51", "wrong"),
    token("bus-52", TEXT.password),
    token("bus-51"),                                              # no Password
    token("bus-51", TEXT.password, kind=f"{PROFILE}#PasswordDigest"),
    token("bus-51", digest_of=TEXT.password),                     # a digest where text is demanded
], ids=["wrong password", "wrong user", "no password", "wrong type", "digest instead of text"])
def test_wrong_password_text_tokens_are_refused(app, security):
    trans_ido, body = query(security=security)
    refused(app, CANONICAL, body)
    assert received(app, trans_ido) == 0


def test_soap12_is_refused_in_soap12(app):
    _, body = query(soap=SOAP12_ENV)
    status, headers, out = wsgi(app, CANONICAL, body, content_type="application/soap+xml; charset=utf-8")
    assert status.startswith("400")
    assert b"bss:Client.FailedAuthentication" in out and GENERIC.encode() in out


# -- UsernameToken, PasswordDigest ----------------------------------------------------------

def test_a_digest_of_nonce_created_and_password_is_let_through(app):
    trans_ido, body = query("11", token("bssbus", digest_of=DIGEST.password))
    answered(app, HQ, body)
    assert received(app, trans_ido) == 1
    offset = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    answered(app, HQ, query("11", token("bssbus", digest_of=DIGEST.password, created=offset))[1])


def test_the_digest_is_checked_exactly(app):
    nonce, created = os.urandom(16), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    good = token("bssbus", digest_of=DIGEST.password, nonce=nonce, created=created)
    # the same digest with another Created (or nonce) no longer matches
    tampered = token("bssbus", digest_of=DIGEST.password, nonce=nonce, created=created)
    tampered.find(f".//{{{WSU}}}Created").text = (datetime.now(timezone.utc) - timedelta(seconds=5)) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    refused(app, HQ, query("11", tampered)[1])
    answered(app, HQ, query("11", good)[1])


@pytest.mark.parametrize("security", [
    token("bssbus", digest_of="wrong"),
    token("other", digest_of=DIGEST.password),
    token("bssbus", DIGEST.password),                             # text where a digest is demanded
    token("bssbus", digest_of=DIGEST.password,
          created=(datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    token("bssbus", digest_of=DIGEST.password,
          created=(datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    token("bssbus", digest_of=DIGEST.password, created="yesterday"),
], ids=["wrong password", "wrong user", "text instead of digest", "stale", "from the future", "bad Created"])
def test_wrong_digest_tokens_are_refused(app, security):
    trans_ido, body = query("11", security)
    refused(app, HQ, body)
    assert received(app, trans_ido) == 0


def test_a_replayed_digest_token_is_refused(app):
    nonce, created = os.urandom(16), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    answered(app, HQ, query("11", token("bssbus", digest_of=DIGEST.password, nonce=nonce, created=created))[1])
    refused(app, HQ, query("11", token("bssbus", digest_of=DIGEST.password, nonce=nonce, created=created))[1])


def test_a_token_without_nonce_or_created_is_refused(app):
    security = token("bssbus", digest_of=DIGEST.password)
    ut = security[0]
    ut.remove(ut.find(f"{{{WSSE}}}Nonce"))
    refused(app, HQ, query("11", security)[1])


# -- HTTP basic (the legacy billing, GBK) ---------------------------------------------------

def test_basic_authentication_at_the_legacy_billing(app):
    u = next(u for u in seed_users("34") if u.user_state == "00")
    body = legacy_request("QryBalance", [("MsisdnNo", u.msisdn), ("BankCode", "ICBC")])
    for authorization in (None, basic("js-bus", "wrong"), basic("other", BASIC.password), "Bearer abc",
                          "Basic !!!"):
        status, headers, out = wsgi(app, LEGACY, body, "text/xml; charset=GBK", authorization=authorization)
        assert status == "401 Unauthorized", authorization
        assert headers["WWW-Authenticate"].startswith('Basic realm="bssbus-sandbox"')
        fault = etree.fromstring(out).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
        assert (fault.findtext("faultcode"), fault.findtext("faultstring")) == \
            ("soap:Client.FailedAuthentication", GENERIC)
    out = answered(app, LEGACY, body, content_type="text/xml; charset=GBK",
                   authorization=basic("js-bus", BASIC.password))
    assert b"<lb:RetCode>0</lb:RetCode>" in out


# -- /control -------------------------------------------------------------------------------

def control(app, **spec):
    status, _, out = wsgi(app, "/control", json.dumps(spec).encode(), "application/json")
    return status, json.loads(out) if status.startswith("200") else out


def test_control_changes_what_one_peer_demands(app):
    _, plain = query("51")
    try:
        assert control(app, peer="BILLING-51", require_auth=False)[0] == "200 OK"
        answered(app, CANONICAL, plain)
        status, shown = control(app, peer="BILLING-51", require_auth={"scheme": "basic", "username": "u",
                                                                       "password": "p"})
        assert shown == {"BILLING-51": {"require_auth": {"scheme": "basic", "username": "u"}}}, \
            "the password is not echoed"
        refused(app, CANONICAL, plain, status="401 Unauthorized")
        answered(app, CANONICAL, plain, authorization=basic("u", "p"))
        assert control(app, peer="BILLING-51", require_auth=None)[0] == "200 OK"
        refused(app, CANONICAL, plain)
        # a peer the bus sends nothing: 'true' (what the bus sends) is a mistake
        status, out = control(app, peer="CRM-51", require_auth=True)
        assert status.startswith("400") and b"configured to send CRM-51 no credentials" in out
        status, out = control(app, peer="CRM-51", require_auth={"scheme": "digest"})
        assert status.startswith("400") and b"require_auth needs scheme" in out
    finally:
        control(app, peer="BILLING-51", require_auth=None)


def test_control_require_auth_leaves_the_peer_s_behaviour_alone(app):
    try:
        control(app, peer="BILLING-51", fault="down for maintenance")
        control(app, peer="BILLING-51", require_auth=False)
        status, _, out = wsgi(app, CANONICAL, query("51")[1])
        assert b"down for maintenance" in out
    finally:
        control(app, peer="BILLING-51")
        control(app, peer="BILLING-51", require_auth=None)


def test_without_a_gate_nothing_is_demanded(tmp_path):
    app = SandboxApplication(f"sqlite:///{tmp_path}/s.db", provinces={"51"})
    try:
        answered(app, CANONICAL, query("51")[1])
    finally:
        app.engine.dispose()


# -- what the sandbox demands is what the bus is configured to send -------------------------

def test_configured_requirements_follow_the_bus_configuration(tmp_path):
    override = tmp_path / "auth.yaml"
    override.write_text("""
peers:
  hq_billing: {auth: {scheme: username_token_digest, username: bssbus}}
  province_billing:
    auth: {scheme: username_token, username: "bus-{province}"}
    provinces:
      "34": {auth: {scheme: basic, username: js-bus}}
      "76": {auth: false}
""", encoding="utf-8")
    settings = load_settings(override, env={"BSSBUS_PEER_HQ_BILLING_PASSWORD": "a",
                                            "BSSBUS_PEER_PROVINCE_BILLING_PASSWORD": "b",
                                            "BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD": "c"})
    got = configured_requirements(settings, {"11", "34", "51", "76"})
    assert got[("hq_billing", None)] == Requirement("username_token_digest", "bssbus", "a")
    assert got[("province_billing", "51")] == Requirement("username_token", "bus-51", "b")
    assert got[("province_billing", "34")] == Requirement("username_token", "bus-34", "b"), \
        "Jiangsu's canonical billing (its other services) keeps the peer's"
    assert got[("legacy_billing", "34")] == Requirement("basic", "js-bus", "c")
    assert ("legacy_billing", "76") not in got, "auth: false: that province's billing demands nothing"
    assert ("province_crm", "51") not in got and ("hq_crm", None) not in got
    assert "'b'" not in repr(got[("province_billing", "51")]), "no password in a repr"
