"""CDR distribution (bus/cdr.py): real files in tmp_path, real databases (SQLite, PostgreSQL),
real processes killed with SIGKILL for the crash proofs."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bus.bankfile import md5_of
from bus.cdr import CALL_TYPES, PAUSE_AT_ENV, REJECTED, RESUME_ENV, CdrJob, CdrRouter, Refused, read_chk
from bus.segments import SegmentTable
from config.settings import ConfigError, load_settings
from dao.cdr import DONE, PUBLISHING, SPLITTING, CdrFileStore
from dao.db import open_database
from dao.leases import LeaseStore
from dao.phases import PhaseStore
from sandbox.cdrfiles import make_cdr_file

ROOT = Path(__file__).resolve().parents[2]


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table() -> SegmentTable:
    settings = load_settings(env={})
    return SegmentTable.from_files(settings.segments_file, settings.overrides_file)


def settings_for(tmp_path: Path, db_url: str, **cdr):
    settings = load_settings(env={})
    settings.raw["database"] = {"url": db_url}
    settings.raw["files"] = {"cdr": {"inbound": str(tmp_path / "in"), "outbound": str(tmp_path / "out"),
                                     "every_seconds": 30, **cdr}}
    return settings


@pytest.fixture
def env(tmp_path, db_url):
    """(settings, engine, job) on a fresh database; the inbound folder exists."""
    settings = settings_for(tmp_path, db_url)
    engine = open_database(db_url)
    PhaseStore(engine).seed(settings.phases)
    (tmp_path / "in").mkdir()
    yield settings, engine, CdrJob(settings, engine, "test-owner")
    engine.dispose()


def number_of(table: SegmentTable, province: str, n: int = 0) -> str:
    begin, _ = table.ranges_of(province)[n]
    return str(begin + 1234)


def write_cdr(folder: Path, name: str, lines: list[str], eol: str = "\n", chk: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    data = "".join(line + eol for line in lines).encode("ascii")
    path.write_bytes(data)
    if chk:
        (folder / (name + ".chk")).write_text(hashlib.md5(data).hexdigest() + "\n", encoding="ascii")
    return path


def read_output(path: Path) -> tuple[list[str], str, int, int]:
    """(records, target, count, sum) of an output file, after checking its control records
    and its .chk."""
    data = path.read_bytes()
    assert (path.parent / (path.name + ".chk")).read_text().split()[0] == hashlib.md5(data).hexdigest()
    lines = data.decode("ascii").split("\n")
    assert lines[-1] == "", "LF at the end"
    head, *records, trailer = lines[:-1]
    h = head.split("|")
    assert h[0] == "H" and h[1] == path.name and h[2] == path.parent.name
    count, total = int(h[3]), int(h[4])
    assert trailer == f"T|{count}|{total}"
    assert len(records) == count and sum(int(r.rsplit("|", 1)[1]) for r in records) == total
    return records, h[2], count, total


def visible(folder: Path) -> list[str]:
    """Every file downstream could see under ``folder`` (no hidden temporary files)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.is_file())


def expected_target(table: SegmentTable, phases: dict, msisdn: str) -> str:
    segment = table.lookup(msisdn)
    return f"BILLING-{segment.province_code}" if phases[segment.province_code] == 2 else "HQ-BILLING"


