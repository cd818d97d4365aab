"""Store and forward: the Outbox, the Forwarder, the RedeliveryPolicy and the DeadLetterChannel.

A route with ``delivery: store-and-forward`` does not call its peer while the caller waits:
the bus stores the message in the outbox (one row per recipient) and answers "accepted".
The :class:`Forwarder` then peeks at due rows, claims one, sends it through the peer's
adapter, and removes it from the queue (``delivered``) or counts the attempt and schedules
the next one by the :class:`RedeliveryPolicy`; when the attempts are spent the row becomes a
dead letter (``dead``), with its last error, until an operator replays it (`bssbus dlq`).
Every attempt is journalled as an outbound hop of the message, and counted in the row before
it is made.

Delivery is *at least once*: if the process dies after the peer accepted a message and before
the row says so, the message is sent again after its lease. Every message keeps its TRANS_IDO
on each attempt, so the peer, an idempotent receiver (the sandbox peers are, as the real
systems' TRANS_IDO rule asks), answers the repeat from memory and applies it once; the
crash proof (`python -m bench.reliability`) counts such redeliveries apart from duplicates.
"""
from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from bus import logs
from bus.breaker import CircuitOpen
from bus.faults import BusFault
from bus.idempotency import key_of, stored
from bus.message import Message, Reply
from bus.router import Decision
from dao.idempotency import IdempotencyStore
from dao.journal import now
from dao.outbox import OutboxStore

log = logging.getLogger("bssbus.forwarder")

STORE_AND_FORWARD = "store-and-forward"


@dataclass(frozen=True)
class RedeliveryPolicy:
    """How often and how soon to try again: exponential backoff with jitter, capped."""

    max_attempts: int = 30
    initial_seconds: float = 1.0
    multiplier: float = 2.0
    cap_seconds: float = 300.0
    jitter: float = 0.2           # +/- this fraction of the delay, so retries do not march together

    def delay(self, attempt: int, rng: random.Random = random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.cap_seconds, self.initial_seconds * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))

    @classmethod
    def from_config(cls, spec: dict | None) -> "RedeliveryPolicy":
        spec = dict(spec or {})
        policy = cls(**{k: type(getattr(cls, k))(v) for k, v in spec.items() if k in cls.__dataclass_fields__})
        if policy.max_attempts < 1 or policy.initial_seconds < 0 or policy.multiplier < 1:
            raise ValueError("redelivery: max_attempts >= 1, initial_seconds >= 0, multiplier >= 1")
        return policy


def order_key(message: Message) -> str:
    """Messages of one user are delivered in order: the key is the user's number; a message
    without one is kept in order with the others of its order (its ORDER_ID) or work order."""
    body = message.body or {}
    if message.msisdn:
        return message.msisdn[:60]
    for field in ("ORDER_ID", "TRADE_ID"):
        if body.get(field):
            return f"{field}:{body[field]}"[:60]
    return f"{message.service}:{message.trans_ido}"[:60]


def accept(bus, message: Message, decision: Decision, claim_key: bool = True) -> Reply | None:
    """Store ``message`` for the decision's target and every further recipient and return the
    caller's answer ("accepted", RSP_CODE 0000), durable before it is returned.

    One transaction holds the message's journal row, its outbox rows (one per recipient) and,
    with ``claim_key``, its idempotency key with this answer; it is committed together with
    the transactions of concurrent requests (:class:`dao.group_commit.GroupCommit`). When the
    key is held already (a repeat, or its first copy is still in flight) nothing is written
    and the result is None: the caller then asks the IdempotentConsumer for the first answer.
    """
    targets = [decision, *decision.also]
    names = ", ".join(d.peer_name for d in targets)
    head = {k: v for k, v in message.head.items() if k not in ("RESPONSE", "MSG_SENDER", "MSG_RECEIVER")}
    head.update(ACTION_CODE="1", MSG_SENDER="BUS", MSG_RECEIVER=message.caller,
                RESPONSE={"RSP_TYPE": "0", "RSP_CODE": "0000",
                          "RSP_DESC": f"Accepted: the bus delivers it to {names}."})
    reply = Reply(head=head, body=None, peer="BUS")
    payload = json.dumps({"service": message.service, "operation": message.operation, "head": message.head,
                          "body": message.body, "route": decision.route.name, "msg_id": message.msg_id},
                         ensure_ascii=False, default=str)
    rows = [dict(msg_id=message.msg_id, service=message.service, operation=message.operation,
                 trans_ido=message.trans_ido, peer_key=_peer_key(d), peer_name=d.peer_name,
                 province=d.province, order_key=order_key(message), message=payload) for d in targets]
    entry = dict(bus.inbound_row(message), status="accepted", rsp_code="0000", target=decision.peer_name,
                 province=decision.province, route=decision.describe()[:200], finished_at=now(),
                 elapsed_ms=(time.time() - message.received_at) * 1000)
    consumer = bus.idempotency
    key, answer = key_of(message), stored(reply, message)

    def store(conn) -> int | None:
        if claim_key and not IdempotencyStore.insert_done(conn, key, message.service, message.operation,
                                                          message.msg_id, answer, consumer.ttl):
            return None
        entry_id = bus.journal.insert(conn, dict(entry))
        OutboxStore.add_in(conn, rows)
        return entry_id

    entry_id = bus.writer.run(store)
    if entry_id is None:
        return None
    message.journal_id, message.accepted = entry_id, True
    return reply


