"""Who may call what, over real HTTP: WS-Security UsernameToken (text and digest) and HTTP
basic, the Created window, nonces refused when replayed (also by a second bus sharing the
database), mustUnderstand, and the consumers' rights (service, ORIG_DOMAIN, bank code,
provinces). A bus with ``security.authentication: required`` and its secrets in a file."""
from __future__ import annotations

import base64
import logging
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from lxml import etree

from bus.embedded import EmbeddedBus
from bus.security import (WSSE, Gatekeeper, SecurityConfigError, hash_password, login_for, username_token)
from config.settings import load_settings
from sandbox.store import seed_users
from services.client import BusClient
from services.models import CONTRACTS, to_xml
from tests.conftest import PG_URL
from tests.e2e.conftest import embedded_on, make_args, post, wait_for

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
PASSWORDS = {"ESALES": "es-pass", "HQCRM": "hq-pass", "PCRM": "pc-pass", "TOPUP": "tu-pass", "VAC": "vac-pass",
             "ICBC": "icbc-pass", "CCB": "ccb-pass", "BOC71": "boc-pass", "FLOOD": "fl-pass"}


def secure_settings(tmp_path, **security):
    secrets = tmp_path / "secrets.yaml"
    entries = {cid: {"password": pw} for cid, pw in PASSWORDS.items() if cid != "CCB"}
    entries["CCB"] = {"password_hash": hash_password(PASSWORDS["CCB"])}   # text or basic only
    secrets.write_text(yaml.safe_dump({"consumers": entries}), encoding="utf-8")
    settings = load_settings(env={}).copy()
    settings.raw["security"] = dict(settings.raw["security"], authentication="required",
                                    secrets_file=str(secrets), **security)
    settings.raw["consumers"]["BOC71"] = {"domain": "BANK", "bank_code": "BOC", "provinces": ["71"],
                                          "services": {"BankPayment": "all"}}
    settings.raw["consumers"]["FLOOD"] = {"domain": "BANK", "bank_code": "ABC", "services": {"BankPayment": "all"},
                                          "rate_limit": {"per_second": 0.1, "burst": 3}}
    return settings


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if PG_URL else []))
def secure(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"secure-{request.param}")
    settings = secure_settings(work)
    with embedded_on(request.param, work, settings) as embedded:
        yield embedded


def envelope(service: str, operation: str, args: dict, header=None, must_understand: str | None = None) -> bytes:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soapenv": SOAP})
    if header is not None:
        if must_understand is not None:
            header.set(f"{{{SOAP}}}mustUnderstand", must_understand)
        etree.SubElement(env, f"{{{SOAP}}}Header").append(header)
    etree.SubElement(env, f"{{{SOAP}}}Body").append(to_xml(CONTRACTS[service], operation, args))
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def fault_of(body: bytes) -> tuple[str, str]:
    root = etree.fromstring(body)
    return root.findtext(".//faultcode").split(":", 1)[-1], root.findtext(".//faultstring")


