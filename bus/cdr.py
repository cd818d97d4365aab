"""CDR distribution (话单文件分流): HQ collection's call-detail-record files, split by the
billing that owns each number.

An EIP **Splitter** feeding a **Content-Based Router**, over files: every record of an input
file goes to the billing of its number's home province (the segment table, an override wins)
in that province's phase (the live cut-over table): phase 2, the province's Billing
(``BILLING-<province>``); phase 3, HQ Billing (``HQ-BILLING``). A record that cannot be routed or
read goes to the **Invalid Message Channel**, the reject file, with its line number and why.
Nothing disappears: input records = the records of every target + the rejects, checked for
every file.

Input: ``<name>.cdr``, ASCII, one call a line, LF or CRLF::

    <MSISDN>|<start YYYYMMDDHHMMSS>|<duration s>|<call type>|<charge fen>
    18603011234|20240315103012|125|01|30

MSISDN 11 digits; the start a real date and time; duration and charge whole numbers (at most
9 and 15 digits); the call type one of :data:`CALL_TYPES`. ``<name>.cdr.chk`` holds the file's
MD5 in hex (what ``md5sum`` prints is fine). A file is read only once its ``.chk`` is there and
matches, so a file still being written is never read.

Output, per target that got records: ``<outbound>/<TARGET>/<name>.cdr``::

    H|<source file>|<target>|<count>|<sum fen>
    <the records, as they came, LF>
    T|<count>|<sum fen>

and ``<name>.cdr.chk`` (its MD5), written last: downstream takes a file only once its ``.chk``
is there. Rejects: ``<outbound>/REJECTED/<stem>.rej`` (+ ``.rej.chk``), ``H|<source>|REJECTED|<count>``,
then ``<line number>|<reason>|<the line as it came>``, then ``T|<count>``.

The idempotency key is file name + MD5, in the database (``cdr_file``), with the run that
holds the row (``run_id``, a new one each distribution; the temporary files carry it in their
names, so two runs never share one). Only the run holding the row moves it on: a run whose
lease ran out and whose row another run took over publishes nothing and stops. Each file goes
``splitting`` (temporary hidden files only; a crash: the next run takes the row over, deletes
the temporary files of every other run of the file and splits again) ->
``publishing`` (every temporary file complete and fsynced; renamed one by one; a crash: the
temporary files still there are renamed, one that is gone was renamed already) -> ``done``
(the input moved to ``<inbound>/archive/``). A file already distributed, or bearing a name or
content already distributed, is refused: moved to ``<inbound>/refused/`` with ``<name>.reason``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from bus.bankfile import md5_of
from bus.segments import SegmentDirectory, SegmentError, SegmentTable
from config.settings import ConfigError, Settings
from dao.cdr import DONE, PUBLISHING, CdrFileStore
from dao.leases import LeaseStore

log = logging.getLogger("bssbus.cdr")

#: The call types a record may carry (a closed set).
CALL_TYPES = {"01": "voice, outgoing", "02": "voice, incoming", "03": "call forwarded",
              "11": "SMS", "21": "data"}
HQ_TARGET = "HQ-BILLING"
PROVINCE_TARGET = "BILLING-{province}"
REJECTED = "REJECTED"
SUFFIX, CHK = ".cdr", ".chk"
NO_SEGMENT = "number in no segment"
MAX_LINE = 1024             # the longest line a reject file keeps (a longer one is cut and refused)
CHUNK = 1 << 20             # bytes read at a time: memory stays flat whatever the file's size
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_MD5 = re.compile(r"[0-9a-fA-F]{32}\Z")
_RUN = re.compile(r"[0-9a-f]{12}\Z")
#: Tests only: a distribution stops (sleeps) after this many renames, so a test can kill it there.
PAUSE_ENV = "BSSBUS_CDR_TEST_PAUSE_AFTER_RENAMES"
#: Tests only: a distribution stops at this point (``splitting``: the row taken, before reading;
#: ``assembling``: one output assembled; ``assembled``: every output assembled, before the
#: publishing commit) until the file RESUME_ENV names exists, so a test can act on it there.
PAUSE_AT_ENV = "BSSBUS_CDR_TEST_PAUSE_AT"
RESUME_ENV = "BSSBUS_CDR_TEST_RESUME_FILE"


_paused: set[str] = set()


def _pause_at(point: str) -> None:
    """Tests only (PAUSE_AT_ENV): the first time at ``point``, print where, then wait (at most
    2 minutes) for RESUME_ENV's file."""
    if os.environ.get(PAUSE_AT_ENV) != point or point in _paused:
        return
    _paused.add(point)
    print(f"paused at {point}", flush=True)
    resume, deadline = os.environ.get(RESUME_ENV), time.monotonic() + 120
    while not (resume and os.path.exists(resume)) and time.monotonic() < deadline:
        time.sleep(0.02)


