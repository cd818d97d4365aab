"""CircuitBreaker: every transition with a fake clock (no sleeping), thread safety, its
configuration, and what a call's outcome tells it (adapters.base.breaker_verdict)."""
from __future__ import annotations

import threading

import pytest
import zeep

from adapters.base import FAILURE, SUCCESS, breaker_verdict, sender_fault
from bus.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitBreakers, CircuitOpen, is_peer_failure
from bus.faults import InternalError, PeerFault, PeerTimeout, PeerUnavailable, ValidationFault
from config.settings import BreakerConfig, ConfigError, Settings, load_settings


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WALL = 1710469812.0   # 2024-03-15 02:30:12 UTC


def make(clock=None, **config) -> CircuitBreaker:
    clock = clock or FakeClock()
    return CircuitBreaker("BILLING-51", BreakerConfig(**config), clock=clock, wall_clock=lambda: WALL)


def fail(breaker, reason="Peer BILLING-51 did not answer QueryArrears within 10 s."):
    breaker.failure(breaker.acquire(), reason)


def succeed(breaker):
    breaker.success(breaker.acquire())


# -- closed -> open -------------------------------------------------------------------------

def test_opens_after_n_consecutive_failures():
    breaker = make(failures=3)
    assert breaker.state == CLOSED
    fail(breaker)
    fail(breaker)
    assert breaker.state == CLOSED and breaker.snapshot()["failures"] == 2
    fail(breaker)
    assert breaker.state == OPEN
    snap = breaker.snapshot()
    assert snap["state"] == "open" and snap["failures"] == 3 and snap["opened_at"].startswith("2024-03-1")


def test_a_success_resets_the_consecutive_count():
    breaker = make(failures=3, min_calls=20)
    for _ in range(5):
        fail(breaker)
        fail(breaker)
        succeed(breaker)
    assert breaker.state == CLOSED and breaker.snapshot()["failures"] == 0


def test_opens_when_the_failure_rate_of_the_window_exceeds_the_threshold():
    breaker = make(failures=100, window=10, min_calls=6, failure_rate=0.5)
    for _ in range(5):           # S F S F S F S F S F: never more than half failed
        succeed(breaker)
        fail(breaker)
    assert breaker.state == CLOSED
    fail(breaker)                # the window slides: F S F S F S F S F F -> 6 of 10 failed
    assert breaker.state == OPEN
    assert "6 of its last 10 calls failed" in pytest.raises(CircuitOpen, breaker.acquire).value.message


def test_the_failure_rate_waits_for_min_calls():
    breaker = make(failures=100, window=10, min_calls=5, failure_rate=0.5)
    fail(breaker)
    fail(breaker)
    succeed(breaker)
    fail(breaker)                # 3 of 4 failed, but only 4 calls so far
    assert breaker.state == CLOSED
    fail(breaker)                # 4 of 5
    assert breaker.state == OPEN


def test_old_outcomes_leave_the_window():
    breaker = make(failures=100, window=4, min_calls=4, failure_rate=0.5)
    fail(breaker)
    fail(breaker)
    for _ in range(4):
        succeed(breaker)         # the two failures slid out
    fail(breaker)
    fail(breaker)                # 2 of the last 4: not more than half
    assert breaker.state == CLOSED


# -- open: fail fast ------------------------------------------------------------------------

def test_while_open_calls_fail_fast_naming_the_peer_the_time_and_the_last_failure():
    breaker = make(failures=2)
    fail(breaker, "first")
    fail(breaker, "Peer BILLING-51 answered Pay with a SOAP fault (soap:Server): billing is down")
    with pytest.raises(CircuitOpen) as caught:
        breaker.acquire("T123")
    fault = caught.value
    assert isinstance(fault, PeerUnavailable) and fault.code == "Server.PeerUnavailable"
    assert fault.rsp_code == "9001" and fault.trans_ido == "T123" and fault.peer == "BILLING-51"
    assert "BILLING-51 is unavailable" in fault.message and "circuit breaker is open since" in fault.message
    assert breaker.snapshot()["opened_at"] in fault.message
    assert "2 consecutive failures" in fault.message and "billing is down" in fault.message
    assert not is_peer_failure(fault), "a fast failure is not the peer's: it must not count again"


def test_call_does_not_run_the_function_while_open():
    breaker = make(failures=1)
    fail(breaker)
    ran = []
    with pytest.raises(CircuitOpen):
        breaker.call(ran.append, 1)
    assert ran == []


# -- cool-down, half-open probe ----------------------------------------------------------------

def test_after_the_cooldown_one_probe_is_let_through():
    clock = FakeClock()
    breaker = make(clock, failures=1, cooldown_seconds=10)
    fail(breaker)
    clock.advance(9.9)
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen, match="in 0.1 s"):
        breaker.acquire()
    clock.advance(0.1)
    assert breaker.state == HALF_OPEN and breaker.snapshot()["state"] == "half-open"
    probe = breaker.acquire()
    assert probe.probe
    with pytest.raises(CircuitOpen, match="probe call is under way"):
        breaker.acquire()        # only one probe at a time
    assert breaker.state == HALF_OPEN


