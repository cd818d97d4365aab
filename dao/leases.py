"""Job leases: a conditional INSERT or UPDATE makes exactly one process the runner of a
scheduled job until its lease ends."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dao.journal import now
from dao.models import JobLease

L = JobLease.__table__


class LeaseStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def acquire(self, name: str, owner: str, ttl: timedelta) -> bool:
        """True when ``owner`` holds the lease of ``name`` now (taken or renewed)."""
        at = now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(L).values(name=name, owner=owner, until=at + ttl))
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            return conn.execute(update(L).where(L.c.name == name, (L.c.until < at) | (L.c.owner == owner))
                                .values(owner=owner, until=at + ttl)).rowcount == 1

    def release(self, name: str, owner: str) -> None:
        """Give the lease of ``name`` back now, if ``owner`` holds it."""
        with self.engine.begin() as conn:
            conn.execute(update(L).where(L.c.name == name, L.c.owner == owner).values(until=now()))

    def ran(self, name: str, result: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(L).where(L.c.name == name).values(last_run_at=now(), last_result=result[:200]))

    def all(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(L).order_by(L.c.name)).mappings()]


