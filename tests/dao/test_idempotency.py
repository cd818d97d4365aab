"""The idempotency-key store on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

from dao.db import open_database
from dao.idempotency import IdempotencyStore
from dao.journal import now

TTL, STALE = timedelta(hours=1), timedelta(seconds=30)


def test_claim_complete_release_and_purge(db_url):
    engine = open_database(db_url)
    keys = IdempotencyStore(engine)
    assert keys.claim("PAY:ICBC:1", "BankPayment", "Pay", "m1", TTL, STALE) is None
    held = keys.claim("PAY:ICBC:1", "BankPayment", "Pay", "m2", TTL, STALE)
    assert (held["status"], held["msg_id"]) == ("pending", "m1")
    keys.complete("PAY:ICBC:1", "m1", '{"head": {}}')
    held = keys.claim("PAY:ICBC:1", "BankPayment", "Pay", "m3", TTL, STALE)
    assert (held["status"], held["reply"]) == ("done", '{"head": {}}')
    assert keys.claim("PAY:ICBC:2", "BankPayment", "Pay", "m4", TTL, STALE) is None
    keys.release("PAY:ICBC:2", "m4")
    assert keys.claim("PAY:ICBC:2", "BankPayment", "Pay", "m5", TTL, STALE) is None, "a released key is free"
    assert keys.purge(now() + timedelta(hours=2)) == 2
    assert keys.get("PAY:ICBC:1") is None
    engine.dispose()


def test_an_abandoned_or_expired_key_is_taken_over_once(db_url):
    engine = open_database(db_url)
    keys = IdempotencyStore(engine)
    assert keys.claim("T:BANK:1", "BankPayment", "QueryBalance", "dead", TTL, STALE) is None
    assert keys.claim("T:BANK:1", "BankPayment", "QueryBalance", "m2", TTL, timedelta(0)) is None
    assert keys.get("T:BANK:1")["msg_id"] == "m2"
    keys.complete("T:BANK:1", "m2", "{}")
    assert keys.claim("T:BANK:1", "BankPayment", "QueryBalance", "m3", timedelta(0), STALE) is not None
    assert keys.claim("T:BANK:2", "BankPayment", "QueryBalance", "m4", timedelta(0), STALE) is None
    assert keys.claim("T:BANK:2", "BankPayment", "QueryBalance", "m5", TTL, STALE) is None, "expired: taken over"
    engine.dispose()


def test_insert_done_stores_a_free_key_once_and_never_raises_on_a_taken_one(db_url):
    engine = open_database(db_url)
    keys = IdempotencyStore(engine)
    with engine.begin() as conn:
        assert IdempotencyStore.insert_done(conn, "T:PCRM:1", "AccountSync", "SyncThreeAccount", "m1",
                                            '{"first": true}', TTL) is True
        # the same key again, in the same transaction: refused without spoiling the transaction
        assert IdempotencyStore.insert_done(conn, "T:PCRM:1", "AccountSync", "SyncThreeAccount", "m2",
                                            "{}", TTL) is False
        assert IdempotencyStore.insert_done(conn, "T:PCRM:2", "AccountSync", "SyncThreeAccount", "m3",
                                            "{}", TTL) is True
    assert (keys.get("T:PCRM:1")["msg_id"], keys.get("T:PCRM:1")["status"]) == ("m1", "done")
    assert keys.get("T:PCRM:2")["msg_id"] == "m3"
    assert keys.claim("T:PCRM:1", "AccountSync", "SyncThreeAccount", "m4", TTL, STALE)["reply"] == '{"first": true}'
    engine.dispose()