def dead_letter_hop(message: Message, row: dict, attempts: int, fault: BusFault) -> dict:
    """The journal's record (direction ``adm``, status ``dead``) of a message whose attempts
    are spent: written with its last attempt, so `bssbus journal trace` shows when it became
    a dead letter (DeadLetterChannel) and why."""
    return dict(msg_id=message.msg_id, direction="adm", service=message.service, operation=message.operation,
                trans_ido=message.trans_ido, proc_id=message.proc_id, msisdn=message.msisdn,
                serial=message.serial, order_id=message.order_id, province=row["province"], source="BUS",
                target=row["peer_name"], status="dead", fault_code=fault.code, rsp_code=fault.rsp_code,
                route=f"outbox {row['id']}: a dead letter after {attempts} attempt(s)"[:200],
                error=fault.message[:1000], started_at=now())


def replay_dead_letter(outbox: OutboxStore, journal, row: dict, by: str) -> bool:
    """Send a dead letter again (DeadLetterChannel): back to pending with its attempts from
    zero, and the replay journalled (direction ``adm``, status ``replayed``, source ``by``: the
    audit line). False when the row is no longer a dead letter. `bssbus dlq replay` and the
    console's replay button both come here."""
    if not outbox.replay(row["id"]):
        return False
    journal.record(msg_id=row["msg_id"], direction="adm", service=row["service"], operation=row["operation"],
                   trans_ido=row["trans_ido"], source=by[:40], proc_id=proc_id_of(row), target=row["peer_name"],
                   province=row["province"], status="replayed",
                   route=f"dead letter {row['id']} replayed by {by}"[:200], error=(row["last_error"] or "")[:1000])
    return True


def discard_dead_letter(outbox: OutboxStore, journal, row: dict, by: str, reason: str) -> bool:
    """Give a dead letter up, so that its user's later messages go on; journalled (status
    ``discarded``, source ``by``). False when the row is no longer a dead letter."""
    if not outbox.discard(row["id"], f"discarded by {by}: {reason}"):
        return False
    journal.record(msg_id=row["msg_id"], direction="adm", service=row["service"], operation=row["operation"],
                   trans_ido=row["trans_ido"], source=by[:40], proc_id=proc_id_of(row), target=row["peer_name"],
                   province=row["province"], status="discarded",
                   route=f"dead letter {row['id']} discarded by {by}"[:200],
                   error=f"{reason} (last error: {row['last_error'] or ''})"[:1000])
    return True


def proc_id_of(row: dict) -> str | None:
    """The PROC_ID of an outbox row's message (its flow), for the journal's audit rows."""
    try:
        return (json.loads(row["message"]).get("head") or {}).get("PROC_ID")
    except (ValueError, TypeError, AttributeError, KeyError):
        return None


def _peer_key(decision: Decision) -> str:
    return decision.peer.key.split("[", 1)[0]   # a province override keeps its peer's key


