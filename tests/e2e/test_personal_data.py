"""Personal data of real flows (the sandbox's seeded customers, three-account syncs, orders,
a validation fault and a peer fault that echo it) stays masked in `bssbus journal` and
`bssbus dlq` output, in the logs (DEBUG included) and on the bus's pages; an operator with the
role raw-reader sees it unmasked, and that view is journalled; with BSSBUS_JOURNAL_KEY the
journal keeps the raw bytes encrypted."""
from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import text

from bus.cli import main
from bus.embedded import EmbeddedBus
from dao.journal import KEY_ENV, JournalCipher
from sandbox.store import seed_users
from services.client import BusClient
from tests.conftest import PG_URL, pg_schema_url
from tests.e2e.conftest import control, delivered, get, make_args, outbox_rows, post, wait_for
from tests.e2e.test_bad_input import envelope

USER = next(u for u in seed_users("51") if u.user_state == "00" and u.net_type == "50")
CERT, ADDR, ACCOUNT = "440103199003071234", "广东省广州市天河区体育西路191号", "6222021234567890128"
ORDER_NAME, ORDER_CERT = "欧阳娜娜", "310104199003152345"
LONG_CERT = "440106198811230012" + "7" * 15      # longer than CertNumType allows: a validation fault
FAULT_CERT = "110101197001011239"                # echoed by a failing peer
SECRETS = (USER.cust_name, CERT, ADDR, ACCOUNT, ORDER_NAME, ORDER_CERT, LONG_CERT, "440106198811230012",
           FAULT_CERT)


def forms(value: str) -> set[str]:
    """The value as a person could read it in text, bytes' repr (UTF-8, GBK) or ASCII JSON."""
    return {value, repr(value.encode())[2:-1], repr(value.encode("gbk"))[2:-1], json.dumps(value)[1:-1]}


def assert_clean(output: str, where: str) -> None:
    for secret in SECRETS:
        for form in forms(secret):
            assert form not in output, f"{secret} ({form}) unmasked in {where}:\n{output[:3000]}"


def sync_args(name: str, cert: str, **customer) -> dict:
    args = make_args("AccountSync", "SyncThreeAccount", caller="PCRM", route=("01", USER.msisdn),
                     SYNC_SEQ=int(time.time() * 1000))
    body = args["UNI_BSS_BODY"]
    body["CUSTOMER"].update(CUST_NAME=name, CERT_NUM=cert, **customer)
    body["USER"].update(SERIAL_NUMBER=USER.msisdn, PROVINCE_CODE="51", NET_TYPE_CODE="50",
                        USER_ID=f"U{USER.msisdn}")
    body["ACCOUNT"].update(PAY_NAME=name, PAY_MODE_CODE="1", BANK_ACCT_NO=ACCOUNT)
    return args


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def flows(bus):
    """Drive the flows with every logger at DEBUG (zeep logs each envelope it sends); returns
    the keys to look the messages up by and the log lines."""
    root, spyne, handler = logging.getLogger(), logging.getLogger("spyne"), Lines()
    levels = root.level, spyne.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    spyne.setLevel(logging.INFO)   # its DEBUG is about its own caches, thousands of lines
    client = BusClient(bus.url)
    try:
        sync = sync_args(USER.cust_name, CERT, CUST_ADDR=ADDR)       # one-way, in GBK
        status, _, answer = post(f"{bus.url}/ws/AccountSync",
                                 envelope("AccountSync", "SyncThreeAccount", sync, encoding="gbk"),
                                 "text/xml; charset=GBK")
        assert status == 200, answer
        sync_ido = sync["UNI_BSS_HEAD"]["TRANS_IDO"]
        delivered(bus, sync_ido, "BILLING-51", "HQ-CRM")

        order = make_args("OrderSync", "SyncOrder", caller="ESALE", route=("01", USER.msisdn),
                          ORDER_ID=f"ES51PD{int(time.time() * 1000)}", SERIAL_NUMBER=USER.msisdn,
                          PROVINCE_CODE="51")
        order["UNI_BSS_BODY"]["CUST_INFO"].update(CUST_NAME=ORDER_NAME, CERT_NUM=ORDER_CERT)
        assert client.call("OrderSync", "SyncOrder", order).rsp_code == "0000"
        order_pid = order["UNI_BSS_HEAD"]["PROC_ID"]
        wait_for(lambda: any(h["direction"] == "out" and h["target"] == "CRM-51" and h["operation"] == "SyncOrder"
                             and h["status"] == "ok" for h in bus.bus.journal.hops(order_pid)))

        arrears = make_args("BankPayment", "QueryArrears", caller="BANK", route=("01", USER.msisdn),
                            SERIAL_NUMBER=USER.msisdn)
        assert client.call("BankPayment", "QueryArrears", arrears).rsp_code == "0000"

        invalid = sync_args(ORDER_NAME, LONG_CERT)
        refused = client.call("AccountSync", "SyncThreeAccount", invalid)
        assert refused.fault_code == "Client.ValidationError" and "CERT_NUM" in refused.fault_string

        control(bus.sandbox_url, peer="BILLING-51", fault=f"CUST_NAME={USER.cust_name}: certificate "
                f"{FAULT_CERT} is barred", operations=["QueryBalance"], calls=1)
        balance = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", USER.msisdn),
                            SERIAL_NUMBER=USER.msisdn)
        faulted = client.call("BankPayment", "QueryBalance", balance)
        assert faulted.fault_code == "Server.PeerFault" and FAULT_CERT in faulted.fault_string
    finally:
        control(bus.sandbox_url, peer="BILLING-51")
        root.removeHandler(handler)
        root.setLevel(levels[0])
        spyne.setLevel(levels[1])
    keys = {"sync": sync_ido, "order": order_pid, "arrears": arrears["UNI_BSS_HEAD"]["TRANS_IDO"],
            "invalid": invalid["UNI_BSS_HEAD"]["TRANS_IDO"], "fault": balance["UNI_BSS_HEAD"]["TRANS_IDO"]}
    return {"keys": keys, "logs": handler.lines}


