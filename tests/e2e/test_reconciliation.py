"""Bank reconciliation end to end: bank files in drop folders, the billings' lists over SOAP from
the sandbox peers, corrections through the outbox to the billings, exactly once; refusals;
a run killed in the middle and resumed. SQLite, and PostgreSQL when configured."""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from bus import bankfile
from config.settings import load_settings
from dao.models import OutboxEntry, ReconBatch, ReconItem
from dao.reconcile import ReconStore
from sandbox import store
from sandbox.bankfiles import BROKEN, listable, make_bank_day
from services.client import BusClient
from tests.e2e.conftest import embedded_on, make_args, wait_for

ROOT = Path(__file__).resolve().parents[2]
EVERY_KIND = dict(bank_only=3, billing_only=3, amount=2, bank_reversal=2, billing_reversal=2)


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if os.environ.get("BSSBUS_TEST_PG_URL") else []))
def recon(request, tmp_path_factory):
    """A bus whose reconciliation folder is this module's own; the tests drive the job
    (Scheduler.reconcile, lease included), except where a test says otherwise."""
    workdir = tmp_path_factory.mktemp(f"recon-{request.param}")
    settings = load_settings(env={}).copy()
    settings.raw["files"] = {"reconciliation": {"folder": str(workdir / "files"), "settle_seconds": 1,
                                                "page_size": 50}}
    with embedded_on(request.param, workdir, settings) as embedded:
        yield embedded


def config(recon):
    return recon.bus.scheduler.reconciler.config


def make_day(recon, bank, day, lines, planted=None, seed=1, broken=None, folder=None):
    phases = recon.bus.router.current_phases()
    return make_bank_day(recon.sandbox.engine, folder or config(recon).inbox(bank), bank, day, lines, phases,
                         planted or {}, seed=seed, broken=broken, listable=listable(recon.settings, phases))


def billing_rows(recon, bank, day):
    p = store.payments.c
    with recon.sandbox.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(store.payments).where(p.bank_code == bank, p.acct_date == day)
                                              .order_by(p.id)).mappings()]


def batch_of(recon, bank, day):
    return ReconStore(recon.bus.engine).find(bank_code=bank, acct_date=day)


def items_of(recon, batch_id):
    return ReconStore(recon.bus.engine).items(batch_id)


def outbox_of(recon, trans_idos):
    t = OutboxEntry.__table__
    with recon.bus.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).where(t.c.trans_ido.in_(list(trans_idos)))).mappings()]


def all_delivered(recon, items):
    posted = [i for i in items if i["state"] == "posted"]
    rows = outbox_of(recon, [i["trans_ido"] for i in posted])
    return len(rows) == len(posted) and all(r["status"] == "delivered" for r in rows) and rows


def assert_corrections_applied_once(recon, bank, day, made):
    """Each planted discrepancy ended as the rules say, in the sandbox billings, exactly once."""
    rows = billing_rows(recon, bank, day)
    by_serial = {}
    for row in rows:
        assert row["bank_serial"] not in by_serial, f"serial {row['bank_serial']} posted twice"
        by_serial[row["bank_serial"]] = row
    for serial in made.planted.get("bank_only", []):        # 补缴: posted once, to the file's day
        assert (by_serial[serial]["kind"], by_serial[serial]["reversed"]) == ("pay", 0)
    for serial in made.planted.get("bank_reversal", []):    # the bank's reversal posted, its payment reversed
        reversal = by_serial[serial]
        assert reversal["kind"] == "reverse" and by_serial[reversal["orig_serial"]]["reversed"] == 1
    for serial in made.planted.get("billing_only", []):     # reversed by the bus, once
        assert by_serial[serial]["reversed"] == 1
        reversals = [r for r in rows if r["orig_serial"] == serial]
        assert len(reversals) == 1 and reversals[0]["bank_serial"].startswith("RCREV")
    for serial in made.planted.get("amount", []):           # held: untouched
        assert by_serial[serial]["reversed"] == 0
        assert not [r for r in rows if r["orig_serial"] == serial]


