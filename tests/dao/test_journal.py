"""The journal on SQLite and PostgreSQL: migrations, hops, search."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import inspect

from dao.db import open_database, upgrade
from dao.journal import Journal


def test_migrations_create_the_journal_and_are_idempotent(db_url):
    engine = open_database(db_url)
    upgrade(engine)  # a second run changes nothing
    inspector = inspect(engine)
    assert "journal" in inspector.get_table_names()
    indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("journal")}
    assert {("trans_ido",), ("proc_id",), ("msisdn",)} <= indexed
    engine.dispose()


def test_hops_of_a_message_in_time_order(db_url):
    engine = open_database(db_url)
    journal = Journal(engine)
    t0 = datetime.now(timezone.utc)
    raw = "<x>张三</x>".encode("gbk")
    inbound = journal.record(msg_id="m1", direction="in", service="BankPayment", operation="Pay",
                             trans_ido="T1", proc_id="P1", msisdn="18603011234", source="BANK",
                             status="received", request=raw, started_at=t0)
    journal.record(msg_id="m1", direction="out", service="BankPayment", operation="Pay", trans_ido="T1",
                   proc_id="P1", target="BILLING-51", status="ok", rsp_code="0000",
                   started_at=t0 + timedelta(milliseconds=1))
    journal.finish(inbound, status="ok", rsp_code="0000", response=b"<ok/>", target="BILLING-51")
    journal.record(msg_id="m2", direction="in", trans_ido="T2", proc_id="P1", status="fault",
                   started_at=t0 + timedelta(milliseconds=5))
    hops = journal.hops("T1")
    assert [(h["direction"], h["status"], h["target"]) for h in hops] == [
        ("in", "ok", "BILLING-51"), ("out", "ok", "BILLING-51")]
    assert hops[0]["request"] == raw and hops[0]["finished_at"] is not None
    assert [h["msg_id"] for h in journal.hops("P1")] == ["m1", "m1", "m2"]
    assert [r["trans_ido"] for r in journal.search(msisdn="18603011234")] == ["T1"]
    assert [r["trans_ido"] for r in journal.search(status="fault")] == ["T2"]
    assert journal.hops("nothing") == []
    engine.dispose()
