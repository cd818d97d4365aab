"""The `bssbus` command: help, bad input, routes, demo, and `serve` under gunicorn for real."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from bus.server import free_port
from sandbox.store import seed_users
from services.client import BusClient
from tests.e2e.conftest import make_args

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "wsdl" / "examples"


def bssbus(*args, env=None, timeout=120, cwd=None):
    return subprocess.run([sys.executable, "-m", "bus.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)


def test_help_for_every_sub_command():
    top = bssbus("--help")
    assert top.returncode == 0
    for command in ("serve", "sandbox", "demo", "call", "journal", "routes", "phase", "dlq", "reconcile",
                    "soapui-project", "check-config"):
        assert command in top.stdout
        sub = bssbus(command, "--help")
        assert sub.returncode == 0 and "--config" in sub.stdout, command


def test_routes_prints_the_effective_table(tmp_path):
    db = f"sqlite:///{tmp_path}/bus.db"
    out = bssbus("routes", "--db-url", db)
    assert out.returncode == 0
    line51 = next(l for l in out.stdout.splitlines() if l.strip().startswith("51 "))
    assert "BILLING-51" in line51 and "CRM-51" in line51
    line11 = next(l for l in out.stdout.splitlines() if l.strip().startswith("11 "))
    assert "HQ-BILLING" in line11
    data = json.loads(bssbus("routes", "--json", "--db-url", db).stdout)
    assert {p["province"] for p in data["provinces"]} >= {"51", "11"} and len(data["provinces"]) == 31
    moved = bssbus("phase", "set", "51", "3", "--by", "alice", "--reason", "cut-over", "--db-url", db)
    assert moved.returncode == 0 and "phase 2 -> 3" in moved.stdout
    line51 = next(l for l in bssbus("routes", "--db-url", db).stdout.splitlines() if l.strip().startswith("51 "))
    assert "3*" in line51 and "HQ-BILLING" in line51 and "BILLING-51" not in line51
    history = json.loads(bssbus("phase", "history", "--json", "--db-url", db).stdout)
    assert [(h["province"], h["old_phase"], h["new_phase"], h["changed_by"], h["reason"]) for h in history] == [
        ("51", 2, 3, "alice", "cut-over")]
    assert history[0]["changed_at"]
    bad = bssbus("phase", "set", "52", "3", "--db-url", db)
    assert bad.returncode == 2 and "'52'" in bad.stderr


@pytest.mark.parametrize("args, words", [
    (("routes", "--config", "/no/such.yaml"), "does not exist"),
    (("call", "NoService", "Pay", "x.json"), "unknown service"),
    (("call", "BankPayment", "Steal", "x.json"), "no operation"),
    (("call", "BankPayment", "Pay", "/no/args.json"), "does not exist"),
    (("serve", "--no-sandbox", "--port", "1"), "no sandbox is running"),
    (("reconcile",), "give a bank file"),
    (("reconcile", "/no/ICBC_20261126.txt"), "no such file"),
    (("sandbox", "make-bank-file", "--bank", "icbc", "--date", "20261126"), "--bank is 2..10 of A-Z"),
    (("sandbox", "make-bank-file", "--bank", "ICBC", "--date", "20261126", "--discrepancies", "lost=1"),
     "unknown discrepancy kind 'lost'"),
    (("sandbox", "make-bank-file", "--bank", "ICBC", "--date", "20261126", "--lines", "-5"), "--lines is at least 1"),
    (("sandbox", "make-bank-file", "--bank", "ICBC", "--date", "20261399"), "--date 20261399 is not a date"),
])
def test_bad_input_exits_non_zero_with_one_line(args, words):
    out = bssbus(*args)
    assert out.returncode == 2
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_bad_config_names_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("provinces:\n  '51': 4\n", encoding="utf-8")
    out = bssbus("routes", "--config", str(bad))
    assert out.returncode == 2 and "provinces.51" in out.stderr


def test_journal_show_of_an_unknown_message(tmp_path):
    out = bssbus("journal", "show", "NOPE", "--db-url", f"sqlite:///{tmp_path}/j.db")
    assert out.returncode == 2 and "NOPE" in out.stderr


def test_journal_trace_and_search_refuse_bad_input_in_one_line(tmp_path):
    db = ["--db-url", f"sqlite:///{tmp_path}/j.db"]
    out = bssbus("journal", "trace", "NOPE", *db)
    assert out.returncode == 2 and "NOPE" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = bssbus("journal", "search", "--since", "yesterday", *db)
    assert out.returncode == 2 and "--since 'yesterday'" in out.stderr and "2h" in out.stderr
    out = bssbus("journal", "search", "--since", "1h", "--until", "2h", *db)
    assert out.returncode == 2 and "--since must be before --until" in out.stderr
    for far in ("99999999999d", "0001-01-01T00:00+08:00"):   # past the calendar: a sentence, no traceback
        out = bssbus("journal", "search", "--since", far, *db)
        assert out.returncode == 2 and "out of range" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = bssbus("journal", "search", "--serial", "NONE", *db)
    assert out.returncode == 0 and "no hop matches" in out.stdout
    for action in ("search", "trace"):
        assert "--config" in bssbus("journal", action, "--help").stdout


def test_demo_runs_every_flow_in_both_phases(tmp_path):
    out = bssbus("demo", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    flows = json.loads(out.stdout)
    assert all(f["ok"] for f in flows), [f for f in flows if not f["ok"]]
    assert {f["province"] for f in flows} == {"51", "11", "34"}   # phase 2, phase 3, legacy
    senders = {(f["province"], f["answered_by"]) for f in flows}
    assert {("51", "BILLING-51"), ("11", "HQ-BILLING"), ("34", "BILLING-34"), ("11", "TOPUP")} <= senders
    assert all(f["hops"] >= 2 for f in flows)
    titles = {f["flow"] for f in flows}
    assert any("completion" in t for t in titles) and any("top-up" in t for t in titles)
    # one-way flows: the bus answers 'accepted', and the demo shows each delivery and its answer
    by_title = {(f["province"], f["flow"].split(" (")[0].split(":")[0]): f for f in flows}
    cards = by_title["11", "card activation"]
    assert cards["answered_by"] == "BUS" and cards["delivered_to"] == [{"peer": "TOPUP", "rsp_code": "0000"}]
    sync = by_title["51", "three-account sync of a 3G user"]
    assert sync["answered_by"] == "BUS" and sync["delivered_to"] == [
        {"peer": "BILLING-51", "rsp_code": "0000"}, {"peer": "HQ-CRM", "rsp_code": "0000"}]
    gsm = by_title["34", "VAC change of a GSM user"]
    assert (gsm["answered_by"], gsm["delivered_to"]) == ("BUS", [{"peer": "CRM-34", "rsp_code": "2101"}])
    vac = by_title["11", "VAC change of a 3G user"]
    assert {d["peer"] for d in vac["delivered_to"]} == {"CRM-11", "HQ-BILLING", "HQ-CRM"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`bssbus serve` for real: gunicorn workers, the sandbox in its own process, SQLite."""
    work = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "BSSBUS_DATA_DIR": str(work / "var")}
    proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--port", str(port)], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url, sandbox, lines = f"http://127.0.0.1:{port}", None, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        match = re.search(r"sandbox peers at (http://\S+)/peers/", line)
        sandbox = match.group(1) if match else sandbox
        if line.startswith("bssbus serving"):
            break
        if proc.poll() is not None:
            pytest.fail("bssbus serve exited: " + "".join(lines))
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 90   # gunicorn's workers build the app after the fork
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGTERM)
                pytest.fail("bssbus serve did not answer /healthz: " + "".join(lines))
            time.sleep(0.2)
    yield {"url": url, "sandbox": sandbox, "env": env, "work": work, "proc": proc}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def test_serve_call_and_journal_from_the_command_line(served):
    out = bssbus("call", "BankPayment", "QueryArrears", str(EXAMPLES / "BankPayment.QueryArrears.json"),
                 "--url", served["url"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0000" in out.stdout and "answered by BILLING-51" in out.stdout
    trans_ido = json.loads((EXAMPLES / "BankPayment.QueryArrears.json").read_text())["UNI_BSS_HEAD"]["TRANS_IDO"]
    shown = bssbus("journal", "show", trans_ido, env=served["env"], cwd=served["work"])
    assert shown.returncode == 0, shown.stderr
    assert "BANK -> BUS" in shown.stdout and "BUS => BILLING-51" in shown.stdout
    faulty = bssbus("call", "BankPayment", "QueryArrears", str(EXAMPLES / "BankPayment.QueryArrears.json"),
                    "--url", f"http://127.0.0.1:{free_port()}")
    assert faulty.returncode == 2 and "cannot reach the bus" in faulty.stderr


def test_slow_peers_do_not_starve_the_bus(served):
    """28 calls wait on a peer that answers in 1.5 s; calls to other peers are answered meanwhile.
    (28, not more: each of the 2 workers has 32 threads, and gunicorn does not spread
    connections evenly between workers, so more could fill one worker by chance.)"""
    slow_user, fast_user = seed_users("59")[0], seed_users("74")[0]
    urllib.request.urlopen(urllib.request.Request(
        f"{served['sandbox']}/control", data=json.dumps({"peer": "BILLING-59", "delay_ms": 1500}).encode(),
        method="POST"), timeout=10).read()
    client = BusClient(served["url"])
    finished = []

    def call(u, tag):
        result = client.call("BankPayment", "QueryBalance", make_args(
            "BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn))
        finished.append(tag)
        return result

    try:
        with ThreadPoolExecutor(48) as pool:
            slow = [pool.submit(call, slow_user, "slow") for _ in range(28)]
            time.sleep(0.3)
            fast = [pool.submit(call, fast_user, "fast") for _ in range(5)]
            results = [f.result() for f in slow + fast]
    finally:
        urllib.request.urlopen(urllib.request.Request(
            f"{served['sandbox']}/control", data=b'{"peer": "BILLING-59"}', method="POST"), timeout=10).read()
    assert all(r.rsp_code == "0000" for r in results)
    assert finished[:5] == ["fast"] * 5, "the fast peer's answers must not queue behind the slow peer's"


def test_serve_stops_the_sandbox_with_it(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env={**os.environ, "BSSBUS_DATA_DIR": str(tmp_path / "var")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sandbox = None
    for line in proc.stdout:
        match = re.search(r"sandbox peers at (http://\S+)/peers/", line)
        sandbox = match.group(1) if match else sandbox
        if line.startswith("bssbus serving"):
            break
    assert sandbox
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    time.sleep(0.5)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{sandbox}/healthz", timeout=2)


def test_an_argument_file_nested_too_deeply_is_one_line_not_a_traceback(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"UNI_BSS_HEAD": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    out = bssbus("call", "BankPayment", "QueryArrears", str(deep), "--url", "http://127.0.0.1:9")
    assert out.returncode == 2 and "nests too deeply" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_reconcile_by_hand_against_the_running_bus(served, tmp_path):
    """make-bank-file, a dry run, the run itself (the sandbox found through `bssbus serve`),
    the batch listed and shown, and the same file refused the second time."""
    env, work = served["env"], served["work"]
    made = bssbus("sandbox", "make-bank-file", "--bank", "CCB", "--date", "20261020", "--lines", "50",
                  "--discrepancies", "bank_only=2,billing_only=1,amount=1", "--out", str(tmp_path), env=env, cwd=work)
    assert made.returncode == 0, made.stderr
    assert "bank_only: 2" in made.stdout and "amount: 1" in made.stdout
    path = str(tmp_path / "CCB_20261020.txt")
    dry = bssbus("reconcile", path, "--dry-run", env=env, cwd=work)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would post") == 2 and dry.stdout.count("would reverse") == 1
    assert dry.stdout.count("would hold") == 1 and "dry-run" in dry.stdout
    done = bssbus("reconcile", path, env=env, cwd=work)
    assert done.returncode == 0, done.stderr
    assert "done, batch" in done.stdout and "3 posted, 1 held" in done.stdout
    assert os.path.exists(path)   # by hand: the file stays where it is (a copy is archived)
    listed = bssbus("reconcile", "--batches", "--json", env=env, cwd=work)
    [batch] = [b for b in json.loads(listed.stdout) if b["file_name"] == "CCB_20261020.txt"]
    assert (batch["state"], batch["bank_only_count"], batch["billing_only_count"], batch["mismatch_count"]) == (
        "done", 2, 1, 1)
    shown = bssbus("reconcile", "--show", str(batch["id"]), env=env, cwd=work)
    assert shown.returncode == 0 and shown.stdout.count("posted") >= 3 and "held for a person" in shown.stdout
    again = bssbus("reconcile", path, env=env, cwd=work)
    assert again.returncode == 1 and "refused: this file was processed already" in again.stdout
    done_batch = bssbus("reconcile", "--abandon", str(batch["id"]), env=env, cwd=work)
    assert done_batch.returncode == 2 and "only a batch that posted nothing" in done_batch.stderr


def test_serve_refuses_a_bad_reconciliation_setting_before_starting_anything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus: {data_dir: %s}\nfiles:\n  reconciliation: {page_size: 0}\n" % (tmp_path / "var"),
                   encoding="utf-8")
    out = bssbus("serve", "--config", str(bad), "--port", str(free_port()))
    assert out.returncode == 2 and "files.reconciliation: page_size 1..10000" in out.stderr
    assert not (tmp_path / "var").exists()   # no sandbox was started


BROKEN = """
bsu: {port: 8080}
provinces: {"51": 4}
routes:
  - name: bank-payments
    service: BankPayment
    target: {2: province_biling, 3: hq_billing}
"""


def test_check_config_exit_codes_and_lines(tmp_path):
    ok = bssbus("check-config", env={"BSSBUS_CONFIG": ""})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines() == [
        "configuration OK: 18 routes, 6 peers, 31 provinces, 7 consumers, 33862 number segments, 1 number override"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN, encoding="utf-8")
    out = bssbus("check-config", "--config", str(bad))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[:3] == [
        'bsu: unknown section (did you mean "bus"?); the configuration has ' + lines[0].split(" has ", 1)[1],
        "provinces.51: phase 4 is not one of 2, 3 (2: the province's own systems, 3: HQ's)",
        "routes[0] (bank-payments).target.2: peer 'province_biling' is not configured (did you mean "
        '"province_billing"?); the peers are hq_crm, hq_billing, topup, esales, province_crm, province_billing']
    assert lines[-1] == f"3 problems in the configuration (config/bus.yaml + {bad}): the bus does not start with it"
    missing = bssbus("check-config", "--config", str(tmp_path / "none.yaml"))
    assert missing.returncode == 1 and "does not exist" in missing.stdout
    helped = bssbus("check-config", "--help")
    assert helped.returncode == 0 and "did you mean" in helped.stdout and "Exit status" in helped.stdout


def test_serve_refuses_an_invalid_configuration_with_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus: {data_dir: %s}\n%s" % (tmp_path / "var", BROKEN), encoding="utf-8")
    out = bssbus("serve", "--config", str(bad), "--port", str(free_port()))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines[:3]] == [
        "error", "error", "error"] and lines[0].startswith("bssbus serve: error: bsu: unknown section")
    assert "routes[0] (bank-payments).target.2: peer 'province_biling'" in lines[2]
    assert lines[3] == "bssbus serve: 3 problems in the configuration; nothing started"
    assert "serving" not in out.stdout and "sandbox peers at" not in out.stdout
    assert not (tmp_path / "var").exists()   # no sandbox, no database
    sandbox = bssbus("sandbox", "--config", str(bad), "--port", str(free_port()))
    assert sandbox.returncode == 2 and "province_biling" in sandbox.stderr and not (tmp_path / "var").exists()


def test_metrics_add_up_what_both_workers_counted(served):
    """Each gunicorn worker counts in files of its own (PROMETHEUS_MULTIPROC_DIR under the data
    folder); a scrape, whichever worker answers it, shows their sum. Requests go on fresh
    connections until both workers have counted some."""
    from prometheus_client.multiprocess import MultiProcessCollector

    from services.models import CONTRACTS
    from services.models.common import to_xml
    from tests.e2e.conftest import post
    from tests.e2e.test_metrics import moved, scrape, value

    url, folder = served["url"], served["work"] / "var" / "metrics"
    labels = dict(service="BankPayment", operation="QueryBalance", consumer="anonymous", outcome="ok")
    u = next(u for u in seed_users("38") if u.user_state == "00")
    soap = "http://schemas.xmlsoap.org/soap/envelope/"

    def one(_):
        args = make_args("BankPayment", "QueryBalance", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn)
        body = to_xml(CONTRACTS["BankPayment"], "QueryBalance", args)
        envelope = (f"<soapenv:Envelope xmlns:soapenv='{soap}'><soapenv:Body>".encode()
                    + etree.tostring(body) + b"</soapenv:Body></soapenv:Envelope>")
        return post(f"{url}/ws/BankPayment", envelope)[0]   # urllib: a new connection each time

    def by_worker() -> dict[str, float]:
        counts = {}
        for path in folder.glob("counter_*.db"):
            samples = [s for m in MultiProcessCollector.merge([str(path)], accumulate=False) for s in m.samples
                       if s.name == "bssbus_requests_total" and s.labels == labels]
            counts[path.stem] = sum(s.value for s in samples)
        return counts

    assert folder.is_dir()
    before, sent = scrape(url), 0
    with ThreadPoolExecutor(8) as pool:
        while sum(1 for n in by_worker().values() if n) < 2 and sent < 400:
            assert set(pool.map(one, range(16))) == {200}
            sent += 16
    counted = by_worker()
    assert sum(1 for n in counted.values() if n) >= 2, f"one worker took all {sent} requests: {counted}"
    for _ in range(4):   # whichever worker answers the scrape
        after = scrape(url)
        assert moved(before, after, "bssbus_requests_total", **labels) == sent
        assert value(after, "bssbus_requests_total", **labels) == sum(counted.values())
        assert moved(before, after, "bssbus_peer_call_seconds_count", peer="BILLING-38", outcome="ok") == sent


def test_stats_from_the_command_line_table_csv_json_and_bad_input(tmp_path):
    """`bssbus stats` in a process of its own, over a journal holding payments either side of
    midnight in Beijing, a top-up and a fault."""
    from datetime import datetime, timedelta, timezone

    from dao.db import open_database
    from dao.journal import Journal
    url = f"sqlite:///{tmp_path}/j.db"
    engine = open_database(url)
    journal = Journal(engine)
    utc = timezone.utc
    for n, (at, operation, province, amount) in enumerate((
            (datetime(2026, 11, 26, 15, 30, tzinfo=utc), "Pay", "51", 12345),   # 23:30 on the 26th in Beijing
            (datetime(2026, 11, 26, 16, 30, tzinfo=utc), "Pay", "51", 20000),   # 00:30 on the 27th
            (datetime(2026, 11, 27, 1, 0, tzinfo=utc), "TopUp", "11", 5000))):
        journal.record(msg_id=f"m{n}", direction="in", service="TopUp" if operation == "TopUp" else "BankPayment",
                       operation=operation, province=province, status="ok", rsp_code="0000", amount=amount,
                       started_at=at)
    journal.record(msg_id="f", direction="out", service="BankPayment", operation="QueryBalance", province="74",
                   target="BILLING-74", status="fault", started_at=datetime(2026, 11, 27, 2, tzinfo=utc))
    engine.dispose()
    db = ["--db-url", url]

    out = bssbus("stats", "--since", "2026-11-26", "--until", "20261127", *db)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "Statistics 2026-11-26 .. 2026-11-27 (days in UTC+08:00), from the journal"
    assert lines[1].split()[:4] == ["day", "prov", "orders", "wo"]
    assert [line.split()[:2] + line.split()[4:6] + line.split()[-1:] for line in lines[2:6]] == [
        ["2026-11-26", "51", "1", "123.45", "0"], ["2026-11-27", "11", "0", "0.00", "0"],
        ["2026-11-27", "51", "1", "200.00", "0"], ["2026-11-27", "74", "0", "0.00", "1"]]
    assert lines[6].split() == ["total", "0", "0", "2", "323.45", "0", "0.00", "1", "50.00", "1"]
    assert "  2026-11-27  74    BILLING-74 1" in out.stdout

    out = bssbus("stats", "--since", "2026-11-26", "--until", "2026-11-27", "--tz", "UTC", "--csv", "-", *db)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "day,province,orders,work_orders_completed,payments,payments_fen,payments_yuan,reversals,reversals_fen,"
        "reversals_yuan,topups,topups_fen,topups_yuan,faults,faults_by_peer",
        "2026-11-26,51,0,0,2,32345,323.45,0,0,0.00,0,0,0.00,0,",
        "2026-11-27,11,0,0,0,0,0.00,0,0,0.00,1,5000,50.00,0,",
        "2026-11-27,74,0,0,0,0,0.00,0,0,0.00,0,0,0.00,1,BILLING-74=1"]

    csv_file = tmp_path / "out" / "stats.csv"
    csv_file.parent.mkdir()
    out = bssbus("stats", "--since", "2026-11-27", "--until", "2026-11-27", "--province", "51", "--json",
                 "--csv", str(csv_file), *db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [(r["day"], r["payments"], r["payments_fen"], r["payments_yuan"]) for r in data["rows"]] == [
        ("2026-11-27", 1, 20000, "200.00")]
    assert csv_file.read_text(encoding="utf-8").splitlines()[1] == "2026-11-27,51,0,0,1,20000,200.00,0,0,0.00,0,0,0.00,0,"

    for args, words in ((("--since", "2026-13-01"), "--since '2026-13-01': give a date"),
                        (("--until", "someday"), "--until 'someday'"),
                        (("--since", "2026-11-28", "--until", "2026-11-27"), "is after --until"),
                        (("--until", "9999-12-31"), "past the calendar"),
                        (("--province", "5"), "--province '5'"),
                        (("--tz", "Mars/Olympus"), "--tz: 'Mars/Olympus' is not a time zone"),
                        (("--tz", "Europe/Berlin"), "daylight saving time"),
                        (("--csv", str(tmp_path / "no" / "such" / "dir.csv")), "--csv")):
        out = bssbus("stats", *args, *db)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("bssbus stats: error: ")
    assert "--province" in bssbus("stats", "--help").stdout
