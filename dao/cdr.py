"""The CDR file repository: each file's idempotency key (file name + MD5) and the state of
its distribution (bus/cdr.py). A conditional INSERT under a unique key makes one process
the distributor of a file; the state moves splitting -> publishing -> done, each step
conditional on the run that holds the row (``owner`` + ``run_id``), so a run whose row another
run took over cannot move it on."""
from __future__ import annotations

import json

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dao.journal import now
from dao.models import CdrFile

F = CdrFile.__table__

SPLITTING, PUBLISHING, DONE = "splitting", "publishing", "done"


class CdrFileStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def claim(self, file_name: str, md5: str, source_path: str, out_dir: str, owner: str, run: str) -> dict | None:
        """Insert the file in state ``splitting``, held by ``run`` of ``owner``; the new row,
        or None when its key is known."""
        row = dict(file_name=file_name, md5=md5, state=SPLITTING, source_path=source_path,
                   out_dir=out_dir, owner=owner, run_id=run, started_at=now())
        try:
            with self.engine.begin() as conn:
                row["id"] = conn.execute(insert(F).values(**row).returning(F.c.id)).scalar_one()
        except IntegrityError:
            return None
        return row

    def related(self, file_name: str, md5: str) -> list[dict]:
        """Every row with this file name or this MD5 (a file already seen, under its name or
        its content), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(F).where(or_(F.c.file_name == file_name, F.c.md5 == md5))
                                .order_by(F.c.id)).mappings()
            return [dict(r) for r in rows]

    def unfinished(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(F).where(F.c.state != DONE).order_by(F.c.id)).mappings()
            return [dict(r) for r in rows]

    @staticmethod
    def _held_by(row: dict):
        """The condition that the row is still as ``row`` saw it: same state, same run."""
        run = F.c.run_id.is_(None) if row.get("run_id") is None else F.c.run_id == row["run_id"]
        return (F.c.id == row["id"]) & (F.c.state == row["state"]) & run

    def take_over(self, row: dict, owner: str, run: str, **values) -> bool:
        """Make ``run`` of ``owner`` the holder of an interrupted distribution, in the state
        ``row`` saw it (``splitting`` restarts from scratch, so its results are reset); False
        if the row moved meanwhile (another run took it or finished it)."""
        if row["state"] == SPLITTING:
            values.update(records=None, rejects=None, summary=None, started_at=now())
        with self.engine.begin() as conn:
            return conn.execute(update(F).where(self._held_by(row))
                                .values(owner=owner, run_id=run, **values)).rowcount == 1

    def holds(self, row_id: int, owner: str, run: str) -> bool:
        """True while ``run`` of ``owner`` holds the row (no other run took it over)."""
        with self.engine.connect() as conn:
            return conn.execute(select(F.c.id).where(F.c.id == row_id, F.c.owner == owner, F.c.run_id == run)
                                ).first() is not None

    def publishing(self, row_id: int, owner: str, run: str, records: int, rejects: int, summary: dict) -> bool:
        """splitting -> publishing; False if ``run`` of ``owner`` no longer holds the row in
        ``splitting`` (another run took it over or moved it on)."""
        with self.engine.begin() as conn:
            return conn.execute(update(F).where(F.c.id == row_id, F.c.state == SPLITTING, F.c.owner == owner,
                                                F.c.run_id == run)
                                .values(state=PUBLISHING, records=records, rejects=rejects,
                                        summary=json.dumps(summary, sort_keys=True))).rowcount == 1

    def done(self, row_id: int, owner: str, run: str) -> bool:
        """publishing -> done; False if ``run`` of ``owner`` no longer holds the row."""
        with self.engine.begin() as conn:
            return conn.execute(update(F).where(F.c.id == row_id, F.c.state == PUBLISHING, F.c.owner == owner,
                                                F.c.run_id == run)
                                .values(state=DONE, finished_at=now())).rowcount == 1

    def all(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(F).order_by(F.c.id)).mappings()]
