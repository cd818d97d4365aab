"""Transport, for real: `bssbus serve` terminating TLS under gunicorn on loopback (a throwaway
CA, a server certificate for 127.0.0.1, client certificates), with `security.authentication:
required`. A consumer held to its client certificate (by subject, by fingerprint), one held to
its address (clients bound to 127.0.0.1 or 127.0.0.2), and a trusted proxy (127.0.0.3)
whose forwarding and certificate headers count while everyone else's are ignored."""
from __future__ import annotations

import http.client
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
import yaml

from bus.security import username_token
from bus.server import free_port
from tests.certs import issue, make_ca
from tests.e2e.test_security import a_user, arrears, envelope, fault_of, rsp_code

pytestmark = pytest.mark.e2e

PASSWORDS = {"ESALES": "es-pw", "HQCRM": "hq-pw", "PCRM": "pc-pw", "TOPUP": "tu-pw", "VAC": "vac-pw",
             "ICBC": "icbc-pw", "CCB": "ccb-pw", "BOC": "boc-pw"}
PROXY = "127.0.0.3"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = make_ca(folder), make_ca(folder / "rogue", cn="someone else's CA")
    icbc_dn = {"C": "CN", "O": "ICBC", "CN": "icbc-gateway"}
    boc_dn = {"O": "BOC", "CN": "boc-gateway"}
    return {"ca": ca, "server": issue(ca, folder, "server", {"CN": "127.0.0.1"}, server_ips=["127.0.0.1"]),
            "icbc": issue(ca, folder, "icbc", icbc_dn),
            "ccb": issue(ca, folder, "ccb", {"O": "CCB", "CN": "ccb-gateway"}),
            "icbc-rogue": issue(rogue, folder / "rogue", "icbc", icbc_dn),
            "boc": issue(ca, folder, "boc", boc_dn), "boc-renewed": issue(ca, folder, "boc-renewed", boc_dn)}