class CdrError(Exception):
    """A CDR file that cannot be distributed now; the message is one line a person can act on."""


class Refused(CdrError):
    """A file that will never be distributed as it is (already distributed, bad checksum...)."""


class NotReady(CdrError):
    """A file left for a later run (no .chk yet, changed while read, being handled elsewhere)."""


class LeaseLost(CdrError):
    """Another process took the CDR job's lease over while this one was splitting."""


# -- reading ----------------------------------------------------------------------------------
def read_chk(path: Path) -> str:
    """The MD5 a ``.chk`` file holds (its first word), lower case; Refused if it holds none."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(4096)
    except OSError as exc:
        raise NotReady(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    words = data.split()
    word = words[0].decode("ascii", "replace") if words else ""
    if not _MD5.match(word):
        raise Refused(f"{path.name} does not hold an MD5 (32 hex digits)")
    return word.lower()


def _blocks(fh, digest) -> "iter[list[bytes]]":
    """The lines of a binary file, a list per chunk read, without their LF or CRLF; the
    digest sees every byte. A line longer than MAX_LINE is cut to MAX_LINE + 1 bytes (the
    rest skipped), so no line is ever held whole."""
    pending, skipping = b"", False
    while data := fh.read(CHUNK):
        digest.update(data)
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                continue
            data, skipping = data[cut:], False
        if pending:
            data = pending + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        lines = data.split(b"\n")
        pending = lines.pop()
        if len(pending) > MAX_LINE:
            pending, skipping = pending[:MAX_LINE + 1], True
        if lines:
            yield lines
    if pending:
        yield [pending[:-1] if pending.endswith(b"\r") else pending]


# -- routing ----------------------------------------------------------------------------------
@dataclass
class CdrRouter:
    """Number -> target, from one snapshot of the segment table and of the phases (a file is
    routed by one snapshot, as a message in flight keeps its route)."""

    table: SegmentTable
    phases: dict[str, int]
    province_target: str = PROVINCE_TARGET
    hq_target: str = HQ_TARGET

    @classmethod
    def from_settings(cls, settings: Settings, table: SegmentTable, phases: dict[str, int]) -> "CdrRouter":
        peers = settings.raw.get("peers") or {}
        province = str((peers.get("province_billing") or {}).get("name", PROVINCE_TARGET))
        hq = str((peers.get("hq_billing") or {}).get("name", HQ_TARGET))
        for name in (province.format(province="00"), hq):
            if not _TARGET_NAME.match(name):
                raise ConfigError(f"billing name {name!r} cannot name a CDR output folder")
        return cls(table, dict(phases), province, hq)

    def target_of(self, segment) -> str:
        """The target of a number of ``segment``; CdrError (the reject reason) if none."""
        if segment is None:
            raise CdrError(NO_SEGMENT)
        phase = self.phases.get(segment.province_code)
        if phase == 2:
            return self.province_target.format(province=segment.province_code)
        if phase == 3:
            return self.hq_target
        raise CdrError(f"province {segment.province_code} has no phase")

    def target(self, msisdn: str) -> str:
        return self.target_of(self.table.lookup(msisdn))


# -- splitting --------------------------------------------------------------------------------
@dataclass
class SplitResult:
    """What one split produced: per target [count, sum], the rejects by reason, the MD5 read."""

    records: int = 0
    rejects: int = 0
    targets: dict = field(default_factory=dict)    # target -> (count, sum fen)
    reasons: Counter = field(default_factory=Counter)
    md5: str = ""

    def check(self) -> None:
        """Every input record is in one target or rejected: else nothing is published."""
        placed = sum(count for count, _ in self.targets.values())
        if self.records != placed + self.rejects:
            raise CdrError(f"internal error: {self.records} records read, {placed} distributed + "
                           f"{self.rejects} rejected; nothing is published")


_TYPES = frozenset(t.encode() for t in CALL_TYPES)


def _date_ok(day: bytes, seen: set) -> bool:
    try:
        datetime(int(day[:4]), int(day[4:6]), int(day[6:8]))
    except ValueError:
        return False
    if len(seen) < 100_000:
        seen.add(day)
    return True


def _why(line: bytes, router: CdrRouter) -> tuple[str, str]:
    """(kind, reason) a record was refused for: the slow path, only for records that fail."""
    if len(line) > MAX_LINE:
        return "too long", f"line longer than {MAX_LINE} bytes"
    if not line.strip():
        return "empty line", "empty line"
    fields = line.split(b"|")
    if len(fields) != 5:
        return "field count", f"{len(fields)} fields, a record has 5"
    msisdn, start, duration, kind, charge = fields
    if len(msisdn) != 11 or not msisdn.isdigit():
        return "bad MSISDN", "MSISDN is not 11 digits"
    try:
        router.target(msisdn.decode())
    except CdrError as exc:
        return ("unknown number" if str(exc) == NO_SEGMENT else "no phase"), str(exc)
    if len(start) != 14 or not start.isdigit():
        return "bad start time", "start time is not YYYYMMDDHHMMSS"
    if not _date_ok(start[:8], set()) or start[8:10] > b"23" or start[10:12] > b"59" or start[12:] > b"59":
        return "bad start time", "start time is not a real date and time"
    if not duration.isdigit() or len(duration) > 9:
        return "bad duration", "duration is not a whole number of seconds"
    if kind not in _TYPES:
        return "bad call type", f"unknown call type {kind[:8].decode('ascii', 'replace')!r}"
    if not charge.isdigit() or len(charge) > 15:
        return "bad charge", "charge is not a whole number of fen"
    return "not a record", "not a record"   # not reached: the fast path took it


def split(path: Path, router: CdrRouter, writer: Callable[[str], Callable[[bytes], None]],
          reject: Callable[[int, str, bytes], None], keep_alive: Callable[[], None] | None = None) -> SplitResult:
    """Read ``path`` once, streaming, and hand each target's records to ``writer(target)`` (a
    function taking LF-ended lines in blocks) and each bad line to ``reject(line number, reason,
    line)``. Fast path: the override dict, then a 7-digit prefix -> target cache, one split and
    a few byte comparisons a record; a record failing any check goes the slow way for its reason."""
    result = SplitResult()
    table = router.table
    slots: dict[str, list] = {}            # target -> [lines of this block, count, sum, write]
    # msisdn -> target name (a slot once used) or CdrError; prefix -> slot, CdrError or None (spans ranges)
    overrides: dict[bytes, object] = {}
    for number, segment in table.overrides.items():
        try:
            overrides[number.encode()] = router.target_of(segment)
        except CdrError as exc:
            overrides[number.encode()] = exc
    cache: dict[bytes, object] = {}
    dates: set[bytes] = set()
    types = _TYPES
    digest = hashlib.md5()
    lineno = 0

    def slot_of(target: str) -> list:
        slot = slots.get(target)
        if slot is None:
            slot = slots[target] = [[], 0, 0, writer(target)]
        return slot

    def resolve(msisdn: bytes):
        """The slot of a number the fast path did not find, or the CdrError saying why none."""
        hit = overrides.get(msisdn)
        if hit is not None:
            if hit.__class__ is str:
                hit = overrides[msisdn] = slot_of(hit)
            return hit
        prefix = msisdn[:7]
        if prefix not in cache:
            uniform, segment = table.block(prefix.decode())
            if uniform:
                try:
                    cache[prefix] = slot_of(router.target_of(segment))
                except CdrError as exc:
                    cache[prefix] = exc
            else:
                cache[prefix] = None
        hit = cache[prefix]
        if hit is None:          # the prefix spans ranges: this number alone
            try:
                return slot_of(router.target(msisdn.decode()))
            except CdrError as exc:
                return exc
        return hit

    with open(path, "rb") as fh:
        for block in _blocks(fh, digest):
            for line in block:
                lineno += 1
                f = line.split(b"|")
                if len(f) == 5:
                    msisdn, start, duration, kind, charge = f
                    if len(msisdn) == 11 and msisdn.isdigit():
                        slot = overrides.get(msisdn) or cache.get(msisdn[:7])
                        if slot.__class__ is not list:
                            slot = resolve(msisdn)
                        if (slot.__class__ is list and len(start) == 14 and start.isdigit()
                                and (start[:8] in dates or _date_ok(start[:8], dates))
                                and start[8:10] < b"24" and start[10:12] < b"60" and start[12:] < b"60"
                                and duration.isdigit() and len(duration) < 10 and kind in types
                                and charge.isdigit() and len(charge) < 16):
                            slot[0].append(line)
                            slot[2] += int(charge)
                            continue
                kind_, reason = _why(line, router)
                reject(lineno, reason, line[:MAX_LINE])
                result.rejects += 1
                result.reasons[kind_] += 1
            for slot in slots.values():
                if slot[0]:
                    slot[3](b"\n".join(slot[0]) + b"\n")
                    slot[1] += len(slot[0])
                    slot[0].clear()
            if keep_alive is not None:
                keep_alive()
    result.records = lineno
    result.md5 = digest.hexdigest()
    result.targets = {t: (s[1], s[2]) for t, s in sorted(slots.items())}
    result.check()
    return result


# -- output files -----------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stem(file_name: str) -> str:
    return file_name[:-len(SUFFIX)] if file_name.endswith(SUFFIX) else file_name


class TempOutputs:
    """The output files of one input file while one run splits it: hidden temporary files in
    each target's folder (``.<name>.<md5 8>.<run>.body.tmp`` for the records, then
    ``.<name>.<md5 8>.<run>.tmp`` for the whole file and ``...chk.tmp`` for its .chk),
    invisible to downstream until published by a rename. The run id in the names keeps the
    files of two runs of one input apart."""

    def __init__(self, out_dir: Path, file_name: str, md5: str, run: str):
        if not _RUN.match(run):
            raise ValueError(f"run id {run!r} is not 12 hex digits")
        self.out_dir, self.file_name, self.tag, self.run = Path(out_dir), file_name, md5[:8], run
        self.bodies: dict[str, object] = {}
        self.rejects = None
        self.reject_count = 0
        # every temporary name of this input, of any run (and of the names before run ids)
        self._ours = re.compile(re.escape(f".{file_name}.{self.tag}.") + r"(?:([0-9a-f]{12})\.)?(?:body\.|chk\.)?tmp\Z")

    def _hidden(self, what: str) -> str:
        return f".{self.file_name}.{self.tag}.{self.run}.{what}tmp"

    def leftovers(self, mine: bool) -> list[Path]:
        """The temporary files of this input: this run's (``mine``), or every other run's."""
        if not self.out_dir.is_dir():
            return []
        found = []
        for path in self.out_dir.glob(f"*/.{self.file_name}.{self.tag}.*tmp"):
            match = self._ours.match(path.name)
            if match and (match.group(1) == self.run) == mine:
                found.append(path)
        return sorted(found)

    def _delete(self, paths: list[Path]) -> int:
        for path in paths:
            path.unlink(missing_ok=True)
        return len(paths)

    def clear(self) -> int:
        """Delete this run's temporary files (a split that failed); how many."""
        return self._delete(self.leftovers(mine=True))

    def clear_others(self) -> int:
        """Delete what other runs of this input left: only once this run holds its row, so
        none of those runs can publish any more; how many."""
        return self._delete(self.leftovers(mine=False))

    def writer(self, target: str):
        folder = self.out_dir / target
        folder.mkdir(parents=True, exist_ok=True)
        fh = self.bodies[target] = open(folder / self._hidden("body."), "wb", buffering=1 << 16)
        return fh.write

    def reject(self, lineno: int, reason: str, line: bytes) -> None:
        if self.rejects is None:
            folder = self.out_dir / REJECTED
            folder.mkdir(parents=True, exist_ok=True)
            self.rejects = open(folder / self._hidden("body."), "wb", buffering=1 << 16)
        self.rejects.write(b"%d|%s|%s\n" % (lineno, reason.encode("ascii", "replace"), line))
        self.reject_count += 1

    def close(self) -> None:
        for fh in [*self.bodies.values(), self.rejects]:
            if fh is not None and not fh.closed:
                fh.close()

    def _assemble(self, folder: Path, final_name: str, header: bytes, body_fh, trailer: bytes,
                  keep_alive: Callable[[], None]) -> list[list[str]]:
        """Header + body + trailer into the hidden whole file, and its .chk; both fsynced,
        ``keep_alive`` called at each block and after each fsync. Returns the renames that
        publish them, the data file before its .chk."""
        body_fh.flush()
        body_path = Path(body_fh.name)
        body_fh.close()
        whole, chk = folder / self._hidden(""), folder / self._hidden("chk.")
        digest = hashlib.md5(header)
        with open(whole, "wb") as out, open(body_path, "rb") as body:
            out.write(header)
            while chunk := body.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                keep_alive()
            digest.update(trailer)
            out.write(trailer)
            out.flush()
            os.fsync(out.fileno())
        keep_alive()
        with open(chk, "wb") as out:
            out.write(f"{digest.hexdigest()}  {final_name}\n".encode("ascii"))
            out.flush()
            os.fsync(out.fileno())
        body_path.unlink()
        rel = folder.relative_to(self.out_dir)
        return [[str(rel / whole.name), str(rel / final_name)],
                [str(rel / chk.name), str(rel / (final_name + CHK))]]

    def finish(self, result: SplitResult, keep_alive: Callable[[], None] | None = None) -> dict:
        """Every output complete and fsynced under its hidden name: the summary the database
        keeps for publishing (targets, rejects, and the renames in order). ``keep_alive``
        (renewing the lease; raising to stop) is called all along: copying and fsyncing every
        output takes a while for a big file."""
        keep_alive = keep_alive or (lambda: None)
        source = self.file_name.encode("ascii", "replace")
        renames, targets = [], {}
        for target, (count, total) in result.targets.items():
            folder = self.out_dir / target
            renames += self._assemble(folder, self.file_name,
                                      b"H|%s|%s|%d|%d\n" % (source, target.encode(), count, total),
                                      self.bodies[target], b"T|%d|%d\n" % (count, total), keep_alive)
            targets[target] = {"count": count, "sum": total, "file": str(Path(target) / self.file_name)}
            _pause_at("assembling")
        rejected = None
        if self.rejects is not None:
            name = _stem(self.file_name) + ".rej"
            renames += self._assemble(self.out_dir / REJECTED, name,
                                      b"H|%s|%s|%d\n" % (source, REJECTED.encode(), self.reject_count),
                                      self.rejects, b"T|%d\n" % self.reject_count, keep_alive)
            rejected = {"count": self.reject_count, "file": str(Path(REJECTED) / name),
                        "reasons": dict(result.reasons)}
        for folder in {self.out_dir / Path(r[0]).parent for r in renames}:
            _fsync_dir(folder)
        return {"targets": targets, "rejected": rejected, "renames": renames}


