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
from tests.e2e.conftest import control, embedded_on, make_args, wait_for

ROOT = Path(__file__).resolve().parents[2]
EVERY_KIND = dict(bank_only=3, billing_only=3, amount=2, bank_reversal=2, billing_reversal=2)


@pytest.fixture(scope="module", params=["sqlite"] + (["postgresql"] if os.environ.get("BSSBUS_TEST_PG_URL") else []))
def recon(request, tmp_path_factory):
    """A bus whose reconciliation folder is this module's own; the tests drive the job
    (Scheduler.reconcile, lease included), except where a test says otherwise."""
    workdir = tmp_path_factory.mktemp(f"recon-{request.param}")
    settings = load_settings(env={}).copy()
    settings.raw["files"] = {"reconciliation": {"folder": str(workdir / "files"), "settle_seconds": 1,
                                                "page_size": 50, "lease_seconds": 2}}
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
    for bank, made in (("ICBC", icbc), ("CCB", ccb)):
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
        result = config(recon).results(bank) / f"{bank}_{day}_RESULT.txt"
        lines = result.read_bytes().decode("gbk").split("\r\n")
        d_lines = [line for line in lines if line.startswith("D|")]
        assert len(d_lines) == len(items) and lines[0].startswith(f"H|{bank}|{day}|{len(items)}|")
        assert lines[-2].startswith(f"T|{len(items)}|") and bankfile.stated_md5(result) == bankfile.md5_of(result)
        outcomes = sorted(line.split("|")[8:10] for line in d_lines)
        assert outcomes.count(["03", "HOLD"]) == planted["amount"]
        assert outcomes.count(["02", "REVERSE"]) == planted["billing_only"]
        assert outcomes.count(["01", "POST"]) == planted["bank_only"] + planted["bank_reversal"]
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

    def handed_over():   # corrections in the outbox so far
        batch = batch_of(recon, "ICBC", day)
        if not batch or batch["state"] != "posting":
            return []
        return outbox_of(recon, [i["trans_ido"] for i in items_of(recon, batch["id"]) if i["trans_ido"]])

    def half_posted():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
        return len(handed_over()) >= 10
    try:
        wait_for(half_posted, timeout=60)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    batch = batch_of(recon, "ICBC", day)
    states = [i["state"] for i in items_of(recon, batch["id"])]
    assert batch["state"] == "posting" and "pending" in states          # killed in the middle of posting,
    assert 10 <= len(handed_over()) < 300                                # some handed over, not all
    # the file is still in the inbox: the job resumes the batch once the killed run's lease ran out
    [report] = wait_for(lambda: recon.bus.scheduler.reconcile(), timeout=30)
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


def test_a_province_moved_to_phase_3_since_the_day_is_listed_by_both_billings(recon):
    """Payments of the day sit in the province's Billing; the province has moved to HQ Billing
    since. Nothing may be posted a second time to HQ Billing."""
    day, province = "20261109", "51"
    made = make_day(recon, "ICBC", day, 80, dict(bank_only=1), seed=10)
    try:
        recon.bus.phase_store.set(province, 3, changed_by="test", reason="cut-over after the day")
        [report] = recon.bus.scheduler.reconcile()
    finally:
        recon.bus.phase_store.set(province, 2, changed_by="test", reason="back")
    assert report.state == "done"
    assert report.counts["bank_only"][0] == 1 and report.posted == 1, report.summary()
    in_51 = [r for r in billing_rows(recon, "ICBC", day) if r["province"] == province]
    assert in_51 and all(r["peer"] == "BILLING-51" for r in in_51)   # nothing posted to HQ Billing


def test_a_bank_reversal_the_billing_refused_after_midnight_is_still_posted(recon):
    """The bank's own Reverse reached the billing the day after (1547, not the payment's day):
    the bank's key holds that answer; the correction has its own key and goes through."""
    day = "20261112"
    made = make_day(recon, "CCB", day, 30, dict(bank_reversal=1), seed=11)
    [serial] = made.planted["bank_reversal"]
    line = next(l for l in made.path.read_bytes().decode("gbk").split("\r\n") if l.startswith(f"D|{serial}|"))
    _, _, when, msisdn, amount, _, orig = line.split("|")
    args = make_args("BankPayment", "Reverse", caller="BANK", route=("01", msisdn), BANK_CODE="CCB",
                     BANK_SERIAL=serial, ORIG_BANK_SERIAL=orig, SERIAL_NUMBER=msisdn, AMOUNT=int(amount),
                     TRADE_TIME=when)
    late = BusClient(recon.url).call("BankPayment", "Reverse", args)
    assert late.rsp_code == "1547", (late.fault_string, late.head)
    [report] = recon.bus.scheduler.reconcile()
    assert (report.state, report.posted) == ("done", 1), report.summary()
    [item] = [i for i in items_of(recon, report.batch_id) if i["bank_serial"] == serial]
    assert item["state"] == "posted"
    wait_for(lambda: all_delivered(recon, [item]))
    rows = {r["bank_serial"]: r for r in billing_rows(recon, "CCB", day)}
    assert rows[serial]["kind"] == "reverse" and rows[orig]["reversed"] == 1


