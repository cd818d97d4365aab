"""CircuitBreaker: the stability pattern (Nygard, *Release It!*) guarding each peer endpoint.

A peer that is down must not hold the bus's threads for a timeout on every message, nor be
hammered while it restarts. A :class:`CircuitBreaker` watches the outcome of every call to one
peer endpoint and has three states:

``closed``
    Calls go through. The breaker opens after ``failures`` consecutive failures, or when
    more than ``failure_rate`` of the last ``window`` calls failed (judged only once at least
    ``min_calls`` calls are in the window).
``open``
    Calls fail fast with ``Server.PeerUnavailable`` (:class:`CircuitOpen`) naming the peer,
    saying since when the breaker is open and the last failure's reason, without touching
    the network. After ``cooldown_seconds`` the breaker becomes half-open.
``half-open``
    One probe call is let through; every other call still fails fast. The probe's success
    closes the breaker (counts start afresh); its failure opens it again for a new cool-down.

What counts as a failure is the caller's verdict (:meth:`CircuitBreaker.failure`,
:meth:`CircuitBreaker.success`, :meth:`CircuitBreaker.release`); the adapter gives it in
``adapters/base.py`` (``Adapter.call``): a refused or dropped connection, a timeout, a SOAP
``Server`` fault and an answer the bus cannot use are failures; a SOAP ``Client`` fault (the
peer answered: it is up and rejected this request) and any answer with a business RSP_CODE
are successes; a failure before anything went on the wire (a mapping or configuration
problem of the bus) says nothing about the peer. :meth:`CircuitBreaker.call` wraps a callable
with the simple rule :func:`is_peer_failure`.

Outcomes of calls that started before the last change of state are ignored (a slow answer
from before the breaker opened does not close it). The breaker is thread-safe, and its clock
is injectable so tests never sleep. :class:`CircuitBreakers` holds one breaker per peer
endpoint (keyed by the resolved peer name, e.g. ``BILLING-51``: one per province for
per-province peers) for one process: each gunicorn worker keeps its own.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from bus.faults import PeerFault, PeerTimeout, PeerUnavailable
from config.settings import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
STATES = (CLOSED, OPEN, HALF_OPEN)


class CircuitOpen(PeerUnavailable):
    """``Server.PeerUnavailable`` raised by an open breaker: the peer was not called."""


def is_peer_failure(exc: BaseException) -> bool:
    """The plain rule: the peer refused, timed out, faulted or answered unusably."""
    return isinstance(exc, (PeerUnavailable, PeerTimeout, PeerFault)) and not isinstance(exc, CircuitOpen)


def _when(wall: float) -> str:
    """A wall-clock instant as local ISO 8601 with its offset, e.g. 2024-03-15T10:30:12+08:00."""
    return datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class Permit:
    """Leave to make one call: which state generation it belongs to and whether it is the probe."""

    generation: int
    probe: bool = False


class CircuitBreaker:
    """CircuitBreaker (stability pattern) of one peer endpoint; see the module docstring."""

    def __init__(self, name: str, config: BreakerConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 listener: Callable[[str, str], None] | None = None):
        self.name = name
        self.listener = listener      # told (name, state) on each change of state (bus/metrics.py)
        self.config = config or BreakerConfig()
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._generation = 0          # bumped on every change of state
        self._consecutive = 0         # consecutive failures; reset by a success
        self._window: deque[bool] = deque(maxlen=self.config.window)   # True: a failure
        self._opened_at: float | None = None        # clock() when it last opened
        self._opened_wall: float | None = None      # wall_clock() then, for people
        self._why = ""                # what opened it
        self._last_failure = ""       # the last failure's reason
        self._probing = False         # half-open: the probe call is under way

    # -- asking leave -----------------------------------------------------------------
    def acquire(self, trans_ido: str | None = None) -> Permit:
        """A :class:`Permit` for one call, or :class:`CircuitOpen` at once while open (or while
        half-open with the probe under way). Settle every permit with :meth:`success`,
        :meth:`failure` or :meth:`release`."""
        with self._lock:
            self._refresh()
            if self._state == CLOSED:
                return Permit(self._generation)
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                return Permit(self._generation, probe=True)
            message = self._refusal()
        raise CircuitOpen(message, trans_ido, peer=self.name)

    # -- settling a permit ------------------------------------------------------------
    def success(self, permit: Permit) -> None:
        """The peer answered usably (a business RSP_CODE is an answer)."""
        with self._lock:
            if permit.generation != self._generation:
                return
            if permit.probe:
                self._close()
            elif self._state == CLOSED:
                self._consecutive = 0
                self._window.append(False)

    def failure(self, permit: Permit, reason: str = "") -> None:
        """The peer failed this call (refused, timed out, faulted, answered unusably)."""
        with self._lock:
            if permit.generation != self._generation:
                return
            self._last_failure = (reason or "no reason given")[:400]
            self._consecutive += 1
            if permit.probe:
                self._open("the probe call after the cool-down failed")
                return
            if self._state != CLOSED:
                return
            self._window.append(True)
            failed = sum(self._window)
            if self._consecutive >= self.config.failures:
                self._open(f"{self._consecutive} consecutive failures")
            elif len(self._window) >= self.config.min_calls and failed / len(self._window) > self.config.failure_rate:
                self._open(f"{failed} of its last {len(self._window)} calls failed")

    def release(self, permit: Permit) -> None:
        """The call ended without telling anything about the peer (a bug or a bad request of
        the bus's own): counts nothing, but frees the probe slot."""
        with self._lock:
            if permit.generation == self._generation and permit.probe:
                self._probing = False

    def call(self, fn: Callable, *args, trans_ido: str | None = None, **kwargs):
        """``fn(*args, **kwargs)`` under the breaker, judged by :func:`is_peer_failure`."""
        permit = self.acquire(trans_ido)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if is_peer_failure(exc):
                self.failure(permit, str(exc))
            else:
                self.release(permit)
            raise
        self.success(permit)
        return result

    # -- for operators ----------------------------------------------------------------
    @property
    def state(self) -> str:
        with self._lock:
            self._refresh()
            return self._state

    @property
    def refusing(self) -> bool:
        """True while a call would be refused: open, or half-open with its probe under way."""
        with self._lock:
            self._refresh()
            return self._state == OPEN or (self._state == HALF_OPEN and self._probing)

    def snapshot(self) -> dict:
        """``{"state", "failures", "opened_at"}`` (failures: consecutive; opened_at: ISO or None)."""
        with self._lock:
            self._refresh()
            return {"state": self._state, "failures": self._consecutive,
                    "opened_at": _when(self._opened_wall) if self._state != CLOSED else None}

    # -- transitions (with the lock held) ---------------------------------------------
    def _refresh(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.config.cooldown_seconds:
            self._state, self._probing = HALF_OPEN, False
            self._generation += 1
            self._changed()

    def _open(self, why: str) -> None:
        self._state, self._probing, self._why = OPEN, False, why
        self._opened_at, self._opened_wall = self._clock(), self._wall()
        self._generation += 1
        self._changed()

    def _close(self) -> None:
        self._state, self._probing = CLOSED, False
        self._consecutive = 0
        self._window.clear()
        self._opened_at = self._opened_wall = None
        self._generation += 1
        self._changed()

    def _changed(self) -> None:
        if self.listener is not None:
            self.listener(self.name, self._state)

    def _refusal(self) -> str:
        since = _when(self._opened_wall)
        if self._state == HALF_OPEN:
            then = "a probe call is under way to see whether it is back"
        else:
            left = max(0.0, self.config.cooldown_seconds - (self._clock() - self._opened_at))
            then = f"one probe call will try it in {left:.1f} s"
        return (f"Peer {self.name} is unavailable: its circuit breaker is open since {since} after "
                f"{self._why}, so the bus did not call it; {then}. Last failure: {self._last_failure}")


class CircuitBreakers:
    """One :class:`CircuitBreaker` per peer endpoint (resolved peer name) for this process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self._clock, self._wall = clock, wall_clock
        self.listener: Callable[[str, str], None] | None = None   # every breaker's, see CircuitBreaker
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: BreakerConfig | None = None) -> CircuitBreaker | None:
        """The breaker of ``name``, made with ``config`` on first use; None when disabled."""
        config = config or BreakerConfig()
        if not config.enabled:
            return None
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    breaker = self._breakers[name] = CircuitBreaker(name, config, clock=self._clock,
                                                                    wall_clock=self._wall, listener=self.listener)
                    breaker._changed()   # closed, to begin with
        return breaker

    def refusing(self) -> list[str]:
        """The peers whose breaker would refuse a call now (the Forwarder leaves their
        messages alone instead of claiming each one to hear the refusal)."""
        with self._lock:
            breakers = list(self._breakers.items())
        return sorted(name for name, breaker in breakers if breaker.refusing)

    def snapshot(self) -> dict[str, dict]:
        """Peer name -> :meth:`CircuitBreaker.snapshot`, for ``/healthz``."""
        with self._lock:
            breakers = sorted(self._breakers.items())
        return {name: breaker.snapshot() for name, breaker in breakers}
