"""The journal on SQLite and PostgreSQL: migrations, hops, search, encryption at rest."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, text

from dao.db import open_database, upgrade
from dao.journal import KEY_ENV, Journal, JournalCipher, JournalKeyError, now


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


def test_search_by_each_key_and_time_range_newest_first(db_url):
    engine = open_database(db_url)
    journal = Journal(engine)
    t0 = datetime.now(timezone.utc) - timedelta(hours=3)
    pay = dict(msg_id="pay", service="BankPayment", operation="Pay", trans_ido="TP", proc_id="PP",
               msisdn="18603011234", serial="ICBC0001", province="51")
    order = dict(msg_id="ord", service="OrderSync", operation="SyncOrder", trans_ido="TO", proc_id="PO",
                 msisdn="18603011234", order_id="ES0001", province="51")
    journal.record(**pay, direction="in", source="BANK", status="ok", started_at=t0, target="BILLING-51")
    journal.record(**pay, direction="out", source="BUS", status="ok", started_at=t0 + timedelta(seconds=1),
                   target="BILLING-51")
    journal.record(**order, direction="in", source="UCRM", status="accepted", started_at=t0 + timedelta(hours=2),
                   target="CRM-51")
    journal.record(**order, direction="out", source="BUS", status="fault", started_at=t0 + timedelta(hours=2, seconds=1),
                   target="CRM-51")

    def found(**keys):
        return [(r["msg_id"], r["direction"]) for r in journal.search(**keys)]

    assert found(serial="ICBC0001") == [("pay", "out"), ("pay", "in")]
    assert found(order_id="ES0001") == [("ord", "out"), ("ord", "in")]
    assert found(peer="BILLING-51", direction="out") == [("pay", "out")]
    assert found(msisdn="18603011234") == [("ord", "out"), ("ord", "in"), ("pay", "out"), ("pay", "in")]
    assert found(msisdn="18603011234", limit=1) == [("ord", "out")]
    assert found(status="fault", service="OrderSync", operation="SyncOrder") == [("ord", "out")]
    assert found(since=t0 + timedelta(hours=1)) == [("ord", "out"), ("ord", "in")]
    assert found(until=t0 + timedelta(hours=1)) == [("pay", "out"), ("pay", "in")]
    naive = (t0 + timedelta(hours=1)).replace(tzinfo=None)   # naive times are UTC
    assert found(since=naive, msisdn="18603011234") == [("ord", "out"), ("ord", "in")]
    assert found(serial="ICBC0001", since=t0 + timedelta(hours=1)) == []
    assert found(proc_id="PO", trans_ido="TO", peer="CRM-51", status="accepted") == [("ord", "in")]
    with pytest.raises(TypeError):
        journal.search(bank="ICBC")
    assert [(h["direction"], "request" in h) for h in journal.trace("PP")] == [("in", False), ("out", False)]
    engine.dispose()


def test_migration_0011_upgrades_a_journal_that_holds_hops(db_url):
    """A database at revision 0010 with hops in it gains the business-key columns and the search
    indexes; its old hops are still found, and new ones carry the keys."""
    from alembic import command

    from dao.db import alembic_config, make_engine
    engine = make_engine(db_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
    assert "serial" not in {c["name"] for c in inspect(engine).get_columns("journal")}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO journal (msg_id, direction, trans_ido, msisdn, target, status, started_at) "
                          "VALUES ('old', 'in', 'T-OLD', '18603011234', 'BILLING-51', 'ok', :at)"),
                     {"at": datetime.now(timezone.utc)})
    upgrade(engine)
    inspector = inspect(engine)
    assert {"serial", "order_id"} <= {c["name"] for c in inspector.get_columns("journal")}
    indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("journal")}
    assert {("serial",), ("order_id",), ("target", "started_at"), ("status", "started_at"),
            ("service", "started_at"), ("operation", "started_at"), ("direction", "started_at")} <= indexed
    assert ("msg_id",) in {tuple(i["column_names"]) for i in inspector.get_indexes("outbox")}
    journal = Journal(engine)
    assert [r["trans_ido"] for r in journal.search(peer="BILLING-51")] == ["T-OLD"]
    journal.record(msg_id="new", direction="in", trans_ido="T-NEW", serial="ICBC0002", status="ok")
    assert [r["trans_ido"] for r in journal.search(serial="ICBC0002")] == ["T-NEW"]
    engine.dispose()


# -- encryption at rest of the raw bytes ($BSSBUS_JOURNAL_KEY) ------------------------------
REQUEST = ('<?xml version="1.0" encoding="GBK"?><Envelope><CUST_NAME>王建国</CUST_NAME>'
           '<CERT_NUM>370102198507123456</CERT_NUM></Envelope>').encode("gbk")


def stored(engine) -> dict[str, tuple]:
    """What the database holds: trans_ido -> (request, response) bytes."""
    with engine.connect() as conn:
        return {r.trans_ido: (r.request, r.response)
                for r in conn.execute(text("SELECT trans_ido, request, response FROM journal"))}


def write_every_way(journal: Journal, tag: str) -> None:
    """Every write path: record (with more), insert, finish, finish_in (with more)."""
    first = journal.record(msg_id=tag, direction="in", trans_ido=f"{tag}-record", status="received",
                           request=REQUEST, more=[dict(msg_id=tag, direction="out", status="ok",
                                                       trans_ido=f"{tag}-more", request=REQUEST,
                                                       response=b"<ok/>")])
    journal.finish(first, status="ok", response=REQUEST)
    with journal.engine.begin() as conn:
        second = journal.insert(conn, dict(msg_id=tag, direction="in", trans_ido=f"{tag}-insert",
                                           status="accepted", request=REQUEST))
        journal.finish_in(conn, second, [dict(msg_id=tag, direction="out", status="ok", started_at=now(),
                                              trans_ido=f"{tag}-finish_in", request=REQUEST)],
                          response=REQUEST)


def test_with_a_key_the_raw_bytes_are_encrypted_at_rest_and_read_back_intact(db_url, monkeypatch):
    engine = open_database(db_url)
    monkeypatch.delenv(KEY_ENV, raising=False)
    write_every_way(Journal(engine), "old")              # written before there was a key
    monkeypatch.setenv(KEY_ENV, JournalCipher.new_key())
    journal = Journal(engine)
    write_every_way(journal, "new")
    at_rest = stored(engine)
    assert at_rest["old-record"] == (REQUEST, REQUEST)
    for trans_ido, (request, response) in at_rest.items():
        if trans_ido.startswith("new"):
            assert request.startswith(JournalCipher.SEALED) and REQUEST not in request
            assert "王建国".encode("gbk") not in request and b"370102198507123456" not in request
            assert response is None or response.startswith(JournalCipher.SEALED)
    hops = {h["trans_ido"]: h for h in journal.hops("new") + journal.hops("old")}
    assert len(hops) == 8
    assert all(h["request"] == REQUEST for h in hops.values())   # old plain rows and new ones side by side
    assert hops["new-record"]["response"] == REQUEST and hops["new-more"]["response"] == b"<ok/>"
    assert hops["new-insert"]["response"] == REQUEST and hops["new-finish_in"]["response"] is None
    assert [r["request"] for r in journal.search(trans_ido="new-insert")] == [REQUEST]
    engine.dispose()


def test_an_encrypted_row_without_its_key_is_a_clear_error(db_url, monkeypatch):
    engine = open_database(db_url)
    old_key, new_key = JournalCipher.new_key(), JournalCipher.new_key()
    monkeypatch.setenv(KEY_ENV, old_key)
    write_every_way(Journal(engine), "k1")
    monkeypatch.setenv(KEY_ENV, f"{new_key}, {old_key}")    # rotated: the new key first, the old one kept
    rotated = Journal(engine)
    write_every_way(rotated, "k2")
    assert {h["request"] for h in rotated.hops("k1") + rotated.hops("k2")} == {REQUEST}
    k1, k2 = stored(engine)["k1-record"][0], stored(engine)["k2-record"][0]
    assert k1[5:9] == JournalCipher.key_id(base64.urlsafe_b64decode(old_key))
    assert k1[5:9] != k2[5:9]
    monkeypatch.setenv(KEY_ENV, new_key)                     # the old key dropped too soon
    with pytest.raises(JournalKeyError, match="key that is not in BSSBUS_JOURNAL_KEY"):
        Journal(engine).hops("k1")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JournalKeyError, match="is encrypted at rest: set BSSBUS_JOURNAL_KEY"):
        Journal(engine).hops("k2")
    with engine.begin() as conn:                             # altered at rest
        conn.execute(text("UPDATE journal SET request = :r WHERE trans_ido = 'k2-insert'"),
                     {"r": k2[:-1] + bytes([k2[-1] ^ 1])})
    monkeypatch.setenv(KEY_ENV, new_key)
    with pytest.raises(JournalKeyError, match="altered"):
        Journal(engine).search(trans_ido="k2-insert")
    engine.dispose()


def test_plain_bytes_that_look_encrypted_stay_plain(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    engine = open_database(f"sqlite:///{tmp_path}/j.db")
    journal = Journal(engine)
    forged = JournalCipher.SEALED + b"\x00" * 40              # a caller's malformed request
    journal.record(msg_id="m", direction="in", trans_ido="F", status="fault", request=forged)
    assert journal.hops("F")[0]["request"] == forged
    monkeypatch.setenv(KEY_ENV, JournalCipher.new_key())
    assert Journal(engine).hops("F")[0]["request"] == forged
    engine.dispose()


@pytest.mark.parametrize("value", ["short", "a,b", "x" * 44, JournalCipher.new_key()[:-4]])
def test_an_unusable_key_fails_when_the_journal_opens(tmp_path, monkeypatch, value):
    engine = open_database(f"sqlite:///{tmp_path}/j.db")
    monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(JournalKeyError, match="not 32 bytes in URL-safe base64"):
        Journal(engine)
    engine.dispose()
