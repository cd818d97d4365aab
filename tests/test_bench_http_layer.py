"""What `python -m bench.http_layer` measures answers correctly: the minimal app, the bus app
built from the environment (bench/wsgi_apps.py) under a threaded server, and each outbound
client's call. Figures are not asserted (they are the bench's to print)."""
from __future__ import annotations

import importlib.util
import urllib.request

import pytest

from bench.http_layer import OUTBOUND, _client, migrate
from bench.loadgen import HEADERS, PLACEHOLDER
from bench.run import PROVINCE, query_arrears_envelope
from bench.wsgi_apps import ANSWER, _Lazy, build_bus, minimal
from bus.embedded import EmbeddedBus
from bus.server import serve_in_thread
from sandbox.store import seed_users


@pytest.fixture
def minimal_url():
    server, url = serve_in_thread(minimal)
    yield url
    server.shutdown()
    server.server_close()


def post(url: str, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST", headers=HEADERS)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


def test_the_minimal_app_reads_the_request_and_answers_one_kib_of_soap(minimal_url):
    status, answer = post(minimal_url + "/ws/BankPayment", b"<x/>" * 300)
    assert status == 200 and answer == ANSWER and len(ANSWER) == 1024
    assert b"RSP_CODE>0000<" in answer   # what the load generator counts as a success


@pytest.mark.parametrize("name", OUTBOUND)
def test_each_outbound_client_posts_and_reads_the_answer_on_a_kept_connection(minimal_url, name):
    if name == "pycurl" and importlib.util.find_spec("pycurl") is None:
        pytest.skip("pycurl is not installed (the bench installs it when it runs)")
    call, close = _client(name, minimal_url + "/ws/BankPayment", b"<x/>" * 300)
    try:
        assert [call() for _ in range(3)] == [(200, ANSWER)] * 3
    finally:
        close()


def test_the_bus_app_built_from_the_environment_routes_query_arrears_to_its_peer(tmp_path, monkeypatch):
    config = tmp_path / "bench.yaml"
    config.write_text("files: {cdr: {enabled: false}, reconciliation: {enabled: false}}\n", encoding="utf-8")
    db_url = f"sqlite:///{tmp_path}/bus.db"
    with EmbeddedBus(workdir=tmp_path / "peers") as peers:
        monkeypatch.setenv("BSSBUS_CONFIG", str(config))
        monkeypatch.setenv("BSSBUS_DB_URL", db_url)
        monkeypatch.setenv("BSSBUS_SANDBOX_URL", peers.sandbox_url)
        migrate(db_url)
        app = _Lazy(build_bus)
        server, url = serve_in_thread(app)
        try:
            body = query_arrears_envelope(seed_users(PROVINCE)[0].msisdn)
            for n in range(2):   # the first call builds the app, the second finds it built
                status, answer = post(url + "/ws/BankPayment", body.replace(PLACEHOLDER, f"HTTPLAYER{n:012d}").encode())
                assert status == 200 and b"RSP_CODE>0000<" in answer, answer[:500]
            assert app.app is not None
        finally:
            server.shutdown()
            server.server_close()
            app.close()