# -- routing ------------------------------------------------------------------------------------
def test_records_go_to_the_billing_of_their_province_and_phase(env, tmp_path, table):
    settings, engine, job = env
    gd, bj, js, sh = (number_of(table, p) for p in ("51", "11", "34", "31"))   # phases 2, 3, 2, 3
    moved = "18600000000"   # config/number_overrides.csv: moved to Guangdong (51)
    assert table.lookup(moved).province_code == "51" and not SegmentTable.from_files(
        settings.segments_file).lookup(moved).province_code == "51", "the override is what sends it to 51"
    lines = [f"{gd}|20240315103012|125|01|30", f"{bj}|20240315103013|0|11|10", f"{js}|20240229235959|60|02|0",
             f"{sh}|20240315000000|3600|21|512", f"{moved}|20240315120000|61|03|20", f"{gd}|20240315103014|5|01|10"]
    path = write_cdr(tmp_path / "in", "HQ0001.cdr", lines)
    outcome = job.distributor().distribute(path, tmp_path / "out")
    out = tmp_path / "out"
    assert visible(out) == ["BILLING-34/HQ0001.cdr", "BILLING-34/HQ0001.cdr.chk", "BILLING-51/HQ0001.cdr",
                            "BILLING-51/HQ0001.cdr.chk", "HQ-BILLING/HQ0001.cdr", "HQ-BILLING/HQ0001.cdr.chk"]
    assert hidden(out) == []
    assert read_output(out / "BILLING-51/HQ0001.cdr") == ([lines[0], lines[4], lines[5]], "BILLING-51", 3, 60)
    assert read_output(out / "HQ-BILLING/HQ0001.cdr") == ([lines[1], lines[3]], "HQ-BILLING", 2, 522)
    assert read_output(out / "BILLING-34/HQ0001.cdr") == ([lines[2]], "BILLING-34", 1, 0)
    assert (outcome.records, outcome.rejects) == (6, 0) and outcome.rejected is None
    assert outcome.targets["BILLING-51"] == {"count": 3, "sum": 60, "file": "BILLING-51/HQ0001.cdr"}
    (row,) = CdrFileStore(engine).all()
    assert (row["file_name"], row["md5"], row["state"], row["records"]) == ("HQ0001.cdr", md5_of(path), DONE, 6)


def test_a_generated_file_lands_every_record_in_its_target(env, tmp_path, table):
    settings, engine, job = env
    info = make_cdr_file(tmp_path / "in", 5000, table=table, unknown=7, malformed=16, seed=11, crlf=True)
    outcome = job.distributor().distribute(Path(info["file"]), tmp_path / "out")
    phases = settings.phases
    placed = 0
    provinces = set()
    for target in outcome.targets:
        records, *_ = read_output(tmp_path / "out" / target / Path(info["file"]).name)
        for record in records:
            assert expected_target(table, phases, record[:11]) == target, record
            assert "\r" not in record
            provinces.add(table.lookup(record[:11]).province_code)
        placed += len(records)
    assert len(provinces) == 31, "realistic numbers of all 31 provinces"
    assert set(outcome.targets) == {f"BILLING-{p}" for p, ph in phases.items() if ph == 2} | {"HQ-BILLING"}
    assert outcome.rejects == 23 and outcome.rejected["count"] == 23
    assert placed + outcome.rejects == outcome.records == 5000, "input records = distributed + rejected"
    assert outcome.rejected["reasons"]["unknown number"] == 7


def test_a_phase_change_moves_a_provinces_records_to_hq_billing(env, tmp_path, table):
    settings, engine, job = env
    gd, hb = number_of(table, "51"), number_of(table, "18")
    first = write_cdr(tmp_path / "in", "A.cdr", [f"{gd}|20240315103012|125|01|30", f"{hb}|20240315103012|1|01|10"])
    job.distributor().distribute(first, tmp_path / "out")
    assert read_output(tmp_path / "out/BILLING-51/A.cdr")[0] == [f"{gd}|20240315103012|125|01|30"]
    PhaseStore(engine).set("51", 3, "test", "Guangdong cut-over")
    second = write_cdr(tmp_path / "in", "B.cdr", [f"{gd}|20240316103012|125|01|30", f"{hb}|20240316103012|1|01|10"])
    outcome = job.distributor().distribute(second, tmp_path / "out")
    assert set(outcome.targets) == {"HQ-BILLING", "BILLING-18"}
    assert not (tmp_path / "out/BILLING-51/B.cdr").exists()
    assert read_output(tmp_path / "out/HQ-BILLING/B.cdr")[0] == [f"{gd}|20240316103012|125|01|30"]


