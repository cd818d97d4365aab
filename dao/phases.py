"""The cut-over table repository: provinces' phases, changed at run time and audited."""
from __future__ import annotations

import threading
import time

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from config.settings import PHASES, ConfigError
from dao.journal import now
from dao.models import PhaseChange, ProvincePhase

P = ProvincePhase.__table__
C = PhaseChange.__table__


class PhaseStore:
    """Reads and changes the phases in the database. Config seeds provinces it does not hold."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def seed(self, defaults: dict[str, int]) -> None:
        """Insert the config's phase for every province the table does not hold yet. Processes
        starting together (gunicorn's workers) may seed at once: one that finds a province
        inserted since it looked reads the table again."""
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    known = set(conn.execute(select(P.c.province)).scalars())
                    rows = [dict(province=code, phase=phase, changed_by="config", changed_at=now())
                            for code, phase in defaults.items() if code not in known]
                    if rows:
                        conn.execute(insert(P), rows)
                return
            except (IntegrityError, OperationalError):   # another seeded first (or held the SQLite lock)
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def load(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {r.province: r.phase for r in conn.execute(select(P.c.province, P.c.phase))}

    def set(self, province: str, phase: int, changed_by: str, reason: str | None = None) -> int | None:
        """Move ``province`` to ``phase``; returns the old phase. Audited in phase_change."""
        if phase not in PHASES:
            raise ConfigError(f"phase {phase} is not one of {PHASES}")
        with self.engine.begin() as conn:
            old = conn.execute(select(P.c.phase).where(P.c.province == province)).scalar()
            if old is None:
                raise ConfigError(f"province {province!r} is not in the cut-over table; "
                                  f"known: {', '.join(sorted(self.load()))}")
            when = now()
            conn.execute(update(P).where(P.c.province == province)
                         .values(phase=phase, changed_by=changed_by, changed_at=when))
            conn.execute(insert(C).values(province=province, old_phase=old, new_phase=phase,
                                          changed_by=changed_by, changed_at=when, reason=reason))
        return old

    def moved_since(self, at) -> set[str]:
        """The provinces whose phase changed at or after ``at`` (a datetime)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(C.c.province).where(C.c.changed_at >= at)).scalars())

    def history(self, province: str | None = None, limit: int = 50) -> list[dict]:
        query = select(C).order_by(C.c.id.desc()).limit(limit)
        if province:
            query = query.where(C.c.province == province)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


class PhaseTable:
    """The phases a bus process routes by: re-read from the database at most every
    ``refresh_seconds``, and swapped in whole, so a message in flight keeps the decision it
    was routed with and the next one follows the new phase."""

    def __init__(self, store: PhaseStore, refresh_seconds: float = 2.0):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.phases = store.load()
        self._loaded = time.monotonic()
        self._lock = threading.Lock()

    def current(self) -> dict[str, int]:
        if time.monotonic() - self._loaded >= self.refresh_seconds and self._lock.acquire(blocking=False):
            try:
                self.phases = self.store.load()
                self._loaded = time.monotonic()
            finally:
                self._lock.release()
        return self.phases
