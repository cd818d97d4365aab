"""Number segments (号段): phone number -> home province, by binary search over ranges.

The table is ``begin_msisdn,end_msisdn,province_code,province,city,area_code`` (config/segments.csv),
plus an override list ``msisdn,province_code,reason`` for numbers that moved; an override wins.
Ranges are kept in two ``array('q')`` columns so 300,000 ranges cost a few MB and a lookup is one
``bisect`` (O(log n)). :class:`SegmentTable` is immutable; :class:`SegmentDirectory` swaps in a new
table when a file changes, so a reload never needs a restart and never blocks a lookup.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from config.settings import ConfigError

log = logging.getLogger("bssbus.segments")

#: The largest segment or override file read (config/segments.csv is 1.5 MB for 33,862 ranges;
#: 300,000 ranges take about 15 MB). A larger file is refused, not loaded into memory.
MAX_FILE_BYTES = 64 << 20


class SegmentError(ConfigError):
    """A segment file that cannot be loaded (overlap, bad number, bad line, too large, not
    UTF-8): a configuration error, which the command line reports in one line."""


@dataclass(frozen=True)
class Segment:
    """Where a number lives: province code, province and city names, area code."""

    province_code: str
    province: str = ""
    city: str = ""
    area_code: str = ""
    override: bool = False


class SegmentTable:
    """An immutable range table with an override dict."""

    def __init__(self, begins, ends, segments, overrides=None):
        self._begins = array("q", begins)
        self._ends = array("q", ends)
        self._segments = list(segments)
        self._overrides = dict(overrides or {})

    def __len__(self) -> int:
        return len(self._begins)

    @property
    def overrides(self) -> dict[str, Segment]:
        return dict(self._overrides)

    def lookup(self, msisdn: str) -> Segment | None:
        """The segment of an 11-digit number, or None when no range holds it."""
        hit = self._overrides.get(msisdn)
        if hit is not None:
            return hit
        if len(msisdn) != 11 or not msisdn.isdigit():
            return None
        number = int(msisdn)
        i = bisect_right(self._begins, number) - 1
        if i >= 0 and number <= self._ends[i]:
            return self._segments[i]
        return None

    def block(self, prefix: str) -> tuple[bool, Segment | None]:
        """Whether the 10,000 numbers of a 7-digit ``prefix`` all live in one place (a single range,
        or no range at all), and that segment (None: in no segment). Overrides are not looked at:
        a caller caching by prefix checks the override dict (:attr:`overrides`) first."""
        first = int(prefix) * 10_000
        last = first + 9_999
        i = bisect_right(self._begins, first) - 1
        if i >= 0 and first <= self._ends[i]:
            return last <= self._ends[i], self._segments[i]
        j = bisect_right(self._begins, last) - 1   # first lies in a gap: is last in the same gap?
        return j == i, None

    def ranges_of(self, province_code: str) -> list[tuple[int, int]]:
        """Every (begin, end) range of one province, in number order."""
        return [(b, e) for b, e, s in zip(self._begins, self._ends, self._segments)
                if s.province_code == province_code]

    def provinces(self) -> set[str]:
        return {s.province_code for s in self._segments}

    @classmethod
    def from_files(cls, ranges: Path, overrides: Path | None = None) -> "SegmentTable":
        begins, ends, segments = [], [], []
        interned: dict[tuple, Segment] = {}
        for begin, end, info, _lineno in read_ranges(ranges):
            seg = interned.get(info)
            if seg is None:
                seg = interned[info] = Segment(*info[:4])
            begins.append(begin)
            ends.append(end)
            segments.append(seg)
        moved = {number: Segment(code, override=True)
                 for _lineno, number, code in read_overrides(overrides)} if overrides is not None else {}
        return cls(begins, ends, segments, moved)


def _refuse(where: str, what: str) -> None:
    raise SegmentError(f"{where}: {what}")


def read_ranges(ranges: Path, report=_refuse) -> list[tuple[int, int, tuple, int]]:
    """The ranges of a segment file as (begin, end, (province_code, province, city, area_code),
    line number), in number order. Each bad line or overlap is handed to ``report(where, what)``
    (``where``: the file and line); by default the first one is a SegmentError. A reporter that
    returns lets the reading go on: the bad line (or the later of two overlapping ranges) is left out."""
    lines = _csv_rows(ranges, report)
    header = next(lines, (1, None))[1]
    if not header or header[:3] != ["begin_msisdn", "end_msisdn", "province_code"]:
        report(f"{ranges}:1", "the first line must be begin_msisdn,end_msisdn,province_code[,province,city,area_code]")
        return []
    rows = []
    for lineno, row in lines:
        if not row:
            continue
        try:
            begin, end = int(row[0]), int(row[1])
        except (ValueError, IndexError):
            report(f"{ranges}:{lineno}", "begin and end must be numbers")
            continue
        if begin > end or len(row[0]) != 11 or len(row[1]) != 11:
            report(f"{ranges}:{lineno}", f"{row[0][:20]}-{row[1][:20]} is not a range of 11-digit numbers")
            continue
        if len(row) < 3 or not row[2].strip():
            report(f"{ranges}:{lineno}", f"range {begin}-{end} names no province_code")
            continue
        rows.append((begin, end, tuple(row[2:6]) + ("",) * (6 - len(row)), lineno))
    rows.sort()
    kept = []
    for row in rows:
        if kept and row[0] <= kept[-1][1]:
            prev = kept[-1]
            report(f"{ranges}:{row[3]}", f"range {row[0]}-{row[1]} overlaps {prev[0]}-{prev[1]} (line {prev[3]})")
            continue
        kept.append(row)
    return kept


def read_overrides(overrides: Path, report=_refuse) -> list[tuple[int, str, str]]:
    """(line number, msisdn, province code) of each line of an override file (none if the file
    does not exist); bad lines are handed to ``report`` as in :func:`read_ranges`."""
    if not overrides.exists():
        return []
    out = []
    lines = _csv_rows(overrides, report)
    names = next(lines, (1, []))[1]
    for lineno, row in lines:
        if not row:
            continue
        fields = dict(zip(names, row))
        number = (fields.get("msisdn") or "").strip()
        code = (fields.get("province_code") or "").strip()
        if len(number) != 11 or not number.isdigit() or not code:
            report(f"{overrides}:{lineno}", "need an 11-digit msisdn and a province_code")
            continue
        out.append((lineno, number, code))
    return out


def _csv_rows(path: Path, report=_refuse):
    """(line number, fields) of each line of a UTF-8 CSV file of at most MAX_FILE_BYTES; a file
    that cannot be read is handed to ``report`` (by default a SegmentError naming the file and
    line), and then yields nothing more."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return report(str(path), f"cannot be read: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return report(str(path), f"larger than {MAX_FILE_BYTES} bytes; refused")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return report(f"{path}:{line}", f"not UTF-8 ({data[exc.start:exc.start + 1]!r} cannot be decoded)")
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:   # a NUL byte, a field over csv's size limit, a broken quote
            return report(f"{path}:{reader.line_num}", f"not a CSV line this table can read ({exc})")
        yield reader.line_num, row


