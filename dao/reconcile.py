"""Reconciliation batches and their discrepancies (bus/reconcile.py)."""
from __future__ import annotations

import itertools
from typing import Iterable

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dao.journal import now
from dao.models import ReconBatch, ReconItem

B = ReconBatch.__table__
I = ReconItem.__table__

COUNTS = ("balanced", "bank_only", "billing_only", "mismatch", "unlisted")


class AlreadyClaimed(Exception):
    """Another batch holds this bank's day or this file's checksum."""


class ReconStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- batches ------------------------------------------------------------------------
    def find(self, *, md5: str | None = None, bank_code: str | None = None, acct_date: str | None = None) -> dict | None:
        """The accepted batch of this checksum, or of this bank's day."""
        where = B.c.md5_key == md5 if md5 else B.c.day_key == f"{bank_code}:{acct_date}"
        with self.engine.connect() as conn:
            row = conn.execute(select(B).where(where)).mappings().first()
        return dict(row) if row else None

    def get(self, batch_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(B).where(B.c.id == batch_id)).mappings().first()
        return dict(row) if row else None

    def claim(self, file_name: str, bank_code: str, acct_date: str, md5: str, lines: int, amount: int) -> int:
        """A new batch in state ``comparing``; AlreadyClaimed when the day or the file is taken."""
        try:
            with self.engine.begin() as conn:
                return conn.execute(insert(B).values(
                    file_name=file_name[:200], bank_code=bank_code, acct_date=acct_date, md5=md5,
                    day_key=f"{bank_code}:{acct_date}", md5_key=md5, state="comparing", lines=lines, amount=amount,
                    started_at=now()).returning(B.c.id)).scalar_one()
        except IntegrityError:
            raise AlreadyClaimed(file_name) from None

    def reject(self, file_name: str, reason: str, bank_code: str | None = None, acct_date: str | None = None,
               md5: str | None = None) -> int:
        at = now()
        with self.engine.begin() as conn:
            return conn.execute(insert(B).values(
                file_name=file_name[:200], bank_code=bank_code, acct_date=acct_date, md5=md5, state="rejected",
                reason=reason[:1000], started_at=at, finished_at=at).returning(B.c.id)).scalar_one()

    def compared(self, batch_id: int, counts: dict[str, tuple[int, int]], items: Iterable[dict]) -> None:
        """The comparison's discrepancies (streamed, 1,000 at a time), its counts (complete once
        ``items`` is), and state ``posting``, in one transaction: a comparison cut short leaves
        nothing behind, and is done again."""
        columns = [c.name for c in I.columns if c.name != "id"]
        with self.engine.begin() as conn:
            conn.execute(delete(I).where(I.c.batch_id == batch_id))
            items = iter(items)
            while chunk := list(itertools.islice(items, 1000)):
                conn.execute(insert(I), [{c: item.get(c) for c in columns} | {"batch_id": batch_id}
                                         for item in chunk])
            values = {f"{name}_{what}": counts.get(name, (0, 0))[i] for name in COUNTS
                      for i, what in enumerate(("count", "sum"))}
            conn.execute(update(B).where(B.c.id == batch_id).values(state="posting", **values))

    def finish(self, batch_id: int, result_file: str) -> dict:
        with self.engine.begin() as conn:
            tally = dict(conn.execute(select(I.c.state, func.count()).where(I.c.batch_id == batch_id)
                                      .group_by(I.c.state)).all())
            conn.execute(update(B).where(B.c.id == batch_id).values(
                state="done", result_file=result_file[:300], posted=tally.get("posted", 0),
                held=tally.get("held", 0) + tally.get("failed", 0), finished_at=now()))
        return self.get(batch_id)

    def abandon(self, batch_id: int, reason: str) -> dict:
        """Give up a batch that posted nothing (``comparing``): its day and file are free again."""
        with self.engine.begin() as conn:
            done = conn.execute(update(B).where(B.c.id == batch_id, B.c.state == "comparing").values(
                state="abandoned", day_key=None, md5_key=None, reason=reason[:1000], finished_at=now())).rowcount
        batch = self.get(batch_id)
        if not done:
            raise ValueError(f"no reconciliation batch {batch_id}" if batch is None else
                             f"batch {batch_id} is {batch['state']}: only a batch that posted nothing (comparing) "
                             "can be given up")
        return batch

    def note(self, batch_id: int, reason: str) -> None:
        """Why a batch is still open (a billing that did not answer): it is tried again."""
        with self.engine.begin() as conn:
            conn.execute(update(B).where(B.c.id == batch_id).values(reason=reason[:1000]))

    def batches(self, limit: int = 50, bank_code: str | None = None) -> list[dict]:
        query = select(B).order_by(B.c.id.desc()).limit(limit)
        if bank_code:
            query = query.where(B.c.bank_code == bank_code)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- items --------------------------------------------------------------------------
    def items(self, batch_id: int) -> list[dict]:
        query = select(I).where(I.c.batch_id == batch_id).order_by(I.c.id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def each_item(self, batch_id: int, page: int = 1000):
        """Every item of a batch in id order, read a page at a time."""
        after = 0
        while True:
            with self.engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(select(I).where(I.c.batch_id == batch_id, I.c.id > after)
                                                      .order_by(I.c.id).limit(page)).mappings()]
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1]["id"]

    def tally(self, batch_id: int) -> tuple[int, int]:
        """(items, sum of their amounts: the bank's, else the billing's) of a batch."""
        amount = func.coalesce(I.c.bank_amount, I.c.billing_amount, 0)
        with self.engine.connect() as conn:
            count, total = conn.execute(select(func.count(), func.coalesce(func.sum(amount), 0))
                                        .where(I.c.batch_id == batch_id)).one()
        return int(count), int(total)

    def pending(self, batch_id: int, payments: bool, after_id: int, limit: int) -> list[dict]:
        """The next ``limit`` pending corrections after item ``after_id``: the payments to post,
        or every other one."""
        first = (I.c.action == "post") & (I.c.txn_type == "0")
        query = (select(I).where(I.c.batch_id == batch_id, I.c.state == "pending", I.c.id > after_id,
                                 first if payments else ~first).order_by(I.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def settle(self, outcomes: list[tuple[int, str, str | None, str | None]]) -> None:
        """(item id, state, msg_id, detail) of items just handed to the bus."""
        with self.engine.begin() as conn:
            for item_id, state, msg_id, detail in outcomes:
                values = dict(state=state, msg_id=msg_id)
                if detail:
                    values["detail"] = detail[:300]
                conn.execute(update(I).where(I.c.id == item_id).values(**values))