def test_a_serial_listed_by_two_billings_is_held(recon):
    day = "20261113"
    make_day(recon, "ICBC", day, 20, seed=12)
    rows = billing_rows(recon, "ICBC", day)
    first = next(r for r in rows if r["kind"] == "pay" and r["peer"].startswith("BILLING-"))
    other = next(p for p, phase in sorted(recon.bus.router.current_phases().items())
                 if phase == 2 and p != first["province"] and listable(recon.settings, {p: 2})(p))
    copy_row = {k: v for k, v in first.items() if k != "id"}
    copy_row.update(peer=f"BILLING-{other}", province=other)
    with recon.sandbox.engine.begin() as conn:
        conn.execute(store.payments.insert().values(**copy_row))
    [report] = recon.bus.scheduler.reconcile()
    assert report.state == "done" and report.counts["mismatch"][0] == 1 and report.posted == 0
    [item] = items_of(recon, report.batch_id)
    assert item["bank_serial"] == first["bank_serial"] and item["state"] == "held"
    assert "listed by 2 billings" in item["detail"]
    assert report.counts["balanced"][0] == report.lines - 1


def test_a_day_not_over_is_refused(recon):
    today = time.strftime("%Y%m%d", time.gmtime(time.time() + 8 * 3600))   # Beijing's day
    path = config(recon).inbox("ICBC") / f"ICBC_{today}.txt"
    bankfile.write_atomically(path, [f"H|ICBC|{today}|0|0", "T|0|0"])
    [report] = recon.bus.scheduler.reconcile()
    assert report.state == "rejected" and f"the accounting day {today} is not over" in report.reason


def test_an_open_batch_is_named_and_can_be_abandoned(recon):
    """A billing that did not answer leaves the batch open (comparing, nothing posted); a
    corrected file for that day is refused with what is true, until the batch is abandoned."""
    day = "20261114"
    make_day(recon, "CCB", day, 20, seed=13)
    control(recon.sandbox_url, peer="HQ-BILLING", fault="list unavailable", operations=["ListPayments"])
    try:
        [first] = recon.bus.scheduler.reconcile()
    finally:
        control(recon.sandbox_url, peer="HQ-BILLING")
    assert first.state == "retrying" and "did not list" in first.reason
    batch = batch_of(recon, "CCB", day)
    assert batch["state"] == "comparing" and "list unavailable" in batch["reason"]
    inbox = config(recon).inbox("CCB")
    for name in (f"CCB_{day}.txt", f"CCB_{day}.txt.chk"):   # the bank sends a corrected file instead
        (inbox / name).unlink()
    make_day(recon, "CCB", day, 21, seed=14)
    [refused] = recon.bus.scheduler.reconcile()
    assert refused.state == "rejected"
    assert f"batch {batch['id']} for CCB {day}" in refused.reason and "still open, comparing" in refused.reason
    assert f"--abandon {batch['id']}" in refused.reason
    ReconStore(recon.bus.engine).abandon(batch["id"], "the bank sent a corrected file")
    make_day(recon, "CCB", day, 21, seed=14)
    [done] = recon.bus.scheduler.reconcile()
    assert done.state == "done" and done.batch_id != batch["id"]
    with pytest.raises(ValueError, match="only a batch that posted nothing"):
        ReconStore(recon.bus.engine).abandon(done.batch_id, "too late")


def test_only_one_process_reconciles_at_a_time(recon):
    reconciler = recon.bus.scheduler.reconciler
    with reconciler.leased("another process"):
        assert recon.bus.scheduler.reconcile() is None
    assert recon.bus.scheduler.reconcile() == []   # given back: the next pass runs (nothing to do)