# -- rejects ------------------------------------------------------------------------------------
def test_unknown_numbers_and_malformed_lines_are_rejected_with_line_and_reason(env, tmp_path, table):
    settings, engine, job = env
    gd = number_of(table, "51")
    unknown = next(f"139{n:08d}" for n in range(10**6) if table.lookup(f"139{n:08d}") is None)
    good = f"{gd}|20240315103012|125|01|30"
    lines = [good,
             f"{unknown}|20240315103012|125|01|30",          # 2 in no segment
             f"{gd}|20240230103012|125|01|30",               # 3 30 February
             f"{gd}|20240315246012|125|01|30",               # 4 hour 24
             f"{gd}|20240315103012|125|01|0.30",             # 5 decimal charge
             f"{gd}|20240315103012|125|01",                  # 6 four fields
             f"{gd}|20240315103012|125|01|30|9",             # 7 six fields
             f"{gd}|20240315103012|125|77|30",               # 8 unknown type
             f"{gd[:10]}|20240315103012|125|01|30",          # 9 short number
             "",                                             # 10 empty line
             f"{gd}|20240315103012|-5|01|30",                # 11 negative duration
             f"{gd}|2024031510301|125|01|30",                # 12 short start
             "x" * 5000,                                     # 13 longer than any record
             good]
    path = write_cdr(tmp_path / "in", "R.cdr", lines, eol="\r\n")
    outcome = job.distributor().distribute(path, tmp_path / "out")
    rej = (tmp_path / "out" / REJECTED / "R.rej").read_bytes()
    assert (tmp_path / "out" / REJECTED / "R.rej.chk").read_text().split()[0] == hashlib.md5(rej).hexdigest()
    head, *body, trailer, end = rej.decode("ascii").split("\n")
    assert (head, trailer, end) == ("H|R.cdr|REJECTED|12", "T|12", "")
    reasons = {int(line.split("|")[0]): line.split("|")[1] for line in body}
    assert reasons == {2: "number in no segment", 3: "start time is not a real date and time",
                       4: "start time is not a real date and time", 5: "charge is not a whole number of fen",
                       6: "4 fields, a record has 5", 7: "6 fields, a record has 5",
                       8: "unknown call type '77'", 9: "MSISDN is not 11 digits", 10: "empty line",
                       11: "duration is not a whole number of seconds", 12: "start time is not YYYYMMDDHHMMSS",
                       13: "line longer than 1024 bytes"}
    assert body[0] == f"2|number in no segment|{unknown}|20240315103012|125|01|30", "the line as it came"
    assert len(body[11]) < 1100, "a long line is kept cut, not whole"
    assert read_output(tmp_path / "out/BILLING-51/R.cdr")[0] == [good, good]
    assert outcome.records == 14 == 2 + outcome.rejects


def test_a_province_without_a_phase_is_a_reject_not_a_loss(tmp_path, db_url, table):
    settings = settings_for(tmp_path, db_url)
    del settings.raw["provinces"]["51"]
    engine = open_database(db_url)
    try:
        job = CdrJob(settings, engine, "t")
        path = write_cdr(tmp_path / "in", "P.cdr", [f"{number_of(table, '51')}|20240315103012|1|01|10"])
        outcome = job.distributor().distribute(path, tmp_path / "out")
        assert (outcome.records, outcome.rejects, outcome.targets) == (1, 1, {})
        assert "province 51 has no phase" in (tmp_path / "out/REJECTED/P.rej").read_text()
    finally:
        engine.dispose()


def test_the_router_caches_only_prefixes_one_range_holds(table):
    """A prefix split between two ranges (a real CRM's table may have any ranges) is looked up
    number by number, never cached as a whole."""
    split_table = SegmentTable([13000000000, 13000005000], [13000004999, 13000009999],
                               [type(table.lookup("18600000000"))("51"), type(table.lookup("18600000000"))("11")])
    assert split_table.block("1300000") == (False, split_table.lookup("13000000000"))
    assert split_table.block("1300001") == (True, None)
    router = CdrRouter(split_table, {"51": 2, "11": 3})
    assert router.target("13000000001") == "BILLING-51" and router.target("13000006000") == "HQ-BILLING"


