"""The Bus: journal, route, call the adapter, journal again.

``Bus.handle`` is what every inbound endpoint calls with a :class:`Message`. It writes the
inbound hop to the journal, asks the :class:`ContentBasedRouter` for a target, calls that
peer's :class:`Adapter`, journals the outbound hop and returns the peer's :class:`Reply`.
Any failure is a :class:`BusFault`, journalled with its reason before it is raised.
"""
from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Engine

from adapters import ADAPTERS, AdapterRegistry
from bus import outcome
from bus.faults import BusFault, InternalError, PeerTimeout
from bus.idempotency import IdempotentConsumer
from bus.metrics import OK, Metrics
from bus.outbox import STORE_AND_FORWARD, Forwarder, RedeliveryPolicy, accept
from bus.scheduler import Scheduler
from bus.message import MONEY_OPERATIONS, Message, Reply, fen
from bus.router import ContentBasedRouter, Decision
from config.settings import Settings
from dao.db import open_database
from dao.group_commit import DirectCommit, GroupCommit
from dao.nonces import NonceStore
from bus.security import Gatekeeper, RateLimiter, mask_passwords
from dao.journal import Journal
from dao.idempotency import IdempotencyStore
from dao.outbox import OutboxStore
from dao.phases import PhaseStore, PhaseTable

log = logging.getLogger("bssbus.bus")

PARTIAL_DELIVERY = "9100"   # RSP_CODE: the first target answered, a further recipient did not


