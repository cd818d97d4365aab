"""Realistic bank reconciliation days for the sandbox: a bank's file and, in the simulated
billings, that bank's record of the same day, with planted discrepancies of every kind.

``make_bank_day`` writes ``<BANK>_<DATE>.txt`` (GBK, CRLF) and its ``.chk`` into a folder and
stores the billing side in the sandbox database (replacing that bank's day there), under the
billing that owns each number
(the province's Billing in phase 2, HQ Billing in phase 3). Numbers are the sandbox's seeded
users, so a correction the bus posts finds its account. ``bssbus sandbox make-bank-file``
is the command.

Discrepancy kinds (``--discrepancies kind=N,...``):

- ``bank_only``: a payment in the file that the billing lacks (the bus posts it: 补缴);
- ``billing_only``: a payment the billing has and the file lacks (the bus reverses it);
- ``amount``: both have it, with different amounts (held for a person);
- ``bank_reversal``: the bank reversed a payment the billing still has posted (the bus posts the reversal);
- ``billing_reversal``: the billing has a reversal the bank does not (held for a person).

``broken`` makes a file the bus must refuse whole: ``trailer-count``, ``trailer-sum``,
``header``, ``checksum``, ``duplicate-serial``, ``bad-line``.
"""
from __future__ import annotations

import hashlib
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from bus import bankfile
from sandbox import store

KINDS = ("bank_only", "billing_only", "amount", "bank_reversal", "billing_reversal")
BROKEN = ("trailer-count", "trailer-sum", "header", "checksum", "duplicate-serial", "bad-line")
REVERSAL_SHARE = 0.03   # of the ordinary lines: a payment and its same-day reversal


@dataclass
class BankDay:
    """What was made: the file, and how many transactions of each kind were planted."""

    path: Path
    lines: int
    amount: int
    planted: dict[str, list[str]] = field(default_factory=dict)   # kind -> bank serials
    billing_rows: int = 0


def parse_discrepancies(text: str | None) -> dict[str, int]:
    """``bank_only=3,amount=1`` -> {"bank_only": 3, "amount": 1}; ValueError on a bad one."""
    counts: dict[str, int] = {}
    for part in filter(None, (text or "").split(",")):
        kind, _, number = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown discrepancy kind {kind!r}; the kinds are {', '.join(KINDS)}")
        if not number.strip().isdigit():
            raise ValueError(f"{part!r}: give kind=COUNT, e.g. bank_only=3")
        counts[kind] = int(number)
    return counts