# -- idempotency --------------------------------------------------------------------------------
def test_a_file_already_distributed_is_refused_also_after_a_restart(env, tmp_path, table, db_url):
    settings, engine, job = env
    info = make_cdr_file(tmp_path / "in", 300, table=table, seed=5, name="HQ0002.cdr")
    keep = tmp_path / "copy"
    keep.mkdir()
    shutil.copy(info["file"], keep)
    shutil.copy(info["file"] + ".chk", keep)
    (first,) = job.scan()
    assert first.result == "distributed" and first.records == 300
    assert sorted(p.name for p in (tmp_path / "in/archive").iterdir()) == ["HQ0002.cdr", "HQ0002.cdr.chk"]
    before = {p: (tmp_path / "out" / p).read_bytes() for p in visible(tmp_path / "out")}

    engine.dispose()   # a restart: another engine, another job, the same database
    engine2 = open_database(db_url)
    try:
        job2 = CdrJob(settings, engine2, "after-restart")
        shutil.copy(keep / "HQ0002.cdr", tmp_path / "in")
        shutil.copy(keep / "HQ0002.cdr.chk", tmp_path / "in")
        (again,) = job2.scan()
        assert again.result == "refused" and "already distributed" in again.reason
        refused = tmp_path / "in/refused"
        assert sorted(p.name for p in refused.iterdir()) == ["HQ0002.cdr", "HQ0002.cdr.chk", "HQ0002.cdr.reason"]
        assert "already distributed" in (refused / "HQ0002.cdr.reason").read_text()
        after = {p: (tmp_path / "out" / p).read_bytes() for p in visible(tmp_path / "out")}
        assert after == before, "no output written twice, none added"
        # the same records under another name, and another file under the same name
        shutil.copy(keep / "HQ0002.cdr", tmp_path / "in/HQ0003.cdr")
        shutil.copy(keep / "HQ0002.cdr.chk", tmp_path / "in/HQ0003.cdr.chk")
        other = write_cdr(tmp_path / "x", "HQ0002.cdr", [f"{number_of(table, '51')}|20240315103012|1|01|10"])
        with pytest.raises(Refused, match="another file named HQ0002.cdr"):
            job2.distributor().distribute(other, tmp_path / "out")
        (copy,) = job2.scan()
        assert copy.result == "refused" and "same records as HQ0002.cdr" in copy.reason
        assert {p: (tmp_path / "out" / p).read_bytes() for p in visible(tmp_path / "out")} == before
        assert [r["file_name"] for r in CdrFileStore(engine2).all()] == ["HQ0002.cdr"]
    finally:
        engine2.dispose()


def test_the_same_input_gives_the_same_outputs_byte_for_byte(tmp_path, table, db_url):
    info = make_cdr_file(tmp_path / "src", 2000, table=table, unknown=3, malformed=5, seed=9)
    results = []
    for run in ("one", "two"):
        engine = open_database(f"sqlite:///{tmp_path}/{run}.db" if run == "two" else db_url)
        try:
            settings = settings_for(tmp_path / run, db_url)
            CdrJob(settings, engine, run).distributor().distribute(Path(info["file"]), tmp_path / run / "out")
        finally:
            engine.dispose()
        out = tmp_path / run / "out"
        results.append({p: (out / p).read_bytes() for p in visible(out)})
    assert results[0] == results[1] and len(results[0]) >= 2 * 27


def test_a_file_is_taken_only_with_a_matching_chk(env, tmp_path, table):
    settings, engine, job = env
    inbound = tmp_path / "in"
    good = number_of(table, "51")
    write_cdr(inbound, "NOCHK.cdr", [f"{good}|20240315103012|1|01|10"], chk=False)
    bad = write_cdr(inbound, "BADCHK.cdr", [f"{good}|20240315103012|1|01|10"])
    (inbound / "BADCHK.cdr.chk").write_text("0" * 32 + "\n")
    outcomes = job.scan()
    assert [(o.file, o.result) for o in outcomes] == [("BADCHK.cdr", "waiting")]
    assert "checksum mismatch" in outcomes[0].reason
    assert not (tmp_path / "out").exists(), "nothing written for a file not taken"
    assert bad.exists() and (inbound / "NOCHK.cdr").exists() and CdrFileStore(engine).all() == []
    # the .chk comes right: taken on the next pass
    (inbound / "BADCHK.cdr.chk").write_text(md5_of(bad) + "  BADCHK.cdr\n")
    assert [(o.file, o.result) for o in job.scan()] == [("BADCHK.cdr", "distributed")]
    # a mismatch older than the grace is refused, never distributed
    late = write_cdr(inbound, "LATE.cdr", [f"{good}|20240317103012|1|01|10"])
    (inbound / "LATE.cdr.chk").write_text("not a checksum\n")
    old = time.time() - 600
    os.utime(late, (old, old))
    os.utime(inbound / "LATE.cdr.chk", (old, old))
    (late_outcome,) = job.scan()
    assert late_outcome.result == "refused" and "does not hold an MD5" in late_outcome.reason
    assert (inbound / "refused/LATE.cdr.reason").exists() and not late.exists()
    assert (inbound / "NOCHK.cdr").exists(), "a file without its .chk is never taken"
    assert [r["file_name"] for r in CdrFileStore(engine).all()] == ["BADCHK.cdr"]


