"""``/metrics`` over real HTTP: the series move by what the traffic did, and the gauges show
the state (an open breaker, an outbox waiting for a peer that is down, a dead letter, the
reconciliation batches). Scraped before and after; the differences are asserted, so the
traffic other tests of the session sent does not matter."""
from __future__ import annotations

import io
import json
import logging
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.embedded import EmbeddedBus
from bus.logs import JsonFormatter
from config.settings import load_settings
from dao.reconcile import ReconStore
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import control, make_args, outbox_rows, post, wait_for

FAILURES = 3


def scrape(url: str) -> dict:
    """{(sample name, ((label, value), ...)): value} of one scrape of ``url``/metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def user(province: str, net_type: str | None = None):
    return next(u for u in seed_users(province) if u.user_state == "00" and net_type in (None, u.net_type))


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    """A bus whose province Billings trip their breaker after 3 failures and stay cut off for a
    minute, and whose outbox gives up a message after 2 attempts."""
    workdir = tmp_path_factory.mktemp("metrics")
    override = workdir / "metrics.yaml"
    override.write_text("peers:\n  province_billing:\n    timeout: 2\n"
                        f"    breaker: {{failures: {FAILURES}, cooldown_seconds: 60}}\n"
                        "redelivery: {max_attempts: 2, poll_seconds: 0.1, initial_seconds: 0.1, cap_seconds: 0.2}\n",
                        encoding="utf-8")
    with EmbeddedBus(load_settings(override, env={}), workdir=workdir) as embedded:
        yield embedded


def query(client, msisdn: str, route=None):
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=route or ("01", msisdn),
                     SERIAL_NUMBER=msisdn)
    return client.call("BankPayment", "QueryBalance", args)


def sync(client, u):
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", u.msisdn),
                     SYNC_SEQ=int(time.time() * 1000))
    args["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=u.msisdn, PROVINCE_CODE=u.province,
                                        NET_TYPE_CODE=u.net_type, USER_ID=f"U{u.msisdn}")
    return args["UNI_BSS_HEAD"]["TRANS_IDO"], client.call("AccountSync", "SyncThreeAccount", args)


def test_requests_faults_and_peer_calls_are_counted(metered):
    client = BusClient(metered.url)
    route = dict(service="BankPayment", operation="QueryBalance")
    before = scrape(metered.url)
    ok = query(client, user("38").msisdn)
    assert (ok.fault_code, ok.rsp_code) == (None, "0000")
    unknown = query(client, user("38").msisdn, route=("00", "99"))
    assert unknown.fault_code == "Client.UnknownProvince"
    after = scrape(metered.url)
    assert moved(before, after, "bssbus_requests_total", consumer="anonymous", outcome="ok", **route) == 1
    assert moved(before, after, "bssbus_requests_total", consumer="anonymous",
                 outcome="Client.UnknownProvince", **route) == 1
    assert moved(before, after, "bssbus_request_seconds_count", **route) == 2
    assert moved(before, after, "bssbus_request_seconds_bucket", le="+Inf", **route) == 2
    assert moved(before, after, "bssbus_request_seconds_sum", **route) > 0
    assert moved(before, after, "bssbus_peer_call_seconds_count", peer="BILLING-38", outcome="ok") == 1
    assert moved(before, after, "bssbus_forwarded_total") == 1, "a canonical peer's answer, as it came"
    assert value(after, "bssbus_peer_in_flight", peer="BILLING-38") == 0
    assert value(after, "bssbus_breaker_state", peer="BILLING-38") == 0
    # a request for a service the bus does not have: counted without its (made-up) name
    trans_ido = ok.head["TRANS_IDO"]
    status, _, _ = post(f"{metered.url}/ws/NoSuchService{trans_ido}", b"<x/>")
    assert status == 500
    after = scrape(metered.url)
    assert value(after, "bssbus_requests_total", service="", operation="", consumer="anonymous",
                 outcome="Client.UnknownOperation") == 1
    labels = "".join(str(labels) for _, labels in after)
    assert trans_ido not in labels and user("38").msisdn not in labels, "no TRANS_IDO, no number in a label"


def test_an_open_breaker_and_an_outbox_waiting_for_its_peer(metered):
    client = BusClient(metered.url)
    before = scrape(metered.url)
    control(metered.sandbox_url, peer="BILLING-30", fault="billing database is down")
    try:
        faults = [query(client, user("30").msisdn).fault_code for _ in range(FAILURES + 1)]
        assert faults == ["Server.PeerFault"] * FAILURES + ["Server.PeerUnavailable"]
        # one-way messages to the Billing that is down wait in the outbox (its breaker is open)
        gsm = user("30", net_type="10")   # a GSM user's change goes to the Billing alone
        stored = [sync(client, gsm) for _ in range(2)]
        assert [r.rsp_code for _, r in stored] == ["0000", "0000"]
        assert all(r["status"] == "pending" for t, _ in stored for r in outbox_rows(metered, t))
        after = scrape(metered.url)
    finally:
        control(metered.sandbox_url, peer="BILLING-30")
    assert value(after, "bssbus_breaker_state", peer="BILLING-30") == 2
    assert moved(before, after, "bssbus_peer_call_seconds_count", peer="BILLING-30",
                 outcome="Server.PeerFault") == FAILURES
    assert moved(before, after, "bssbus_peer_call_seconds_count", peer="BILLING-30",
                 outcome="Server.PeerUnavailable") == 1
    assert moved(before, after, "bssbus_requests_total", service="BankPayment", operation="QueryBalance",
                 consumer="anonymous", outcome="Server.PeerFault") == FAILURES
    assert moved(before, after, "bssbus_requests_total", service="AccountSync", operation="SyncThreeAccount",
                 consumer="anonymous", outcome="ok") == 2
    assert value(after, "bssbus_outbox_depth", peer="BILLING-30") == 2
    assert value(after, "bssbus_outbox_oldest_age_seconds", peer="BILLING-30") >= 0
    time.sleep(1.1)   # the age is the oldest message's, and grows while it waits
    assert value(scrape(metered.url), "bssbus_outbox_oldest_age_seconds", peer="BILLING-30") >= 1


def test_dead_letters_and_reconciliation_batches(metered):
    client = BusClient(metered.url)
    control(metered.sandbox_url, peer="BILLING-87", fault="billing is being upgraded")
    try:
        trans_ido, result = sync(client, user("87", net_type="10"))
        assert result.rsp_code == "0000"
        wait_for(lambda: [r["status"] for r in outbox_rows(metered, trans_ido)] == ["dead"])
    finally:
        control(metered.sandbox_url, peer="BILLING-87")
    recon = ReconStore(metered.bus.engine)
    recon.reject("ICBC_20261126.txt", "not a bank file")
    batch = recon.claim("ICBC_20261127.txt", "ICBC", "20261127", "0" * 32, lines=5, amount=500)
    recon.compared(batch, {"balanced": (4, 400), "bank_only": (1, 100)}, [])
    recon.finish(batch, "ICBC_20261127.result.txt")
    after = scrape(metered.url)
    assert value(after, "bssbus_dead_letters", peer="BILLING-87") == 1
    assert value(after, "bssbus_outbox_depth", peer="BILLING-87") == 0
    assert moved({}, after, "bssbus_peer_call_seconds_count", peer="BILLING-87", outcome="Server.PeerFault") == 2
    assert value(after, "bssbus_reconciliation_batches", state="rejected") == 1
    assert value(after, "bssbus_reconciliation_batches", state="done") == 1
    assert value(after, "bssbus_reconciliation_transactions", outcome="balanced") == 4
    assert value(after, "bssbus_reconciliation_transactions", outcome="bank_only") == 1
    # the database's gauges appear once in a scrape, however many times they are asked for
    assert value(scrape(metered.url), "bssbus_dead_letters", peer="BILLING-87") == 1


@pytest.fixture
def json_log():
    """The bus's log records at INFO as `logging.format: json` writes them; returns a reader
    of the lines so far (each parsed, so a line that is not one JSON object fails the test)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("bssbus")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_json_logs_name_the_message_and_mask_personal_data(metered, json_log):
    client = BusClient(metered.url)
    u = user("38")
    args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
    assert client.call("BankPayment", "QueryBalance", args).rsp_code == "0000"
    # a Billing that refuses with personal data in its fault string: the message becomes a dead
    # letter, and the line saying so quotes the fault
    gsm = user("76", net_type="10")
    control(metered.sandbox_url, peer="BILLING-76",
            fault="refused: CERT_NUM=370102198507123456 OTHER_PARTY=18603011234")
    try:
        trans_ido, result = sync(client, gsm)
        assert result.rsp_code == "0000"
        wait_for(lambda: [r["status"] for r in outbox_rows(metered, trans_ido)] == ["dead"])
    finally:
        control(metered.sandbox_url, peer="BILLING-76")
    wait_for(lambda: any("dead letter" in line["message"] for line in json_log()))
    lines = json_log()
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        assert line["time"].endswith("+00:00") and line["level"] in ("INFO", "WARNING", "ERROR")
    head = args["UNI_BSS_HEAD"]
    request = [line for line in lines if line.get("TRANS_IDO") == head["TRANS_IDO"]]
    assert [(line["logger"], line["PROC_ID"]) for line in request] == [("bssbus.inbound", head["PROC_ID"])]
    assert "BankPayment.QueryBalance" in request[0]["message"] and " ok in " in request[0]["message"]
    dead = [line for line in lines if "dead letter" in line["message"]]
    assert len(dead) == 1 and dead[0]["level"] == "WARNING" and dead[0]["TRANS_IDO"] == trans_ido
    assert dead[0]["PROC_ID"] and "370102********3456" in dead[0]["message"] and "186****1234" in dead[0]["message"]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    for secret in ("370102198507123456", "18603011234", u.msisdn, gsm.msisdn):
        assert secret not in text