def test_a_successful_probe_closes_and_starts_counting_afresh():
    clock = FakeClock()
    breaker = make(clock, failures=3, window=4, min_calls=4, failure_rate=0.5, cooldown_seconds=5)
    for _ in range(3):
        fail(breaker)
    clock.advance(5)
    breaker.success(breaker.acquire())
    assert breaker.snapshot() == {"state": "closed", "failures": 0, "opened_at": None}
    assert not breaker.acquire().probe
    fail(breaker)                # the window was cleared, else 4 of the last 4 calls failed
    assert breaker.state == CLOSED


def test_a_failed_probe_opens_again_for_a_new_cooldown():
    clock = FakeClock()
    breaker = make(clock, failures=2, cooldown_seconds=5)
    fail(breaker)
    fail(breaker)
    clock.advance(5)
    breaker.failure(breaker.acquire(), "still down")
    assert breaker.state == OPEN and breaker.snapshot()["failures"] == 3
    with pytest.raises(CircuitOpen, match="the probe call after the cool-down failed.*still down"):
        breaker.acquire()
    clock.advance(4.9)
    assert breaker.state == OPEN, "the cool-down starts again from the failed probe"
    clock.advance(0.1)
    assert breaker.state == HALF_OPEN


def test_a_released_probe_lets_another_probe_through():
    clock = FakeClock()
    breaker = make(clock, failures=1, cooldown_seconds=1)
    fail(breaker)
    clock.advance(1)
    breaker.release(breaker.acquire())     # e.g. the bus could not map the message: says nothing
    assert breaker.state == HALF_OPEN
    assert breaker.acquire().probe


def test_outcomes_of_calls_started_before_a_change_of_state_are_ignored():
    clock = FakeClock()
    breaker = make(clock, failures=2, cooldown_seconds=1)
    slow = breaker.acquire()               # a call still on its way when the breaker opens
    fail(breaker)
    fail(breaker)
    breaker.success(slow)
    assert breaker.state == OPEN, "a late answer from before must not close it"
    clock.advance(1)
    probe = breaker.acquire()
    breaker.failure(slow, "late")          # neither may a late failure
    assert breaker.state == HALF_OPEN
    breaker.success(probe)
    assert breaker.state == CLOSED


def test_call_judges_by_is_peer_failure():
    breaker = make(failures=1)
    assert breaker.call(lambda: 42) == 42
    with pytest.raises(ValueError):
        breaker.call(lambda: (_ for _ in ()).throw(ValueError("a bug")))
    assert breaker.state == CLOSED, "a bug of the bus is not the peer's failure"

    def down():
        raise PeerTimeout("Peer BILLING-51 did not answer.", peer="BILLING-51")
    with pytest.raises(PeerTimeout):
        breaker.call(down)
    assert breaker.state == OPEN


# -- thread safety --------------------------------------------------------------------------------

def _race(n: int, fn) -> None:
    barrier = threading.Barrier(n)

    def worker():
        barrier.wait()
        fn()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_many_threads_failing_at_once_lose_no_count_and_open_it_once():
    breaker = make(failures=1000, window=1000, min_calls=1000)
    _race(50, lambda: [fail(breaker) for _ in range(19)])
    assert breaker.state == CLOSED and breaker.snapshot()["failures"] == 950, "no failure lost"
    fail(breaker)
    generation = breaker._generation

    def one_more():
        try:
            fail(breaker)
        except CircuitOpen:
            pass

    _race(50, one_more)          # the 49th failure opens it; the 50th fails fast or comes too late
    assert breaker.state == OPEN and breaker._generation == generation + 1, "opened exactly once"
    assert breaker.snapshot()["failures"] == 1000


def test_only_one_of_many_racing_threads_gets_the_probe():
    clock = FakeClock()
    breaker = make(clock, failures=1, cooldown_seconds=1)
    fail(breaker)
    clock.advance(1)
    barrier = threading.Barrier(64)
    permits, refused = [], []
    lock = threading.Lock()

    def worker():
        barrier.wait()
        try:
            permit = breaker.acquire()
            with lock:
                permits.append(permit)
        except CircuitOpen:
            with lock:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(permits) == 1 and permits[0].probe and len(refused) == 63
    breaker.success(permits[0])
    assert breaker.state == CLOSED


def test_concurrent_mixed_traffic_keeps_the_window_consistent():
    breaker = make(failures=10**6, window=100, min_calls=100, failure_rate=1.0)

    def worker(n):
        for i in range(500):
            (fail if (i + n) % 3 == 0 else succeed)(breaker)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.state == CLOSED and len(breaker._window) == 100


# -- one breaker per endpoint --------------------------------------------------------------

def test_one_breaker_per_peer_name_and_none_when_disabled():
    breakers = CircuitBreakers(clock=FakeClock(), wall_clock=lambda: WALL)
    config = BreakerConfig(failures=1)
    a, b = breakers.get("BILLING-51", config), breakers.get("BILLING-18", config)
    assert a is breakers.get("BILLING-51", config) and a is not b
    fail(a)
    assert breakers.snapshot()["BILLING-51"]["state"] == "open"
    assert breakers.snapshot()["BILLING-18"] == {"state": "closed", "failures": 0, "opened_at": None}
    assert breakers.get("HQ-CRM", BreakerConfig(enabled=False)) is None