def test_a_days_files_from_several_banks_are_reconciled_on_schedule_exactly_once(recon):
    day = "20261101"
    icbc = make_day(recon, "ICBC", day, 300, EVERY_KIND, seed=1)
    ccb = make_day(recon, "CCB", day, 120, dict(bank_only=2, billing_only=1, amount=1, bank_reversal=1,
                                                 billing_reversal=1), seed=2)
    reports = recon.bus.scheduler.reconcile()   # the scheduled job itself (it takes its lease first)
    assert sorted((r.file, r.state) for r in reports) == [("CCB_20261101.txt", "done"), ("ICBC_20261101.txt", "done")]
    for bank, made, planted in (("ICBC", icbc, EVERY_KIND), ("CCB", ccb, None)):
        planted = {k: len(v) for k, v in made.planted.items()}
        batch = batch_of(recon, bank, day)
        assert (batch["state"], batch["lines"], batch["amount"]) == ("done", made.lines, made.amount)
        assert batch["bank_only_count"] == planted["bank_only"] + planted["bank_reversal"]
        assert batch["billing_only_count"] == planted["billing_only"] + planted["billing_reversal"]
        assert batch["mismatch_count"] == planted["amount"]
        assert batch["balanced_count"] == made.lines - batch["bank_only_count"] - batch["mismatch_count"]
        items = items_of(recon, batch["id"])
        assert batch["posted"] == planted["bank_only"] + planted["bank_reversal"] + planted["billing_only"]
        assert batch["held"] == planted["amount"] + planted["billing_reversal"]
        wait_for(lambda: all_delivered(recon, items))
        assert all(r["rsp_code"] == "0000" for r in outbox_of(recon, [i["trans_ido"] for i in items if i["trans_ido"]]))
        assert_corrections_applied_once(recon, bank, day, made)
        # the result file for the bank: GBK, one D line per discrepancy, its trailer and .chk
        result = config(recon).outbox(bank) / f"{bank}_{day}_RESULT.txt"
        lines = result.read_bytes().decode("gbk").split("\r\n")
        d_lines = [line for line in lines if line.startswith("D|")]
        assert len(d_lines) == len(items) and lines[0].startswith(f"H|{bank}|{day}|{len(items)}|")
        assert lines[-2].startswith(f"T|{len(items)}|") and bankfile.stated_md5(result) == bankfile.md5_of(result)
        outcomes = sorted(line.split("|")[8:10] for line in d_lines)
        assert outcomes.count(["03", "HELD"]) == planted["amount"]
        assert outcomes.count(["02", "REVERSED"]) == planted["billing_only"]
        # the input is archived, the inbox empty
        assert not list(config(recon).inbox(bank).iterdir())
        assert (config(recon).archive(bank) / f"{bank}_{day}.txt").exists()
    # the same file dropped again is refused, with its reason, and nothing is posted again
    before = len(billing_rows(recon, "ICBC", day))
    for name in (f"ICBC_{day}.txt", f"ICBC_{day}.txt.chk"):
        (config(recon).inbox("ICBC") / name).write_bytes((config(recon).archive("ICBC") / name).read_bytes())
    [again] = recon.bus.scheduler.reconcile()
    assert again.state == "rejected" and "processed already" in again.reason
    reasons = list(config(recon).refused("ICBC").glob(f"ICBC_{day}.txt.*.reason"))
    assert len(reasons) == 1 and "this file was processed already" in reasons[0].read_text()
    assert len(billing_rows(recon, "ICBC", day)) == before


def test_a_second_file_for_a_banks_day_is_refused(recon):
    day = "20261102"
    make_day(recon, "ICBC", day, 40, dict(bank_only=1), seed=3)
    assert [r.state for r in recon.bus.scheduler.reconcile()] == ["done"]
    other = make_day(recon, "ICBC", day, 41, dict(bank_only=1), seed=4)   # the same day, other content
    [report] = recon.bus.scheduler.reconcile()
    assert report.state == "rejected" and f"a file for ICBC {day} was processed already" in report.reason
    assert not other.path.exists()


