"""Scheduled work: housekeeping purges what has expired, and runs on one process at a time."""
from __future__ import annotations

from datetime import timedelta

from bus.core import Bus
from bus.scheduler import Scheduler
from config.settings import load_settings
from dao.journal import now
from dao.leases import LeaseStore
from dao.outbox import O


def make_bus(db_url):
    settings = load_settings(env={})
    settings.set_sandbox_url("http://127.0.0.1:9")
    settings.raw["database"] = {"url": db_url}
    settings.raw["housekeeping"] = {"journal_retention_days": 30, "delivered_outbox_retention_days": 1}
    return Bus(settings).start(forwarder=False)


def test_housekeeping_purges_expired_keys_old_hops_and_delivered_messages(db_url):
    bus = make_bus(db_url)
    try:
        old = now() - timedelta(days=40)
        bus.journal.record(msg_id="old", direction="in", status="ok", started_at=old)
        bus.journal.record(msg_id="new", direction="in", status="ok")
        bus.idempotency.store.claim("T:BANK:gone", "BankPayment", "QueryBalance", "m1", timedelta(0),
                                    timedelta(seconds=30))
        (row,) = bus.outbox.add([dict(msg_id="m", service="AccountSync", operation="SyncThreeAccount",
                                      trans_ido="T", peer_key="hq_billing", peer_name="HQ-BILLING",
                                      province="11", order_key="k", message="{}")])
        bus.outbox.delivered(row, 1)
        with bus.engine.begin() as conn:
            conn.execute(O.update().where(O.c.id == row).values(delivered_at=now() - timedelta(days=2)))
        assert bus.nonces.remember("ICBC", "bm9uY2U=", now() - timedelta(seconds=1))
        assert bus.nonces.remember("ICBC", "c3RpbGw=", now() + timedelta(hours=1))
        result = bus.scheduler.housekeeping()
        assert result == "1 idempotency keys, 1 journal hops, 1 delivered outbox rows, 1 token nonces purged"
        assert not bus.nonces.remember("ICBC", "c3RpbGw=", now()), "an unexpired nonce stays: still a replay"
        assert [r["msg_id"] for r in bus.journal.search(limit=10)] == ["new"]
        assert bus.idempotency.store.get("T:BANK:gone") is None and bus.outbox.get(row) is None
        (lease,) = LeaseStore(bus.engine).all()
        assert lease["last_result"] == result and lease["owner"] == bus.scheduler.owner
    finally:
        bus.stop()


def test_a_leased_job_runs_on_one_process_at_a_time(db_url):
    bus = make_bus(db_url)
    try:
        other = Scheduler(bus)   # a second process (worker or node) of the same bus
        assert bus.scheduler.housekeeping() is not None
        assert other.housekeeping() is None, "the lease is held by the first process"
        leases = LeaseStore(bus.engine)
        assert leases.acquire("housekeeping", bus.scheduler.owner, timedelta(minutes=1)), "renewed by its owner"
        assert not leases.acquire("housekeeping", other.owner, timedelta(minutes=1))
    finally:
        bus.stop()


def test_a_forwarder_pass_outlasting_its_interval_is_not_a_warning(caplog):
    """Under a backlog a pass takes longer than poll_seconds; APScheduler's notice that the
    next one was skipped is expected for that job, and only for that job."""
    import logging

    import bus.scheduler  # noqa: F401  (installs the filter)
    logger = logging.getLogger("apscheduler.scheduler")
    with caplog.at_level(logging.WARNING, logger="apscheduler.scheduler"):
        logger.warning('Execution of job "%s" skipped: maximum number of running instances reached (%d)',
                       "Forwarder.drain (trigger: interval[0:00:00.500000], next run at: now)", 1)
        logger.warning('Execution of job "%s" skipped: maximum number of running instances reached (%d)',
                       "Scheduler.housekeeping (trigger: interval[1:00:00])", 1)
    assert [r.getMessage()[:40] for r in caplog.records] == ['Execution of job "Scheduler.housekeeping']
