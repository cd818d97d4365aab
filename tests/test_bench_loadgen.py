"""The paced (open-loop) load generator of `make bench` sends its whole schedule whatever the
answers, each request with a TRANS_IDO of its own, and counts what failed. Behaviour only:
no figure here depends on the machine's speed."""
from __future__ import annotations

import http.server
import re
import threading
import time

import pytest

from bench.loadgen import run_paced

OK = b"<RSP_CODE>0000</RSP_CODE>"


@pytest.fixture
def peer():
    """A loopback HTTP/1.1 server answering RSP_CODE 0000; ``fail_every`` makes every nth
    request HTTP 500 and ``delay`` slows each answer. It records each TRANS_IDO it got."""
    state = {"serials": [], "fail_every": 0, "delay": 0.0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state["serials"].append(re.search(rb"<id>(.*?)</id>", body).group(1).decode())
                n = len(state["serials"])
            time.sleep(state["delay"])
            status = 500 if state["fail_every"] and n % state["fail_every"] == 0 else 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(OK)))
            self.end_headers()
            self.wfile.write(OK)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/ws/Test"
    yield state
    server.shutdown()
    server.server_close()


def test_it_sends_rate_times_duration_requests_each_with_its_own_serial(peer):
    result = run_paced(peer["url"], "<id>@@TRANS_IDO@@</id>", "TP", rate=40, duration=1.0, connections=4)
    assert result.scheduled == 40 and result.requests == 40 and result.errors == 0
    assert len(peer["serials"]) == 40 and len(set(peer["serials"])) == 40
    assert all(s.startswith("TP") and len(s) <= 28 for s in peer["serials"])
    assert result.p50_ms <= result.p99_ms <= result.p999_ms


def test_a_slow_target_still_gets_the_whole_schedule(peer):
    """Open loop: with one connection and answers slower than the rate, a closed loop would
    send fewer requests; the paced generator sends them all, late, and counts the wait."""
    peer["delay"] = 0.05
    result = run_paced(peer["url"], "<id>@@TRANS_IDO@@</id>", "TS", rate=40, duration=0.5, connections=1)
    assert result.requests == result.scheduled == 20 and result.errors == 0
    assert result.send_lag_p99_ms > 0 and result.p99_ms >= result.send_lag_p99_ms


def test_failed_answers_are_counted_as_errors(peer):
    peer["fail_every"] = 4
    result = run_paced(peer["url"], "<id>@@TRANS_IDO@@</id>", "TF", rate=40, duration=1.0, connections=4)
    assert result.requests == 40
    assert result.errors == 10 and result.error_kinds == {"bad_status": 10}
