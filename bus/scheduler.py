"""Scheduled work of a bus process, on APScheduler: the Forwarder, the housekeeping, and the
file interfaces: the CDR distribution's scan of its inbound folder (bus/cdr.py,
``files.cdr``) and the bank reconciliation's scan of the banks' drop folders
(bus/reconcile.py, ``files.reconciliation``).

Every process runs the Forwarder's pass (rows are claimed before they are sent, so processes
never send the same message twice). Under a backlog a pass outlasts its interval; the next
one starts when it ends (APScheduler's "maximum number of running instances" notice for that
job is expected, and not logged). Housekeeping jobs (purging expired idempotency keys, old
journal rows and delivered outbox rows) take a lease in the database first, so with several
workers or nodes each job runs on one of them per interval, never twice at once. The CDR
scan takes its own lease (``cdr``) for the length of a pass and gives it back after; the
reconciliation's (``reconciliation``) is renewed while a file is worked on.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from dao.journal import now
from dao.leases import LeaseStore

log = logging.getLogger("bssbus.scheduler")


class _ForwarderStillRunning(logging.Filter):
    """Drops APScheduler's warning that a Forwarder pass was skipped because one is running."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("Forwarder.drain" in record.getMessage()
                    and "maximum number of running instances" in record.getMessage())


logging.getLogger("apscheduler.scheduler").addFilter(_ForwarderStillRunning())


class Scheduler:
    def __init__(self, bus):
        self.bus = bus
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.leases = LeaseStore(bus.engine)
        self.scheduler = BackgroundScheduler(daemon=True, job_defaults={"coalesce": True, "max_instances": 1})
        section = bus.settings.section("housekeeping")
        self.every = timedelta(minutes=float(section.get("every_minutes", 60)))
        self.journal_days = float(section.get("journal_retention_days", 90))
        self.outbox_days = float(section.get("delivered_outbox_retention_days", 7))
        self._reconciler = None
        self._cdr = None

    def start(self, forwarder: bool = True, housekeeping: bool = True, files: bool = True) -> "Scheduler":
        """Schedule the jobs. ``files``: the file interfaces too (CDR distribution and bank
        reconciliation), each as its ``enabled`` says; a bus that does not deliver (a command
        line tool's) leaves them to the served bus."""
        cdr = self.bus.settings.cdr_files
        if files and cdr.enabled:
            self.scheduler.add_job(self.cdr, "interval", seconds=cdr.every_seconds, id="cdr")
        if forwarder:
            self.scheduler.add_job(self.bus.forwarder.drain, "interval", seconds=self.bus.forwarder.interval,
                                   id="forwarder")
        if files and self.reconciler.config.enabled:
            self.scheduler.add_job(self.reconcile, "interval", seconds=self.reconciler.config.every_seconds,
                                   id="reconciliation")
        if housekeeping:
            self.scheduler.add_job(self.housekeeping, "interval", seconds=self.every.total_seconds(),
                                   id="housekeeping")
        self.scheduler.start()
        return self

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    @property
    def reconciler(self):
        """The bank reconciliation (bus.reconcile.Reconciler) of this bus."""
        if self._reconciler is None:
            from bus.reconcile import Reconciler
            self._reconciler = Reconciler(self.bus)
        return self._reconciler

    def reconcile(self) -> list | None:
        """Reconcile the bank files waiting in the drop folders, if this process gets the
        reconciliation lease (renewed while a file is worked on, given back after the pass);
        returns the reports (None: another process is reconciling)."""
        from bus.reconcile import LeaseHeld
        try:
            with self.reconciler.leased(self.owner) as keep_lease:
                reports = self.reconciler.scan(keep_lease=keep_lease)
        except LeaseHeld:
            return None
        except Exception:
            log.exception("reconciliation run failed")
            return None
        if reports:
            self.leases.ran("reconciliation", "; ".join(f"{r.file}: {r.state}" for r in reports))
        return reports

    def housekeeping(self) -> str | None:
        """Purge what has expired, if this process holds the lease; returns what it did."""
        if not self.leases.acquire("housekeeping", self.owner, self.every * 0.9):
            return None
        at = now()
        keys = self.bus.idempotency.store.purge(at)
        hops = self.bus.journal.purge(at - timedelta(days=self.journal_days))
        delivered = self.bus.outbox.purge_delivered(at - timedelta(days=self.outbox_days))
        nonces = self.bus.nonces.purge(at)
        result = (f"{keys} idempotency keys, {hops} journal hops, {delivered} delivered outbox rows, "
                  f"{nonces} token nonces purged")
        self.leases.ran("housekeeping", result)
        log.info("housekeeping: %s", result)
        return result

    def cdr(self) -> list | None:
        """One pass of the CDR inbound folder, if this process gets the ``cdr`` lease; the
        outcome of each file (None: another process holds the lease)."""
        if self._cdr is None:
            from bus.cdr import CdrJob
            self._cdr = CdrJob(self.bus.settings, self.bus.engine, self.owner, segments=self.bus.router.segments,
                               phases=self.bus.router.current_phases)
        return self._cdr.scan()
