"""Realistic CDR files for tests and benchmarks (`bssbus sandbox make-cdr-file`).

Numbers come from the segment table's own ranges, one range drawn at random a record (so
provinces weigh as their number ranges do), and the first 31 records cover every province.
Planted among them: ``unknown`` numbers of no segment (China Mobile's 139 prefix, checked
against the table) and ``malformed`` lines of every kind the distribution refuses. The same
seed gives the same file, byte for byte. The file is written under a hidden name and renamed,
then its ``.chk`` is written: it can be generated straight into an inbound folder.
"""
from __future__ import annotations

import hashlib
import os
import random
from datetime import datetime, timedelta
from pathlib import Path

from bus.cdr import CALL_TYPES
from bus.segments import SegmentTable

#: What a malformed line looks like, in turn: (name, function of a good line's fields -> line).
MALFORMED = (
    ("bad start time", lambda f: [f[0], f[1][:4] + "1345" + f[1][8:], *f[2:]]),
    ("decimal charge", lambda f: [*f[:4], f"{int(f[4]) // 100}.{int(f[4]) % 100:02d}"]),
    ("missing field", lambda f: f[:4]),
    ("unknown call type", lambda f: [*f[:3], "99", f[4]]),
    ("short MSISDN", lambda f: [f[0][:10], *f[1:]]),
    ("negative duration", lambda f: [f[0], f[1], "-" + f[2], *f[3:]]),
    ("extra field", lambda f: [*f, "X"]),
    ("start time not digits", lambda f: [f[0], "2024-03-15 10:", *f[2:]]),
)
TYPE_WEIGHTS = {"01": 40, "02": 35, "03": 3, "11": 15, "21": 7}
assert set(TYPE_WEIGHTS) == set(CALL_TYPES)


def make_cdr_file(out_dir: Path, records: int, *, table: SegmentTable, unknown: int = 0, malformed: int = 0,
                  seed: int = 1, name: str | None = None, crlf: bool = False,
                  start: datetime = datetime(2024, 3, 15)) -> dict:
    """Write ``<out_dir>/<name>`` (``records`` lines, ``unknown`` and ``malformed`` of them
    planted) and its ``.chk``; returns the file, its MD5 and what was planted."""
    if records < 0 or unknown < 0 or malformed < 0:
        raise ValueError("records, unknown and malformed cannot be negative")
    if unknown + malformed > records:
        raise ValueError(f"{unknown} unknown + {malformed} malformed lines do not fit in {records} records")
    name = name or f"HQCDR{start:%Y%m%d}{seed:04d}.cdr"
    if not name.endswith(".cdr") or "/" in name or name.startswith("."):
        raise ValueError(f"{name!r} is not a CDR file name (<name>.cdr)")
    rng = random.Random(seed)
    by_province: dict[str, list] = {}
    for code in sorted(table.provinces()):
        by_province[code] = table.ranges_of(code)
    ranges = [r for code in sorted(by_province) for r in by_province[code]]
    if not ranges:
        raise ValueError("the segment table holds no ranges")
    firsts = [rng.choice(by_province[code]) for code in sorted(by_province)]
    planted = dict.fromkeys(rng.sample(range(records), unknown + malformed), "")
    kinds = ["unknown"] * unknown + [MALFORMED[i % len(MALFORMED)][0] for i in range(malformed)]
    rng.shuffle(kinds)
    planted = dict(zip(planted, kinds))
    mutate = dict(MALFORMED)
    types, weights = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
    type_cycle = rng.choices(types, weights, k=1000)
    base = start.timestamp()
    eol = "\r\n" if crlf else "\n"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, temp = out_dir / name, out_dir / f".{name}.tmp"
    digest = hashlib.md5()
    rnd, n_ranges = rng.random, len(ranges)
    counts = {"records": records, "unknown": 0, "malformed": 0}
    buffer: list[str] = []
    with open(temp, "wb") as fh:
        for i in range(records):
            begin, end = firsts[i] if i < len(firsts) else ranges[int(rnd() * n_ranges)]
            number = begin + int(rnd() * (end - begin + 1))
            kind = type_cycle[i % 1000]
            duration = int(rnd() * 600) if kind in ("01", "02", "03") else (0 if kind == "11" else int(rnd() * 3600))
            charge = (duration // 60 + 1) * 10 if kind in ("01", "03") else (10 if kind == "11" else
                                                                           (int(rnd() * 500) if kind == "21" else 0))
            at = datetime.fromtimestamp(base + int(rnd() * 86400)).strftime("%Y%m%d%H%M%S")
            fields = [str(number), at, str(duration), kind, str(charge)]
            what = planted.get(i)
            if what == "unknown":
                while True:
                    candidate = f"139{int(rnd() * 100_000_000):08d}"
                    if table.lookup(candidate) is None:
                        break
                fields[0] = candidate
                counts["unknown"] += 1
            elif what:
                fields = mutate[what](fields)
                counts["malformed"] += 1
            buffer.append("|".join(fields) + eol)
            if len(buffer) >= 10_000:
                data = "".join(buffer).encode("ascii")
                fh.write(data)
                digest.update(data)
                buffer.clear()
        data = "".join(buffer).encode("ascii")
        fh.write(data)
        digest.update(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, final)
    md5 = digest.hexdigest()
    chk_temp = out_dir / f".{name}.chk.tmp"
    chk_temp.write_text(f"{md5}  {name}\n", encoding="ascii")
    os.replace(chk_temp, out_dir / f"{name}.chk")
    return {"file": str(final), "md5": md5, **counts}