# -- configuration ------------------------------------------------------------------------------

def test_defaults_and_a_per_peer_override():
    settings = load_settings(env={})
    assert settings.breaker == BreakerConfig(enabled=True, failures=5, failure_rate=0.5, window=20,
                                             min_calls=10, cooldown_seconds=10.0)
    raw = dict(settings.raw, breaker={"failures": 4},
               peers=dict(settings.raw["peers"], hq_crm=dict(settings.raw["peers"]["hq_crm"],
                                                             breaker={"cooldown_seconds": 2.5})))
    custom = Settings(raw, [])
    custom.set_sandbox_url("http://127.0.0.1:1")
    custom.validate()
    peers = custom.peers
    assert peers["hq_crm"].breaker == BreakerConfig(failures=4, cooldown_seconds=2.5)
    assert peers["hq_billing"].breaker == BreakerConfig(failures=4)
    legacy = peers["province_billing"].for_province("34", "BankPayment")
    assert legacy.key == "province_billing[34]" and legacy.breaker == BreakerConfig(failures=4)


@pytest.mark.parametrize("spec, words", [
    ({"failures": 0}, "breaker.failures: 0 must be at least 1"),
    ({"failures": 2.5}, "breaker.failures: 2.5 is not a whole number"),
    ({"failure_rate": 0}, "breaker.failure_rate: 0.0 must be above 0 and at most 1"),
    ({"failure_rate": 1.5}, "at most 1"),
    ({"window": 5, "min_calls": 6}, "breaker.min_calls: 6 must be between 1 and the window (5)"),
    ({"cooldown_seconds": -1}, "breaker.cooldown_seconds: -1.0 must be above 0"),
    ({"cooldown_seconds": "soon"}, "'soon' is not a number"),
    ({"enabled": "yes please"}, "breaker.enabled: 'yes please' is not true or false"),
    ({"failure": 3}, 'breaker.failure: unknown setting (did you mean "failures"?)'),
    ("often", "breaker must be a mapping"),
])
def test_bad_values_are_a_clear_config_error(spec, words):
    with pytest.raises(ConfigError) as caught:
        BreakerConfig.parse(spec, "breaker")
    assert words in str(caught.value)


def test_a_bad_per_peer_override_fails_at_load_time(tmp_path):
    override = tmp_path / "bad.yaml"
    override.write_text("peers:\n  province_billing:\n    breaker: {cooldown_seconds: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"peers\.province_billing\.breaker\.cooldown_seconds"):
        load_settings(override, env={})


# -- what a call tells the breaker (adapters/base.py) --------------------------------------------

def _peer_fault_from(code: str, sent: bytes) -> PeerFault:
    try:
        try:
            raise zeep.exceptions.Fault("no", code=code)
        except zeep.exceptions.Fault:
            raise PeerFault("Peer X answered with a SOAP fault", peer="X") from None
    except PeerFault as fault:
        fault.sent = sent
        return fault


def test_what_counts_as_a_failure():
    assert breaker_verdict(PeerTimeout("slow")) == FAILURE
    assert breaker_verdict(PeerUnavailable("refused")) == FAILURE
    assert breaker_verdict(_peer_fault_from("soap:Server", b"<x/>")) == FAILURE
    assert breaker_verdict(_peer_fault_from("soap:Client.ValidationError", b"<x/>")) == SUCCESS, \
        "a peer that rejects the request is up"
    unusable = PeerFault("Peer X gave an answer the bus cannot use")
    unusable.sent = b"<x/>"
    assert breaker_verdict(unusable) == FAILURE
    assert breaker_verdict(PeerFault("cannot be expressed in the legacy contract")) is None, \
        "nothing was sent: the bus's mapping failed, not the peer"
    assert breaker_verdict(CircuitOpen("open")) is None
    assert breaker_verdict(InternalError("bug")) is None
    assert breaker_verdict(ValidationFault("bad request")) is None
    assert breaker_verdict(KeyError("x")) is None
    assert [sender_fault(c) for c in ("soap:Client", "Client.X", "env:Sender", "soap:Server", "env:Receiver",
                                      None)] == [True, True, True, False, False, False]


def test_refusing_names_the_peers_a_call_would_be_refused_for():
    """What the Forwarder skips: open breakers, and half-open ones whose probe is under way."""
    clock = FakeClock()
    breakers = CircuitBreakers(clock=clock, wall_clock=lambda: WALL)
    down = breakers.get("BILLING-51", BreakerConfig(failures=1, cooldown_seconds=10))
    breakers.get("BILLING-17", BreakerConfig(failures=1))
    assert breakers.refusing() == []
    fail(down)
    assert breakers.refusing() == ["BILLING-51"]
    clock.advance(10)
    assert breakers.refusing() == [], "half-open: a probe may go"
    probe = down.acquire()
    assert breakers.refusing() == ["BILLING-51"], "its probe is under way"
    down.success(probe)
    assert breakers.refusing() == [] and down.state == CLOSED
