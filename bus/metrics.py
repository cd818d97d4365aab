"""What ``/metrics`` shows, in Prometheus' text format (prometheus-client).

Two kinds of series:

* **Counted as messages pass** (:class:`Metrics`): requests by service, operation, consumer
  and outcome (``ok`` or the fault code), the time a request spent in the bus per route, each
  call of a peer endpoint by outcome and its time, calls in flight per peer endpoint, each
  endpoint's circuit-breaker state, and the answers forwarded as they came. A message costs a
  counter increment and a histogram observation or two, never a database query.
* **Read from the database when scraped** (:class:`StateCollector`): outbox depth and the age
  of the oldest pending message per peer, dead letters per peer, reconciliation batches by
  state and their transactions by outcome: one grouped query each.

Under gunicorn (``bssbus serve``) each worker is a process of its own: ``PROMETHEUS_MULTIPROC_DIR``
(set by :func:`use_multiprocess` in the master before the workers fork) makes every worker
write its counters to files there, and a scrape, whichever worker answers it, adds them up
(``MultiProcessCollector``). The database's state is collected once, by the worker that
answers the scrape, so it is never counted twice. In one process (tests, the demo) each
:class:`Metrics` keeps its own registry.

Labels stay few: service and operation of the contracts, consumers of the configuration,
peer endpoints of the configuration, fault codes of the taxonomy; never a TRANS_IDO or a
phone number.
"""
from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest, values)
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from dao.db import as_utc