class Forwarder:
    """Delivers due outbox rows (``drain``, run by each bus process's scheduler). Several
    processes and nodes share one outbox safely: a row is claimed before it is sent."""

    def __init__(self, bus, policy: RedeliveryPolicy, interval: float = 0.5, concurrency: int = 8):
        self.bus = bus
        self.policy = policy
        self.interval = interval
        self.concurrency = max(1, concurrency)
        self.batch = 2 * self.concurrency
        self._pool: ThreadPoolExecutor | None = None
        # a claimed row is this process's for its delivery (a timeout, twice, and a margin)
        longest = max((p.timeout for p in bus.router.peers.values()), default=10.0)
        self.lease = timedelta(seconds=2 * longest + 5)

    def drain(self) -> int:
        """Passes until nothing is due (the scheduled job); returns how many were attempted.
        A database error is logged and the next run tries again."""
        total = 0
        try:
            while True:
                done = self.run_once()
                total += done
                if not done:
                    return total
        except Exception:
            log.exception("forwarder pass failed")
            return total

    def run_once(self) -> int:
        """One pass over the due rows; returns how many were attempted. The rows of one pass
        belong to different users (only the oldest unsettled row of an order_key is due), so
        they are sent side by side, ``concurrency`` at a time."""
        # a peer whose breaker is open is left alone: its messages wait, untouched, until a
        # probe may go (claiming each one only to hear the refusal would churn the database)
        rows = self.bus.outbox.claim_due(self.batch, self.lease, self.bus.adapters.breakers.refusing())
        if len(rows) > 1 and self.concurrency > 1:
            if self._pool is None:   # made in the process that delivers (gunicorn forks first)
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="forwarder")
            list(self._pool.map(self.deliver, rows))
        else:
            for row in rows:
                self.deliver(row)
        return len(rows)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def deliver(self, row: dict) -> bool:
        data = json.loads(row["message"])
        message = Message(service=data["service"], operation=data["operation"], head=data["head"],
                          body=data["body"], msg_id=data["msg_id"])
        token = logs.about(message)   # its log lines carry its TRANS_IDO and PROC_ID
        try:
            return self._deliver(row, data, message)
        finally:
            logs.done(token)

    def _deliver(self, row: dict, data: dict, message: Message) -> bool:
        attempt = row["attempts"] + 1
        self.bus.writer.run(lambda conn: conn.execute(OutboxStore.attempting_statement(row["id"], attempt)))
        try:
            decision = self._decision(row, data)
            reply = self.bus.deliver(message, decision)
        except CircuitOpen as fault:
            # the peer is known to be down: wait for its breaker, without spending an attempt
            self._settle(message, OutboxStore.failed_statement(
                row["id"], row["attempts"], f"waiting: {fault.message}",
                now() + timedelta(seconds=self.policy.delay(max(row["attempts"], 1)))))
            return False
        except BusFault as fault:
            spent = attempt >= self.policy.max_attempts
            when = None if spent else now() + timedelta(seconds=self.policy.delay(attempt))
            if spent:
                message.hops.append(dead_letter_hop(message, row, attempt, fault))
            self._settle(message, OutboxStore.failed_statement(
                row["id"], attempt, f"attempt {attempt}: {fault.code}: {fault.message}", when))
            if spent:
                log.warning("outbox %s to %s is a dead letter after %d attempts: %s", row["id"],
                            row["peer_name"], attempt, fault.message)
            return False
        self._settle(message, OutboxStore.delivered_statement(row["id"], attempt, reply.rsp_code))
        return True

    def _decision(self, row: dict, data: dict) -> Decision:
        router = self.bus.router
        route = next((r for r in router.routes if r.name == data["route"]), None) or router.find_route(
            data["service"], data["operation"], data["head"].get("ORIG_DOMAIN"))
        peer = router.peers[row["peer_key"]].for_province(row["province"], data["service"])
        return Decision(route=route, peer=peer, province=row["province"],
                        phase=router.current_phases().get(row["province"]))

    def _settle(self, message: Message, outcome) -> None:
        """The attempt's journal hops and the row's new state, in one transaction (shared with
        the other deliveries finishing at the same time)."""
        hops, message.hops = list(message.hops), []

        def write(conn):
            for hop in hops:
                self.bus.journal.insert(conn, hop)
            conn.execute(outcome)
        self.bus.writer.run(write)
