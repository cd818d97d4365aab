"""Outbound credentials over real HTTP: the bus sends each peer the credentials configured for
it (peers.<key>.auth: a UsernameToken with PasswordText or PasswordDigest, or HTTP basic), and
the sandbox peers demand exactly those (sandbox.require_auth: true), read from the same
environment. A peer that refuses them gives the caller a Server fault naming the peer (it is
the bus's problem) and counts as a failure for the peer's breaker; the journal keeps every
outbound request with its password masked."""
from __future__ import annotations

import logging
import time

import pytest
from lxml import etree

from config.settings import load_settings
from sandbox.store import seed_users
from services.client import BusClient
from tests.conftest import PG_URL
from tests.e2e.conftest import (assert_accepted, control, delivered, embedded_on, make_args, outbox_rows, post,
                                wait_for)
from tests.e2e.test_bad_input import envelope
from tests.sandbox.test_legacy_peer import request as legacy_request

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
FAILURES = 3
PASSWORDS = {   # as an operator would export them; each one distinct, to find any leak
    "BSSBUS_PEER_HQ_CRM_PASSWORD": "crm-Pa55:word",
    "BSSBUS_PEER_HQ_BILLING_PASSWORD": "hqb-Pa55<&>word",
    "BSSBUS_PEER_PROVINCE_BILLING_PASSWORD": "pb-Pa55word-省",
    "BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD": "js-Pa55word",
}
CONFIG = f"""
sandbox: {{require_auth: true}}
redelivery: {{poll_seconds: 0.1, initial_seconds: 0.2, cap_seconds: 0.5}}
peers:
  hq_crm:
    auth: {{scheme: basic, username: bssbus}}
  hq_billing:
    auth: {{scheme: username_token_digest, username: bssbus}}
  province_billing:
    timeout: 5
    breaker: {{failures: {FAILURES}, cooldown_seconds: 1}}
    auth: {{scheme: username_token, username: "bus-{{province}}"}}
    provinces:
      "34":
        auth: {{scheme: basic, username: js-bus}}
"""


def _params():
    return ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="module", params=_params())
def secure(request, tmp_path_factory):
    """A bus configured with credentials for HQ CRM (basic), HQ Billing (digest), the province
    Billings (text, 'bus-<province>') and Jiangsu's legacy Billing (basic), whose sandbox peers
    demand them."""
    workdir = tmp_path_factory.mktemp(f"outcreds-{request.param}")
    override = workdir / "auth.yaml"
    override.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(override, env=PASSWORDS)
    with embedded_on(request.param, workdir, settings) as embedded:
        yield embedded


def user(province, **want):
    return next(u for u in seed_users(province) if u.user_state == "00"
                and all(getattr(u, k) == v for k, v in want.items()))


def balance(client, province):
    u = user(province)
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
    return args["UNI_BSS_HEAD"]["TRANS_IDO"], client.call("BankPayment", "QueryBalance", args)


def out_hops(embedded, trans_ido):
    return [h for h in embedded.bus.journal.hops(trans_ido) if h["direction"] == "out"]


def assert_no_password(raw: bytes):
    """Nothing a peer's password could be recognised by, in any charset the bus sends."""
    for password in PASSWORDS.values():
        for charset in ("utf-8", "gb18030"):
            assert password.encode(charset) not in raw
        assert password.replace("<", "&lt;").replace("&", "&amp;").encode() not in raw