def rsp_code(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(".//{*}RESPONSE/{*}RSP_CODE")


def arrears(msisdn="13100000000", bank="ICBC"):
    return make_args("BankPayment", "QueryArrears", caller="BANK", route=("01", msisdn),
                     SERIAL_NUMBER=msisdn, BANK_CODE=bank)


def a_user(province):
    return seed_users(province)[0].msisdn


def call(embedded, service, operation, args, header=None, **kw):
    return post(f"{embedded.url}/ws/{service}", envelope(service, operation, args, header, **kw))


# -- who is it? ------------------------------------------------------------------------------------

@pytest.mark.parametrize("service", sorted(CONTRACTS))
def test_a_call_without_credentials_is_refused_on_every_service(secure, service, caplog):
    operation = next(iter(CONTRACTS[service].operations))
    from tests.e2e.conftest import example
    args = example(service, operation)
    with caplog.at_level(logging.WARNING, logger="bssbus.security"):
        status, ctype, body = call(secure, service, operation, args)
    assert status == 500 and ctype.startswith("text/xml")
    code, text = fault_of(body)
    assert code == "Client.FailedAuthentication" and "UsernameToken" in text
    assert "no credentials" in caplog.text, "the real reason is in the bus's log"


def test_digest_and_text_tokens_and_basic_credentials_are_accepted(secure):
    u = a_user("51")
    for header in (username_token("ICBC", PASSWORDS["ICBC"], digest=True),
                   username_token("ICBC", PASSWORDS["ICBC"], digest=False)):
        status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u), header)
        assert status == 200 and rsp_code(body) == "0000", body[:500]
    basic = "Basic " + base64.b64encode(f"ICBC:{PASSWORDS['ICBC']}".encode()).decode()
    status, _, body = post(f"{secure.url}/ws/BankPayment", envelope("BankPayment", "QueryArrears", arrears(u)),
                           headers={"Authorization": basic})
    assert status == 200, body[:500]
    # a consumer whose password is stored hashed: text and basic work, a digest cannot be checked
    ccb = arrears(u, bank="CCB")
    assert call(secure, "BankPayment", "QueryArrears", ccb, username_token("CCB", PASSWORDS["CCB"], False))[0] == 200
    status, _, body = call(secure, "BankPayment", "QueryArrears", ccb, username_token("CCB", PASSWORDS["CCB"]))
    assert fault_of(body)[0] == "Client.FailedAuthentication"


def test_the_journal_records_the_consumer_and_never_the_password(secure):
    args = arrears(a_user("51"))
    status, _, _ = call(secure, "BankPayment", "QueryArrears", args, username_token("ICBC", PASSWORDS["ICBC"], False))
    assert status == 200
    (hop,) = [h for h in secure.bus.journal.hops(args["UNI_BSS_HEAD"]["TRANS_IDO"]) if h["direction"] == "in"]
    assert hop["consumer"] == "ICBC"
    assert PASSWORDS["ICBC"].encode() not in hop["request"] and b"********" in hop["request"]


@pytest.mark.parametrize("case", ["unknown user", "wrong password", "stale", "from the future", "no nonce",
                                  "wrong basic"])
def test_bad_credentials_get_one_generic_fault_and_the_reason_goes_to_the_log(secure, case, caplog):
    u = a_user("51")
    old = (datetime.now(timezone.utc) - timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ahead = (datetime.now(timezone.utc) + timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers, header = {}, None
    if case == "unknown user":
        header, why = username_token("NOBODY", "x"), "unknown consumer"
    elif case == "wrong password":
        header, why = username_token("ICBC", "guess"), "wrong password"
    elif case == "stale":
        header, why = username_token("ICBC", PASSWORDS["ICBC"], created=old), "from the bus's clock"
    elif case == "from the future":
        header, why = username_token("ICBC", PASSWORDS["ICBC"], created=ahead), "from the bus's clock"
    elif case == "no nonce":
        header, why = username_token("ICBC", PASSWORDS["ICBC"], digest=False), "needs a Nonce"
        token = header.find(f"{{{WSSE}}}UsernameToken")
        token.remove(token.find(f"{{{WSSE}}}Nonce"))
    else:
        headers, why = {"Authorization": "Basic " + base64.b64encode(b"ICBC:guess").decode()}, "wrong password"
    with caplog.at_level(logging.WARNING, logger="bssbus.security"):
        status, _, body = post(f"{secure.url}/ws/BankPayment",
                               envelope("BankPayment", "QueryArrears", arrears(u), header), headers=headers)
    code, text = fault_of(body)
    assert (status, code) == (500, "Client.FailedAuthentication")
    assert "guess" not in text and "NOBODY" not in text and why not in text, "one generic message"
    assert why in caplog.text


def test_a_replayed_token_is_refused_by_a_second_bus_sharing_the_database(secure, tmp_path):
    """Two bus processes (here two Bus instances with their own HTTP servers) share one
    database, as gunicorn workers and nodes do: a token accepted by one is a replay to both."""
    u = a_user("51")
    data = envelope("BankPayment", "QueryArrears", arrears(u), username_token("ICBC", PASSWORDS["ICBC"]))
    settings = secure_settings(tmp_path)
    with EmbeddedBus(settings, workdir=tmp_path, db_url=secure.db_url) as second:
        status, _, _ = post(f"{secure.url}/ws/BankPayment", data)
        assert status == 200
        for url in (second.url, secure.url):
            status, _, body = post(f"{url}/ws/BankPayment", data)
            assert (status, fault_of(body)[0]) == (500, "Client.FailedAuthentication")


def test_must_understand_on_a_header_the_bus_does_not_process_is_a_fault(secure):
    u = a_user("51")
    other = etree.Element("{urn:example:routing}Priority")
    other.text = "high"
    status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u), other, must_understand="1")
    assert (status, fault_of(body)[0]) == (500, "Client.MustUnderstand") and "Priority" in fault_of(body)[1]
    token = username_token("ICBC", PASSWORDS["ICBC"])
    status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u), token, must_understand="1")
    assert status == 200, "wsse:Security is processed: mustUnderstand is honoured"


