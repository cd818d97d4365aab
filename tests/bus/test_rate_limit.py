"""RateLimiter: a token bucket and an in-flight cap per consumer, refusing at once."""
from __future__ import annotations

import pytest

from bus.faults import Busy
from bus.security import Limit, RateLimiter, SecurityConfigError


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


def test_the_bucket_refills_at_its_rate_and_each_key_has_its_own():
    clock = Clock()
    limiter = RateLimiter(None, {"ICBC": Limit(per_second=2, burst=2)}, clock=clock)
    for _ in range(2):
        limiter.acquire("ICBC")()
    with pytest.raises(Busy, match="ICBC sends faster than its limit"):
        limiter.acquire("ICBC")
    limiter.acquire("CCB")()          # no limit of its own, and no default: never refused
    clock.now += 0.5                  # one token back
    limiter.acquire("ICBC")()
    with pytest.raises(Busy):
        limiter.acquire("ICBC")


def test_calls_in_flight_are_capped_and_given_back():
    limiter = RateLimiter(Limit(per_second=1000, burst=1000, in_flight=2), {}, clock=Clock())
    first, second = limiter.acquire("anonymous BANK"), limiter.acquire("anonymous BANK")
    with pytest.raises(Busy, match="2 at a time"):
        limiter.acquire("anonymous BANK")
    first()
    limiter.acquire("anonymous BANK")
    second()


def test_limits_are_checked_when_read():
    with pytest.raises(SecurityConfigError, match="per_second"):
        Limit.parse({"burst": 3}, "consumers.ICBC.rate_limit")
    with pytest.raises(SecurityConfigError, match="per_second > 0"):
        Limit.parse({"per_second": 0}, "security.rate_limit")
    assert Limit.parse(None, "x") is None
    assert Limit.parse({"per_second": 5}, "x") == Limit(5.0, 5.0, None)
