"""Group commit: concurrent writers share one transaction and one commit.

A durable answer ("accepted", a stored payment key) needs its rows committed before the
caller hears it. One commit per request caps a process at a few hundred requests a second
on PostgreSQL (each commit waits for the WAL to reach the disk) and makes SQLite's writers
queue for its single lock. :class:`GroupCommit` hands the writes of every request that
arrives while a commit is in progress to one writer thread, which runs them all in the next
transaction and commits once; each waiting request is released when *its* rows are committed.

No request waits for a batch to fill: the writer takes whatever is queued the moment it is
free, so under light load a batch is one unit and the latency is that of a plain commit.

A unit of work is a function of an open connection. Units must only write the rows they are
given (they may be run a second time): when a batch fails, its transaction rolls back and
each unit is run again in a transaction of its own, so one bad unit fails alone and the
others are still committed. A unit's exception reaches its caller.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable

from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("bssbus.group_commit")

Work = Callable[[Connection], Any]


class _Unit:
    __slots__ = ("work", "done", "result", "error", "wait")

    def __init__(self, work: Work, wait: bool):
        self.work = work
        self.wait = wait
        self.done = threading.Event() if wait else None
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = object()


class GroupCommit:
    """One writer thread per process (started on first use, again after a fork)."""

    def __init__(self, engine: Engine, max_batch: int = 200, max_pending: int = 2000):
        self.engine = engine
        self.max_batch = max_batch
        self.max_pending = max_pending   # units queued beyond this: submit() waits for its commit
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.batches = 0          # commits made, and units they carried: batch size = units / batches
        self.units = 0

    def run(self, work: Work) -> Any:
        """Run ``work(conn)`` in the next group transaction; return its result once committed.
        Raises what ``work`` raised, or the commit's error (then nothing of it was written)."""
        unit = _Unit(work, wait=True)
        self._put(unit)
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result

    def submit(self, work: Work) -> None:
        """Write ``work`` with the next batch without waiting for it (for rows whose loss in a
        crash costs nothing, such as the response bytes of an accepted message's journal row).
        A failure is logged. When the writer is ``max_pending`` units behind, the caller
        waits for this unit's commit instead: memory stays bounded when the database is slow."""
        if self._queue.qsize() >= self.max_pending:
            try:
                self.run(work)
            except Exception as exc:
                log.error("a deferred write failed: %s: %s", type(exc).__name__, exc)
            return
        self._put(_Unit(work, wait=False))

    def flush(self) -> None:
        """Return once every unit submitted before the call is committed (or has failed)."""
        if self._thread is not None and self._pid == os.getpid():
            self.run(_nothing)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and self._pid == os.getpid():
            self._queue.put(_STOP)
            thread.join(timeout=30)

    # -- the writer -------------------------------------------------------------------------
    def _put(self, unit: _Unit) -> None:
        if self._thread is None or self._pid != os.getpid():
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    if self._pid != os.getpid():    # a forked child: the parent's queue is not ours
                        self._queue = queue.SimpleQueue()
                    self._pid = os.getpid()
                    self._thread = threading.Thread(target=self._loop, name="group-commit", daemon=True)
                    self._thread.start()
        self._queue.put(unit)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            batch, stop = ([] if first is _STOP else [first]), first is _STOP
            while len(batch) < self.max_batch:
                try:
                    unit = self._queue.get_nowait()
                except queue.Empty:
                    break
                if unit is _STOP:
                    stop = True
                    continue
                batch.append(unit)
            if batch:
                self._write(batch)
            if stop and self._queue.empty():
                return

    def _write(self, batch: list[_Unit]) -> None:
        try:
            with self.engine.begin() as conn:
                for unit in batch:
                    unit.result = unit.work(conn)
        except BaseException as exc:
            if len(batch) > 1:               # find the unit that failed; the others still commit
                for unit in batch:
                    self._write([unit])
                return
            self._settle(batch[0], exc)
            return
        self.batches += 1
        self.units += len(batch)
        for unit in batch:
            self._settle(unit, None)

    @staticmethod
    def _settle(unit: _Unit, error: BaseException | None) -> None:
        if error is not None:
            unit.result = None
            unit.error = error
            if not unit.wait:
                log.error("a deferred write failed: %s: %s", type(error).__name__, error)
        if unit.done is not None:
            unit.done.set()


class DirectCommit:
    """The same interface without sharing: each unit in a transaction of its own, committed in
    the calling thread (``database.group_commit: false``; the benchmark's baseline)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def run(self, work: Work) -> Any:
        with self.engine.begin() as conn:
            return work(conn)

    def submit(self, work: Work) -> None:
        try:
            self.run(work)
        except Exception as exc:
            log.error("a deferred write failed: %s: %s", type(exc).__name__, exc)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _nothing(conn: Connection) -> None:
    return None