@pytest.mark.parametrize("broken, reason", [
    ("trailer-count", "the trailer says 61 lines"), ("trailer-sum", "its trailer says"), ("header", "the header is not"),
    ("checksum", "checksum: its MD5 is"), ("duplicate-serial", "appears twice"), ("bad-line", "field 5 is not an amount"),
])
def test_a_bad_file_is_refused_whole_and_nothing_is_posted(recon, broken, reason):
    day = f"202611{10 + BROKEN.index(broken):02d}"
    made = make_day(recon, "CCB", day, 60, EVERY_KIND, seed=5, broken=broken)
    billing_before = billing_rows(recon, "CCB", day)
    if broken == "checksum":   # a .chk that does not match may be a delivery still going on: waited for
        [report] = recon.bus.scheduler.reconcile()
        assert report.state == "waiting" and made.path.exists()
        time.sleep(1.1)        # settle_seconds
    [report] = recon.bus.scheduler.reconcile()
    assert report.state == "rejected" and reason in report.reason, report.reason
    assert not made.path.exists() and not bankfile.checksum_path(made.path).exists()
    refused = config(recon).refused("CCB")
    [why] = [p for p in refused.glob(f"CCB_{day}.txt.*.reason")]
    assert reason in why.read_text(encoding="utf-8")
    assert len(list(refused.glob(f"CCB_{day}.txt.*"))) == 3   # the file, its .chk, the reason
    assert batch_of(recon, "CCB", day) is None                 # the day is free for a good file
    assert billing_rows(recon, "CCB", day) == billing_before   # nothing posted
    t = ReconItem.__table__
    with recon.bus.engine.connect() as conn:
        rejected = conn.execute(select(ReconBatch.__table__).where(ReconBatch.__table__.c.file_name == f"CCB_{day}.txt")
                                ).mappings().all()
        assert [r["state"] for r in rejected] == ["rejected"] and rejected[0]["reason"] == report.reason
        assert conn.execute(select(func.count()).select_from(t).where(t.c.batch_id == rejected[0]["id"])).scalar() == 0


def test_a_file_without_its_checksum_is_left_alone(recon):
    day = "20261103"
    made = make_day(recon, "ICBC", day, 10, seed=6)
    bankfile.checksum_path(made.path).unlink()   # still being delivered: the .chk comes last
    assert recon.bus.scheduler.reconcile() == []
    assert made.path.exists() and batch_of(recon, "ICBC", day) is None
    made.path.unlink()


def test_the_job_runs_on_its_own_schedule(tmp_path):
    settings = load_settings(env={}).copy()
    settings.raw["files"] = {"reconciliation": {"folder": str(tmp_path / "files"), "every_seconds": 0.5},
                             "cdr": {"enabled": False}}
    with embedded_on("sqlite", tmp_path, settings, file_jobs=True) as embedded:
        phases = embedded.bus.router.current_phases()
        inbox = embedded.bus.scheduler.reconciler.config.inbox("ICBC")
        made = make_bank_day(embedded.sandbox.engine, inbox, "ICBC", "20261104", 30, phases, dict(bank_only=1),
                             listable=listable(embedded.settings, phases))
        wait_for(lambda: (ReconStore(embedded.bus.engine).find(bank_code="ICBC", acct_date="20261104") or {})
                 .get("state") == "done")
        assert not made.path.exists()


