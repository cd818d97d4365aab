"""Transport settings and checks without a network: server.tls, consumers' allow_from and
client_cert, trusted proxies, and the Gatekeeper holding a consumer to them."""
from __future__ import annotations

import base64
import logging
import os
import ssl
from urllib.parse import quote

import pytest

from bus.security import FailedAuthentication, Gatekeeper, SecurityConfigError, load_consumers
from bus.transport import (CertificateRule, ClientCert, Origin, Origins, TlsConfig, normalize_dn,
                           parse_address, parse_networks)
from config.settings import ConfigError, load_settings
from tests.certs import issue, make_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    return {"folder": folder, "ca": ca,
            "server": issue(ca, folder, "server", {"CN": "127.0.0.1"}, server_ips=["127.0.0.1"]),
            "icbc": issue(ca, folder, "icbc", {"C": "CN", "O": "ICBC", "CN": "icbc-gateway"})}


def with_tls(spec):
    settings = load_settings(env={}).copy()
    settings.raw["server"]["tls"] = spec
    return settings


# -- server.tls ------------------------------------------------------------------------------------

def test_no_tls_is_plain_http_as_before():
    assert TlsConfig.from_settings(load_settings(env={}), env={}) is None


def test_tls_from_config_and_from_the_environment(pki):
    server, ca = pki["server"], pki["ca"]
    tls = TlsConfig.from_settings(with_tls({"cert": str(server.cert), "key": str(server.key)}), env={})
    assert (tls.client_certs, tls.client_ca) == ("none", None)
    assert tls.gunicorn_options() == {"certfile": str(server.cert), "keyfile": str(server.key),
                                      "cert_reqs": ssl.CERT_NONE}
    env = {"BSSBUS_TLS_CERT": str(server.cert), "BSSBUS_TLS_KEY": str(server.key), "BSSBUS_TLS_CLIENT_CA": str(ca.cert)}
    tls = TlsConfig.from_settings(load_settings(env={}), env=env)
    assert tls.client_certs == "optional", "a client CA asks for client certificates"
    assert tls.gunicorn_options() == {"certfile": str(server.cert), "keyfile": str(server.key),
                                      "ca_certs": str(ca.cert), "cert_reqs": ssl.CERT_OPTIONAL}
    tls = TlsConfig.from_settings(with_tls({"client_certs": "required"}), env=env)
    assert tls.gunicorn_options()["cert_reqs"] == ssl.CERT_REQUIRED


@pytest.mark.parametrize("spec, words", [
    ({"cert": "{server.cert}"}, "server.tls: cert without key: give both"),
    ({"cert": "/no/such.crt", "key": "{server.key}"}, "server.tls.cert: /no/such.crt does not exist"),
    ({"cert": "{server.cert}", "key": "{folder}"}, "is a folder, not a PEM file"),
    ({"cert": "{server.cert}", "key": "{icbc.key}"}, "do not load together (KEY_VALUES_MISMATCH)"),
    ({"cert": "{server.cert}", "key": "{server.key}", "client_ca": "{server.key}"}, "holds no PEM CA certificate"),
    ({"cert": "{server.cert}", "key": "{server.key}", "client_certs": "optional"}, "needs client_ca"),
    ({"cert": "{server.cert}", "key": "{server.key}", "client_certs": "yes"}, "one of none, optional, required"),
    ({"certfile": "x"}, 'server.tls.certfile: unknown setting (did you mean "cert"?)'),
    ({"client_ca": "{ca.cert}"}, "client certificates need TLS"),
    ("on", "server.tls must be a mapping"),
])
def test_tls_settings_that_cannot_work_are_one_line(pki, spec, words):
    files = {"server.cert": pki["server"].cert, "server.key": pki["server"].key, "icbc.key": pki["icbc"].key,
             "ca.cert": pki["ca"].cert, "folder": pki["folder"]}
    if isinstance(spec, dict):
        spec = {k: v.replace("{" + v.strip("{}") + "}", str(files[v.strip("{}")])) if v.startswith("{") else v
                for k, v in spec.items()}
    with pytest.raises(ConfigError) as err:
        TlsConfig.from_settings(with_tls(spec), env={})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_named_by_the_environment_says_so(pki):
    env = {"BSSBUS_TLS_CERT": str(pki["server"].cert), "BSSBUS_TLS_KEY": "/run/secrets/nope.key"}
    with pytest.raises(ConfigError, match=r"\$BSSBUS_TLS_KEY: /run/secrets/nope.key does not exist"):
        TlsConfig.from_settings(load_settings(env={}), env=env)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_key_says_so(pki, tmp_path):
    key = tmp_path / "bus.key"
    key.write_bytes(pki["server"].key.read_bytes())
    key.chmod(0)
    with pytest.raises(ConfigError, match="is not readable"):
        TlsConfig.from_settings(with_tls({"cert": str(pki["server"].cert), "key": str(key)}), env={})