def token(raw: bytes):
    """(Username, Password's Type, Password's text) of a request's UsernameToken, or None."""
    ut = etree.fromstring(raw).find(f"{{*}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if ut is None:
        return None
    password = ut.find(f"{{{WSSE}}}Password")
    return ut.findtext(f"{{{WSSE}}}Username"), password.get("Type").rsplit("#", 1)[-1], password.text


# -- each scheme, accepted ------------------------------------------------------------------

@pytest.mark.parametrize("province, sender, expected", [
    ("11", "HQ-BILLING", ("bssbus", "PasswordDigest", "********")),     # Beijing, phase 3
    ("51", "BILLING-51", ("bus-51", "PasswordText", "********")),       # Guangdong, phase 2
    ("76", "BILLING-76", ("bus-76", "PasswordText", "********")),       # Henan's legacy billing, the peer's auth
    ("34", "BILLING-34", None),                                         # Jiangsu's legacy billing, basic
], ids=["digest", "text", "legacy-text", "legacy-basic"])
def test_the_bus_reaches_a_billing_that_demands_credentials(secure, province, sender, expected):
    trans_ido, r = balance(BusClient(secure.url), province)
    assert (r.fault_code, r.rsp_code, r.sender) == (None, "0000", sender), r.fault_string
    [hop] = out_hops(secure, trans_ido)
    assert hop["status"] == "ok" and hop["target"] == sender
    assert_no_password(hop["request"])
    assert token(hop["request"]) == expected, "the journal shows the token, its password masked"
    if province == "11":
        assert etree.fromstring(hop["request"]).find(f".//{{{WSSE}}}Nonce") is not None


def test_basic_authentication_to_hq_crm(secure):
    args = make_args("InfoQuery", "QueryProducts", caller="ESALE")
    r = BusClient(secure.url).call("InfoQuery", "QueryProducts", args)
    assert (r.fault_code, r.rsp_code, r.sender) == (None, "0000", "HQ-CRM"), r.fault_string
    [hop] = out_hops(secure, args["UNI_BSS_HEAD"]["TRANS_IDO"])
    assert token(hop["request"]) is None and b"Authorization" not in hop["request"]
    assert_no_password(hop["request"])


def test_the_sandbox_peers_really_demand_them(secure):
    """The same requests without credentials, straight to the sandbox peers, are refused."""
    u = user("51")
    balance_args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn),
                             SERIAL_NUMBER=u.msisdn)
    for path, body in (
            ("hq_billing/BankPayment", envelope("BankPayment", "QueryBalance", balance_args)),
            ("province_billing/51/BankPayment", envelope("BankPayment", "QueryBalance", balance_args)),
            ("hq_crm/InfoQuery", envelope("InfoQuery", "QueryProducts", make_args("InfoQuery", "QueryProducts"))),
            ("legacy_billing/34/LegacyBilling", legacy_request("QryBalance", [("MsisdnNo", user("34").msisdn),
                                                                               ("BankCode", "ICBC")]))):
        status, _, answer = post(f"{secure.sandbox_url}/peers/{path}", body)
        assert status in (401, 500) and b"Client.FailedAuthentication" in answer, (path, status, answer[:300])


def test_a_one_way_message_is_delivered_with_credentials(secure):
    u = next(x for x in seed_users("38") if x.user_state == "00" and x.net_type != "50")   # not 3G: billing only
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn),
                     SYNC_SEQ=int(time.time() * 1000))
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province,
                                        NET_TYPE_CODE=u.net_type, USER_ID=f"U{u.msisdn}")
    assert_accepted(BusClient(secure.url).call("AccountSync", "SyncThreeAccount", args), "BILLING-38")
    hop = delivered(secure, args["UNI_BSS_HEAD"]["TRANS_IDO"], "BILLING-38")["BILLING-38"]
    assert token(hop["request"]) == ("bus-38", "PasswordText", "********")
    assert_no_password(hop["request"])


# -- refused: wrong or missing credentials --------------------------------------------------

def test_wrong_credentials_are_a_server_fault_naming_the_peer_and_open_its_breaker(secure):
    client = BusClient(secure.url)
    control(secure.sandbox_url, peer="BILLING-18",   # the peer was given another password
            require_auth={"scheme": "username_token", "username": "bus-18", "password": "rotated"})
    try:
        for _ in range(FAILURES):
            trans_ido, r = balance(client, "18")
            assert r.fault_code == "Server.PeerFault", r.fault_string
            assert r.fault_string == ("Peer BILLING-18 refused the bus's credentials for QueryBalance "
                                      "(soap:Client.FailedAuthentication): check peers.province_billing.auth.")
            [hop] = out_hops(secure, trans_ido)
            assert (hop["status"], hop["fault_code"], hop["target"]) == ("fault", "Server.PeerFault", "BILLING-18")
            assert token(hop["request"]) == ("bus-18", "PasswordText", "********")
            assert b"FailedAuthentication" in hop["response"]
        trans_ido, r = balance(client, "18")
        assert r.fault_code == "Server.PeerUnavailable", r.fault_string
        assert "circuit breaker is open since" in r.fault_string and "refused the bus's credentials" in r.fault_string
        assert out_hops(secure, trans_ido)[0]["request"] is None, "nothing went on the wire"
        _, other = balance(client, "19")
        assert other.fault_code is None, "another province's billing is not affected"
    finally:
        control(secure.sandbox_url, peer="BILLING-18", require_auth=None)   # what the bus sends, again

    def back():
        _, r = balance(client, "18")
        return r.fault_code is None and r.sender == "BILLING-18"

    wait_for(back, 15)   # after the cool-down a probe with the right credentials closes the breaker