# -- may it? ---------------------------------------------------------------------------------------

def test_consumers_may_only_do_what_they_are_configured_for(secure):
    u71, u51 = a_user("71"), a_user("51")
    cases = [
        ("ESALES", make_args("BankPayment", "QueryArrears", caller="ESALE", route=("01", u51),
                             SERIAL_NUMBER=u51), "may not call BankPayment.QueryArrears"),
        ("ICBC", arrears(u51, bank="CCB"), "may not act as bank CCB"),
        ("ICBC", dict(arrears(u51), UNI_BSS_HEAD=dict(arrears(u51)["UNI_BSS_HEAD"], ORIG_DOMAIN="UCRM")),
         "speaks as ORIG_DOMAIN BANK"),
        ("BOC71", arrears(u51, bank="BOC"), "not contracted for province 51"),
    ]
    for consumer, args, why in cases:
        status, _, body = call(secure, "BankPayment", "QueryArrears", args, username_token(consumer, PASSWORDS[consumer]))
        code, text = fault_of(body)
        assert (status, code) == (500, "Client.NotAuthorized") and why in text, (consumer, text)
    status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u71, bank="BOC"),
                           username_token("BOC71", PASSWORDS["BOC71"]))
    assert status == 200, "its own province"


def test_the_sandbox_systems_authenticate_through_the_whole_order_loop(secure):
    """e-sales -> HQ CRM -> (bus, as HQCRM) province CRM -> (bus, as PCRM) HQ CRM -> e-sales:
    every hop through the bus carries its consumer's token."""
    u = seed_users("51")[1]
    client = BusClient(secure.url, login=login_for(secure.bus.gatekeeper.consumers))
    order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", u.msisdn),
                      ORDER_ID=f"SEC{datetime.now():%H%M%S%f}", SERIAL_NUMBER=u.msisdn, PROVINCE_CODE="51")
    result = client.call("OrderSync", "SyncOrder", order)
    assert result.rsp_code == "0000", result
    proc = order["UNI_BSS_HEAD"]["PROC_ID"]

    def consumers():
        hops = [h for h in secure.bus.journal.hops(proc) if h["direction"] == "in"]
        return {(h["operation"], h["consumer"]) for h in hops} if len(hops) >= 5 else None
    seen = wait_for(consumers)
    assert {("SyncOrder", "ESALES"), ("SyncOrder", "HQCRM"), ("SubmitWorkOrder", "HQCRM"),
            ("ReportWorkOrderResult", "PCRM")} <= seen


