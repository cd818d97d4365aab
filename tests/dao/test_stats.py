"""The statistics queries (dao/stats.py, bus/stats.py) on hops written straight into the journal:
what each figure counts and leaves out, local days across the time-zone boundary, the province
filter, hops from before the journal kept amounts, and migration 0012; SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, text

from bus.stats import StatsError, daily_stats, day_bounds, parse_day, yuan
from dao.db import open_database, upgrade
from dao.journal import Journal

UTC = timezone.utc
BEIJING = timezone(timedelta(hours=8))


def hop(journal, at, operation, *, service=None, direction="in", status="ok", rsp_code="0000", province="51",
        **more):
    service = service or {"Pay": "BankPayment", "Reverse": "BankPayment", "TopUp": "TopUp",
                          "SyncOrder": "OrderSync", "ReportWorkOrderResult": "Provisioning",
                          "QueryBalance": "BankPayment"}[operation]
    journal.record(msg_id=more.pop("msg_id", f"m{hop.n}"), direction=direction, service=service,
                   operation=operation, status=status, rsp_code=rsp_code, province=province, started_at=at,
                   **more)
    hop.n += 1


hop.n = 0


@pytest.fixture
def journal(db_url):
    engine = open_database(db_url)
    yield Journal(engine)
    engine.dispose()


def figures(report) -> dict:
    return {(r.day, r.province): {k: v for k, v in r.as_dict().items()
                                     if v not in (0, "0.00", {}) and k not in ("day", "province")}
            for r in report.rows}


def test_each_figure_counts_what_succeeded_once(journal):
    at = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)   # 10:00 in Beijing
    hop(journal, at, "Pay", amount=10000)
    hop(journal, at, "Pay", amount=2345)
    hop(journal, at, "Pay", direction="out", amount=10000, target="BILLING-51")    # the call: not a payment
    hop(journal, at, "Pay", status="duplicate", amount=10000)                      # a repeat answered from memory
    hop(journal, at, "Pay", rsp_code="1544", amount=999)                           # refused by the billing
    hop(journal, at, "Pay", status="fault", rsp_code="9002", fault_code="Server.PeerTimeout", amount=500)
    hop(journal, at, "Pay", status="received", rsp_code=None, amount=700)          # still in flight
    hop(journal, at, "Reverse", amount=2345)
    hop(journal, at, "Reverse", rsp_code="1546", amount=2345)
    hop(journal, at, "TopUp", amount=5000)
    hop(journal, at, "TopUp", rsp_code="21003")
    # an order: e-sales' answered by HQ CRM, and HQ CRM's accepted for the province: one order
    hop(journal, at, "SyncOrder", source="ESALE", order_id="ORD1")
    hop(journal, at + timedelta(seconds=1), "SyncOrder", source="UCRM", status="accepted", order_id="ORD1")
    hop(journal, at, "SyncOrder", source="UCRM", status="accepted", order_id="ORD2")
    hop(journal, at, "SyncOrder", source="ESALE", rsp_code="8888", order_id="ORD3")   # refused: no order
    hop(journal, at, "ReportWorkOrderResult", status="accepted", work_state="3")
    hop(journal, at, "ReportWorkOrderResult", status="accepted", work_state="2")        # not done yet
    hop(journal, at, "ReportWorkOrderResult", status="duplicate", work_state="3")
    # faults: each failed call or delivery attempt, by the peer called
    for status, target in (("fault", "BILLING-51"), ("fault", "BILLING-51"), ("error", "CRM-51"),
                           ("ok", "BILLING-51")):
        hop(journal, at, "QueryBalance", direction="out", status=status, target=target)
    hop(journal, at, "QueryBalance", status="fault", target="BILLING-51")            # the inbound hop: not a call
    hop(journal, at, "Pay", province="11", amount=1)

    report = daily_stats(journal.engine, date(2026, 11, 27), date(2026, 11, 27), BEIJING)
    assert figures(report) == {
        ("2026-11-27", "11"): {"payments": 1, "payments_fen": 1, "payments_yuan": "0.01"},
        ("2026-11-27", "51"): {
            "orders": 2, "work_orders_completed": 1,
            "payments": 2, "payments_fen": 12345, "payments_yuan": "123.45",
            "reversals": 1, "reversals_fen": 2345, "reversals_yuan": "23.45",
            "topups": 1, "topups_fen": 5000, "topups_yuan": "50.00",
            "faults": 3, "faults_by_peer": {"BILLING-51": 2, "CRM-51": 1}}}
    assert report.unpriced == 0
    only = daily_stats(journal.engine, date(2026, 11, 27), date(2026, 11, 27), BEIJING, province="11")
    assert [(r.province, r.payments) for r in only.rows] == [("11", 1)]


def test_days_are_local_days_across_the_time_zone_boundary(journal):
    # 15:59:59 UTC is 23:59:59 in Beijing; 16:00:00 UTC is midnight of the next day there
    hop(journal, datetime(2026, 11, 26, 15, 59, 59, 999000, tzinfo=UTC), "Pay", amount=100)
    hop(journal, datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC), "Pay", amount=200)
    hop(journal, datetime(2026, 11, 27, 15, 59, 59, tzinfo=UTC), "Pay", amount=400)
    hop(journal, datetime(2026, 11, 27, 16, 0, 1, tzinfo=UTC), "Pay", amount=800)    # the 28th in Beijing

    def days(since, until, tz):
        report = daily_stats(journal.engine, since, until, tz)
        return [(r.day, r.payments, r.payments_fen) for r in report.rows]

    assert days(date(2026, 11, 26), date(2026, 11, 28), BEIJING) == [
        ("2026-11-26", 1, 100), ("2026-11-27", 2, 600), ("2026-11-28", 1, 800)]
    assert days(date(2026, 11, 27), date(2026, 11, 27), BEIJING) == [("2026-11-27", 2, 600)]
    assert days(date(2026, 11, 26), date(2026, 11, 27), UTC) == [("2026-11-26", 2, 300), ("2026-11-27", 2, 1200)]
    west = timezone(timedelta(hours=-5, minutes=-30))   # a negative offset with minutes
    assert days(date(2026, 11, 26), date(2026, 11, 27), west) == [("2026-11-26", 2, 300), ("2026-11-27", 2, 1200)]
    assert day_bounds(date(2026, 11, 27), date(2026, 11, 27), BEIJING) == (
        datetime(2026, 11, 26, 16, tzinfo=UTC), datetime(2026, 11, 27, 16, tzinfo=UTC))


def test_hops_without_an_amount_are_counted_and_reported(journal):
    at = datetime(2026, 11, 27, 4, tzinfo=UTC)
    hop(journal, at, "Pay", amount=300)
    hop(journal, at, "Pay")                 # journalled before migration 0012
    hop(journal, at, "TopUp")
    report = daily_stats(journal.engine, date(2026, 11, 27), date(2026, 11, 27), BEIJING)
    row = report.rows[0]
    assert (row.payments, row.payments_fen, row.topups, row.topups_fen, report.unpriced) == (2, 300, 1, 0, 2)
    assert any("migration 0012" in line for line in report.table())


def test_bad_ranges_and_days_are_refused_with_a_sentence():
    with pytest.raises(StatsError, match="starts"):
        daily_stats(None, date(2026, 11, 28), date(2026, 11, 27), BEIJING)
    with pytest.raises(StatsError, match="two-digit"):
        daily_stats(None, date(2026, 11, 27), date(2026, 11, 27), BEIJING, province="5x")
    for bad in ("2026-02-30", "27/11/2026", "7w", "yesterday1"):
        with pytest.raises(StatsError, match="--since"):
            parse_day(bad, "--since", BEIJING)
    assert parse_day("20261127", "--since", BEIJING) == date(2026, 11, 27)
    today = datetime.now(BEIJING).date()
    assert parse_day("7d", "--since", BEIJING) == today - timedelta(days=7)
    assert parse_day(None, "--since", BEIJING, default=today) == today
    assert [yuan(n) for n in (0, 1, 10, 12345, 100000000)] == ["0.00", "0.01", "0.10", "123.45", "1000000.00"]


def test_migration_0012_upgrades_a_journal_that_holds_hops(db_url):
    """A journal at 0011 with a payment in it gains ``amount`` and ``work_state``; its old payment
    is counted without an amount, and new hops carry theirs."""
    from alembic import command

    from dao.db import alembic_config, make_engine
    engine = make_engine(db_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011")
    at = datetime(2026, 11, 27, 4, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO journal (msg_id, direction, service, operation, province, status, rsp_code, "
                          "started_at) VALUES ('old', 'in', 'BankPayment', 'Pay', '51', 'ok', '0000', :at)"),
                     {"at": at})
    upgrade(engine)
    assert {"amount", "work_state"} <= {c["name"] for c in inspect(engine).get_columns("journal")}
    journal = Journal(engine)
    hop(journal, at, "Pay", amount=4200)
    report = daily_stats(engine, date(2026, 11, 27), date(2026, 11, 27), BEIJING)
    assert [(r.payments, r.payments_fen) for r in report.rows] == [(2, 4200)] and report.unpriced == 1
    engine.dispose()
