"""FUZZING: mutated envelopes (tests/services/fuzzing.py) fed to the bus's WSGI application in
process (BusApplication.__call__, a real Bus on SQLite, the sandbox peers on loopback). Every
answer is parseable XML: a SOAP fault in the request's version with a status to match, or a 200
valid against the contract; no exception escapes, no traceback or HTML, no Server.InternalError,
nothing logged as unhandled; and afterwards a normal request still succeeds.

About 200 examples (``BSSBUS_FUZZ_EXAMPLES`` for more), no deadline; hypothesis keeps no example
database in the work tree. The atheris harness (bench/fuzz_inbound.py) drives the same mutations.
"""
from __future__ import annotations

import logging
import os
from collections import Counter

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install hypothesis (the test extras)")
from hypothesis import HealthCheck, given, settings, strategies as st   # noqa: E402

from bus.embedded import EmbeddedBus   # noqa: E402
from sandbox.store import seed_users   # noqa: E402
from services.client import BusClient   # noqa: E402
from tests.e2e.conftest import make_args   # noqa: E402
from tests.services.fuzzing import Chooser, check_answer, fuzz_request   # noqa: E402

EXAMPLES = int(os.environ.get("BSSBUS_FUZZ_EXAMPLES", "200"))


class Drawn(Chooser):
    def __init__(self, data):
        self.data = data

    def integer(self, low, high):
        return self.data.draw(st.integers(low, high))


class Errors(logging.Handler):
    """Every ERROR the bus logs while fuzzed (an exception the last line of defence caught)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    errors = Errors()
    logger = logging.getLogger("bssbus")
    logger.addHandler(errors)
    try:
        with EmbeddedBus(workdir=tmp_path_factory.mktemp("fuzz")) as embedded:
            yield embedded, errors, Counter()
    finally:
        logger.removeHandler(errors)


def call(app, request):
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    body = b"".join(app(request.environ(), start_response))
    return seen["status"], seen["headers"], body


def normal_request_succeeds(embedded) -> None:
    user = seed_users("51")[0]
    args = make_args("BankPayment", "QueryArrears", caller="BANK", route=("01", user.msisdn),
                     SERIAL_NUMBER=user.msisdn)
    result = BusClient(embedded.url).call("BankPayment", "QueryArrears", args)
    assert result.ok, (result.fault_code, result.fault_string, result.head)


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_answer_to_a_mutated_envelope_is_a_fault_or_a_valid_response(fuzzed, data):
    embedded, errors, outcomes = fuzzed
    request = fuzz_request(Drawn(data))
    status, headers, body = call(embedded.app, request)
    outcomes[check_answer(request, status, headers, body, embedded.app.files.schemas)] += 1
    unhandled = [r for r in errors.records if r.name in ("bssbus.inbound", "bssbus.soap")]
    assert not unhandled, [r.getMessage() for r in unhandled]


def test_the_bus_still_serves_after_the_fuzzing(fuzzed):
    embedded, errors, outcomes = fuzzed
    normal_request_succeeds(embedded)
    print("fuzz outcomes:", dict(outcomes))
    assert not [r for r in errors.records if r.name in ("bssbus.inbound", "bssbus.soap")]