def test_a_run_killed_while_posting_is_resumed_and_posts_each_correction_once(recon, tmp_path):
    day = "20261105"
    planted = dict(bank_only=150, billing_only=150)
    made = make_day(recon, "ICBC", day, 400, planted, seed=7)
    cfg = tmp_path / "bus.yaml"
    cfg.write_text(yaml.safe_dump({
        "bus": {"data_dir": str(tmp_path)},
        "database": {"url": recon.db_url},
        "housekeeping": {"enabled": False},
        "files": {"reconciliation": dict(copy.deepcopy(recon.settings.raw["files"]["reconciliation"]),
                                         concurrency=1)}}), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "reconcile", str(made.path), "--config", str(cfg),
                             "--sandbox-url", recon.sandbox_url], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def half_posted():
        batch = batch_of(recon, "ICBC", day)
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
        return batch and batch["state"] == "posting" and any(
            i["state"] == "posted" for i in items_of(recon, batch["id"]))
    try:
        wait_for(half_posted, timeout=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    batch = batch_of(recon, "ICBC", day)
    states = [i["state"] for i in items_of(recon, batch["id"])]
    assert batch["state"] == "posting" and "pending" in states and "posted" in states   # killed in the middle
    [report] = recon.bus.scheduler.reconcile()   # the file is still in the inbox: the job resumes the batch
    assert (report.state, report.batch_id) == ("done", batch["id"])
    items = items_of(recon, batch["id"])
    assert all(i["state"] == "posted" for i in items) and len(items) == 300
    rows = wait_for(lambda: all_delivered(recon, items), timeout=60)
    assert sorted(r["trans_ido"] for r in rows) == sorted(i["trans_ido"] for i in items)   # one outbox row each
    assert_corrections_applied_once(recon, "ICBC", day, made)


def test_a_bank_cannot_send_what_only_reconciliation_sends(recon):
    client = BusClient(recon.url)
    args = make_args("BankPayment", "Pay", BANK_SERIAL="ICBC20261127RECONTRY01")
    args["UNI_BSS_BODY"]["RECON_DATE"] = "20261101"
    result = client.call("BankPayment", "Pay", args)
    assert result.fault_code == "Client.NotAuthorized" and "RECON_DATE" in result.fault_string
    args = make_args("BankPayment", "Pay", caller="RECON", BANK_SERIAL="ICBC20261127RECONTRY02")
    result = client.call("BankPayment", "Pay", args)
    assert result.fault_code == "Client.NotAuthorized" and "ORIG_DOMAIN RECON" in result.fault_string


def test_the_payment_list_is_served_page_by_page_over_soap(recon):
    day = "20261106"
    make_day(recon, "CCB", day, 30, seed=8, folder=recon.workdir)
    rows = [r for r in billing_rows(recon, "CCB", day)]
    province = rows[0]["province"]
    phases = recon.bus.router.current_phases()
    expected = sorted(r["bank_serial"] for r in rows if r["province"] == province)
    client, seen, after = BusClient(recon.url), [], None
    while True:
        body = dict(BANK_CODE="CCB", ACCT_DATE=day, PROVINCE_CODE=province, PAGE_SIZE=2,
                    **({"AFTER_SERIAL": after} if after else {}))
        args = make_args("BankPayment", "ListPayments", caller="BANK", route=("00", province), **body)
        result = client.call("BankPayment", "ListPayments", args)
        assert result.rsp_code == "0000", (result.fault_string, result.head)
        assert result.sender == ("BILLING-" + province if phases[province] == 2 else "HQ-BILLING")
        seen += [t.split("|")[0] for t in result.body["TXNS"]["TXN"]]
        if result.body["MORE"] == "0":
            break
        after = result.body["LAST_SERIAL"]
    assert seen == expected


def test_a_file_in_the_wrong_inbox_or_misnamed_is_refused(recon):
    inbox = config(recon).inbox("ICBC")
    made = make_day(recon, "CCB", "20261107", 5, seed=9, folder=inbox)        # CCB's file in ICBC's inbox
    misnamed = inbox / "icbc-20261107.txt"
    misnamed.write_bytes(b"H|ICBC|20261107|0|0\r\nT|0|0\r\n")
    bankfile.checksum_path(misnamed).write_text(bankfile.md5_of(misnamed))
    reports = {r.file: r for r in recon.bus.scheduler.reconcile()}
    assert "a file of bank CCB in the inbox of ICBC" in reports[made.path.name].reason
    assert "is named <BANKCODE>_<YYYYMMDD>.txt" in reports[misnamed.name].reason
    assert not list(inbox.glob("*.txt")) and batch_of(recon, "CCB", "20261107") is None
    refused = sorted(p.name for p in config(recon).refused("ICBC").glob("*.reason"))
    assert any(n.startswith("CCB_20261107.txt.") for n in refused)
    assert any(n.startswith("icbc-20261107.txt.") for n in refused)


def test_a_line_of_a_province_whose_billing_cannot_list_is_held(recon):
    """Jiangsu (34) has a legacy billing without ListPayments: its lines cannot be compared."""
    day, legacy_user = "20261108", store.seed_users("34")[0].msisdn
    path = config(recon).inbox("CCB") / f"CCB_{day}.txt"
    bankfile.write_atomically(path, [f"H|CCB|{day}|1|5000", f"D|CCB{day}L1|{day}101010|{legacy_user}|5000|0|",
                                     "T|1|5000"])
    [report] = recon.bus.scheduler.reconcile()
    assert report.state == "done" and "34" in report.unlisted
    [item] = items_of(recon, report.batch_id)
    assert (item["outcome"], item["action"], item["state"], item["province"]) == ("unlisted", "hold", "held", "34")
    assert "cannot list payments" in item["detail"] and batch_of(recon, "CCB", day)["posted"] == 0