# -- configuration ---------------------------------------------------------------------------------

def test_required_authentication_without_credentials_does_not_start(tmp_path):
    settings = load_settings(env={}).copy()
    settings.raw["security"] = dict(settings.raw["security"], authentication="required")
    with pytest.raises(SecurityConfigError, match="no credentials for consumer"):
        Gatekeeper.from_settings(settings, env={})
    settings.raw["consumers"]["ICBC"] = dict(settings.raw["consumers"]["ICBC"], password="in-the-repo")
    with pytest.raises(SecurityConfigError, match="do not belong in the configuration"):
        Gatekeeper.from_settings(settings, env={})
    env = {f"BSSBUS_CONSUMER_{cid}_PASSWORD": "x" for cid in settings.raw["consumers"]}
    del settings.raw["consumers"]["ICBC"]["password"]
    assert Gatekeeper.from_settings(settings, env=env).consumers["ICBC"].password == "x"


def test_hash_password_prints_a_hash_the_bus_accepts(capsys, monkeypatch):
    from bus.cli import main as bssbus
    from bus.security import verify_hash
    monkeypatch.setenv("NEW_BANK_PASSWORD", "s3cret")
    assert bssbus(["hash-password", "--password-env", "NEW_BANK_PASSWORD"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("password_hash: pbkdf2_sha256$") and "s3cret" not in line
    stored = line.split(": ", 1)[1]
    assert verify_hash(stored, "s3cret") and not verify_hash(stored, "s3cret ")
    monkeypatch.delenv("NEW_BANK_PASSWORD")
    assert bssbus(["hash-password", "--password-env", "NEW_BANK_PASSWORD"]) == 2


def test_a_consumer_over_its_rate_limit_gets_server_busy_and_the_others_go_on(secure):
    u = a_user("51")
    codes = []
    for _ in range(6):
        status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u, bank="ABC"),
                               username_token("FLOOD", PASSWORDS["FLOOD"]))
        codes.append(rsp_code(body) if status == 200 else fault_of(body)[0])
        status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u),
                               username_token("ICBC", PASSWORDS["ICBC"]))
        assert status == 200, "another consumer is not held up"
    assert codes == ["0000"] * 3 + ["Server.Busy"] * 3
    status, _, body = call(secure, "BankPayment", "QueryArrears", arrears(u, bank="ABC"),
                           username_token("FLOOD", PASSWORDS["FLOOD"]))
    assert "faster than its limit" in fault_of(body)[1]


def test_auto_is_off_with_sandbox_peers_only_and_required_once_a_peer_is_real():
    settings = load_settings(env={}).copy()
    settings.set_sandbox_url("http://127.0.0.1:8090")
    assert Gatekeeper.from_settings(settings, env={}).mode == "off"
    settings.raw["peers"]["hq_billing"] = dict(settings.raw["peers"]["hq_billing"], url="http://billing.hq:7001/ws")
    with pytest.raises(SecurityConfigError, match="no credentials for consumer"):
        Gatekeeper.from_settings(settings, env={})
    env = {f"BSSBUS_CONSUMER_{cid}_PASSWORD": "x" for cid in settings.raw["consumers"]}
    assert Gatekeeper.from_settings(settings, env=env).mode == "required"


def test_must_understand_is_honoured_with_authentication_off_too(bus):
    """The default bus (sandbox peers only: authentication off) still refuses a header it
    must understand and does not, rather than ignoring it."""
    u = a_user("51")
    other = etree.Element("{urn:example:routing}Priority")
    status, _, body = call(bus, "BankPayment", "QueryArrears", arrears(u), other, must_understand="1")
    assert (status, fault_of(body)[0]) == (500, "Client.MustUnderstand")
    status, _, body = call(bus, "BankPayment", "QueryArrears", arrears(u), other, must_understand="0")
    assert status == 200, "mustUnderstand 0: the header may be ignored"