def test_an_encrypted_key_is_refused_instead_of_prompting(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization
    key = tmp_path / "enc.key"
    key.write_bytes(pki["server"].private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError, match="is encrypted"):
        TlsConfig.from_settings(with_tls({"cert": str(pki["server"].cert), "key": str(key)}), env={})


def test_serve_stops_on_a_missing_certificate_in_one_line(tmp_path):
    import subprocess
    import sys
    config = tmp_path / "tls.yaml"
    config.write_text("server:\n  tls: {cert: /no/bus.crt, key: /no/bus.key}\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "bus.cli", "serve", "--no-sandbox", "--config", str(config)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "BSSBUS_SANDBOX_URL": "http://127.0.0.1:9"})   # the only problem
    assert out.returncode == 2
    assert out.stderr.strip() == "bssbus serve: error: server.tls.cert: /no/bus.crt does not exist"


# -- client certificates and addresses ------------------------------------------------------------

def test_distinguished_names_compare_whatever_the_order_and_case():
    assert normalize_dn("CN=icbc-gateway,O=ICBC") == normalize_dn("O=icbc, CN=ICBC-Gateway")
    assert normalize_dn("CN=icbc-gateway,O=ICBC") != normalize_dn("CN=icbc-gateway,O=ICBC,OU=ops")
    assert normalize_dn("CN=a\\,b,O=X") == normalize_dn("O=X,CN=a\\,b")
    assert normalize_dn("emailAddress=ops@icbc.example,CN=gw") == normalize_dn(
        "CN=gw,1.2.840.113549.1.9.1=ops@icbc.example")
    assert normalize_dn("subject=C = CN, O = ICBC, CN = icbc-gateway") == normalize_dn("CN=icbc-gateway,O=ICBC,C=CN")
    assert normalize_dn("O=中国工商银行,CN=gw") == normalize_dn(   # as nginx escapes UTF-8
        r"CN=gw,O=\E4\B8\AD\E5\9B\BD\E5\B7\A5\E5\95\86\E9\93\B6\E8\A1\8C")
    assert normalize_dn("not a dn") is None


def test_certificate_rules(pki):
    icbc = pki["icbc"]
    cert = ClientCert("CN=icbc-gateway,O=ICBC,C=CN", icbc.sha256)
    assert CertificateRule.parse({"subject": "C=CN, O=ICBC, CN=icbc-gateway"}, "x").matches(cert)
    assert not CertificateRule.parse({"subject": "CN=icbc-gateway,O=ICBC"}, "x").matches(cert), "the whole subject"
    colons = ":".join(icbc.sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    assert CertificateRule.parse({"sha256": colons}, "x").matches(cert)
    assert CertificateRule.parse({"sha256": ["0" * 64, icbc.sha256]}, "x").matches(cert), "old and new"
    both = CertificateRule.parse({"subject": "CN=icbc-gateway,O=ICBC,C=CN", "sha256": "0" * 64}, "x")
    assert not both.matches(cert), "with both, both must match"
    for spec, words in [({"subject": "icbc"}, "is not a distinguished name"), ({"sha256": "abc"}, "is not a SHA-256"),
                        ({"cn": "x"}, "a mapping with subject"), ("CN=x", "a mapping with subject"),
                        ({"sha256": []}, "give subject or sha256")]:
        with pytest.raises(ConfigError, match=words):
            CertificateRule.parse(spec, "consumers.ICBC.client_cert")


def test_networks_and_addresses():
    assert [str(n) for n in parse_networks(["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"], "x")] == [
        "10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"]
    with pytest.raises(ConfigError, match=r"'10.1.2.3/8' is not an address or CIDR network; did you mean 10.0.0.0/8\?"):
        parse_networks(["10.1.2.3/8"], "consumers.ICBC.allow_from")
    with pytest.raises(ConfigError, match="'10.0.0.300' is not an address"):
        parse_networks(["10.0.0.300"], "x")
    with pytest.raises(ConfigError, match="a list of addresses"):
        parse_networks({"a": 1}, "x")
    assert str(parse_address("::ffff:10.0.0.1")) == "10.0.0.1"
    assert str(parse_address("10.0.0.1:5443")) == "10.0.0.1"
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert parse_address("unknown") is None and parse_address(None) is None


def test_the_origin_of_a_direct_connection():
    origins = Origins(parse_networks(["10.9.0.0/24"], "x"))
    forged = {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "10.1.1.1",
              "HTTP_X_SSL_CLIENT_VERIFY": "SUCCESS", "HTTP_X_SSL_CLIENT_S_DN": "CN=icbc-gateway,O=ICBC"}
    assert origins.of(forged) == Origin("198.51.100.7"), "a client's own forwarding headers are ignored"
    tls = {"REMOTE_ADDR": "198.51.100.7", "SSL_CLIENT_VERIFY": "SUCCESS", "SSL_CLIENT_S_DN": "CN=gw",
           "SSL_CLIENT_FINGERPRINT": "ab" * 32}
    assert origins.of(tls) == Origin("198.51.100.7", ClientCert("CN=gw", "ab" * 32))
    assert origins.of(dict(tls, SSL_CLIENT_VERIFY="NONE")).cert is None


def test_the_origin_behind_a_trusted_proxy(pki):
    origins = Origins(parse_networks(["10.9.0.0/24"], "x"))
    via = {"REMOTE_ADDR": "10.9.0.5"}
    assert origins.of(dict(via, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9, 10.9.0.4")) == Origin(
        "203.0.113.9", proxy="10.9.0.5"), "the rightmost hop that is not a trusted proxy"
    assert origins.of(dict(via, HTTP_X_FORWARDED_FOR="garbage, 203.0.113.9")).address == "203.0.113.9"
    assert origins.of(dict(via, HTTP_X_FORWARDED_FOR="203.0.113.9, garbage")).address is None
    assert origins.of(dict(via, HTTP_X_FORWARDED_FOR="10.9.0.7")).address == "10.9.0.7"
    assert origins.of(via).address == "10.9.0.5", "the proxy calling by itself"
    verified = dict(via, HTTP_X_SSL_CLIENT_VERIFY="SUCCESS", HTTP_X_SSL_CLIENT_S_DN="CN=icbc-gateway,O=ICBC,C=CN")
    assert origins.of(verified).cert == ClientCert("CN=icbc-gateway,O=ICBC,C=CN", None)
    assert origins.of(dict(verified, HTTP_X_SSL_CLIENT_FINGERPRINT="AB" * 32)).cert.sha256 == "ab" * 32
    assert origins.of(dict(verified, HTTP_X_SSL_CLIENT_FINGERPRINT="ab" * 20)).cert.sha256 is None, "SHA-1: unused"
    assert origins.of(dict(verified, HTTP_X_SSL_CLIENT_VERIFY="FAILED:certificate has expired")).cert is None
    escaped = quote(pki["icbc"].pem, safe="")   # nginx's $ssl_client_escaped_cert
    cert = origins.of(dict(via, HTTP_X_SSL_CLIENT_VERIFY="SUCCESS", HTTP_X_SSL_CLIENT_CERT=escaped)).cert
    assert cert.sha256 == pki["icbc"].sha256
    assert normalize_dn(cert.subject) == normalize_dn("CN=icbc-gateway,O=ICBC,C=CN")


# -- the Gatekeeper ------------------------------------------------------------------------------------

def gatekeeper(**icbc):
    spec = {"ICBC": dict({"domain": "BANK", "bank_code": "ICBC"}, **icbc)}
    return Gatekeeper("required", load_consumers(spec, {"consumers": {"ICBC": {"password": "pw"}}}, {}))


BASIC = "Basic " + base64.b64encode(b"ICBC:pw").decode()


def test_allow_from_holds_a_consumer_to_its_addresses(caplog):
    gate = gatekeeper(allow_from=["10.1.0.0/16", "192.0.2.7"])
    assert gate.identify(None, BASIC, origin=Origin("10.1.200.3")).id == "ICBC"
    assert gate.identify(None, BASIC, origin=Origin("::ffff:192.0.2.7")).id == "ICBC"
    for origin, why in [(Origin("10.2.0.1"), "calls from 10.2.0.1, outside its allow_from (10.1.0.0/16, 192.0.2.7/32)"),
                        (Origin("10.2.0.1", proxy="10.9.0.5"), "10.2.0.1 (through the proxy 10.9.0.5)"),
                        (Origin(None), "calls from an unknown address"), (None, "an unknown address")]:
        with caplog.at_level(logging.WARNING, logger="bssbus.security"), pytest.raises(FailedAuthentication) as err:
            gate.identify(None, BASIC, origin=origin)
        assert "10." not in str(err.value) and why in caplog.text
    assert gatekeeper().identify(None, BASIC, origin=Origin("203.0.113.1")).id == "ICBC", "no allow_from: anywhere"


def test_client_cert_holds_a_consumer_to_its_certificate(caplog):
    gate = gatekeeper(client_cert={"subject": "CN=icbc-gateway,O=ICBC"})
    assert gate.identify(None, BASIC, origin=Origin("10.0.0.1", ClientCert("O=ICBC,CN=icbc-gateway"))).id == "ICBC"
    for origin, why in [
            (Origin("10.0.0.1"), "no verified client certificate from 10.0.0.1; it needs subject CN=icbc-gateway,O=ICBC"),
            (Origin("10.0.0.1", ClientCert("CN=ccb-gateway,O=CCB")),
             "the client certificate CN=ccb-gateway,O=CCB from 10.0.0.1 is not its own")]:
        with caplog.at_level(logging.WARNING, logger="bssbus.security"), pytest.raises(FailedAuthentication):
            gate.identify(None, BASIC, origin=origin)
        assert why in caplog.text
    with pytest.raises(FailedAuthentication):   # the right certificate does not replace the password
        gate.identify(None, "Basic " + base64.b64encode(b"ICBC:guess").decode(),
                      origin=Origin("10.0.0.1", ClientCert("CN=icbc-gateway,O=ICBC")))


def test_consumer_transport_settings_are_checked():
    with pytest.raises(ConfigError, match=r"consumers.ICBC.allow_from: '10.1.0.0/33'"):
        gatekeeper(allow_from=["10.1.0.0/33"])
    with pytest.raises(ConfigError, match=r"consumers.ICBC.client_cert.subject: 'icbc-gateway' is not"):
        gatekeeper(client_cert={"subject": "icbc-gateway"})
    with pytest.raises(SecurityConfigError, match="unknown setting allowed_from"):
        gatekeeper(allowed_from=["10.0.0.0/8"])
    settings = load_settings(env={}).copy()
    settings.raw["security"]["trusted_proxies"] = ["nginx"]
    with pytest.raises(ConfigError, match="security.trusted_proxies: 'nginx'"):
        Origins.from_settings(settings)
