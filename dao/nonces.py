"""The nonce store of WS-Security UsernameTokens: a nonce is accepted once per consumer.

The primary key (consumer, nonce) makes exactly one of two concurrent requests with the same
token win, across threads, workers and nodes sharing the database; housekeeping purges the
nonces whose token could no longer pass the Created window anyway.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dao.journal import now
from dao.models import SecurityNonce

N = SecurityNonce.__table__


class NonceStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def remember(self, consumer: str, nonce: str, expires_at: datetime) -> bool:
        """True the first time ``nonce`` of ``consumer`` is seen; False for a replay."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(N).values(consumer=consumer[:40], nonce=nonce[:100], expires_at=expires_at))
            return True
        except IntegrityError:
            return False

    def purge(self, before: datetime | None = None) -> int:
        with self.engine.begin() as conn:
            return conn.execute(delete(N).where(N.c.expires_at <= (before or now()))).rowcount