def bssbus(capsys, *args) -> tuple[int, str, str]:
    """`bssbus ARGS` in this process; (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_the_journal_holds_the_personal_data_as_received(bus, flows):
    """The check below means something: the raw rows do hold the values the output hides."""
    raw = b"".join(h["request"] or b"" for h in bus.bus.journal.hops(flows["keys"]["sync"]))
    assert USER.cust_name.encode("gbk") in raw and ACCOUNT.encode() in raw
    invalid = bus.bus.journal.hops(flows["keys"]["invalid"])
    assert invalid[0]["fault_code"] == "Client.ValidationError" and LONG_CERT.encode() in invalid[0]["request"]
    assert FAULT_CERT in bus.bus.journal.hops(flows["keys"]["fault"])[-1]["error"]


@pytest.mark.parametrize("options", [(), ("--json",), ("--raw",), ("--raw", "--json")])
def test_journal_show_masks_personal_data(bus, flows, capsys, options):
    for name, key in flows["keys"].items():
        status, out, err = bssbus(capsys, "journal", "show", key, "--db-url", bus.db_url, *options)
        assert status == 0, err
        assert_clean(out, f"journal show {name} {' '.join(options)}")
        if "--raw" in options and name == "sync":
            assert f"{USER.cust_name[0]}{'*' * (len(USER.cust_name) - 1)}" in out
            for masked in ("440103********1234", "广东省广州市*********", "***************0128"):
                assert masked in out


@pytest.mark.parametrize("options", [(), ("--json",)])
def test_journal_trace_masks_personal_data(bus, flows, capsys, options):
    for name, key in flows["keys"].items():
        status, out, err = bssbus(capsys, "journal", "trace", key, "--db-url", bus.db_url, *options)
        assert status == 0, err
        assert_clean(out, f"journal trace {name} {' '.join(options)}")
    shown = bssbus(capsys, "journal", "trace", flows["keys"]["fault"], "--db-url", bus.db_url)[1]
    assert "certificate 110101********1239 is barred" in shown


@pytest.mark.parametrize("query", [("--msisdn", USER.msisdn), ("--status", "fault"),
                                   ("--service", "AccountSync"), ("--peer", "BILLING-51"), ("--since", "1h")])
def test_journal_search_masks_personal_data(bus, flows, capsys, query):
    for options in ((), ("--json",)):
        status, out, err = bssbus(capsys, "journal", "search", *query, "--limit", "500",
                                  "--db-url", bus.db_url, *options)
        assert status == 0, err
        assert_clean(out, f"journal search {' '.join(query + options)}")
    shown = bssbus(capsys, "journal", "show", flows["keys"]["fault"], "--db-url", bus.db_url)[1]
    assert "CUST_NAME=" in shown and "certificate 110101********1239 is barred" in shown


def test_dlq_output_masks_personal_data(bus, flows, capsys):
    rows = outbox_rows(bus, flows["keys"]["sync"])
    assert rows
    for row in rows:
        status, out, err = bssbus(capsys, "dlq", "show", str(row["id"]), "--db-url", bus.db_url)
        assert status == 0, err
        assert_clean(out, f"dlq show {row['id']}")
        shown = json.loads(out)["message"]["body"]
        assert shown["CUSTOMER"]["CERT_NUM"] == "440103********1234"
        assert shown["USER"]["SERIAL_NUMBER"] == USER.msisdn
    for options in ((), ("--json",)):
        status, out, err = bssbus(capsys, "dlq", "list", "--status", "delivered", "--limit", "1000",
                                  "--db-url", bus.db_url, *options)
        assert status == 0 and rows[0]["trans_ido"] in out, err
        assert_clean(out, "dlq list")


def test_logs_hold_no_personal_data_even_at_debug(flows):
    logs = "\n".join(flows["logs"])
    assert "SyncThreeAccount" in logs and "CUST_NAME" in logs, "zeep logged the envelopes it sent"
    assert_clean(logs, "the log")


def test_the_bus_pages_show_no_personal_data(bus, flows):
    for page in ("/", "/healthz", "/metrics"):
        status, _, body = get(f"{bus.url}{page}")
        assert status == 200
        assert_clean(body.decode(), page)


@pytest.fixture
def operators(tmp_path):
    config = tmp_path / "operators.yaml"
    config.write_text("operators:\n  alice: {roles: [raw-reader]}\n  bob: {roles: []}\n", encoding="utf-8")
    return str(config)


def audit_rows(bus, key: str) -> list[dict]:
    return [h for h in bus.bus.journal.hops(key) if h["direction"] == "adm" and h["status"] == "unmasked"]


def test_unmasked_output_needs_the_role_and_is_journalled(bus, flows, capsys, operators, monkeypatch):
    monkeypatch.delenv("BSSBUS_OPERATOR", raising=False)
    key = flows["keys"]["sync"]
    show = ("journal", "show", key, "--db-url", bus.db_url, "--config", operators)
    for extra, words in (((), "needs an operator with the role raw-reader"),
                         (("--operator", "bob"), "operator 'bob' lacks the role raw-reader"),
                         (("--operator", "alcie"), 'no operator \'alcie\' in the configuration (operators:) '
                                                   '(did you mean "alice"?)')):
        status, out, err = bssbus(capsys, *show, "--raw", "--unmasked", *extra)
        assert status == 2 and words in err and not out, err
    status, _, err = bssbus(capsys, *show, "--unmasked", "--operator", "alice")
    assert status == 2 and "give --raw" in err
    assert audit_rows(bus, key) == []

    status, out, err = bssbus(capsys, *show, "--raw", "--unmasked", "--operator", "alice")
    assert status == 0, err
    assert USER.cust_name in out and CERT in out and ADDR in out and ACCOUNT in out
    audits = audit_rows(bus, key)
    assert [(a["source"], a["trans_ido"]) for a in audits] == [("alice", key)]
    assert "shown unmasked to alice" in audits[0]["route"]

    monkeypatch.setenv("BSSBUS_OPERATOR", "alice")
    status, out, _ = bssbus(capsys, *show, "--raw", "--unmasked", "--json")
    assert status == 0 and CERT in json.loads(out)[0]["request"]
    assert len(audit_rows(bus, key)) == 2
    status, out, _ = bssbus(capsys, *show, "--raw")   # without --unmasked: masked, whoever asks
    assert status == 0
    assert_clean(out, "journal show --raw of a raw-reader")
    assert "BSSBUS_OPERATOR" not in out

    row = outbox_rows(bus, key)[0]
    status, out, err = bssbus(capsys, "dlq", "show", str(row["id"]), "--db-url", bus.db_url,
                              "--config", operators, "--unmasked")
    assert status == 0, err
    assert json.loads(out)["message"]["body"]["CUSTOMER"]["CERT_NUM"] == CERT
    assert len(audit_rows(bus, key)) == 3
    monkeypatch.setenv("BSSBUS_OPERATOR", "bob")
    status, out, err = bssbus(capsys, "dlq", "show", str(row["id"]), "--db-url", bus.db_url,
                              "--config", operators, "--unmasked")
    assert status == 2 and "lacks the role" in err and not out


def _encrypted_bus_params():
    return ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=_encrypted_bus_params())
def encrypted_bus(request, tmp_path, monkeypatch):
    """A bus started with BSSBUS_JOURNAL_KEY set (the key is read when its journal opens)."""
    key = JournalCipher.new_key()
    monkeypatch.setenv(KEY_ENV, key)
    if request.param == "sqlite":
        with EmbeddedBus(workdir=tmp_path) as embedded:
            yield embedded, key
    else:
        with pg_schema_url() as url, EmbeddedBus(workdir=tmp_path, db_url=url) as embedded:
            yield embedded, key


def test_an_encrypted_journal_keeps_no_plaintext_at_rest_and_reads_back_intact(encrypted_bus, capsys,
                                                                                monkeypatch):
    embedded, key = encrypted_bus
    client = BusClient(embedded.url)
    sync = sync_args(USER.cust_name, CERT, CUST_ADDR=ADDR)
    raw = envelope("AccountSync", "SyncThreeAccount", sync, encoding="gbk")
    assert post(f"{embedded.url}/ws/AccountSync", raw, "text/xml; charset=GBK")[0] == 200
    trans_ido = sync["UNI_BSS_HEAD"]["TRANS_IDO"]
    delivered(embedded, trans_ido, "BILLING-51", "HQ-CRM")          # group-committed accept, Forwarder hops
    arrears = make_args("BankPayment", "QueryArrears", caller="BANK", route=("01", USER.msisdn),
                        SERIAL_NUMBER=USER.msisdn)
    assert client.call("BankPayment", "QueryArrears", arrears).rsp_code == "0000"   # a synchronous hop
    wait_for(lambda: all(h["response"] for h in embedded.bus.journal.hops(trans_ido) if h["direction"] == "in"))

    with embedded.bus.engine.connect() as conn:
        at_rest = conn.execute(text("SELECT request, response FROM journal")).all()
    values = [bytes(v) for row in at_rest for v in row if v is not None]
    assert len(values) >= 7
    for value in values:
        assert value.startswith(JournalCipher.SEALED)
        assert b"Envelope" not in value and b"UNI_BSS_HEAD" not in value
        assert USER.cust_name.encode("gbk") not in value and CERT.encode() not in value

    hops = embedded.bus.journal.hops(trans_ido)
    assert hops[0]["request"] == raw, "read back exactly as received"
    assert all(b"UNI_BSS_HEAD" in h["response"] for h in hops)
    status, out, err = bssbus(capsys, "journal", "show", trans_ido, "--raw", "--db-url", embedded.db_url)
    assert status == 0 and "440103********1234" in out, err
    assert_clean(out, "journal show --raw of an encrypted journal")

    monkeypatch.delenv(KEY_ENV)
    status, out, err = bssbus(capsys, "journal", "show", trans_ido, "--db-url", embedded.db_url)
    assert status == 2 and "is encrypted at rest: set BSSBUS_JOURNAL_KEY" in err and not out
    monkeypatch.setenv(KEY_ENV, "not a key")
    status, out, err = bssbus(capsys, "journal", "show", trans_ido, "--db-url", embedded.db_url)
    assert status == 2 and "not 32 bytes" in err
