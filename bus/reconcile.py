"""Bank reconciliation (对账): a bank's daily file against the billings' record of its day.

A file ``<BANK>_<YYYYMMDD>.txt`` with its ``.chk`` is compared transaction by transaction
(by bank serial) with what the billings list for that bank and day (``BankPayment.ListPayments``,
asked of the billing of each province's phase, page by page; of both billings when the
province changed phase since the day began). Per transaction:

- **balanced** (平账): both have it, with the same number, amount, type and original;
- **bank_only** (银有我无): posted to billing (补缴) with the bank's own serial, so a payment is
  never posted twice; a reversal the billing lacks is posted as that reversal;
- **billing_only** (我有银无): a payment is reversed in billing (a reversal the bank lacks is held);
- **mismatch**: amounts (or number, type, original) differ, or two billings list the serial:
  held for a person;
- **unlisted**: the number's billing cannot list payments (a legacy billing): held.

The corrections are ordinary bus messages (ORIG_DOMAIN ``RECON``, route ``reconciliation``):
stored and forwarded with the journal, the outbox's retries and dead letters, and each one's
idempotency key (``RECONPAY:``/``RECONREV:`` and the serial), so a re-run or a resume after a
crash posts nothing twice. One process reconciles at a time (the ``reconciliation`` lease).
They carry ``RECON_DATE``, the file's day, which lets the billing post or reverse on that day.

A batch goes ``comparing`` -> ``posting`` -> ``done`` in the database (dao/reconcile.py); a
process that dies in the middle leaves its file in the drop folder, and the next run resumes
the batch: a comparison is made again (it posted nothing), a posting continues. A file is
refused whole (``rejected``, moved to ``refused/`` with a ``.reason``) before anything is
posted when its name, header, a line, its count or sum, or its checksum is wrong, a bank
serial appears twice, or the bank's day or the same file was processed already.

The comparison streams: the file and the billings' lists go into a scratch SQLite database
(a temporary file), joined by SQLite; only the discrepancies reach Python. Memory does not
grow with the file.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bus import bankfile
from bus.bankfile import BankFileError
from bus.faults import BusFault
from bus.message import Message
from bus.security import RECONCILIATION_DOMAIN
from config.settings import ConfigError, Settings
from dao.leases import LeaseStore
from dao.reconcile import COUNTS, AlreadyClaimed, ReconStore

log = logging.getLogger("bssbus.reconcile")

SERVICE = "BankPayment"
OUTCOME_CODES = {"bank_only": "01", "billing_only": "02", "mismatch": "03", "unlisted": "04"}
#: the result file's word for an item's action: what the bus did with it (POST and REVERSE: handed
#: to the bus's reliable delivery; the outbox and `bssbus dlq` show how the billing answered)
ACTION_WORDS = {"post": "POST", "reverse": "REVERSE", "hold": "HOLD", "none": "NONE"}
LEASE = "reconciliation"
BEIJING = timezone(timedelta(hours=8))   # accounting days are Beijing days
_BATCH = 10000


class ReconcileError(Exception):
    """The batch cannot go on now (a billing did not answer): it stays open and is tried again."""


class LeaseHeld(Exception):
    """Another process is reconciling (a bus's scheduled job, or a run by hand)."""


@dataclass(frozen=True)
class ReconConfig:
    """``files.reconciliation`` of config/bus.yaml."""

    folder: Path
    banks: tuple[str, ...]
    enabled: bool = True
    every_seconds: float = 60.0
    settle_seconds: float = 300.0
    page_size: int = 5000
    concurrency: int = 8
    lease_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "ReconConfig":
        spec = dict((settings.section("files") or {}).get("reconciliation") or {})
        banks = spec.get("banks")
        if banks is None:   # every bank that is a consumer of the bus
            banks = sorted({c.get("bank_code") for c in settings.section("consumers").values()
                            if isinstance(c, dict) and c.get("bank_code")})
        if not isinstance(banks, list) or not all(isinstance(b, str) and bankfile.NAME.fullmatch(f"{b}_20000101.txt")
                                                  for b in banks):
            raise ConfigError("files.reconciliation.banks: a list of bank codes (2..10 of A-Z, 0-9)")
        try:
            config = cls(folder=settings.folder(spec.get("folder", "{data_dir}/reconciliation")),
                         banks=tuple(banks), enabled=bool(spec.get("enabled", True)),
                         every_seconds=float(spec.get("every_seconds", 60)),
                         settle_seconds=float(spec.get("settle_seconds", 300)),
                         page_size=int(spec.get("page_size", 5000)), concurrency=int(spec.get("concurrency", 8)),
                         lease_seconds=float(spec.get("lease_seconds", 60)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"files.reconciliation: {exc}") from None
        if (not 1 <= config.page_size <= 10000 or config.every_seconds <= 0 or config.concurrency < 1
                or config.lease_seconds <= 0):
            raise ConfigError("files.reconciliation: page_size 1..10000, every_seconds > 0, concurrency >= 1, "
                              "lease_seconds > 0")
        return config

    def inbox(self, bank: str) -> Path:
        return self.folder / bank / "inbox"

    def results(self, bank: str) -> Path:
        return self.folder / bank / "results"

    def archive(self, bank: str) -> Path:
        return self.folder / bank / "archive"

    def refused(self, bank: str) -> Path:
        return self.folder / bank / "refused"


@dataclass
class Report:
    """What one run did with one file."""

    file: str
    state: str   # done, rejected, waiting (its .chk), retrying (open: tried again), dry-run
    batch_id: int | None = None
    reason: str | None = None
    bank_code: str | None = None
    acct_date: str | None = None
    lines: int = 0
    amount: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    items: list[dict] = field(default_factory=list)
    posted: int = 0
    held: int = 0
    result_file: str | None = None
    unlisted: tuple[str, ...] = ()
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)   # seconds each step took

    def timed(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[step] = round(self.timings.get(step, 0.0) + now - since, 3)
        return now

    def summary(self) -> str:
        if self.state == "rejected":
            return f"{self.file}: refused: {self.reason}"
        if self.state in ("waiting", "comparing"):
            return f"{self.file}: {self.state}: {self.reason}"
        parts = [f"{name} {count:,} ({total / 100:,.2f} yuan)" for name, (count, total) in self.counts.items()]
        head = f"{self.file}: {self.state}" + (f", batch {self.batch_id}" if self.batch_id else "")
        return (f"{head}: {self.lines:,} lines, {self.amount / 100:,.2f} yuan; " + ", ".join(parts)
                + f"; {self.posted} posted, {self.held} held" + (f"; result {self.result_file}" if self.result_file else ""))


class Workspace:
    """The scratch SQLite database one comparison runs in (a temporary file, removed after)."""

    def __init__(self, folder: Path | None = None):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        handle, self.path = tempfile.mkstemp(prefix="recon-", suffix=".db", dir=folder)
        os.close(handle)
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-16384", "temp_store=FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE bank (serial TEXT, time TEXT, msisdn TEXT, amount INTEGER, type TEXT, "
                        "orig TEXT, line INTEGER)")
        self.db.execute("CREATE TABLE bill (serial TEXT, time TEXT, msisdn TEXT, amount INTEGER, type TEXT, "
                        "orig TEXT, state TEXT, province TEXT)")
        self._twice: set[str] | None = None

    def close(self) -> None:
        self.db.close()
        Path(self.path).unlink(missing_ok=True)

    def load_bank(self, rows) -> None:
        while chunk := list(itertools.islice(rows, _BATCH)):
            self.db.executemany("INSERT INTO bank VALUES (?,?,?,?,?,?,?)", chunk)
        try:
            self.db.execute("CREATE UNIQUE INDEX bank_serial ON bank (serial)")
        except sqlite3.IntegrityError:
            serial, first, second = self.db.execute(
                "SELECT serial, min(line), max(line) FROM bank GROUP BY serial HAVING count(*) > 1 "
                "ORDER BY min(line) LIMIT 1").fetchone()
            raise BankFileError(f"line {second}: bank serial {serial} appears twice (also line {first})") from None

    def add_billing(self, rows: list[tuple]) -> None:
        self.db.executemany("INSERT INTO bill VALUES (?,?,?,?,?,?,?,?)", rows)

    def twice(self) -> int:
        """Index the billings' rows, and set apart the serials more than one billing listed (a
        payment posted twice, or misrouted): how many there are."""
        if self._twice is None:
            self.db.execute("CREATE INDEX bill_serial ON bill (serial)")
            self.db.execute("CREATE TABLE twice (serial TEXT PRIMARY KEY)")
            self.db.execute("INSERT INTO twice SELECT serial FROM bill GROUP BY serial HAVING count(*) > 1")
            self._twice = {row[0] for row in self.db.execute("SELECT serial FROM twice")}
        return len(self._twice)

    def balanced(self) -> tuple[int, int]:
        count, total = self.db.execute(
            "SELECT count(*), coalesce(sum(b.amount), 0) FROM bank b JOIN bill l ON l.serial = b.serial "
            "WHERE b.amount = l.amount AND b.msisdn = l.msisdn AND b.type = l.type AND b.orig = l.orig "
            "AND b.serial NOT IN (SELECT serial FROM twice)").fetchone()
        return count, total

    def listed_twice(self):
        """Each serial more than one billing listed: (bank row or None, [the billings' rows])."""
        for (serial,) in self.db.execute("SELECT serial FROM twice ORDER BY serial").fetchall():
            bank = self.db.execute("SELECT serial, time, msisdn, amount, type, orig FROM bank WHERE serial = ?",
                                   (serial,)).fetchone()
            yield bank, self.db.execute("SELECT serial, time, msisdn, amount, type, orig, state, province FROM bill "
                                        "WHERE serial = ?", (serial,)).fetchall()

    def bank_side(self):
        """Bank lines the billings lack or differ on: (bank row, billing row or None)."""
        cursor = self.db.execute(
            "SELECT b.serial, b.time, b.msisdn, b.amount, b.type, b.orig, "
            "l.serial, l.time, l.msisdn, l.amount, l.type, l.orig, l.state, l.province "
            "FROM bank b LEFT JOIN bill l ON l.serial = b.serial WHERE b.serial NOT IN (SELECT serial FROM twice) "
            "AND (l.serial IS NULL OR b.amount <> l.amount OR b.msisdn <> l.msisdn OR b.type <> l.type "
            "OR b.orig <> l.orig) ORDER BY b.line")
        for row in cursor:
            yield row[:6], (row[6:] if row[6] is not None else None)

    def billing_side(self):
        """Billing transactions the bank's file lacks."""
        yield from self.db.execute(
            "SELECT serial, time, msisdn, amount, type, orig, state, province FROM bill l "
            "WHERE NOT EXISTS (SELECT 1 FROM bank b WHERE b.serial = l.serial) "
            "AND l.serial NOT IN (SELECT serial FROM twice) ORDER BY serial")


def parse_txn(text: str, province: str) -> tuple:
    """A TXN of a ListPayments answer as a row of the workspace's ``bill`` table."""
    fields = text.split("|")
    if len(fields) != 7:
        raise ValueError(f"a TXN has 7 fields: {text[:80]!r}")
    serial, when, msisdn, amount, kind, orig, state = fields
    return serial, when, msisdn, int(amount), kind, orig, state, province


class Reconciler:
    """Reconciles bank files through a started :class:`bus.core.Bus`."""

    def __init__(self, bus, config: ReconConfig | None = None):
        self.bus = bus
        self.config = config or ReconConfig.from_settings(bus.settings)
        self.store = ReconStore(bus.engine)

    # -- the scheduled job: every bank's inbox ------------------------------------------
    @contextmanager
    def leased(self, owner: str):
        """Hold the reconciliation lease (one reconciling process at a time, scheduled or by
        hand) for a run; yields ``keep()``, which renews it and raises ReconcileError when it was
        lost (the run stops before it could race another). LeaseHeld when another holds it."""
        leases, ttl = LeaseStore(self.bus.engine), timedelta(seconds=self.config.lease_seconds)
        if not leases.acquire(LEASE, owner, ttl):
            holder = next((l for l in leases.all() if l["name"] == LEASE), {})
            raise LeaseHeld(f"another process is reconciling ({holder.get('owner', '?')}, until "
                            f"{holder['until']:%H:%M:%S} UTC)" if holder.get("until") else "another process is reconciling")

        def keep():
            if not leases.acquire(LEASE, owner, ttl):
                raise ReconcileError("the reconciliation lease was lost to another process; this run stops")
        try:
            yield keep
        finally:
            leases.release(LEASE, owner)

    def scan(self, keep_lease=None) -> list[Report]:
        """Each file of each bank's inbox that has its ``.chk``: reconciled, resumed, refused
        or (checksum not matching yet, within ``settle_seconds``) left for the next run."""
        reports = []
        self._sweep()
        for bank in self.config.banks:
            inbox = self.config.inbox(bank)
            if not inbox.is_dir():
                continue
            for path in sorted(inbox.glob("*.txt")):
                if not bankfile.checksum_path(path).exists():
                    continue   # still being delivered: the .chk comes last
                try:
                    reports.append(self.run(path, inbox_of=bank, progress=keep_lease and (lambda *_: keep_lease())))
                except ReconcileError as exc:
                    reports.append(Report(path.name, "retrying", reason=str(exc)))
                    log.warning("reconciliation of %s is tried again on the next run: %s", path.name, exc)
                except Exception as exc:   # a bug or a database outage: the next files still get their turn
                    log.exception("reconciliation of %s failed; it is tried again on the next run", path.name)
                    reports.append(Report(path.name, "retrying", reason=f"failed: {type(exc).__name__}: {exc}"[:300]))
        return reports

    # -- one file -----------------------------------------------------------------------
    def run(self, path: str | os.PathLike, *, dry_run: bool = False, by_hand: bool = False,
            progress=None, inbox_of: str | None = None) -> Report:
        """Reconcile one file. ``by_hand``: the file stays where it is (a copy is archived) and a
        refusal is not moved aside; ``dry_run``: compare and report the actions, change nothing;
        ``inbox_of``: the bank whose inbox the file was found in (another bank's file is refused)."""
        started = time.perf_counter()
        path = Path(path)
        report = self._run(path, dry_run, by_hand, progress or (lambda *_: None), inbox_of)
        report.seconds = time.perf_counter() - started
        log.info("%s", report.summary())
        return report

    def _admit(self, path: Path, mode: str, inbox_of: str | None):
        """(report, MD5, the batch to resume or None) for a file that may be worked on; else the
        final Report: refused (name, bank, checksum, processed already) or waiting for its .chk."""
        name = path.name
        try:
            bank, day = bankfile.parse_name(path)
        except BankFileError as exc:
            return self._refuse(path, str(exc), mode, Report(name, "rejected", bank_code=inbox_of))
        report = Report(name, "comparing", bank_code=bank, acct_date=day)
        try:
            over = datetime.strptime(day, "%Y%m%d").date() < datetime.now(BEIJING).date()
        except ValueError:
            return self._refuse(path, f"{day} in the file name is not a date", mode, report)
        if not over:
            return self._refuse(path, f"the accounting day {day} is not over (Beijing time): a bank's file of a "
                                      "day comes the day after", mode, report)
        if inbox_of is not None and bank != inbox_of:
            report.bank_code = inbox_of
            return self._refuse(path, f"a file of bank {bank} in the inbox of {inbox_of}", mode, report)
        if bank not in self.config.banks:
            return self._refuse(path, f"bank {bank} is not one of files.reconciliation.banks "
                                      f"({', '.join(self.config.banks)})", mode, report)
        md5, stated = bankfile.md5_of(path), bankfile.stated_md5(path)
        if stated != md5:
            age = time.time() - max(path.stat().st_mtime, _mtime(bankfile.checksum_path(path)))
            why = ("there is no .chk beside it" if stated is None else
                   f"its MD5 is {md5}, its .chk says {stated or 'nothing'}")
            if mode == "scan" and age < self.config.settle_seconds:
                report.state, report.reason = "waiting", f"{why}; waiting for the delivery to finish"
                return report
            return self._refuse(path, f"checksum: {why}", mode, report, md5)
        batch = self.store.find(md5=md5)
        if batch is not None and batch["state"] == "done":
            if mode == "scan" and not (self.config.archive(bank) / name).exists():   # ended before its move
                self._archive(path, bank, by_hand=False)
                return self._report(report, batch)
            return self._refuse(path, f"this file was processed already: batch {batch['id']} "
                                      f"({batch['finished_at']:%Y-%m-%d %H:%M})", mode, report, md5)
        if batch is None:
            other = self.store.find(bank_code=bank, acct_date=day)
            if other is not None and other["state"] == "done":
                return self._refuse(path, f"a file for {bank} {day} was processed already: batch {other['id']} "
                                          f"({other['file_name']}, MD5 {other['md5']})", mode, report, md5)
            if other is not None:
                last = f"; last problem: {other['reason']}" if other.get("reason") else ""
                hint = ("it goes on when that file is back in the inbox" if other["state"] == "posting" else
                        f"it goes on when that file is back in the inbox, or give it up with `bssbus reconcile "
                        f"--abandon {other['id']}` (it posted nothing)")
                return self._refuse(path, f"batch {other['id']} for {bank} {day} (a file with MD5 {other['md5']}) is "
                                          f"still open, {other['state']}{last}; {hint}", mode, report, md5)
        return report, md5, batch

    def _run(self, path: Path, dry_run: bool, by_hand: bool, progress, inbox_of: str | None) -> Report:
        mode = "dry" if dry_run else "hand" if by_hand else "scan"
        admitted = self._admit(path, mode, inbox_of)
        if isinstance(admitted, Report):
            return admitted
        report, md5, batch = admitted
        bank, day, name = report.bank_code, report.acct_date, path.name
        if dry_run and batch is not None and batch["state"] == "posting":
            report = self._report(report, batch)
            report.reason = f"batch {batch['id']} is posting its corrections already: nothing to try"
            return report
        if dry_run:
            batch = None   # a comparison cut short: compare again, record nothing
        if batch is None or batch["state"] == "comparing":
            workspace = Workspace(self.config.folder / ".work" if not dry_run else None)
            try:
                clock = time.perf_counter()
                try:
                    header = self._load(workspace, path, bank, day, progress)
                except BankFileError as exc:
                    return self._refuse(path, str(exc), mode, report, md5)
                clock = report.timed("read", clock)
                report.lines, report.amount = header.count, header.amount
                if batch is None and not dry_run:
                    try:
                        batch = {"id": self.store.claim(name, bank, day, md5, header.count, header.amount)}
                    except AlreadyClaimed:
                        return self._refuse(path, f"a file for {bank} {day}, or this same file, was claimed by "
                                                  "another run at the same moment", mode, report, md5)
                report.batch_id = batch and batch["id"]
                try:
                    report.unlisted = self._fetch(workspace, bank, day, progress)
                except ReconcileError as exc:
                    if report.batch_id:
                        self.store.note(report.batch_id, str(exc))
                    raise
                clock = report.timed("billing", clock)
                counts: dict[str, tuple[int, int]] = {}
                items = self._compare(workspace, bank, day, report.unlisted, counts)
                if dry_run:
                    report.items = list(items)
                else:   # streamed into the database, with the counts, in one transaction
                    self.store.compared(report.batch_id, counts, items)
                report.timed("compare", clock)
            finally:
                workspace.close()
            report.counts = {k: v for k, v in counts.items() if v != (0, 0) or k != "unlisted"}
            if dry_run:
                report.state = "dry-run"
                report.held = sum(1 for i in report.items if i["action"] in ("hold", "none"))
                return report
        report.batch_id = batch["id"]
        clock = time.perf_counter()
        self._post(report.batch_id, progress)
        clock = report.timed("post", clock)
        result = self._write_result(report.batch_id)
        batch = self.store.finish(report.batch_id, str(result))
        self._archive(path, bank, by_hand)
        report.timed("result", clock)
        return self._report(report, batch)

    def _sweep(self) -> None:
        """Scratch files a killed run left behind (a day old: no run takes that long)."""
        work = self.config.folder / ".work"
        for stale in work.glob("recon-*.db*") if work.is_dir() else ():
            if time.time() - _mtime(stale) > 86400:
                stale.unlink(missing_ok=True)

    # -- steps --------------------------------------------------------------------------
    def _load(self, workspace: Workspace, path: Path, bank: str, day: str, progress) -> bankfile.Header:
        rows = bankfile.read(path, bank, day, progress=lambda n: progress("read", n, None))
        header = next(rows)
        workspace.load_bank(rows)
        progress("read", header.count, header.count)
        return header

    def _provinces(self, bank: str) -> list[str]:
        phases = self.bus.router.current_phases()
        consumer = next((c for c in self.bus.gatekeeper.consumers.values() if c.bank_code == bank), None)
        allowed = consumer.provinces if consumer is not None and consumer.provinces is not None else phases
        return sorted(p for p in phases if p in allowed)

    def _fetch(self, workspace: Workspace, bank: str, day: str, progress) -> tuple[str, ...]:
        """Each province's transactions of ``bank`` on ``day`` from the billing of its phase;
        returns the provinces whose billing cannot list them."""
        unlisted, fetched = [], 0
        start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=BEIJING)
        moved = self.bus.phase_store.moved_since(start)   # its payments may be in either billing
        for province in self._provinces(bank):
            for phase in self._phases_to_ask(province, moved):
                fetched = self._fetch_province(workspace, bank, day, province, phase, unlisted, fetched, progress)
        if workspace.twice():
            log.warning("transactions of %s %s were listed by two billings: held for a person", bank, day)
        return tuple(sorted(set(unlisted)))

    def _phases_to_ask(self, province: str, moved: set[str]) -> list[int | None]:
        """None: the billing of the province's phase now; both phases' when it moved since."""
        if province not in moved:
            return [None]
        return [2, 3]

    def _fetch_province(self, workspace: "Workspace", bank: str, day: str, province: str, phase: int | None,
                        unlisted: list, fetched: int, progress) -> int:
        """Every page of one billing's list for one province (``phase``: that phase's billing)."""
        after = None
        while True:
            message = self._message("ListPayments", {"ROUTE_TYPE": "00", "ROUTE_VALUE": province},
                                    f"RL{day}{province}{uuid.uuid4().hex[:16]}", {
                                        "BANK_CODE": bank, "ACCT_DATE": day, "PROVINCE_CODE": province,
                                        **({"AFTER_SERIAL": after} if after else {}),
                                        "PAGE_SIZE": self.config.page_size})
            try:
                decision = self.bus.router.resolve(message)
                if phase is not None and decision.phase != phase:
                    decision = self.bus.router.decide_for_phase(decision, phase, SERVICE)
                if not self.bus.adapters.for_peer(decision.peer).offers(SERVICE, "ListPayments"):
                    unlisted.append(province)
                    break
                reply = self.bus.deliver(message, decision)
            except BusFault as fault:
                self.bus.complete(message, b"", fault=fault)
                raise ReconcileError(f"the billing of province {province} did not list {bank}'s payments of "
                                     f"{day}: {fault.message}") from None
            self.bus.complete(message, b"", decision=decision, rsp_code=reply.rsp_code)
            if reply.rsp_code != "0000":
                desc = (reply.head.get("RESPONSE") or {}).get("RSP_DESC")
                raise ReconcileError(f"{decision.peer_name} answered {reply.rsp_code} ({desc}) to ListPayments "
                                     f"for province {province}")
            body = reply.body or {}
            txns = (body.get("TXNS") or {}).get("TXN") or []
            try:
                workspace.add_billing([parse_txn(t, province) for t in txns])
            except ValueError as exc:
                raise ReconcileError(f"{decision.peer_name}: {exc}") from None
            fetched += len(txns)
            progress("billing", fetched, None)
            last = body.get("LAST_SERIAL")
            if body.get("MORE") != "1":
                break
            if not last or (after is not None and last <= after):
                raise ReconcileError(f"{decision.peer_name} said more transactions follow, and its pages do not "
                                     "advance (LAST_SERIAL)")
            after = last
        return fetched

    def _compare(self, workspace: Workspace, bank: str, day: str, unlisted, counts: dict):
        """The discrepancies, one item at a time (the caller streams them into the database);
        ``counts`` gets each outcome's (count, sum) on the way, balanced ones first."""
        workspace.twice()
        counts.update(balanced=workspace.balanced(), bank_only=(0, 0), billing_only=(0, 0), mismatch=(0, 0),
                      unlisted=(0, 0))

        def item(tally, amount, **fields):
            count, total = counts.get(tally, (0, 0))
            counts[tally] = (count + 1, total + amount)
            return fields

        for bank_row, listed in workspace.listed_twice():
            serial, when, msisdn, amount, kind, orig = bank_row or listed[0][:6]
            peers = ", ".join(f"province {row[7]}" for row in listed)
            yield item("mismatch", amount, bank_serial=serial, txn_time=when, msisdn=msisdn, txn_type=kind,
                       orig_serial=orig or None, bank_amount=bank_row[3] if bank_row else None,
                       billing_amount=listed[0][3], province=listed[0][7], outcome="mismatch", action="hold",
                       state="held", detail=f"held for a person: listed by {len(listed)} billings ({peers})")
        segments = self.bus.router.segments
        for (serial, when, msisdn, amount, kind, orig), listed in workspace.bank_side():
            base = dict(bank_serial=serial, txn_time=when, msisdn=msisdn, bank_amount=amount, txn_type=kind,
                        orig_serial=orig or None)
            if listed is None:
                segment = segments.lookup(msisdn)
                province = segment.province_code if segment else None
                if province in unlisted:
                    yield item("unlisted", amount, **base, province=province, outcome="unlisted", action="hold",
                               state="held", detail=f"the billing of province {province} cannot list payments: "
                                                    "check by hand")
                    continue
                yield item("bank_only", amount, **base, province=province, outcome="bank_only", action="post",
                           state="pending", trans_ido=_trans_ido(bank, day, serial, "post"),
                           detail="posted to billing (补缴)" if kind == "0" else "reversal posted to billing")
                continue
            _, _, l_msisdn, l_amount, l_kind, l_orig, _, l_province = listed
            differs = [what for what, a, b in (("amount", amount, l_amount), ("number", msisdn, l_msisdn),
                                               ("type", kind, l_kind), ("original serial", orig, l_orig)) if a != b]
            yield item("mismatch", amount, **base, province=l_province, billing_amount=l_amount, outcome="mismatch",
                       action="hold", state="held", detail=f"held for a person: {' and '.join(differs)} "
                       f"{'differs' if len(differs) == 1 else 'differ'} (bank {amount}, billing {l_amount} fen)")
        for serial, when, msisdn, amount, kind, orig, state, province in workspace.billing_side():
            base = dict(bank_serial=serial, txn_time=when, msisdn=msisdn, billing_amount=amount, txn_type=kind,
                        orig_serial=orig or None, province=province, outcome="billing_only")
            if kind == "1":
                yield item("billing_only", amount, **base, action="hold", state="held",
                           detail="held for a person: the billing has a reversal the bank does not")
            elif state == "1":
                yield item("billing_only", amount, **base, action="none", state="held",
                           detail="reversed in billing already: nothing to do")
            else:
                yield item("billing_only", amount, **base, action="reverse", state="pending",
                           trans_ido=_trans_ido(bank, day, serial, "reverse"), detail="reversed in billing (冲正)")

    def _post(self, batch_id: int, progress) -> None:
        """Hand each pending correction to the bus (stored and forwarded), a page at a time:
        payments first, then reversals (a reversal of a payment posted here follows it), side
        by side within a page. A correction whose item was not settled before a crash is handed
        over again, and answered from the idempotency store: never posted twice."""
        batch = self.store.get(batch_id)
        done = waiting = 0
        with ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="reconcile") as pool:
            for payments in (True, False):
                after = 0
                while page := self.store.pending(batch_id, payments, after, limit=self.config.concurrency * 8):
                    outcomes = list(pool.map(lambda item: self._post_one(batch, item), page))
                    self.store.settle([o for o in outcomes if o is not None])
                    waiting += outcomes.count(None)
                    done, after = done + len(page), page[-1]["id"]
                    progress("post", done, None)
        if waiting:
            raise ReconcileError(f"{waiting} corrections could not be handed to the bus now (busy); they stay "
                                 "pending and are tried again on the next run")

    def _post_one(self, batch: dict, item: dict) -> tuple[int, str, str | None, str | None] | None:
        """(item id, new state, msg_id, detail), or None when the bus could not take it now
        (a Server fault: busy, the database away): it stays pending."""
        bank, day = batch["bank_code"], batch["acct_date"]
        amount = item["bank_amount"] if item["action"] == "post" else item["billing_amount"]
        body = {"BANK_CODE": bank, "SERIAL_NUMBER": item["msisdn"], "AMOUNT": amount, "TRADE_TIME": item["txn_time"],
                "RECON_DATE": day}
        if item["action"] == "post" and item["txn_type"] == "0":
            operation, body = "Pay", {"BANK_SERIAL": item["bank_serial"], **body}
        elif item["action"] == "post":   # the bank's reversal, with its serial and original
            operation, body = "Reverse", {"BANK_SERIAL": item["bank_serial"],
                                          "ORIG_BANK_SERIAL": item["orig_serial"], **body}
        else:                            # the billing's payment the bank lacks: reversed by the bus
            operation, body = "Reverse", {"BANK_SERIAL": _reversal_serial(bank, day, item["bank_serial"]),
                                          "ORIG_BANK_SERIAL": item["bank_serial"], **body}
        body = {k: body[k] for k in ("BANK_CODE", "BANK_SERIAL", "ORIG_BANK_SERIAL", "SERIAL_NUMBER", "AMOUNT",
                                     "TRADE_TIME", "RECON_DATE") if k in body}
        message = self._message(operation, {"ROUTE_TYPE": "01", "ROUTE_VALUE": item["msisdn"]}, item["trans_ido"],
                                body, proc_id=f"RECON{batch['id']}")
        try:
            reply, decision = self.bus.handle(message)
        except BusFault as fault:
            self.bus.complete(message, b"", fault=fault)
            if fault.code.startswith("Server."):
                log.warning("correction %s waits: %s", item["bank_serial"], fault.message)
                return None
            return item["id"], "failed", message.msg_id, f"the bus refused it: {fault.code}: {fault.message}"
        self.bus.complete(message, b"", decision=decision, rsp_code=reply.rsp_code)
        return item["id"], "posted", message.duplicate_of or message.msg_id, None

    def _write_result(self, batch_id: int) -> Path:
        batch = self.store.get(batch_id)
        bank, day = batch["bank_code"], batch["acct_date"]
        count, total = self.store.tally(batch_id)

        def lines():
            yield f"H|{bank}|{day}|{count}|{total}"
            for i in self.store.each_item(batch_id):
                action = ACTION_WORDS[i["action"]] if i["state"] != "failed" else "FAILED"
                yield "|".join(["D", i["bank_serial"], i["txn_time"] or "", i["msisdn"] or "",
                                _text(i["bank_amount"]), _text(i["billing_amount"]), i["txn_type"],
                                i["orig_serial"] or "", OUTCOME_CODES[i["outcome"]], action,
                                (i["detail"] or "").replace("|", "/")])
            yield f"T|{count}|{total}"
        path = self.config.results(bank) / f"{bank}_{day}_RESULT.txt"
        bankfile.write_atomically(path, lines())
        return path

    def _archive(self, path: Path, bank: str, by_hand: bool) -> None:
        folder = self.config.archive(bank)
        folder.mkdir(parents=True, exist_ok=True)
        for source in (path, bankfile.checksum_path(path)):
            if not source.exists():
                continue
            if by_hand:
                shutil.copy2(source, folder / source.name)
            else:
                os.replace(source, folder / source.name)

    def _refuse(self, path: Path, reason: str, mode: str, report: Report | None = None,
                md5: str | None = None) -> Report:
        """Refuse the file whole. ``mode`` ``scan``: recorded, and moved to ``refused/`` with a
        ``.reason``; ``hand``: recorded, left in place; ``dry``: only reported."""
        report = report or Report(path.name, "rejected")
        report.state, report.reason = "rejected", reason
        if mode == "dry":
            return report
        report.batch_id = self.store.reject(path.name, reason, report.bank_code, report.acct_date, md5)
        if mode == "scan" and report.bank_code in self.config.banks:
            folder = self.config.refused(report.bank_code)
            folder.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now().strftime("%Y%m%d%H%M%S")
            n = 1
            while (folder / f"{path.name}.{stamp}.reason").exists():   # refused twice in one second
                stamp, n = f"{stamp.split('-')[0]}-{n}", n + 1
            for source in (path, bankfile.checksum_path(path)):
                if source.exists():
                    os.replace(source, folder / f"{source.name}.{stamp}")
            (folder / f"{path.name}.{stamp}.reason").write_text(reason + "\n", encoding="utf-8")
        log.warning("bank file %s refused: %s", path.name, reason)
        return report

    def _report(self, report: Report, batch: dict) -> Report:
        report.state, report.batch_id = batch["state"], batch["id"]
        report.lines, report.amount = batch["lines"] or 0, batch["amount"] or 0
        report.counts = {name: (batch[f"{name}_count"] or 0, batch[f"{name}_sum"] or 0) for name in COUNTS
                         if name != "unlisted" or batch["unlisted_count"]}
        report.posted, report.held, report.result_file = batch["posted"] or 0, batch["held"] or 0, batch["result_file"]
        return report

    @staticmethod
    def _message(operation: str, routing: dict, trans_ido: str, body: dict, proc_id: str | None = None) -> Message:
        head = {"ORIG_DOMAIN": RECONCILIATION_DOMAIN, "SERVICE_NAME": SERVICE, "OPERATE_NAME": operation,
                "ACTION_CODE": "0", "ROUTING": routing, "PROC_ID": proc_id or trans_ido, "TRANS_IDO": trans_ido,
                "PROCESS_TIME": datetime.now().strftime("%Y%m%d%H%M%S"),
                "COM_BUS_INFO": {"OPER_ID": "BUSRECON", "ACCESS_TYPE": "FILE"}}
        return Message(service=SERVICE, operation=operation, head=head, body=body)


def _trans_ido(bank: str, day: str, serial: str, action: str) -> str:
    """The correction's TRANS_IDO: the same on every run, 28 characters."""
    return "RC" + day + hashlib.sha1(f"{bank}|{day}|{serial}|{action}".encode()).hexdigest()[:18].upper()


def _reversal_serial(bank: str, day: str, serial: str) -> str:
    """The bank serial of the bus's reversal of ``serial`` (the same on every run)."""
    return "RCREV" + hashlib.sha1(f"{bank}|{day}|{serial}".encode()).hexdigest()[:27].upper()


def _text(value) -> str:
    return "" if value is None else str(value)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
