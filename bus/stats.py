"""Statistics from the journal: daily figures per province (`bssbus stats`, and the console).

:func:`daily_stats` returns, for each local day (``stats.timezone``, +08:00 by default) and
province that had any of them: orders, work orders completed, payments, reversals and top-ups
(each a count and a sum in fen) and the faults of the calls to each peer. What each figure
counts is in :data:`dao.stats.FIGURES` and in the README ("Statistics"); every figure is one SQL
aggregate over the journal's keys (dao/stats.py), never the raw bytes.

A hop journalled before migration 0012 has no ``amount``: it is counted but adds nothing to its
sum (``StatsReport.unpriced`` says how many such hops the range holds), and a work-order report
without ``work_state`` is not counted as completed.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from sqlalchemy.engine import Engine

from dao.stats import FIGURES, StatsQueries

MONEY = ("payments", "reversals", "topups")
COUNTS = ("orders", "work_orders_completed")
#: the CSV's columns, in order (``*_fen`` integers, ``*_yuan`` the same with two decimals)
CSV_COLUMNS = ("day", "province", "orders", "work_orders_completed",
               "payments", "payments_fen", "payments_yuan", "reversals", "reversals_fen", "reversals_yuan",
               "topups", "topups_fen", "topups_yuan", "faults", "faults_by_peer")


class StatsError(ValueError):
    """A bad range or option: a sentence saying what to give instead."""


@dataclass
class DayProvince:
    """The figures of one local day and province."""

    day: str
    province: str | None
    orders: int = 0
    work_orders_completed: int = 0
    payments: int = 0
    payments_fen: int = 0
    reversals: int = 0
    reversals_fen: int = 0
    topups: int = 0
    topups_fen: int = 0
    faults_by_peer: dict[str, int] = field(default_factory=dict)

    @property
    def faults(self) -> int:
        return sum(self.faults_by_peer.values())

    def as_dict(self) -> dict:
        out = {"day": self.day, "province": self.province}
        out.update({name: getattr(self, name) for name in COUNTS})
        for name in MONEY:
            out.update({name: getattr(self, name), f"{name}_fen": getattr(self, f"{name}_fen"),
                        f"{name}_yuan": yuan(getattr(self, f"{name}_fen"))})
        out.update(faults=self.faults, faults_by_peer=dict(sorted(self.faults_by_peer.items())))
        return out

    def csv_row(self) -> list:
        data = self.as_dict()
        data["province"] = self.province or ""
        data["faults_by_peer"] = ";".join(f"{peer}={n}" for peer, n in data["faults_by_peer"].items())
        return [data[c] for c in CSV_COLUMNS]


@dataclass
class StatsReport:
    """The figures of [since, until] (local dates, both included) in ``tz``."""

    since: date
    until: date
    tz: timezone
    rows: list[DayProvince]
    province: str | None = None
    unpriced: int = 0   # money hops in the range without an amount (journalled before migration 0012)

    @property
    def timezone_name(self) -> str:
        return self.tz.tzname(None) or "UTC"

    def totals(self) -> DayProvince:
        total = DayProvince(day="total", province=None)
        for row in self.rows:
            for name in COUNTS + MONEY + tuple(f"{m}_fen" for m in MONEY):
                setattr(total, name, getattr(total, name) + getattr(row, name))
            for peer, n in row.faults_by_peer.items():
                total.faults_by_peer[peer] = total.faults_by_peer.get(peer, 0) + n
        return total

    def as_dict(self) -> dict:
        """What ``--json`` prints and the console shows."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "timezone": self.timezone_name,
                "province": self.province, "rows": [r.as_dict() for r in self.rows],
                "totals": {k: v for k, v in self.totals().as_dict().items() if k not in ("day", "province")},
                "unpriced": self.unpriced,
                "figures": {f.name: f.description for f in FIGURES} | {
                    "faults": "failed calls and delivery attempts to each peer (outbound hops fault or error)"}}

    def write_csv(self, stream) -> None:
        """A header row, then one row a day and province (fen as integers, yuan with two decimals)."""
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows:
            writer.writerow(row.csv_row())

    def csv_text(self) -> str:
        out = io.StringIO()
        self.write_csv(out)
        return out.getvalue()

    def table(self) -> list[str]:
        """A readable table: a line a day and province, a total, and the faults by peer."""
        head = (("day", 10), ("prov", 4), ("orders", 6), ("wo done", 7), ("payments", 8), ("yuan", 14),
                ("reversals", 9), ("yuan", 12), ("top-ups", 7), ("yuan", 12), ("faults", 6))

        def line(values):
            return "  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w)
                             for i, ((_, w), v) in enumerate(zip(head, values))).rstrip()

        def cells(r: DayProvince, day: str, province: str):
            return (day, province, r.orders, r.work_orders_completed, r.payments, yuan(r.payments_fen),
                    r.reversals, yuan(r.reversals_fen), r.topups, yuan(r.topups_fen), r.faults)

        scope = f", province {self.province}" if self.province else ""
        lines = [f"Statistics {self.since} .. {self.until} (days in {self.timezone_name}{scope}), from the journal"]
        if not self.rows:
            return lines + ["nothing in this range"]
        lines.append(line(name for name, _ in head))
        lines += [line(cells(r, r.day, r.province or "-")) for r in self.rows]
        total = self.totals()
        lines.append(line(cells(total, "total", "")))
        faulty = [r for r in self.rows if r.faults_by_peer]
        if faulty:
            lines += ["", "faults by peer (failed calls and delivery attempts):"]
            lines += [f"  {r.day}  {r.province or '-':<4}  " + ", ".join(f"{peer} {n}" for peer, n in
                                                                    sorted(r.faults_by_peer.items()))
                      for r in faulty]
        if self.unpriced:
            lines += ["", f"note: {self.unpriced} payment, reversal or top-up hop(s) in this range were journalled "
                          "before the journal kept amounts (migration 0012): counted, not in the sums"]
        return lines


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals, exactly: 12345 -> '123.45'."""
    return str(Decimal(int(fen)).scaleb(-2))


def local_today(tz: timezone, now: datetime | None = None) -> date:
    return (now or datetime.now(timezone.utc)).astimezone(tz).date()


_DAYS_BACK = re.compile(r"(\d{1,5})d")


def parse_day(text: str | None, flag: str, tz: timezone, default: date | None = None) -> date | None:
    """A --since/--until day: ``2026-11-27`` or ``20261127``, ``today``, ``yesterday``, or days
    back from today (``7d``), today being the stats time zone's."""
    if text is None or not str(text).strip():
        return default
    text = str(text).strip().lower()
    today = local_today(tz)
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    match = _DAYS_BACK.fullmatch(text)
    if match:
        return today - timedelta(days=int(match.group(1)))
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise StatsError(f"{flag} {text!r}: give a date (2026-11-27 or 20261127), today, yesterday "
                     "or days back (7d)")