# -- the distribution of one file: splitting -> publishing -> done ------------------------------
@dataclass
class Outcome:
    """What happened to one input file."""

    file: str
    result: str                  # distributed | resumed | refused | waiting | dry-run
    md5: str = ""
    records: int = 0
    rejects: int = 0
    targets: dict = field(default_factory=dict)    # target -> {"count", "sum", "file"}
    rejected: dict | None = None
    reason: str = ""

    def line(self) -> str:
        if self.result in ("refused", "waiting"):
            return f"{self.file}: {self.result}: {self.reason}"
        placed = sum(t["count"] for t in self.targets.values())
        return (f"{self.file}: {self.result}: {self.records} records, {placed} to {len(self.targets)} "
                f"targets, {self.rejects} rejected")


COMPANIONS = (CHK, ".reason")   # the files that go with a moved file, named after it


def _unique(path: Path) -> Path:
    """``path``, or ``<name>.1``, ``<name>.2``...: the first name that neither a file nor any
    of its companions (a .chk, a .reason left after its file was taken away) holds yet."""
    def free(candidate: Path) -> bool:
        return not any(candidate.with_name(candidate.name + c).exists() for c in ("", *COMPANIONS))
    if free(path):
        return path
    n = 1
    while not free(path.with_name(f"{path.name}.{n}")):
        n += 1
    return path.with_name(f"{path.name}.{n}")


