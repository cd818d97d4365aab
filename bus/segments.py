"""Number segments (号段): phone number -> home province, by binary search over ranges.

The table is ``begin_msisdn,end_msisdn,province_code,province,city,area_code`` (config/segments.csv),
plus an override list ``msisdn,province_code,reason`` for numbers that moved; an override wins.
Ranges are kept in two ``array('q')`` columns so 300,000 ranges cost a few MB and a lookup is one
``bisect`` (O(log n)). :class:`SegmentTable` is immutable; :class:`SegmentDirectory` swaps in a new
table when a file changes, so a reload never needs a restart and never blocks a lookup.
"""
from __future__ import annotations

import csv
import logging
import os
import threading
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bssbus.segments")


class SegmentError(ValueError):
    """A segment file that cannot be loaded (overlap, bad number, bad line)."""


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
        with open(ranges, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or header[:3] != ["begin_msisdn", "end_msisdn", "province_code"]:
                raise SegmentError(f"{ranges}: the first line must be "
                                   "begin_msisdn,end_msisdn,province_code[,province,city,area_code]")
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    begin, end = int(row[0]), int(row[1])
                except (ValueError, IndexError):
                    raise SegmentError(f"{ranges}:{lineno}: begin and end must be numbers") from None
                if begin > end or len(row[0]) != 11 or len(row[1]) != 11:
                    raise SegmentError(f"{ranges}:{lineno}: {row[0]}-{row[1]} is not a range of 11-digit numbers")
                rows.append((begin, end, tuple(row[2:6]) + ("",) * (6 - len(row)), lineno))
        rows.sort()
        for (begin, end, info, lineno), prev in zip(rows, [None] + rows[:-1]):
            if prev is not None and begin <= prev[1]:
                raise SegmentError(f"{ranges}:{lineno}: range {begin}-{end} overlaps "
                                   f"{prev[0]}-{prev[1]} (line {prev[3]})")
            seg = interned.get(info)
            if seg is None:
                seg = interned[info] = Segment(*info[:4])
            begins.append(begin)
            ends.append(end)
            segments.append(seg)
        moved = {}
        if overrides is not None and overrides.exists():
            with open(overrides, encoding="utf-8", newline="") as fh:
                for lineno, row in enumerate(csv.DictReader(fh), start=2):
                    number = (row.get("msisdn") or "").strip()
                    code = (row.get("province_code") or "").strip()
                    if len(number) != 11 or not number.isdigit() or not code:
                        raise SegmentError(f"{overrides}:{lineno}: need an 11-digit msisdn and a province_code")
                    moved[number] = Segment(code, override=True)
        return cls(begins, ends, segments, moved)


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
