"""The CDR file repository: each file's idempotency key (file name + MD5) and the state of
its distribution (bus/cdr.py). A conditional INSERT under a unique key makes one process
the distributor of a file; the state moves splitting -> publishing -> done."""
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

    def claim(self, file_name: str, md5: str, source_path: str, out_dir: str, owner: str) -> dict | None:
        """Insert the file in state ``splitting``; the new row, or None when its key is known."""
        row = dict(file_name=file_name, md5=md5, state=SPLITTING, source_path=source_path,
                   out_dir=out_dir, owner=owner, started_at=now())
        try:
            with self.engine.begin() as conn:
                row["id"] = conn.execute(insert(F).values(**row).returning(F.c.id)).scalar_one()
        except IntegrityError:
            return None
        return row

    def get(self, file_name: str, md5: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(F).where(F.c.file_name == file_name, F.c.md5 == md5)).mappings().first()
        return dict(row) if row else None

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

    def restart(self, row_id: int, owner: str, source_path: str, out_dir: str) -> None:
        """Take an interrupted distribution over, from the start of ``splitting``."""
        with self.engine.begin() as conn:
            conn.execute(update(F).where(F.c.id == row_id)
                         .values(state=SPLITTING, owner=owner, source_path=source_path, out_dir=out_dir,
                                 records=None, rejects=None, summary=None, started_at=now()))

    def publishing(self, row_id: int, records: int, rejects: int, summary: dict) -> bool:
        """splitting -> publishing; False if the row was not splitting (another process moved it)."""
        with self.engine.begin() as conn:
            return conn.execute(update(F).where(F.c.id == row_id, F.c.state == SPLITTING)
                                .values(state=PUBLISHING, records=records, rejects=rejects,
                                        summary=json.dumps(summary, sort_keys=True))).rowcount == 1

    def done(self, row_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(F).where(F.c.id == row_id).values(state=DONE, finished_at=now()))

    def all(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(F).order_by(F.c.id)).mappings()]