def move_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` and its .chk into ``folder`` (never over another file, nor beside another
    file's .chk or .reason); the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _unique(folder / path.name)
    os.replace(path, target)
    chk = path.with_name(path.name + CHK)
    if chk.exists():
        os.replace(chk, target.with_name(target.name + CHK))
    _fsync_dir(folder)
    return target


class Distributor:
    """Distributes CDR files through the splitting -> publishing -> done state machine, with
    the idempotency key (file name + MD5) in the database. One process at a time: the scheduled
    job and ``bssbus cdr`` hold the job's lease (``keep_alive`` renews it while splitting,
    assembling and publishing, and raises LeaseLost when another process has it). Each
    distribution is a run with an id of its own, held in the row: only the run holding the row
    moves it on, so a run that lost its lease and its row publishes nothing."""

    def __init__(self, store: CdrFileStore, router: Callable[[], CdrRouter], owner: str,
                 keep_alive: Callable[[], None] | None = None):
        self.store, self.router, self.owner = store, router, owner
        self.keep_alive = keep_alive or (lambda: None)
        self._renames = 0

    # -- one file
    def distribute(self, path: Path, out_dir: Path, md5: str | None = None,
                   archive: Path | None = None) -> Outcome:
        """Distribute ``path`` into ``out_dir`` (md5: what its .chk says; None: computed).
        Refused when its key, its name or its content was seen before; an interrupted
        distribution of the same key is taken over. ``archive``: where the input goes once done."""
        path, out_dir = Path(path), Path(out_dir).resolve()
        name = path.name
        md5 = md5 or md5_of(path)
        run = uuid.uuid4().hex[:12]
        row = None
        for seen in self.store.related(name, md5):
            if (seen["file_name"], seen["md5"]) != (name, md5):
                raise Refused(_conflict(name, md5, seen))
            if seen["state"] == DONE:
                raise Refused(f"{name} (MD5 {md5}) was already distributed on "
                              f"{_when(seen['finished_at'])}: {seen['records']} records")
            row = seen
        if row is not None and row["state"] == PUBLISHING:
            log.warning("%s: finishing the publishing a previous run left", name)
            return self._resume_publishing(row, run, archive, path)
        if row is not None:
            log.warning("%s: splitting again what run %s of %s left half done", name, row.get("run_id"), row["owner"])
            previous = Path(row["out_dir"])
            if not self.store.take_over(row, self.owner, run, source_path=str(path.resolve()), out_dir=str(out_dir)):
                raise NotReady(f"{name}: another run took its distribution over meanwhile; left for the next run")
            if previous != out_dir:    # the previous run's temporary files are where it wrote them
                TempOutputs(previous, name, md5, run).clear_others()
            row.update(owner=self.owner, run_id=run, source_path=str(path.resolve()), out_dir=str(out_dir))
            resumed = "resumed"
        else:
            row = self.store.claim(name, md5, str(path.resolve()), str(out_dir), self.owner, run)
            if row is None:
                raise NotReady(f"{name} is being distributed by another process")
            resumed = "distributed"
        outputs = TempOutputs(out_dir, name, md5, run)
        outputs.clear_others()     # this run holds the row: no other run of the file can publish
        _pause_at("splitting")
        lost = LeaseLost(f"{name}: another run took its distribution over (this run's lease ran out); "
                         "this run stops and publishes nothing")
        try:
            result = split(path, self.router(), outputs.writer, outputs.reject, self.keep_alive)
            if result.md5 != md5:
                raise NotReady(f"{name} changed while it was read (MD5 {result.md5}, expected {md5}); "
                               "left for the next run")
            summary = outputs.finish(result, self.keep_alive)
            _pause_at("assembled")
        except OSError:
            outputs.close()
            outputs.clear()
            if not self._holds(row, run):   # its temporary files were deleted by the run that took over
                raise lost from None
            raise
        except BaseException:
            outputs.close()
            outputs.clear()
            raise
        summary["archive"] = str(archive.resolve()) if archive is not None else None
        if not self.store.publishing(row["id"], self.owner, run, result.records, result.rejects, summary):
            outputs.clear()
            raise lost
        row.update(state=PUBLISHING, records=result.records, rejects=result.rejects)
        return self._publish(row, summary, resumed, archive, path, run)

    def _holds(self, row: dict, run: str) -> bool:
        try:
            return self.store.holds(row["id"], self.owner, run)
        except Exception:                       # the database is away: say what went wrong first
            return True

    def _resume_publishing(self, row: dict, run: str, archive: Path | None, path: Path | None) -> Outcome:
        """Take over a publishing another run left, and finish it."""
        if not self.store.take_over(row, self.owner, run):
            raise NotReady(f"{row['file_name']}: another run is finishing its publishing")
        row.update(owner=self.owner, run_id=run)
        return self._publish(row, json.loads(row["summary"]), "resumed", archive, path, run)

    def _publish(self, row: dict, summary: dict, result: str, archive: Path | None, path: Path | None,
                 run: str) -> Outcome:
        """Rename every hidden file still there to its final name (the data file before its .chk);
        one already gone was renamed by an earlier run of the row (the runs that hold a row in
        publishing only ever rename its files). Then archive the input, then done."""
        out_dir = Path(row["out_dir"])
        pause = int(os.environ.get(PAUSE_ENV) or 0)
        folders = set()
        for temp, final in summary["renames"]:
            temp_path = out_dir / temp
            if temp_path.exists():
                try:
                    os.replace(temp_path, out_dir / final)
                except FileNotFoundError:   # renamed meanwhile by a run that took the publishing over
                    continue
                folders.add(temp_path.parent)
                self._renames += 1
                if pause and self._renames >= pause:
                    print(f"paused after {self._renames} renames", flush=True)
                    time.sleep(3600)
                self.keep_alive()
        for folder in folders:
            _fsync_dir(folder)
        archive = Path(summary["archive"]) if summary.get("archive") else archive
        source = Path(row["source_path"])
        if archive is not None and source.exists():
            move_aside(source, archive)
        if not self.store.done(row["id"], self.owner, run):
            raise LeaseLost(f"{row['file_name']}: another run took its publishing over; this run stops")
        return Outcome(file=row["file_name"], result=result, md5=row["md5"], records=row["records"] or 0,
                       rejects=row["rejects"] or 0, targets=summary["targets"], rejected=summary["rejected"])

    def finish_interrupted(self) -> list[Outcome]:
        """Finish every distribution a crash left in ``publishing`` (its input is not needed:
        every output is complete). Those left in ``splitting`` are redone when their file is seen."""
        out = []
        for row in self.store.unfinished():
            if row["state"] == PUBLISHING:
                log.warning("%s: finishing the publishing a previous run left", row["file_name"])
                try:
                    out.append(self._resume_publishing(row, uuid.uuid4().hex[:12], None, None))
                except NotReady as exc:
                    out.append(Outcome(file=row["file_name"], result="waiting", reason=str(exc)))
        return out

    def dry_run(self, path: Path) -> Outcome:
        """Split ``path`` and count, writing nothing and remembering nothing."""
        rejects = Counter()
        result = split(Path(path), self.router(), lambda target: (lambda data: None),
                       lambda lineno, reason, line: rejects.update((reason,)))
        return Outcome(file=Path(path).name, result="dry-run", md5=result.md5, records=result.records,
                       rejects=result.rejects,
                       targets={t: {"count": c, "sum": s, "file": ""} for t, (c, s) in result.targets.items()},
                       rejected={"count": result.rejects, "file": "", "reasons": dict(result.reasons)}
                       if result.rejects else None)

    # -- the inbound folder
    def scan(self, inbound: Path, outbound: Path, grace_seconds: float) -> list[Outcome]:
        """One pass of the inbound folder: finish interrupted publishing, then every ``*.cdr``
        whose ``.chk`` is there, in name order. A .chk that does not match leaves the file for
        the next pass until ``grace_seconds`` after the pair last changed, then refuses it."""
        outcomes = self.finish_interrupted()
        inbound = Path(inbound)
        if not inbound.is_dir():
            return outcomes
        for path in sorted(inbound.glob("*" + SUFFIX)):
            if not path.is_file() or path.name.startswith("."):
                continue
            chk = path.with_name(path.name + CHK)
            if not chk.is_file():
                continue     # still being written: its .chk comes last
            try:
                try:
                    expected = read_chk(chk)
                    actual = md5_of(path)
                    if actual != expected:
                        raise Refused(f"checksum mismatch: {chk.name} says {expected}, the file's MD5 is {actual}")
                except Refused as exc:
                    age = time.time() - max(path.stat().st_mtime, chk.stat().st_mtime)
                    if age < grace_seconds:
                        outcomes.append(Outcome(file=path.name, result="waiting",
                                                reason=f"{exc}; retried until {grace_seconds:g} s after it last changed"))
                        continue
                    raise
                outcomes.append(self.distribute(path, outbound, actual, archive=inbound / "archive"))
            except Refused as exc:
                outcomes.append(self.refuse(path, inbound / "refused", str(exc)))
            except NotReady as exc:
                outcomes.append(Outcome(file=path.name, result="waiting", reason=str(exc)))
            except FileNotFoundError as exc:      # taken away meanwhile
                outcomes.append(Outcome(file=path.name, result="waiting", reason=f"gone: {exc.filename}"))
        return outcomes

    @staticmethod
    def refuse(path: Path, folder: Path, reason: str) -> Outcome:
        moved = move_aside(path, folder)
        note = moved.with_name(moved.name + ".reason")
        note.write_text(f"{reason}\n", encoding="utf-8")
        log.warning("%s refused: %s", path.name, reason)
        return Outcome(file=path.name, result="refused", reason=reason)


def _conflict(name: str, md5: str, seen: dict) -> str:
    """Why ``name`` (MD5 ``md5``) is refused because of ``seen``, another file of the same
    name or the same records: what is true of it (distributed, or interrupted and at which state)."""
    if seen["state"] == DONE:
        if seen["md5"] == md5:
            return (f"{name} holds the same records as {seen['file_name']} (MD5 {md5}), distributed on "
                    f"{_when(seen['finished_at'])}")
        return (f"another file named {name} (MD5 {seen['md5']}) was distributed on {_when(seen['finished_at'])}; "
                "send a corrected file under a new name")
    other = f"{seen['file_name']} (MD5 {seen['md5']})"
    where = (f"its distribution (run {seen.get('run_id') or '?'} of {seen['owner']}, started "
             f"{_when(seen['started_at'])}) was interrupted at state {seen['state']}")
    resumes = ("its publishing is finished by the next pass" if seen["state"] == PUBLISHING else
               f"it resumes when that file is back (MD5 {seen['md5']})")
    if seen["md5"] == md5:
        return f"{name} holds the same records as {other}: {where}; {resumes}"
    return (f"another file named {name}, {other}, is not distributed yet: {where}; {resumes}; "
            "send a corrected file under a new name")


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if hasattr(value, "strftime") else str(value)


# -- the job: one process at a time, under a lease ----------------------------------------------
LEASE = "cdr"


class CdrJob:
    """CDR distribution as the scheduler (every ``files.cdr.every_seconds``) and ``bssbus cdr``
    run it: under the ``cdr`` lease in the database, so one process of one node distributes at
    a time, renewed while a file is split and given back at the end of each pass. Routes by the
    segment table (reloaded when its files change) and the live cut-over table, falling back to
    the configured phases for a province the database does not hold."""

    def __init__(self, settings: Settings, engine, owner: str, segments: SegmentDirectory | None = None,
                 phases: Callable[[], dict[str, int]] | None = None):
        from dao.phases import PhaseStore
        self.settings, self.config, self.owner = settings, settings.cdr_files, owner
        self.leases, self.store = LeaseStore(engine), CdrFileStore(engine)
        self.segments = segments or SegmentDirectory(settings.segments_file, settings.overrides_file)
        store = PhaseStore(engine)
        self.phases = phases or (lambda: {**settings.phases, **store.load()})
        self._renewed = 0.0

    def router(self) -> CdrRouter:
        try:
            self.segments.reload()
        except (SegmentError, OSError) as exc:
            log.warning("segment table not reloaded, the last good one stays in use: %s", exc)
        return CdrRouter.from_settings(self.settings, self.segments.table, self.phases())

    def _ttl(self) -> timedelta:
        return timedelta(seconds=self.config.lease_seconds)

    def acquire(self) -> bool:
        if self.leases.acquire(LEASE, self.owner, self._ttl()):
            self._renewed = time.monotonic()
            return True
        return False

    def keep_alive(self) -> None:
        """Renew the lease when a third of it has passed; LeaseLost if another process has it."""
        if not self._renewed or time.monotonic() - self._renewed < self.config.lease_seconds / 3:
            return
        if not self.leases.acquire(LEASE, self.owner, self._ttl()):
            raise LeaseLost("another process took the CDR job's lease over; this pass stops")
        self._renewed = time.monotonic()

    def release(self, result: str | None = None) -> None:
        if result is not None:
            self.leases.ran(LEASE, result)
        self.leases.release(LEASE, self.owner)
        self._renewed = 0.0

    def distributor(self) -> Distributor:
        return Distributor(self.store, self.router, self.owner, self.keep_alive)

    def scan(self) -> list[Outcome] | None:
        """One pass of the inbound folder, if this process gets the lease (else None)."""
        if not self.acquire():
            return None
        summary = "nothing to do"
        try:
            outcomes = self.distributor().scan(self.config.inbound, self.config.outbound,
                                               self.config.mismatch_grace_seconds)
            for outcome in outcomes:
                (log.warning if outcome.result in ("refused", "waiting") else log.info)("cdr: %s", outcome.line())
            if outcomes:
                summary = "; ".join(o.line() for o in outcomes)
            return outcomes
        except LeaseLost as exc:
            summary = str(exc)
            raise
        finally:
            self.release(summary)