def test_read_chk_takes_md5sum_output_and_refuses_anything_else(tmp_path):
    chk = tmp_path / "a.cdr.chk"
    chk.write_text("D41D8CD98F00B204E9800998ECF8427E  a.cdr\n")
    assert read_chk(chk) == "d41d8cd98f00b204e9800998ecf8427e"
    chk.write_text("")
    with pytest.raises(Refused):
        read_chk(chk)


# -- the scheduled job --------------------------------------------------------------------------
def test_the_scheduled_job_picks_a_file_up_under_its_lease(tmp_path, db_url, table):
    from bus.core import Bus
    from bus.scheduler import Scheduler
    settings = settings_for(tmp_path, db_url)
    settings.set_sandbox_url("http://127.0.0.1:9")
    idle = Bus(settings).start(forwarder=False)
    try:   # a bus that does not deliver (a command line tool's) leaves the files to the served bus
        assert idle.scheduler.scheduler.get_job("cdr") is None
    finally:
        idle.stop()
    bus = Bus(settings).start()
    try:
        assert bus.scheduler.scheduler.get_job("cdr").trigger.interval.total_seconds() == 30
        assert bus.scheduler.cdr() == [], "an inbound folder that does not exist yet: nothing to do"
        info = make_cdr_file(tmp_path / "in", 1000, table=table, unknown=2, malformed=3, seed=21)
        other = Scheduler(bus)   # a second process of the bus
        leases = LeaseStore(bus.engine)
        assert leases.acquire("cdr", other.owner, __import__("datetime").timedelta(minutes=1))
        assert bus.scheduler.cdr() is None, "another process holds the lease"
        leases.release("cdr", other.owner)
        (outcome,) = bus.scheduler.cdr()
        assert (outcome.file, outcome.result, outcome.records, outcome.rejects) == (
            Path(info["file"]).name, "distributed", 1000, 5)
        assert not Path(info["file"]).exists() and (tmp_path / "in/archive" / Path(info["file"]).name).exists()
        assert sum(read_output(tmp_path / "out" / t / outcome.file)[2] for t in outcome.targets) == 995
        (lease,) = [l for l in leases.all() if l["name"] == "cdr"]
        assert lease["owner"] == bus.scheduler.owner and "distributed: 1000 records" in lease["last_result"]
        assert other.cdr() == [], "the lease was given back after the pass; nothing left to do"
    finally:
        bus.stop()


def test_the_job_is_off_when_disabled_and_its_settings_are_checked(tmp_path, db_url):
    from bus.core import Bus
    settings = settings_for(tmp_path, db_url, enabled=False)
    settings.set_sandbox_url("http://127.0.0.1:9")
    bus = Bus(settings).start(forwarder=False)
    try:
        assert bus.scheduler.scheduler.get_job("cdr") is None
    finally:
        bus.stop()
    for bad, words in (({"every_seconds": 0}, "files.cdr.every_seconds"), ({"inbound": ""}, "files.cdr.inbound"),
                       ({"evry_seconds": 5}, 'did you mean "every_seconds"'), ({"enabled": "yes"}, "enabled")):
        settings = settings_for(tmp_path, db_url, **bad)
        with pytest.raises(ConfigError, match=words):
            settings.validate()


