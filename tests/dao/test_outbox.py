"""The outbox on SQLite and PostgreSQL: due rows in order per key, one claimer, dead letters."""
from __future__ import annotations

from datetime import timedelta

from dao.db import open_database
from dao.journal import now
from dao.outbox import OutboxStore


def row(n, key="18603011234", peer="BILLING-51"):
    return dict(msg_id=f"m{n}", service="AccountSync", operation="SyncThreeAccount", trans_ido=f"T{n}",
                peer_key="province_billing", peer_name=peer, province="51", order_key=key, message="{}")


def test_due_claim_fail_dead_and_replay(db_url):
    engine = open_database(db_url)
    box = OutboxStore(engine)
    a1, a2, b1 = box.add([row(1), row(2), row(3, key="13000000001", peer="BILLING-17")])
    assert [r["id"] for r in box.due()] == [a1, b1], "only the oldest row of a key is due"
    lease = now() + timedelta(seconds=30)
    assert box.claim(a1, lease) and not box.claim(a1, lease), "exactly one claimer"
    assert [r["id"] for r in box.due()] == [b1], "a claimed row is not due"
    box.failed(a1, 1, "attempt 1: refused", now() + timedelta(hours=1))
    assert [r["id"] for r in box.due()] == [b1], "a row waiting for its retry holds its key's later rows"
    box.failed(a1, 2, "attempt 2: refused", None)
    assert box.get(a1)["status"] == "dead" and box.get(a1)["last_error"] == "attempt 2: refused"
    assert [r["id"] for r in box.due()] == [b1], "a dead letter holds its user's later rows (order)"
    assert box.waiting_behind(box.get(a1)) == 1
    assert box.depth() == {"BILLING-51": 1, "BILLING-17": 1}
    assert box.replay(a1) and not box.replay(a1)
    assert box.get(a1)["attempts"] == 0 and [r["id"] for r in box.due()] == [a1, b1]
    box.delivered(a1, 1, "8888")
    assert (box.get(a1)["status"], box.get(a1)["rsp_code"]) == ("delivered", "8888")
    assert [r["id"] for r in box.list("dead")] == [] and [r["id"] for r in box.due()] == [a2, b1]
    engine.dispose()


def test_a_discarded_dead_letter_lets_its_users_later_rows_go_on(db_url):
    engine = open_database(db_url)
    box = OutboxStore(engine)
    a1, a2 = box.add([row(1), row(2)])
    assert not box.discard(a1, "not dead"), "only a dead letter can be discarded"
    box.failed(a1, 1, "attempt 1: refused", None)
    assert [r["id"] for r in box.due()] == []
    assert box.discard(a1, "discarded by ops: superseded") and not box.replay(a1)
    assert box.get(a1)["status"] == "discarded" and box.get(a1)["last_error"] == "discarded by ops: superseded"
    assert [r["id"] for r in box.due()] == [a2]
    engine.dispose()


def test_claim_due_takes_each_row_once(db_url):
    engine = open_database(db_url)
    box = OutboxStore(engine)
    ids = box.add([row(n, key=f"k{n}") for n in range(6)])
    first = box.claim_due(4, timedelta(seconds=30))
    second = box.claim_due(4, timedelta(seconds=30))
    assert [r["id"] for r in first] == ids[:4] and [r["id"] for r in second] == ids[4:]
    assert box.claim_due(4, timedelta(seconds=30)) == []
    engine.dispose()


def test_the_rows_of_skipped_peers_are_not_due(db_url):
    """The Forwarder skips peers whose breaker is open: their rows are neither due nor claimed."""
    engine = open_database(db_url)
    box = OutboxStore(engine)
    a, b = box.add([row(1, key="k1"), row(2, key="k2", peer="BILLING-17")])
    assert [r["id"] for r in box.due(skip_peers=["BILLING-51"])] == [b]
    assert [r["id"] for r in box.claim_due(10, timedelta(seconds=30), ["BILLING-51"])] == [b]
    assert box.get(a)["locked_until"] is None and [r["id"] for r in box.due()] == [a]
    engine.dispose()
