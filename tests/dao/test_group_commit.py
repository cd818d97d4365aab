"""GroupCommit on SQLite and PostgreSQL: concurrent units share commits, a bad unit fails
alone, deferred units are written by close()."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from dao.db import open_database
from dao.group_commit import GroupCommit
from dao.journal import Journal
from dao.models import JournalEntry

T = JournalEntry.__table__


def hop(n: int) -> dict:
    return dict(msg_id=f"m{n}", direction="in", service="AccountSync", operation="SyncThreeAccount",
                status="accepted")


def count(engine, **where) -> int:
    query = select(func.count()).select_from(T)
    for column, value in where.items():
        query = query.where(T.c[column] == value)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def test_concurrent_units_are_committed_in_shared_transactions(db_url):
    engine = open_database(db_url)
    writer, journal = GroupCommit(engine), Journal(engine)
    ids, start = [None] * 40, threading.Barrier(40)

    def one(n):
        start.wait()
        ids[n] = writer.run(lambda conn: journal.insert(conn, hop(n)))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 40 and None not in ids          # every unit got its own row's id
    assert count(engine) == 40
    assert writer.units == 40 and writer.batches < 40, (writer.batches, "commits were shared")
    writer.close()
    engine.dispose()


def test_a_failing_unit_fails_alone_and_the_rest_of_its_batch_is_committed(db_url):
    engine = open_database(db_url)
    writer, journal = GroupCommit(engine), Journal(engine)
    busy, hold = threading.Event(), threading.Event()
    writer.submit(lambda conn: busy.set() or hold.wait(10))   # the writer is busy while a batch queues up
    assert busy.wait(10)
    results, errors = {}, {}

    def one(n):
        def work(conn):
            if n == 3:   # a unit that breaks its transaction: a NOT NULL column left empty
                journal.insert(conn, dict(hop(n), msg_id=None))
            return journal.insert(conn, hop(n))
        try:
            results[n] = writer.run(work)
        except Exception as exc:
            errors[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for _ in range(1000):
        if writer._queue.qsize() == 6:
            break
        threading.Event().wait(0.01)
    assert writer._queue.qsize() == 6, "the six units wait for one batch"
    hold.set()
    for t in threads:
        t.join()
    assert list(errors) == [3] and isinstance(errors[3], IntegrityError)
    assert sorted(results) == [0, 1, 2, 4, 5]
    assert count(engine) == 5 and count(engine, msg_id="m3") == 0
    writer.close()
    engine.dispose()


def test_deferred_units_are_written_by_close(db_url):
    engine = open_database(db_url)
    writer, journal = GroupCommit(engine), Journal(engine)
    entry = writer.run(lambda conn: journal.insert(conn, hop(1)))
    for n in range(2, 12):
        writer.submit(lambda conn, n=n: journal.insert(conn, hop(n)))
    writer.submit(lambda conn: journal.finish_in(conn, entry, response=b"<answer/>"))
    writer.close()
    assert count(engine) == 11
    with engine.connect() as conn:
        assert conn.execute(select(T.c.response).where(T.c.id == entry)).scalar_one() == b"<answer/>"
    # a closed writer starts again when used, and a unit's own error reaches its caller
    with pytest.raises(ZeroDivisionError):
        writer.run(lambda conn: 1 / 0)
    assert writer.run(lambda conn: journal.insert(conn, hop(99))) > entry
    writer.close()
    engine.dispose()


def test_flush_returns_once_every_deferred_unit_is_committed(db_url):
    engine = open_database(db_url)
    writer, journal = GroupCommit(engine), Journal(engine)
    writer.flush()                        # nothing submitted yet: returns at once
    release = threading.Event()
    writer.submit(lambda conn: release.wait(10))   # holds the writer until released
    for n in range(1, 21):
        writer.submit(lambda conn, n=n: journal.insert(conn, hop(n)))
    assert count(engine) == 0
    threading.Timer(0.2, release.set).start()
    writer.flush()
    assert count(engine) == 20
    writer.close()
    engine.dispose()


def test_a_writer_that_falls_behind_makes_submit_wait_instead_of_queueing_without_bound(db_url):
    engine = open_database(db_url)
    writer, journal = GroupCommit(engine, max_pending=5), Journal(engine)
    busy, release = threading.Event(), threading.Event()
    writer.submit(lambda conn: busy.set() or release.wait(10))   # the writer is busy...
    assert busy.wait(10)
    for n in range(1, 6):                           # ...five units wait in its queue...
        writer.submit(lambda conn, n=n: journal.insert(conn, hop(n)))
    done = threading.Event()

    def sixth():
        writer.submit(lambda conn: journal.insert(conn, hop(6)))
        done.set()
    threading.Thread(target=sixth, daemon=True).start()
    assert not done.wait(0.5), "the sixth submit must wait for its commit"
    release.set()
    assert done.wait(10)
    writer.flush()
    assert count(engine) == 6
    writer.close()
    engine.dispose()