# -- crashes: a real process, killed ----------------------------------------------------------
def bssbus(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "bus.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def short_lease_config(tmp_path: Path) -> str:
    config = tmp_path / "cdr.yaml"
    config.write_text("files:\n  cdr:\n    lease_seconds: 1\n", encoding="utf-8")
    return str(config)


def test_a_kill_while_splitting_leaves_nothing_visible_and_the_next_run_redoes_it(tmp_path, db_url, table):
    info = make_cdr_file(tmp_path / "in", 400_000, table=table, unknown=50, malformed=50, seed=3)
    out, config = tmp_path / "out", short_lease_config(tmp_path)
    args = ("cdr", info["file"], "--out", str(out), "--db-url", db_url, "--config", config)
    proc = bssbus(*args)
    deadline = time.monotonic() + 60
    while not (out.exists() and any(p.stat().st_size > 0 for p in out.rglob(".*body.tmp"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the split never started"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert visible(out) == [], "nothing downstream could take"
    assert hidden(out), "the kill came while temporary files were being written"
    engine = open_database(db_url)
    try:
        (row,) = CdrFileStore(engine).all()
        assert row["state"] == SPLITTING
        time.sleep(1.1)   # the dead process's lease runs out
        rerun = bssbus(*args, "--json")
        stdout, stderr = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, stderr
        assert '"result": "resumed"' in stdout
        assert hidden(out) == [], "the temporary files of the killed run are gone"
        (row,) = CdrFileStore(engine).all()
        assert (row["state"], row["records"], row["rejects"]) == (DONE, 400_000, 100)
        placed = sum(read_output(p)[2] for p in out.glob("*/*.cdr"))
        assert placed + 100 == 400_000
    finally:
        engine.dispose()


def test_a_kill_while_publishing_is_finished_by_the_next_run(tmp_path, db_url, table):
    info = make_cdr_file(tmp_path / "in", 20_000, table=table, unknown=5, seed=4)
    out, config = tmp_path / "out", short_lease_config(tmp_path)
    args = ("cdr", info["file"], "--out", str(out), "--db-url", db_url, "--config", config)
    proc = bssbus(*args, env={"BSSBUS_CDR_TEST_PAUSE_AFTER_RENAMES": "7"})
    assert proc.stdout.readline().startswith("paused after 7 renames")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    published = visible(out)
    assert len(published) == 7 and len(hidden(out)) == 2 * 28 - 7, "27 targets and the rejects, .chk each"
    first = {p: (out / p).read_bytes() for p in published}
    engine = open_database(db_url)
    try:
        assert [r["state"] for r in CdrFileStore(engine).all()] == [PUBLISHING]
        time.sleep(1.1)
        rerun = bssbus(*args)
        stdout, stderr = rerun.communicate(timeout=60)
        assert rerun.returncode == 0 and "resumed" in stdout, stderr
        assert hidden(out) == [] and len(visible(out)) == 2 * 28
        assert all((out / p).read_bytes() == data for p, data in first.items()), "renamed once, never rewritten"
        assert sum(read_output(p)[2] for p in out.glob("*/*.cdr")) == 20_000 - 5
        assert [r["state"] for r in CdrFileStore(engine).all()] == [DONE]
    finally:
        engine.dispose()


def test_call_types_are_a_closed_documented_set():
    assert set(CALL_TYPES) == {"01", "02", "03", "11", "21"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{code}`" in readme for code in CALL_TYPES)


def test_the_scan_finishes_a_publishing_left_by_a_crash_and_archives_the_input(env, tmp_path, table):
    """What a scan killed just after its publishing commit leaves (every output complete under
    its hidden name, the row in publishing): the next scan renames them and archives the input."""
    from bus.cdr import TempOutputs, split
    settings, engine, job = env
    info = make_cdr_file(tmp_path / "in", 500, table=table, unknown=1, seed=6, name="HQ0009.cdr")
    path, store = Path(info["file"]), CdrFileStore(engine)
    run = "0123456789ab"
    row = store.claim(path.name, info["md5"], str(path), str(tmp_path / "out"), "crashed", run)
    outputs = TempOutputs(tmp_path / "out", path.name, info["md5"], run)
    summary = outputs.finish(split(path, job.router(), outputs.writer, outputs.reject))
    summary["archive"] = str(tmp_path / "in/archive")
    assert store.publishing(row["id"], "crashed", run, 500, 1, summary)
    assert visible(tmp_path / "out") == [] and len(hidden(tmp_path / "out")) == 2 * 28
    (outcome,) = job.scan()
    assert (outcome.file, outcome.result, outcome.records) == ("HQ0009.cdr", "resumed", 500)
    assert hidden(tmp_path / "out") == [] and len(visible(tmp_path / "out")) == 2 * 28
    assert (tmp_path / "in/archive/HQ0009.cdr").exists() and not path.exists()
    assert [r["state"] for r in store.all()] == [DONE]
    assert job.scan() == [], "nothing left, nothing refused"


def test_a_line_of_megabytes_is_cut_not_held_and_the_next_lines_still_count(env, tmp_path, table):
    settings, engine, job = env
    good = f"{number_of(table, '51')}|20240315103012|1|01|10"
    path = write_cdr(tmp_path / "in", "BIG.cdr", [good, "7" * (3 << 20), good + "\r", good])
    outcome = job.distributor().distribute(path, tmp_path / "out")
    assert (outcome.records, outcome.rejects) == (4, 1)
    rejected = (tmp_path / "out/REJECTED/BIG.rej").read_text().split("\n")
    assert rejected[1].startswith("2|line longer than 1024 bytes|7777") and len(rejected[1]) < 1100
    assert read_output(tmp_path / "out/BILLING-51/BIG.cdr")[0] == [good, good, good], "a CR before LF is a CRLF"


# -- two runs of one file: a run that lost its lease or its row publishes nothing ----------------
def paused(proc, point: str) -> None:
    line = proc.stdout.readline()
    assert line.startswith(f"paused at {point}"), (line, proc.poll() is not None and proc.communicate())


def test_a_run_whose_row_was_taken_over_publishes_nothing_and_no_record_is_lost(tmp_path, db_url, table):
    """A assembles every output, then stalls past its lease; B takes the row over (and clears
    the temporary files it finds) before A's publishing commit. A must stop without publishing
    and without marking the file done; B publishes every record."""
    info = make_cdr_file(tmp_path / "in", 3000, table=table, unknown=2, seed=12)
    out, config = tmp_path / "out", short_lease_config(tmp_path)
    args = ("cdr", info["file"], "--out", str(out), "--db-url", db_url, "--config", config)
    go_a, go_b = tmp_path / "go-a", tmp_path / "go-b"
    a = bssbus(*args, env={PAUSE_AT_ENV: "assembled", RESUME_ENV: str(go_a)})
    paused(a, "assembled")
    assert visible(out) == [] and len(hidden(out)) == 2 * 28, "A's outputs complete, hidden"
    time.sleep(1.2)   # A's lease runs out
    b = bssbus(*args, "--json", env={PAUSE_AT_ENV: "splitting", RESUME_ENV: str(go_b)})
    paused(b, "splitting")   # B holds the lease and the row; A wakes up now
    go_a.touch()
    a_out, a_err = a.communicate(timeout=60)
    go_b.touch()
    b_out, b_err = b.communicate(timeout=60)
    assert a.returncode == 2 and "took its distribution over" in a_err, (a_out, a_err)
    assert len(a_err.strip().splitlines()) == 1
    assert b.returncode == 0 and '"result": "resumed"' in b_out, b_err
    engine = open_database(db_url)
    try:
        (row,) = CdrFileStore(engine).all()
        assert (row["state"], row["records"], row["rejects"]) == (DONE, 3000, 2)
    finally:
        engine.dispose()
    assert hidden(out) == [] and len(visible(out)) == 2 * 28
    assert sum(read_output(p)[2] for p in out.glob("*/*.cdr")) == 3000 - 2, "every record published"


def test_a_run_whose_lease_is_taken_while_assembling_stops_there(tmp_path, db_url, table):
    """Assembling (a copy and an fsync of every output) renews the lease; when another process
    has it, the run stops, removes its own temporary files and leaves the row for a later run."""
    from datetime import timedelta
    info = make_cdr_file(tmp_path / "in", 3000, table=table, unknown=2, seed=13)
    out, config = tmp_path / "out", short_lease_config(tmp_path)
    args = ("cdr", info["file"], "--out", str(out), "--db-url", db_url, "--config", config)
    go = tmp_path / "go"
    a = bssbus(*args, env={PAUSE_AT_ENV: "assembling", RESUME_ENV: str(go)})
    paused(a, "assembling")
    time.sleep(1.2)   # A's lease runs out; another process takes it
    engine = open_database(db_url)
    try:
        leases = LeaseStore(engine)
        assert leases.acquire("cdr", "another-process", timedelta(minutes=5))
        go.touch()
        a_out, a_err = a.communicate(timeout=60)
        assert a.returncode == 2 and "lease" in a_err, (a_out, a_err)
        assert visible(out) == [] and hidden(out) == [], "nothing published, its temporary files removed"
        assert [r["state"] for r in CdrFileStore(engine).all()] == [SPLITTING]
        leases.release("cdr", "another-process")
        rerun = bssbus(*args)
        stdout, stderr = rerun.communicate(timeout=60)
        assert rerun.returncode == 0 and "resumed" in stdout, stderr
        assert [r["state"] for r in CdrFileStore(engine).all()] == [DONE]
        assert sum(read_output(p)[2] for p in out.glob("*/*.cdr")) == 3000 - 2
    finally:
        engine.dispose()


def test_a_replaced_file_beside_an_interrupted_split_is_refused_with_the_true_reason(env, tmp_path, table, db_url):
    """A run killed while splitting leaves its row in ``splitting``; a file of the same name but
    other records is refused saying so (not "was distributed"), and the original file, once
    back, resumes."""
    settings, engine, job = env
    info = make_cdr_file(tmp_path / "in", 500, table=table, seed=14, name="HQ0042.cdr")
    keep = tmp_path / "keep"
    keep.mkdir()
    shutil.copy(info["file"], keep)
    shutil.copy(info["file"] + ".chk", keep)
    args = ("cdr", info["file"], "--out", str(tmp_path / "out"), "--db-url", db_url,
            "--config", short_lease_config(tmp_path))
    a = bssbus(*args, env={PAUSE_AT_ENV: "splitting", RESUME_ENV: str(tmp_path / "never")})
    paused(a, "splitting")
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    time.sleep(1.2)   # the dead run's lease runs out
    write_cdr(tmp_path / "in", "HQ0042.cdr", [f"{number_of(table, '51')}|20240315103012|1|01|10"])
    (refused,) = job.scan()
    assert refused.result == "refused", refused
    assert "was distributed" not in refused.reason and "interrupted" in refused.reason, refused.reason
    assert "splitting" in refused.reason and "HQ0042.cdr" in refused.reason and info["md5"] in refused.reason
    assert "when that file is back" in refused.reason and "new name" in refused.reason
    assert "interrupted" in (tmp_path / "in/refused/HQ0042.cdr.reason").read_text()
    shutil.copy(keep / "HQ0042.cdr", tmp_path / "in")
    shutil.copy(keep / "HQ0042.cdr.chk", tmp_path / "in")
    (resumed,) = job.scan()
    assert (resumed.result, resumed.records) == ("resumed", 500)
    assert [r["state"] for r in CdrFileStore(engine).all()] == [DONE]
    assert job.scan() == []


def test_refusals_of_one_name_never_overwrite_each_other(env, tmp_path, table):
    """Refused twice within a second: both kept, with their own .chk and .reason; and a
    .reason left after its file was taken away is not overwritten either."""
    settings, engine, job = env
    inbound, old = tmp_path / "in", time.time() - 600
    contents = []
    for n in range(3):
        path = write_cdr(inbound, "LATE.cdr", [f"{number_of(table, '51')}|2024031510301{n}|1|01|10"])
        (inbound / "LATE.cdr.chk").write_text(f"not a checksum {n}\n")
        os.utime(path, (old, old))
        os.utime(inbound / "LATE.cdr.chk", (old, old))
        contents.append(path.read_bytes())
        (outcome,) = job.scan()
        assert outcome.result == "refused"
        if n == 1:   # someone takes the refused files away to look at them; their .reason stays
            for name in ("LATE.cdr", "LATE.cdr.1"):
                (inbound / "refused" / name).unlink()
    refused = inbound / "refused"
    assert sorted(p.name for p in refused.iterdir()) == [
        "LATE.cdr.1.chk", "LATE.cdr.1.reason", "LATE.cdr.2", "LATE.cdr.2.chk", "LATE.cdr.2.reason",
        "LATE.cdr.chk", "LATE.cdr.reason"]
    assert (refused / "LATE.cdr.2").read_bytes() == contents[2]
    assert [(refused / f"LATE.cdr{s}.chk").read_text() for s in ("", ".1", ".2")] == [
        f"not a checksum {n}\n" for n in range(3)]
    assert all("does not hold an MD5" in (refused / f"LATE.cdr{s}.reason").read_text() for s in ("", ".1", ".2"))