class SegmentDirectory:
    """The live table: reloads itself when a file's modification time changes.

    The check costs one ``os.stat`` per file at most every ``check_every`` seconds; the new
    table is built aside and swapped in with one assignment, so lookups never wait.
    """

    def __init__(self, ranges: Path, overrides: Path | None = None, check_every: float = 5.0):
        self.ranges, self.overrides, self.check_every = Path(ranges), overrides, check_every
        self._lock = threading.Lock()
        self._stamp = self._mtimes()
        self._checked = time.monotonic()
        self.table = SegmentTable.from_files(self.ranges, self.overrides)

    def _mtimes(self):
        return tuple(os.stat(p).st_mtime_ns if p and os.path.exists(p) else 0
                     for p in (self.ranges, self.overrides))

    def reload(self) -> bool:
        """Reload now if a file changed; True when a new table was swapped in."""
        with self._lock:
            stamp = self._mtimes()
            self._checked = time.monotonic()
            if stamp == self._stamp:
                return False
            self.table = SegmentTable.from_files(self.ranges, self.overrides)
            self._stamp = stamp
            return True

    def lookup(self, msisdn: str) -> Segment | None:
        if time.monotonic() - self._checked > self.check_every and not self._lock.locked():
            try:
                self.reload()
            except (SegmentError, OSError) as exc:
                log.warning("segment table not reloaded, the last good one stays in use: %s", exc)
        return self.table.lookup(msisdn)