def day_bounds(since: date, until: date, tz: timezone) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the local days since..until (both included)."""
    try:
        start = datetime.combine(since, time(0), tz).astimezone(timezone.utc)
        end = datetime.combine(until + timedelta(days=1), time(0), tz).astimezone(timezone.utc)
    except OverflowError:
        raise StatsError(f"the range {since} .. {until} reaches past the calendar's first or last day") from None
    return start, end


def daily_stats(engine: Engine, since: date, until: date, tz: timezone = timezone(timedelta(hours=8)),
                province: str | None = None) -> StatsReport:
    """The figures of each local day from ``since`` to ``until`` (both included) and province
    (only ``province`` if given), from the journal on ``engine``."""
    if since > until:
        raise StatsError(f"the range starts ({since}) after it ends ({until})")
    if province is not None and not re.fullmatch(r"\d{2}", province):
        raise StatsError(f"province {province!r}: give a two-digit province code such as 51")
    offset = tz.utcoffset(None)
    minutes = int(offset.total_seconds() // 60)
    if offset != timedelta(minutes=minutes):
        raise StatsError("the stats time zone must be a whole number of minutes from UTC")
    start, end = day_bounds(since, until, tz)
    found = StatsQueries(engine).collect(start, end, minutes, province)
    rows: dict[tuple[str, str | None], DayProvince] = {}

    def at(r) -> DayProvince:
        key = (r["day"], r["province"])
        if key not in rows:
            rows[key] = DayProvince(day=r["day"], province=r["province"])
        return rows[key]

    unpriced = 0
    for name in COUNTS:
        for r in found[name]:
            setattr(at(r), name, r["n"])
    for name in MONEY:
        for r in found[name]:
            row = at(r)
            setattr(row, name, r["n"])
            setattr(row, f"{name}_fen", r["fen"])
            unpriced += r["n"] - r["priced"]
    for r in found["faults"]:
        row = at(r)
        peer = r["target"] or "(none)"
        row.faults_by_peer[peer] = row.faults_by_peer.get(peer, 0) + r["n"]
    ordered = sorted(rows.values(), key=lambda r: (r.day, r.province or ""))
    return StatsReport(since=since, until=until, tz=tz, rows=ordered, province=province, unpriced=unpriced)