log = logging.getLogger("bssbus.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Breaker states as a number: what a graph and an alert compare.
BREAKER_VALUES = {"closed": 0, "half-open": 1, "open": 2}
#: Seconds: the bus's own work is a millisecond or two, a peer's tens to thousands.
BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
OK = "ok"
ANONYMOUS = "anonymous"   # the consumer label of a request whose sender is not known

disable_created_metrics()   # no *_created series: a timestamp per series that nobody graphs


def use_multiprocess(directory: str | os.PathLike) -> Path:
    """Make this process (and the workers it forks) count in ``directory``, emptied first:
    call it in gunicorn's master before the workers fork. prometheus-client chooses how values
    are kept when it is imported; it may have been imported before the directory was known,
    so the choice is made again here."""
    path = Path(directory)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    values.ValueClass = values.get_value_class()
    return path


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: drop the exited worker's live gauges (in flight, breaker state)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


class Metrics:
    """The counted series of one bus process; :meth:`render` is the page ``/metrics`` serves."""

    def __init__(self):
        self.multiprocess = multiprocess_dir() is not None
        # in multi-process mode the values live in files; a scrape builds its registry afresh
        self.registry = None if self.multiprocess else CollectorRegistry()
        r = self.registry
        self.requests = Counter("bssbus_requests", "SOAP requests by service, operation, consumer and outcome "
                                "(ok or the fault code).", ["service", "operation", "consumer", "outcome"],
                                registry=r)
        self.request_seconds = Histogram("bssbus_request_seconds", "Time from reading a request to its answer, "
                                         "by route (service and operation).", ["service", "operation"],
                                         buckets=BUCKETS, registry=r)
        self.peer_calls = Histogram("bssbus_peer_call_seconds", "Calls of a peer endpoint (synchronous and from "
                                    "the outbox) by outcome (ok or the fault code), and their time.",
                                    ["peer", "outcome"], buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("bssbus_peer_in_flight", "Calls waiting for a peer endpoint now.", ["peer"],
                               multiprocess_mode="livesum", registry=r)
        self.breaker = Gauge("bssbus_breaker_state", "Circuit breaker of a peer endpoint: 0 closed, 1 half-open, "
                             "2 open (the worst of the processes).", ["peer"], multiprocess_mode="livemax",
                             registry=r)
        self.forwarded = Counter("bssbus_forwarded", "Answers of canonical peers sent back as they came "
                                 "(fast path).", registry=r)
        self.state: StateCollector | None = None
        self.breakers = None   # the process's CircuitBreakers, refreshed before a scrape

    # -- while messages pass -------------------------------------------------------------
    def request(self, service: str, operation: str, consumer: str, outcome: str, seconds: float) -> None:
        self.requests.labels(service, operation, consumer, outcome).inc()
        self.request_seconds.labels(service, operation).observe(seconds)

    def peer_call(self, peer: str, outcome: str, seconds: float) -> None:
        self.peer_calls.labels(peer, outcome).observe(seconds)

    def breaker_changed(self, peer: str, state: str) -> None:
        """A CircuitBreaker's listener: called on each change of state (and when it is made)."""
        self.breaker.labels(peer).set(BREAKER_VALUES.get(state, 0))

    # -- scraping ------------------------------------------------------------------------
    def watch(self, engine, breakers=None) -> "Metrics":
        """Collect the database's state from ``engine`` at each scrape; refresh ``breakers``
        (an open breaker becomes half-open when its cool-down is over, on the next look)."""
        self.state = StateCollector(engine)
        self.breakers = breakers
        if self.registry is not None:
            self.registry.register(self.state)
        return self

    def render(self) -> bytes:
        if self.breakers is not None:
            self.breakers.snapshot()   # each state as of now (a listener sets the gauge)
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        if self.state is not None:
            registry.register(self.state)   # from this process only: counted once
        return generate_latest(registry)


class StateCollector:
    """Gauges read from the database when ``/metrics`` is scraped (a custom collector)."""

    def __init__(self, engine):
        self.engine = engine

    def describe(self):
        return []   # nothing to check at registration; collect() queries at scrape time

    def collect(self):
        from dao.models import OutboxEntry, ReconBatch
        o, b = OutboxEntry.__table__, ReconBatch.__table__
        depth = GaugeMetricFamily("bssbus_outbox_depth", "Messages in the outbox waiting for delivery, by peer.",
                                  labels=["peer"])
        oldest = GaugeMetricFamily("bssbus_outbox_oldest_age_seconds", "Age of the oldest message waiting for "
                                   "delivery, by peer.", labels=["peer"])
        dead = GaugeMetricFamily("bssbus_dead_letters", "Dead letters (attempts spent, not replayed or "
                                 "discarded), by peer.", labels=["peer"])
        batches = GaugeMetricFamily("bssbus_reconciliation_batches", "Reconciliation files by state (done, "
                                    "rejected, abandoned, comparing, posting).", labels=["state"])
        txns = GaugeMetricFamily("bssbus_reconciliation_transactions", "Transactions of the reconciliation files, "
                                 "by outcome (balanced, bank_only, billing_only, mismatch, unlisted).",
                                 labels=["outcome"])
        at = datetime.now(timezone.utc)
        outcomes = ("balanced", "bank_only", "billing_only", "mismatch", "unlisted")
        try:
            with self.engine.connect() as conn:
                for peer, status, n, first in conn.execute(
                        select(o.c.peer_name, o.c.status, func.count(), func.min(o.c.created_at))
                        .where(o.c.status.in_(("pending", "dead"))).group_by(o.c.peer_name, o.c.status)):
                    if status == "dead":
                        dead.add_metric([peer], n)
                    else:
                        depth.add_metric([peer], n)
                        oldest.add_metric([peer], max(0.0, (at - as_utc(first)).total_seconds()) if first else 0.0)
                totals = dict.fromkeys(outcomes, 0)
                for state, n, *sums in conn.execute(
                        select(b.c.state, func.count(), *(func.sum(b.c[f"{x}_count"]) for x in outcomes))
                        .group_by(b.c.state)):
                    batches.add_metric([state], n)
                    for name, value in zip(outcomes, sums):
                        totals[name] += int(value or 0)
                for name, value in totals.items():
                    txns.add_metric([name], value)
        except Exception as exc:   # a scrape must answer; the counted series still help
            log.warning("metrics: the database's state could not be read: %s", type(exc).__name__)
            return
        yield from (depth, oldest, dead, batches, txns)