class Bus:
    """The service bus of one process. Resources are opened in :meth:`start`, not in __init__."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine: Engine | None = None
        self.journal: Journal | None = None
        self.router: ContentBasedRouter | None = None
        self.phase_store: PhaseStore | None = None
        self.idempotency: IdempotentConsumer | None = None
        self.outbox: OutboxStore | None = None
        self.forwarder: Forwarder | None = None
        self.scheduler: Scheduler | None = None
        self.adapters: AdapterRegistry | None = None
        self.writer: GroupCommit | DirectCommit | None = None
        self.gatekeeper: Gatekeeper | None = None
        self.limiter: RateLimiter | None = None
        self.nonces: NonceStore | None = None
        self.journal_reads = "deferred"
        self.metrics = Metrics()   # what /metrics shows of this process (bus/metrics.py)

    def start(self, engine: Engine | None = None, forwarder: bool = True) -> "Bus":
        self.engine = engine or open_database(self.settings.db_url)
        self.journal = Journal(self.engine)
        self.nonces = NonceStore(self.engine)
        self.gatekeeper = Gatekeeper.from_settings(self.settings, self.nonces)
        self.limiter = RateLimiter.from_settings(self.settings)
        shared = self.settings.section("database").get("group_commit", True)
        self.writer = (GroupCommit if shared else DirectCommit)(self.engine)
        self.journal_reads = self.settings.journal_reads
        self.journal.before_read = self.writer.flush   # a search here sees the reads answered here
        self.router = ContentBasedRouter.from_settings(self.settings)
        self.phase_store = PhaseStore(self.engine)
        self.phase_store.seed(self.settings.phases)
        self.router.phase_table = PhaseTable(self.phase_store, self.settings.phase_refresh_seconds)
        self.adapters = AdapterRegistry(self.settings.peers, ADAPTERS)
        self.adapters.breakers.listener = self.metrics.breaker_changed
        self.adapters.in_flight.gauge = self.metrics.in_flight
        self.metrics.watch(self.engine, self.adapters.breakers)
        self.outbox = OutboxStore(self.engine)
        redelivery = self.settings.section("redelivery")
        self.forwarder = Forwarder(self, RedeliveryPolicy.from_config(redelivery),
                                   interval=float(redelivery.get("poll_seconds", 0.5)),
                                   concurrency=int(redelivery.get("concurrency", 8)))
        longest = max((p.timeout for p in self.settings.peers.values()), default=10.0)
        self.idempotency = IdempotentConsumer(IdempotencyStore(self.engine),
                                              ttl=timedelta(hours=self.settings.idempotency_ttl_hours),
                                              wait_seconds=2 * longest + 5)
        # last: the scheduled jobs use everything above
        self.scheduler = Scheduler(self).start(forwarder=forwarder,
                                               housekeeping=bool(self.settings.section("housekeeping")
                                                                 .get("enabled", True)),
                                               files=forwarder)   # a bus that delivers picks up files too
        return self

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.forwarder is not None:
            self.forwarder.close()
        if self.writer is not None:
            self.writer.close()
        if self.engine is not None:
            self.engine.dispose()

    # -- the journal of the inbound hop -------------------------------------------------
    @staticmethod
    def inbound_row(message: Message) -> dict:
        """The journal columns of ``message``'s inbound hop that are known when it arrives."""
        return dict(msg_id=message.msg_id, direction="in", service=message.service,
                    operation=message.operation, trans_ido=message.trans_ido, proc_id=message.proc_id,
                    msisdn=message.msisdn, serial=message.serial, order_id=message.order_id,
                    amount=message.amount, work_state=message.work_state,
                    source=message.caller, request=mask_passwords(message.raw),
                    consumer=getattr(message.consumer, "id", None))

    def receive(self, message: Message) -> int:
        """Journal an inbound request as received (before its peer is called)."""
        message.journal_id = self.journal.record(**self.inbound_row(message), status="received")
        return message.journal_id

    def complete(self, message: Message, response: bytes, fault: BusFault | None = None,
                 decision: Decision | None = None, rsp_code: str | None = None) -> None:
        """Finish the inbound hop with the bytes that went back to the caller (and the
        outbound hops of its calls); write the whole hop when it has no row yet (a read, a
        repeat answered from the idempotency store, a message the router refused). A read's
        row goes to the group-commit writer without waiting for it (``bus.journal_reads``)."""
        if message.accepted and not fault:
            # durable since accept(); the answer's bytes can ride on a later commit
            self.writer.submit(lambda conn, entry_id=message.journal_id: self.journal.finish_in(
                conn, entry_id, response=response))
            return
        values = self._outcome(message, response, fault, decision, rsp_code)
        if message.journal_id is not None:
            self.journal.finish(message.journal_id, more=message.hops, **values)
            return
        row = dict(self.inbound_row(message), started_at=_utc(message.received_at), finished_at=_utc(time.time()),
                   **values)
        if message.read and self.journal_reads != "sync":   # a read's row need not be durable before its answer
            if self.journal_reads == "deferred":
                self.writer.submit(lambda conn, hops=message.hops: self.journal.record_in(conn, hops, **row))
            return
        self.journal.record(more=message.hops, **row)

    @staticmethod
    def _outcome(message: Message, response: bytes, fault: BusFault | None, decision: Decision | None,
                 rsp_code: str | None) -> dict:
        """The journal columns of a finished inbound hop: its answer, outcome and route."""
        values = dict(response=response, elapsed_ms=(time.time() - message.received_at) * 1000,
                      status="fault" if fault else "ok", rsp_code=fault.rsp_code if fault else rsp_code)
        if message.amount is not None:   # a top-up's amount is known once its billing answered
            values["amount"] = message.amount
        if fault:
            values.update(fault_code=fault.code, error=fault.message[:1000])
        if decision:
            values.update(target=decision.peer_name, province=decision.province,
                          route=decision.describe()[:200])
        if message.duplicate_of:
            values.update(status="duplicate", route=f"answered as message {message.duplicate_of}")
        return values

    def reject(self, raw: bytes, fault: BusFault, service: str | None = None,
               operation: str | None = None, response: bytes = b"", source: str | None = None) -> None:
        """Journal a request refused before it became a Message (malformed, invalid)."""
        self.journal.record(msg_id=_new_id(), direction="in", service=service, operation=operation,
                            trans_ido=fault.trans_ido, source=source, status="fault",
                            rsp_code=fault.rsp_code, fault_code=fault.code, error=fault.message[:1000],
                            request=mask_passwords(raw), response=response, elapsed_ms=0.0)

    # -- routing and delivery -----------------------------------------------------------
    def handle(self, message: Message) -> tuple[Reply, Decision | None]:
        """Answer ``message`` once per idempotency key (:mod:`bus.idempotency`): a repeat gets
        the first answer (and no decision: no peer was called).

        One-way traffic (store and forward) is accepted in one group-committed transaction
        with its key, journal and outbox rows; a read (Query*, List*) has no key and is
        journalled after its answer (``bus.journal_reads``); anything else is journalled as
        received before its peer is called, and its key claimed in the IdempotentConsumer."""
        decision = self.router.resolve(message)
        self.gatekeeper.authorize_province(message.consumer, message, decision.province)
        if decision.route.delivery == STORE_AND_FORWARD:
            reply = accept(self, message, decision)
            if reply is not None:
                return reply, decision
        elif message.read:   # no idempotency key (DOMAIN.md: "none (read)"): each read is asked afresh
            if self.journal_reads == "sync":
                self.receive(message)
            return self.route_and_deliver(message, decision)
        else:
            self.receive(message)
        return self.idempotency.run(message, lambda m: self.route_and_deliver(m, decision))

    def route_and_deliver(self, message: Message, decision: Decision | None = None) -> tuple[Reply, Decision]:
        """Route ``message``, call its peer (and any further recipients) and return the reply.

        With further recipients (EIP Recipient List) each one is called and journalled on its
        own; the reply lists every recipient's outcome in RECIPIENTS, and says in its RESPONSE
        which ones were not reached. A fault of the first target is the caller's fault.
        """
        decision = decision or self.router.resolve(message)
        if decision.route.delivery == STORE_AND_FORWARD:   # its key is claimed already
            return accept(self, message, decision, claim_key=False), decision
        try:
            reply = self.deliver(message, decision)
        except PeerTimeout as timeout:
            if (message.service, message.operation) not in outcome.CHECKS:
                raise
            reply = outcome.settle(self, message, decision, timeout)   # money: ask, never guess
        if (message.service, message.operation) in MONEY_OPERATIONS:
            message.answered_amount = fen((reply.body or {}).get("AMOUNT"))
        if decision.also:
            reply.extra.pop("answer", None)   # the first peer's bytes are not the whole answer now
            outcomes = [(decision.peer_name, reply.rsp_code, _rsp_desc(reply))]
            for extra in decision.also:
                try:
                    more = self.deliver(message, extra)
                    outcomes.append((extra.peer_name, more.rsp_code, _rsp_desc(more)))
                except BusFault as fault:
                    outcomes.append((extra.peer_name, fault.rsp_code, fault.message))
            reply.body = dict(reply.body or {}, RECIPIENTS={"RECIPIENT": [
                {"PEER": peer, "RSP_CODE": code or "", "RSP_DESC": (desc or "")[:512]}
                for peer, code, desc in outcomes]})
            missed = [f"{peer} ({desc})" for peer, code, desc in outcomes if code != "0000"]
            if missed:
                reply.head = dict(reply.head, RESPONSE={
                    "RSP_TYPE": "2", "RSP_CODE": PARTIAL_DELIVERY,
                    "RSP_DESC": f"Not delivered to every recipient: {'; '.join(missed)}"[:512]})
        return reply, decision

    def deliver(self, message: Message, decision: Decision) -> Reply:
        """Call one recipient's adapter; journal the hop; a failure is a journalled BusFault."""
        adapter = self.adapters.for_peer(decision.peer)
        started = time.time()
        try:
            reply = adapter.call(message, decision)
        except BusFault as fault:
            self.metrics.peer_call(decision.peer_name, fault.code, time.time() - started)
            self._journal_outbound(message, decision, status="fault", fault=fault, started=started)
            raise
        except Exception as exc:  # a bug in an adapter must still become a fault, and be journalled
            log.exception("adapter %s failed on %s.%s", adapter.kind, message.service, message.operation)
            fault = InternalError(f"The bus failed while calling {decision.peer_name}: "
                                  f"{type(exc).__name__}. The message is journalled as {message.msg_id}.",
                                  message.trans_ido)
            self.metrics.peer_call(decision.peer_name, fault.code, time.time() - started)
            self._journal_outbound(message, decision, status="error", fault=fault, started=started)
            raise fault from exc
        self.metrics.peer_call(decision.peer_name, OK, reply.elapsed_ms / 1000 if reply.elapsed_ms else
                               time.time() - started)
        self._journal_outbound(message, decision, status="ok", reply=reply, started=started)
        return reply

    def _journal_outbound(self, message: Message, decision: Decision, *, status: str, started: float,
                          reply: Reply | None = None, fault: BusFault | None = None) -> None:
        """Keep the outbound hop with the message; :meth:`complete` writes it with the reply."""
        message.hops.append(dict(
            msg_id=message.msg_id, direction="out", service=message.service,
            operation=message.operation, trans_ido=message.trans_ido, proc_id=message.proc_id,
            msisdn=message.msisdn, serial=message.serial, order_id=message.order_id,
            amount=_hop_amount(message, reply), work_state=message.work_state,
            province=decision.province, source="BUS",
            target=decision.peer_name, route=decision.describe()[:200], status=status,
            rsp_code=reply.rsp_code if reply else (fault.rsp_code if fault else None),
            fault_code=fault.code if fault else None,
            error=fault.message[:1000] if fault else None,
            request=reply.raw_request if reply else (fault.sent or None if fault else None),
            response=reply.raw_response if reply else (fault.received or None if fault else None),
            started_at=_utc(started), finished_at=_utc(time.time()),
            elapsed_ms=reply.elapsed_ms if reply else (time.time() - started) * 1000))


def _hop_amount(message: Message, reply: Reply | None) -> int | None:
    """The amount of a money operation's call: the request's, else what the peer answered (a
    top-up's card value)."""
    if message.amount is not None or reply is None or (message.service, message.operation) not in MONEY_OPERATIONS:
        return message.amount
    return fen((reply.body or {}).get("AMOUNT"))


def _rsp_desc(reply: Reply) -> str | None:
    return (reply.head.get("RESPONSE") or {}).get("RSP_DESC")


def _new_id() -> str:
    return uuid.uuid4().hex


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
