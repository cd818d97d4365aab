"""Coverage-guided fuzzing of the bus's inbound pipeline with atheris (libFuzzer for Python).

The same mutations and the same rule as the hypothesis test (tests/services/fuzzing.py), but
libFuzzer chooses the mutations by the code they reach in services/ and bus/: every answer must
be a SOAP fault in the request's version or a 200 valid against the contract, never a traceback,
an HTML page or Server.InternalError; the bus (in process, a real Bus on SQLite and the sandbox
peers on loopback) must answer a normal request every 200 inputs.

    pip install atheris          # or: pip install -e '.[fuzz]'
    .venv/bin/python -m bench.fuzz_inbound -runs=5000            # libFuzzer options pass through
    .venv/bin/python -m bench.fuzz_inbound -max_total_time=600

A failing input is written by libFuzzer (crash-<sha1>) and can be replayed by passing the file.
Without atheris it says how to install it and exits 2.
"""
from __future__ import annotations

import logging
import sys
import tempfile

try:
    import atheris
except ImportError:   # pragma: no cover - depends on the machine
    atheris = None


def main(argv=None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if atheris is None:
        print("fuzz_inbound: atheris is not installed: pip install atheris (a wheel exists for "
              "CPython 3.11 on x86-64 Linux)", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["services", "bus"]):
        from bus.embedded import EmbeddedBus
        from tests.services.fuzzing import Chooser, check_answer, fuzz_request
    from sandbox.store import seed_users
    from services.client import BusClient
    from tests.e2e.conftest import make_args

    logging.getLogger("bssbus").setLevel(logging.CRITICAL)   # faults are the point; the rule judges them
    unhandled: list[str] = []

    class Watch(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR and record.name in ("bssbus.inbound", "bssbus.soap"):
                unhandled.append(record.getMessage())

    logging.getLogger("bssbus").addHandler(Watch())

    class Provided(Chooser):
        def __init__(self, data: bytes):
            self.fdp = atheris.FuzzedDataProvider(data)

        def integer(self, low: int, high: int) -> int:
            return self.fdp.ConsumeIntInRange(low, high)

    tmp = tempfile.TemporaryDirectory(prefix="bssbus-fuzz-")
    embedded = EmbeddedBus(workdir=tmp.name).start()
    schemas = embedded.app.files.schemas
    runs = [0]

    def one_input(data: bytes) -> None:
        request = fuzz_request(Provided(data))
        seen = {}

        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers

        body = b"".join(embedded.app(request.environ(), start_response))
        check_answer(request, seen["status"], seen["headers"], body, schemas)
        if unhandled:
            raise AssertionError(f"the bus logged an unhandled error: {unhandled[0]}")
        runs[0] += 1
        if runs[0] % 200 == 1:   # the bus keeps serving normal traffic meanwhile
            normal()
            print(f"fuzz_inbound: {runs[0]} inputs answered by the rule; a normal request succeeds", flush=True)

    def normal() -> None:
        user = seed_users("51")[0]
        args = make_args("BankPayment", "QueryArrears", caller="BANK", route=("01", user.msisdn),
                         SERIAL_NUMBER=user.msisdn)
        result = BusClient(embedded.url).call("BankPayment", "QueryArrears", args)
        if not result.ok:
            raise AssertionError(f"a normal request failed during fuzzing: {result.fault_code} {result.fault_string}")

    atheris.Setup(argv, one_input)   # libFuzzer ends the process itself: daemon threads, temp dir left to the OS
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
