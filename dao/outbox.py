"""The outbox repository: store, claim, settle and replay one-way messages.

A row is claimed for delivery by setting ``locked_until`` with a conditional UPDATE: exactly
one claimer gets rowcount 1, on SQLite and on a PostgreSQL shared by several nodes alike.
Only the oldest row of an ``order_key`` that is pending or dead is due, so one user's
messages are delivered in the order they were accepted, while other users' messages go on;
a dead letter holds its user's later messages until it is replayed or discarded.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import aliased

from dao.journal import now
from dao.models import OutboxEntry

O = OutboxEntry.__table__
PENDING, DELIVERED, DEAD, DISCARDED = "pending", "delivered", "dead", "discarded"
_ADD = insert(O)


class OutboxStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, rows: list[dict]) -> list[int]:
        """Queue ``rows`` (one per recipient) in a transaction of their own; returns their ids."""
        with self.engine.begin() as conn:
            return self.add_in(conn, rows)

    @staticmethod
    def add_in(conn: Connection, rows: list[dict]) -> list[int]:
        """Queue ``rows`` in the caller's transaction (with the message's journal row)."""
        when = now()
        return [conn.execute(_ADD, dict(row, status=PENDING, attempts=0, next_attempt_at=when,
                                        created_at=when)).inserted_primary_key[0] for row in rows]

    def _due_query(self, limit: int, at: datetime, skip_peers=()):
        older = aliased(O)
        query = select(O).where(O.c.peer_name.not_in(list(skip_peers))) if skip_peers else select(O)
        return (query.where(
            O.c.status == PENDING, O.c.next_attempt_at <= at,
            or_(O.c.locked_until.is_(None), O.c.locked_until < at),
            ~exists().where(and_(older.c.order_key == O.c.order_key, older.c.status.in_((PENDING, DEAD)),
                                 older.c.id < O.c.id)))
            .order_by(O.c.id).limit(limit))

    def due(self, limit: int = 50, at: datetime | None = None, skip_peers=()) -> list[dict]:
        """Pending rows whose time has come, and of each order_key only the oldest not settled
        (a dead letter holds the rows of its key behind it); none for the peers in ``skip_peers``."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(self._due_query(limit, at or now(), skip_peers)).mappings()]

    def claim_due(self, limit: int, lease: timedelta, skip_peers=()) -> list[dict]:
        """Claim up to ``limit`` due rows for ``lease``. PostgreSQL and Oracle lock them with
        FOR UPDATE SKIP LOCKED in one transaction, so forwarders on several nodes take
        different rows without waiting on each other; SQLite, one writer at a time, claims them
        with conditional UPDATEs in one transaction."""
        at = now()
        if self.engine.dialect.name in ("postgresql", "oracle"):
            with self.engine.begin() as conn:
                rows = [dict(r) for r in conn.execute(
                    self._due_query(limit, at, skip_peers).with_for_update(skip_locked=True, of=O)).mappings()]
                if rows:
                    conn.execute(update(O).where(O.c.id.in_([r["id"] for r in rows]))
                                 .values(locked_until=at + lease * len(rows)))
            return rows
        due, claimed = self.due(limit, at, skip_peers), []
        with self.engine.begin() as conn:
            for row in due:   # each lease a step longer: they may be sent one after the other
                if conn.execute(self._claim(row["id"], at, at + lease * (len(claimed) + 1))).rowcount == 1:
                    claimed.append(row)
        return claimed

    def claim(self, row_id: int, until: datetime) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(self._claim(row_id, now(), until)).rowcount == 1

    @staticmethod
    def _claim(row_id: int, at: datetime, until: datetime):
        return update(O).where(O.c.id == row_id, O.c.status == PENDING,
                               or_(O.c.locked_until.is_(None), O.c.locked_until < at)).values(locked_until=until)

    # -- the outcome of an attempt: statements, so the Forwarder can commit one with the
    # attempt's journal hop (and share the commit with other deliveries); or run here
    @staticmethod
    def attempting_statement(row_id: int, attempts: int):
        """Record an attempt before it is made: if the process dies during the call, the row
        shows it, and the next delivery counts as a redelivery."""
        return update(O).where(O.c.id == row_id).values(
            attempts=attempts, last_error=f"attempt {attempts} in progress since {now():%H:%M:%S}")

    @staticmethod
    def delivered_statement(row_id: int, attempts: int, rsp_code: str | None = None):
        """The peer answered (``rsp_code``: what it answered; not 0000 is its refusal)."""
        return update(O).where(O.c.id == row_id).values(
            status=DELIVERED, attempts=attempts, delivered_at=now(), locked_until=None, last_error=None,
            rsp_code=rsp_code)

    @staticmethod
    def failed_statement(row_id: int, attempts: int, error: str, next_attempt_at: datetime | None):
        """Another failed attempt; ``next_attempt_at`` None means the attempts are spent: dead."""
        values = dict(attempts=attempts, last_error=error[:1000], locked_until=None)
        if next_attempt_at is None:
            values["status"] = DEAD
        else:
            values["next_attempt_at"] = next_attempt_at
        return update(O).where(O.c.id == row_id).values(**values)

    def attempting(self, row_id: int, attempts: int) -> None:
        self._run(self.attempting_statement(row_id, attempts))

    def delivered(self, row_id: int, attempts: int, rsp_code: str | None = None) -> None:
        self._run(self.delivered_statement(row_id, attempts, rsp_code))

    def failed(self, row_id: int, attempts: int, error: str, next_attempt_at: datetime | None) -> None:
        self._run(self.failed_statement(row_id, attempts, error, next_attempt_at))

    def _run(self, statement) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

    def get(self, row_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(O).where(O.c.id == row_id)).mappings().first()
        return dict(row) if row else None

    def list(self, status: str | None = DEAD, peer: str | None = None, limit: int = 100) -> list[dict]:
        query = select(O).order_by(O.c.id).limit(limit)
        if status:
            query = query.where(O.c.status == status)
        if peer:
            query = query.where(O.c.peer_name == peer)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def of_messages(self, msg_ids) -> list[dict]:
        """The outbox rows (one per recipient) of the messages ``msg_ids``, without their
        stored message: what `bssbus journal trace` shows of each."""
        msg_ids = list(dict.fromkeys(msg_ids))
        if not msg_ids:
            return []
        columns = [c for c in O.columns if c.name != "message"]
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(*columns).where(O.c.msg_id.in_(msg_ids))
                                                  .order_by(O.c.id)).mappings()]

    def replay(self, row_id: int) -> bool:
        """A dead letter back to pending, attempts from zero; False when it is not dead."""
        with self.engine.begin() as conn:
            return conn.execute(update(O).where(O.c.id == row_id, O.c.status == DEAD).values(
                status=PENDING, attempts=0, next_attempt_at=now(), locked_until=None)).rowcount == 1

    def discard(self, row_id: int, reason: str) -> bool:
        """A dead letter given up (it no longer holds its user's later messages); False when
        it is not dead."""
        with self.engine.begin() as conn:
            return conn.execute(update(O).where(O.c.id == row_id, O.c.status == DEAD).values(
                status=DISCARDED, last_error=reason[:1000], locked_until=None)).rowcount == 1

    def waiting_behind(self, row: dict) -> int:
        """How many pending messages of ``row``'s user wait behind it."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(O).where(
                O.c.order_key == row["order_key"], O.c.status == PENDING, O.c.id > row["id"])).scalar_one()

    def purge_delivered(self, before: datetime) -> int:
        """Forget delivered messages older than ``before`` (dead letters stay until replayed)."""
        with self.engine.begin() as conn:
            return conn.execute(O.delete().where(O.c.status == DELIVERED, O.c.delivered_at < before)).rowcount

    def counts(self, statuses=(PENDING, DEAD)) -> dict[str, dict[str, int]]:
        """Peer -> {status: rows} for ``statuses`` (queue depth and dead letters, per peer)."""
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for peer, status, n in conn.execute(select(O.c.peer_name, O.c.status, func.count())
                                                .where(O.c.status.in_(list(statuses)))
                                                .group_by(O.c.peer_name, O.c.status)):
                out.setdefault(peer, {})[status] = n
        return out

    def depth(self) -> dict[str, int]:
        """Pending rows per peer (the queue depth an operator watches)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(O.c.peer_name, func.count()).where(O.c.status == PENDING)
                                     .group_by(O.c.peer_name)).all())
