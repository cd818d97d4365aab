"""The idempotency-key repository: claim a key, remember the first answer, forget it when due.

A key is claimed by inserting it as ``pending``: the primary key makes exactly one claimer
win, across threads, workers and nodes sharing the database. The winner stores the answer
(``done``); everyone else reads it. A ``pending`` row older than ``stale_after`` (its
claimer died) can be taken over by one later claimer.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from dao.db import as_utc
from dao.journal import now
from dao.models import IdempotencyKey

K = IdempotencyKey.__table__


class IdempotencyStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def claim(self, key: str, service: str, operation: str, msg_id: str, ttl: timedelta,
              stale_after: timedelta) -> dict | None:
        """None when ``msg_id`` now owns ``key``; else the row that holds it (pending or done)."""
        when = now()
        row = dict(key=key, service=service, operation=operation, status="pending", msg_id=msg_id,
                   created_at=when, expires_at=when + ttl)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(K), row)
            return None
        except IntegrityError:
            pass
        held = self.get(key)
        if held is None:   # released in between: try once more
            return self.claim(key, service, operation, msg_id, ttl, stale_after)
        expired = as_utc(held["expires_at"]) <= when
        abandoned = held["status"] == "pending" and as_utc(held["created_at"]) <= when - stale_after
        if expired or abandoned:
            with self.engine.begin() as conn:
                taken = conn.execute(update(K).where(K.c.key == key, K.c.msg_id == held["msg_id"],
                                                     K.c.status == held["status"])
                                     .values(status="pending", msg_id=msg_id, reply=None, created_at=when,
                                             expires_at=when + ttl)).rowcount
            if taken == 1:
                return None
            return self.get(key) or self.claim(key, service, operation, msg_id, ttl, stale_after)
        return held

    @staticmethod
    def insert_done(conn: Connection, key: str, service: str, operation: str, msg_id: str,
                    reply: str, ttl: timedelta) -> bool:
        """In the caller's transaction: store ``key`` as answered with ``reply`` unless some
        message holds it already (then False, and nothing is written). Never raises on a
        taken key, so it can share a transaction with other messages' rows."""
        when = now()
        row = dict(key=key, service=service, operation=operation, status="done", msg_id=msg_id,
                   reply=reply, created_at=when, expires_at=when + ttl)
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            make = sqlite.insert if dialect == "sqlite" else postgresql.insert
            # RETURNING, not rowcount: psycopg reports -1 for this statement
            return conn.execute(make(K).values(**row).on_conflict_do_nothing(index_elements=[K.c.key])
                                .returning(K.c.key)).first() is not None
        try:   # Oracle and others: a savepoint keeps the enclosing transaction usable
            with conn.begin_nested():
                conn.execute(insert(K).values(**row))
            return True
        except IntegrityError:
            return False

    def complete(self, key: str, msg_id: str, reply: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(K).where(K.c.key == key, K.c.msg_id == msg_id)
                         .values(status="done", reply=reply))

    def release(self, key: str, msg_id: str) -> None:
        """Give a claimed key back (the message failed): a repeat will be handled afresh."""
        with self.engine.begin() as conn:
            conn.execute(delete(K).where(K.c.key == key, K.c.msg_id == msg_id, K.c.status == "pending"))

    def get(self, key: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(K).where(K.c.key == key)).mappings().first()
        return dict(row) if row else None

    def purge(self, before: datetime | None = None) -> int:
        """Delete the keys that expired (before ``before``, default now); returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(delete(K).where(K.c.expires_at <= (before or now()))).rowcount