def spread(total: int) -> dict[str, int]:
    """``total`` discrepancies spread over every kind."""
    return {kind: total // len(KINDS) + (1 if i < total % len(KINDS) else 0) for i, kind in enumerate(KINDS)}


def billing_of(province: str, phases: dict[str, int]) -> str:
    return store.billing_peers(province)[0 if phases.get(province) == 2 else 1]


def listable(settings, phases: dict[str, int]):
    """province -> whether its billing (of its phase) can list payments: a legacy billing cannot,
    and its days are not reconciled by the bus."""
    province_billing = settings.section("peers").get("province_billing") or {}

    def check(province: str) -> bool:
        if phases.get(province) != 2:
            return True
        override = (province_billing.get("provinces") or {}).get(province) or {}
        return override.get("adapter", province_billing.get("adapter")) != "legacy_billing"
    return check


def users(engine: Engine, phases: dict[str, int], listable) -> list[tuple[str, str, str]]:
    """(msisdn, province, billing peer) of every seeded normal user whose billing can list payments."""
    a = store.accounts.c
    with engine.connect() as conn:
        rows = conn.execute(select(a.msisdn, a.province, a.peer).where(a.user_state == "00")
                            .order_by(a.msisdn, a.peer)).all()
    return [(msisdn, province, peer) for msisdn, province, peer in rows
            if province in phases and listable(province) and peer == billing_of(province, phases)]


def make_bank_day(engine: Engine, folder: Path, bank: str, day: str, lines: int, phases: dict[str, int],
                  discrepancies: dict[str, int] | None = None, seed: int = 1, broken: str | None = None,
                  listable=lambda province: True) -> BankDay:
    if broken is not None and broken not in BROKEN:
        raise ValueError(f"unknown breakage {broken!r}; one of {', '.join(BROKEN)}")
    planted_counts = dict(discrepancies or {})
    if sum(planted_counts.values()) > lines:
        raise ValueError("more discrepancies than lines")
    pool = users(engine, phases, listable)
    if not pool:
        raise ValueError("the sandbox has no users whose billing can list payments")
    rng = random.Random(f"{bank}-{day}-{seed}")
    plan = [kind for kind, n in planted_counts.items() for _ in range(n)]
    plan += [None] * (lines - len(plan))
    rng.shuffle(plan)
    serial_no = count = total = stored = 0
    billing: list[dict] = []
    planted: dict[str, list[str]] = {kind: [] for kind in planted_counts}
    p = store.payments.c
    path = Path(folder) / f"{bank}_{day}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = tempfile.TemporaryFile("w+", encoding=bankfile.ENCODING, newline="")

    def serial() -> str:
        nonlocal serial_no
        serial_no += 1
        return f"{bank}{day}{serial_no:010d}"

    def when() -> str:
        return f"{day}{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"

    def bank_line(s, t, msisdn, amount, kind="0", orig=""):
        nonlocal count, total
        body.write(f"D|{s}|{t}|{msisdn}|{amount}|{kind}|{orig}\n")
        count, total = count + 1, total + amount

    def bill(s, t, msisdn, province, peer, amount, kind="pay", orig=None, reversed_=0):
        nonlocal stored
        stored += 1
        billing.append(dict(peer=peer, bank_code=bank, bank_serial=s, kind=kind, orig_serial=orig, msisdn=msisdn,
                            amount=amount, acct_date=day, balance_after=0, reversed=reversed_, trade_time=t,
                            province=province))
        if len(billing) >= 10000:   # streamed into the sandbox: memory stays flat for any size
            conn.execute(insert(store.payments), billing)
            billing.clear()

    with body, engine.begin() as conn:   # a day made again replaces the billings' record of it
        conn.execute(delete(store.payments).where(p.bank_code == bank, p.acct_date == day))
        written = 0
        for i, kind in enumerate(plan + [None] * lines):
            if kind is None and written >= lines:
                if i >= len(plan):
                    break
                continue   # the planted ones still to come are placed all the same
            msisdn, province, peer = pool[rng.randrange(len(pool))]
            amount = rng.choice((1000, 2000, 3000, 5000, 10000, 20000)) + rng.randrange(0, 100) * 100
            s, t = serial(), when()
            if kind is None and written + 2 <= lines and rng.random() < REVERSAL_SHARE:
                r = serial()   # an ordinary payment reversed the same day: two lines, balanced
                bank_line(s, t, msisdn, amount)
                bank_line(r, t, msisdn, amount, "1", s)
                bill(s, t, msisdn, province, peer, amount, reversed_=1)
                bill(r, t, msisdn, province, peer, amount, "reverse", s)
                written += 2
                continue
            if kind is None:
                bank_line(s, t, msisdn, amount)
                bill(s, t, msisdn, province, peer, amount)
            elif kind == "bank_only":
                bank_line(s, t, msisdn, amount)
            elif kind == "billing_only":
                bill(s, t, msisdn, province, peer, amount)
                written -= 1   # not a line of the file
            elif kind == "amount":
                bank_line(s, t, msisdn, amount)
                bill(s, t, msisdn, province, peer, amount + 100)
            elif kind == "bank_reversal":
                if written + 2 > lines:
                    continue
                r = serial()
                bank_line(s, t, msisdn, amount)
                bank_line(r, t, msisdn, amount, "1", s)
                bill(s, t, msisdn, province, peer, amount)   # the billing never heard of the reversal
                written += 1
                s = r
            elif kind == "billing_reversal":
                r = serial()
                bank_line(s, t, msisdn, amount)   # the bank's payment stands; the billing reversed it
                bill(s, t, msisdn, province, peer, amount, reversed_=1)
                bill(r, t, msisdn, province, peer, amount, "reverse", s)
                s = r
            if kind is not None:
                planted[kind].append(s)
            written += 1
        if billing:
            conn.execute(insert(store.payments), billing)
        body.seek(0)
        bankfile.write_atomically(path, _compose(body, bank, day, count, total, broken))
    if broken == "checksum":
        bankfile.checksum_path(path).write_text(hashlib.md5(b"another file").hexdigest() + "\n", encoding="ascii")
    return BankDay(path=path, lines=count, amount=total, planted=planted, billing_rows=stored)


def _compose(body, bank: str, day: str, count: int, total: int, broken: str | None):
    """The file's lines: header, the body's D lines (broken as asked), trailer."""
    header, trailer = f"H|{bank}|{day}|{count}|{total}", f"T|{count}|{total}"
    if broken == "trailer-count":
        trailer = f"T|{count + 1}|{total}"
    elif broken == "trailer-sum":
        header, trailer = f"H|{bank}|{day}|{count}|{total + 1}", f"T|{count}|{total + 1}"
    elif broken == "header":
        header = f"H|{bank}|{day}|{count}"
    yield header
    first = None
    for n, line in enumerate(body):
        line = line.rstrip("\n")
        first = first or line.split("|")[1]
        if broken == "duplicate-serial" and n == count - 1 and n:
            fields = line.split("|")
            line = "|".join([fields[0], first, *fields[2:]])
        elif broken == "bad-line" and n == count // 2:
            fields = line.split("|")
            fields[4] = f"{int(fields[4]) / 100:.2f}"   # yuan with a point, where fen are due
            line = "|".join(fields)
        yield line
    yield trailer
