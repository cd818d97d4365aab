"""The Journal repository: records every hop and finds them again."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from dao.models import JournalEntry

T = JournalEntry.__table__
# Built once: a statement object per call would cost more than the SQL it sends.
_INSERT = insert(T)
_FINISH = update(T).where(T.c.id == bindparam("entry_id"))
COLUMNS = frozenset(c.name for c in T.columns)


def now() -> datetime:
    return datetime.now(timezone.utc)


class Journal:
    """Journal (EIP Message Store): inbound and outbound hops with their raw bytes and keys."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, more: list[dict] = (), **values) -> int:
        """Insert one hop (and the hops in ``more``, in the same transaction); returns its id."""
        with self.engine.begin() as conn:
            entry_id = self.insert(conn, values)
            for hop in more:
                self.insert(conn, hop)
            return entry_id

    @staticmethod
    def insert(conn: Connection, values: dict) -> int:
        """Insert one hop in the caller's transaction; returns its id."""
        values.setdefault("started_at", now())
        return conn.execute(_INSERT, _row(values)).inserted_primary_key[0]

    def finish(self, entry_id: int, more: list[dict] = (), **values) -> None:
        """Complete a hop (status, result code, response bytes, timings) and insert the
        hops in ``more`` (the outbound calls it made), in one transaction."""
        with self.engine.begin() as conn:
            self.finish_in(conn, entry_id, more, **values)

    @staticmethod
    def finish_in(conn: Connection, entry_id: int, more: list[dict] = (), **values) -> None:
        """:meth:`finish` in the caller's transaction."""
        values.setdefault("finished_at", now())
        conn.execute(_FINISH.values(**values), {"entry_id": entry_id})
        for hop in more:
            conn.execute(_INSERT, _row(hop))

    def purge(self, before: datetime) -> int:
        """Delete the hops that started before ``before`` (the journal's retention)."""
        with self.engine.begin() as conn:
            return conn.execute(T.delete().where(T.c.started_at < before)).rowcount

    def hops(self, key: str) -> list[dict]:
        """Every hop of the messages whose TRANS_IDO, PROC_ID or msg_id is ``key``, in time order."""
        with self.engine.connect() as conn:
            ids = select(T.c.msg_id).where(or_(T.c.trans_ido == key, T.c.proc_id == key,
                                               T.c.msg_id == key))
            rows = conn.execute(select(T).where(T.c.msg_id.in_(ids))
                                .order_by(T.c.started_at, T.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def search(self, *, msisdn=None, trans_ido=None, proc_id=None, service=None, operation=None,
               status=None, limit=50) -> list[dict]:
        query = select(T).order_by(T.c.id.desc()).limit(limit)
        for column, value in ((T.c.msisdn, msisdn), (T.c.trans_ido, trans_ido), (T.c.proc_id, proc_id),
                              (T.c.service, service), (T.c.operation, operation), (T.c.status, status)):
            if value:
                query = query.where(column == value)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings().all()]


def _row(values: dict) -> dict:
    """Every column present (None where not given), so one compiled INSERT serves every hop."""
    unknown = set(values) - COLUMNS
    if unknown:
        raise TypeError(f"journal has no column {', '.join(sorted(unknown))}")
    return {name: values.get(name) for name in COLUMNS if name != "id"}