def test_wrong_basic_credentials_at_the_legacy_billing(secure):
    control(secure.sandbox_url, peer="BILLING-34",
            require_auth={"scheme": "basic", "username": "js-bus", "password": "rotated"})
    try:
        trans_ido, r = balance(BusClient(secure.url), "34")
    finally:
        control(secure.sandbox_url, peer="BILLING-34", require_auth=None)
    assert r.fault_code == "Server.PeerFault"
    assert r.fault_string == ("Peer BILLING-34 refused the bus's credentials for QueryBalance "
                              "(soap:Client.FailedAuthentication): check "
                              'peers.province_billing.provinces."34".auth.')
    assert_no_password(out_hops(secure, trans_ido)[0]["request"])


def test_a_scheme_the_peer_does_not_take_is_refused(secure):
    control(secure.sandbox_url, peer="HQ-BILLING",    # the bus sends a digest; the peer wants text
            require_auth={"scheme": "username_token", "username": "bssbus",
                          "password": PASSWORDS["BSSBUS_PEER_HQ_BILLING_PASSWORD"]})
    try:
        _, r = balance(BusClient(secure.url), "11")
    finally:
        control(secure.sandbox_url, peer="HQ-BILLING", require_auth=None)
    assert r.fault_code == "Server.PeerFault" and "Peer HQ-BILLING refused the bus's credentials" in r.fault_string


def test_missing_credentials_say_what_to_configure(secure):
    u = user("51")
    control(secure.sandbox_url, peer="CRM-51", require_auth={"scheme": "basic", "username": "b", "password": "p"})
    try:
        args = make_args("BillQuery", "QueryBill", caller="UCRM", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
        r = BusClient(secure.url).call("BillQuery", "QueryBill", args)
    finally:
        control(secure.sandbox_url, peer="CRM-51", require_auth=None)
    assert r.fault_code == "Server.PeerFault"
    assert r.fault_string == ("Peer CRM-51 refused the bus's credentials for QueryBill "
                              "(soap:Client.FailedAuthentication): the bus sends it none; configure "
                              "peers.province_crm.auth.")


def test_a_refused_delivery_is_retried_and_delivered_once_the_credentials_match(secure):
    u = next(x for x in seed_users("30") if x.user_state == "00" and x.net_type != "50")
    control(secure.sandbox_url, peer="BILLING-30",
            require_auth={"scheme": "username_token", "username": "bus-30", "password": "rotated"})
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn),
                     SYNC_SEQ=int(time.time() * 1000))
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province,
                                        NET_TYPE_CODE=u.net_type, USER_ID=f"U{u.msisdn}")
    trans_ido = args["UNI_BSS_HEAD"]["TRANS_IDO"]
    try:
        assert_accepted(BusClient(secure.url).call("AccountSync", "SyncThreeAccount", args), "BILLING-30")
        wait_for(lambda: (outbox_rows(secure, trans_ido)[0]["last_error"] or "").find(
            "refused the bus's credentials") >= 0)
    finally:
        control(secure.sandbox_url, peer="BILLING-30", require_auth=None)
    hop = delivered(secure, trans_ido, "BILLING-30")["BILLING-30"]
    assert token(hop["request"]) == ("bus-30", "PasswordText", "********")
    for attempt in out_hops(secure, trans_ido):
        assert_no_password(attempt["request"] or b"")


def test_the_debug_log_of_what_the_bus_posts_has_no_password(secure, caplog):
    with caplog.at_level(logging.DEBUG):
        for province in ("51", "11", "34"):
            _, r = balance(BusClient(secure.url), province)
            assert r.fault_code is None, r.fault_string
    posts = [rec for rec in caplog.records if rec.name.startswith("zeep.transports")]
    assert posts and any("HTTP Post to" in rec.getMessage() for rec in posts), "zeep logged what it posted"
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "********" in text
    assert_no_password(text.encode("utf-8"))
    assert "Basic " not in text, "nor the basic-auth header"
