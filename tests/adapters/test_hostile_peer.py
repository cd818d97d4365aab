"""A hostile (or broken) peer cannot hurt the bus through its answers: the adapters read them
with zeep under services.client.safe_zeep_settings (no DTD, no entity, no external reference,
no huge tree) and BoundedTransport (never compressed, never longer than max_answer_bytes).

Each answer below comes from a real HTTP server on loopback; a second listener stands for the
loopback URLs the answers point at, and must never be contacted."""
from __future__ import annotations

import copy
import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.province_billing import ProvinceBillingAdapter
from bench.hostile import Canary   # the battery's loopback listener, counting connections
from bus.faults import PeerFault
from bus.message import Message
from bus.router import Decision, Route
from config.settings import PeerConfig
from services.client import BoundedTransport, BusClient, safe_zeep_settings
from tests.e2e.conftest import example

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "http://ws.chinaunicom.cn/BankPayment/unibssBody"
CAP = 1 << 20


def answers(canary: str) -> dict[str, tuple[dict, bytes]]:
    def env(inner: str, prolog: str = "") -> bytes:
        return (f'<?xml version="1.0"?>{prolog}<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
                f'<QueryBalanceResponse xmlns="{NS}">{inner}</QueryBalanceResponse>'
                f"</soap:Body></soap:Envelope>").encode()
    laughs = '<!DOCTYPE r [<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">' for i in range(1, 10)) + "]>"
    xml = {"Content-Type": "text/xml; charset=utf-8"}
    return {
        "xxe-file": (xml, env("&xxe;", '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')),
        "xxe-loopback": (xml, env("&xxe;", f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "{canary}/xxe">]>')),
        "external-dtd": (xml, env("", f'<!DOCTYPE r SYSTEM "{canary}/evil.dtd">')),
        "parameter-entity": (xml, env("", f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{canary}/p.dtd"> %p;]>')),
        "billion-laughs": (xml, env("&l9;", laughs)),
        "quadratic": (xml, env("&a;" * 20_000, '<!DOCTYPE r [<!ENTITY a "' + "x" * 50_000 + '">]>')),
        "xinclude": (xml, env(f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{canary}/x"/>')),
        "deep": (xml, env("<a>" * 10_000 + "</a>" * 10_000)),
        "oversized": (xml, env("<a>" + "x" * (CAP + 10) + "</a>")),
        "gzip-bomb": ({**xml, "Content-Encoding": "gzip"}, gzip.compress(env("<a>" + " " * (200 << 20) + "</a>"), 9)),
        "not-xml": (xml, b"\x00\xff<<<"),
        "html": ({"Content-Type": "text/html"}, b"<html><body>502 Bad Gateway</body></html>"),
    }


@pytest.fixture(scope="module")
def hostile():
    canary = Canary()
    table = answers(canary.url)
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):   # noqa: N802
            seen.append(dict(self.headers))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.path.strip("/").split("/")[0]
            headers, body = table[kind]
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", canary, seen
    server.shutdown()
    canary.close()


def call(base: str, kind: str):
    peer = PeerConfig(key="province_billing", adapter="province_billing", name="BILLING-{province}",
                      url=f"{base}/{kind}", timeout=10, max_answer_bytes=CAP)
    adapter = ProvinceBillingAdapter(peer)
    args = copy.deepcopy(example("BankPayment", "QueryBalance"))
    message = Message("BankPayment", "QueryBalance", args["UNI_BSS_HEAD"], args["UNI_BSS_BODY"])
    route = Route(name="r", service="BankPayment", target={2: "province_billing"})
    return adapter.round_trip(message, Decision(route=route, peer=peer, province="51", phase=2))


@pytest.mark.parametrize("kind", list(answers("http://x")))
def test_a_hostile_answer_is_an_unusable_answer(hostile, kind):
    base, canary, seen = hostile
    started = time.monotonic()
    with pytest.raises(PeerFault) as err:
        call(base, kind)
    assert err.value.code == "Server.PeerFault" and "BILLING-51" in err.value.message
    assert time.monotonic() - started < 10
    assert canary.hits == 0, "the answer made the bus contact a loopback URL"
    assert "passwd" not in err.value.message and "root:" not in err.value.message
    if kind in ("oversized", "gzip-bomb"):
        assert f"longer than {CAP} bytes" in err.value.message
    assert seen[-1].get("Accept-Encoding") == "identity", "the bus asks for uncompressed answers"


def test_the_bus_client_reads_answers_the_same_way():
    client = BusClient("http://127.0.0.1:9")
    assert isinstance(client.transport, BoundedTransport)
    assert client.transport.session.headers["Accept-Encoding"] == "identity"
    settings = safe_zeep_settings()
    assert (settings.forbid_dtd, settings.forbid_entities, settings.forbid_external,
            settings.xml_huge_tree) == (True, True, True, False)