@pytest.fixture(scope="module")
def tls_bus(pki, tmp_path_factory):
    """`bssbus serve` (and its sandbox) with TLS, client certificates optional, authentication required."""
    work = tmp_path_factory.mktemp("tls-serve")
    secrets = work / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"consumers": {c: {"password": p} for c, p in PASSWORDS.items()}}), "utf-8")
    config = work / "tls.yaml"
    config.write_text(yaml.safe_dump({
        "server": {"workers": 1, "threads": 8,
                   "tls": {"cert": str(pki["server"].cert), "key": str(pki["server"].key),
                           "client_ca": str(pki["ca"].cert), "client_certs": "optional"}},
        "security": {"authentication": "required", "trusted_proxies": [PROXY]},
        "consumers": {"ICBC": {"client_cert": {"subject": "CN=icbc-gateway,O=ICBC,C=CN"}},
                      "CCB": {"allow_from": ["127.0.0.1/32"]},
                      "BOC": {"domain": "BANK", "bank_code": "BOC", "services": {"BankPayment": "all"},
                              "client_cert": {"sha256": pki["boc"].sha256}}}}), "utf-8")
    port = free_port()
    env = {**os.environ, "BSSBUS_DATA_DIR": str(work / "var"), "BSSBUS_SECRETS_FILE": str(secrets),
           "REQUESTS_CA_BUNDLE": str(pki["ca"].cert)}   # the sandbox's systems call the bus over https
    proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "serve", "--port", str(port), "--config", str(config)],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("bssbus serving") or proc.poll() is not None:
            break
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    bus = {"port": port, "lines": lines, "pki": pki, "proc": proc}
    try:
        assert lines[-1].startswith(f"bssbus serving https://127.0.0.1:{port}/"), "".join(lines)
        deadline = time.monotonic() + 90   # gunicorn's worker builds the app after the fork
        while True:
            try:
                if request(bus, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("bssbus serve did not answer /healthz over https: " + "".join(lines))
            time.sleep(0.2)
        yield bus
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def request(bus, method, path, body=None, cert=None, source="127.0.0.1", headers=None):
    """One HTTPS request from ``source`` (a loopback address), presenting ``cert`` (a key of
    pki) or no client certificate; returns (status, body)."""
    context = ssl.create_default_context(cafile=str(bus["pki"]["ca"].cert))
    if cert:
        context.load_cert_chain(str(bus["pki"][cert].cert), str(bus["pki"][cert].key))
    conn = http.client.HTTPSConnection("127.0.0.1", bus["port"], context=context, timeout=30,
                                       source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def query(bus, consumer, cert=None, source="127.0.0.1", headers=None):
    """BankPayment.QueryArrears as ``consumer`` (its own bank code): RSP_CODE or fault code."""
    data = envelope("BankPayment", "QueryArrears", arrears(a_user("51"), bank=consumer),
                    username_token(consumer, PASSWORDS[consumer]))
    status, body = request(bus, "POST", "/ws/BankPayment", data, cert=cert, source=source, headers=headers)
    return rsp_code(body) if status == 200 else fault_of(body)[0]


def logged(bus, text, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in list(bus["lines"])):
            return True
        time.sleep(0.1)
    return False


REFUSED = "Client.FailedAuthentication"


def test_https_serves_the_bus_and_its_contracts(tls_bus):
    status, body = request(tls_bus, "GET", "/ws/BankPayment?wsdl")
    assert status == 200 and f'location="https://127.0.0.1:{tls_bus["port"]}/ws/BankPayment"'.encode() in body
    assert query(tls_bus, "CCB") == "0000", "a consumer without client_cert needs no certificate"
    assert query(tls_bus, "CCB", cert="ccb") == "0000", "and may present one"
    with pytest.raises(OSError):   # plain HTTP on the TLS port gets no answer
        conn = http.client.HTTPConnection("127.0.0.1", tls_bus["port"], timeout=10)
        conn.request("GET", "/healthz")
        conn.getresponse().read()


def test_a_consumer_with_client_cert_needs_its_own_certificate(tls_bus):
    assert query(tls_bus, "ICBC") == REFUSED
    assert logged(tls_bus, "ICBC: no verified client certificate from 127.0.0.1")
    assert query(tls_bus, "ICBC", cert="ccb") == REFUSED, "another consumer's certificate"
    assert logged(tls_bus, "ICBC: the client certificate CN=ccb-gateway,O=CCB")
    with pytest.raises((ssl.SSLError, ConnectionError)):   # the same subject from another CA: no handshake
        query(tls_bus, "ICBC", cert="icbc-rogue")
    assert query(tls_bus, "ICBC", cert="icbc") == "0000"


def test_a_consumer_pinned_by_fingerprint(tls_bus):
    assert query(tls_bus, "BOC", cert="boc") == "0000"
    assert query(tls_bus, "BOC", cert="boc-renewed") == REFUSED, "same subject, another certificate"
    assert query(tls_bus, "BOC") == REFUSED


def test_allow_from_refuses_another_address(tls_bus):
    assert query(tls_bus, "CCB", source="127.0.0.2") == REFUSED
    assert logged(tls_bus, "CCB: calls from 127.0.0.2, outside its allow_from (127.0.0.1/32)")
    assert query(tls_bus, "CCB", source="127.0.0.1") == "0000"


def test_forwarding_headers_count_from_the_trusted_proxy_only(tls_bus):
    nginx = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-S-DN": "CN=icbc-gateway,O=ICBC,C=CN",
             "X-Forwarded-For": "127.0.0.1"}
    assert query(tls_bus, "ICBC", source=PROXY, headers=nginx) == "0000", "the certificate nginx verified"
    assert query(tls_bus, "ICBC", source="127.0.0.1", headers=nginx) == REFUSED, "anyone else's headers"
    assert query(tls_bus, "ICBC", source=PROXY, headers=dict(nginx, **{"X-SSL-Client-Verify": "NONE"})) == REFUSED
    assert query(tls_bus, "CCB", source=PROXY, headers={"X-Forwarded-For": "127.0.0.1"}) == "0000"
    assert query(tls_bus, "CCB", source=PROXY, headers={"X-Forwarded-For": "127.0.0.1, 127.0.0.2"}) == REFUSED
    assert logged(tls_bus, "CCB: calls from 127.0.0.2 (through the proxy 127.0.0.3)")
    assert query(tls_bus, "CCB", source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"}) == REFUSED
    pem = {"X-SSL-Client-Verify": "SUCCESS", "X-SSL-Client-Cert": quote(tls_bus["pki"]["boc"].pem, safe="")}
    assert query(tls_bus, "BOC", source=PROXY, headers=pem) == "0000", "nginx's $ssl_client_escaped_cert"
    renewed = dict(pem, **{"X-SSL-Client-Cert": quote(tls_bus["pki"]["boc-renewed"].pem, safe="")})
    assert query(tls_bus, "BOC", source=PROXY, headers=renewed) == REFUSED
