"""Transport: TLS of `bssbus serve`, and where a request came from.

- :class:`TlsConfig` (config ``server.tls``; file paths also from ``BSSBUS_TLS_CERT``,
  ``BSSBUS_TLS_KEY``, ``BSSBUS_TLS_CLIENT_CA``): the bus's certificate and key, the CA that
  issues the consumers' client certificates and whether a client certificate is asked for
  (``client_certs: none | optional | required``).
- :class:`Origin`: the client's address and the verified client certificate it presented,
  as the :class:`~bus.security.Gatekeeper` checks them against a consumer's ``allow_from``
  and ``client_cert`` (:class:`CertificateRule`).
- :class:`Origins` builds the Origin of a request. Directly connected: ``REMOTE_ADDR`` and
  the certificate of the TLS connection (``SSL_CLIENT_*``, which bus/server.py puts in the
  environ). From a proxy of ``security.trusted_proxies`` (nginx terminating TLS) and only
  from there: the rightmost address of ``X-Forwarded-For`` that is not a trusted proxy, and
  the certificate nginx verified (``X-SSL-Client-Verify: SUCCESS``, ``X-SSL-Client-S-DN``,
  ``X-SSL-Client-Cert`` / ``X-SSL-Client-Fingerprint``). Anyone else's such headers are
  ignored.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from config.settings import ConfigError, did_you_mean

CLIENT_CERT_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
TLS_ENV = {"cert": "BSSBUS_TLS_CERT", "key": "BSSBUS_TLS_KEY", "client_ca": "BSSBUS_TLS_CLIENT_CA"}
TLS_KEYS = ("cert", "key", "client_ca", "client_certs")


# -- TLS of `bssbus serve` ----------------------------------------------------------------------
@dataclass(frozen=True)
class TlsConfig:
    """``server.tls``: ``{cert: FILE, key: FILE, client_ca: FILE, client_certs: none|optional|required}``.

    No cert and no key: the bus speaks plain HTTP (the default). ``client_certs`` defaults
    to ``optional`` when ``client_ca`` is given (a client certificate is asked for and, when
    presented, must be issued by that CA; consumers with ``client_cert`` need one), else
    ``none``; ``required`` refuses every TLS connection without one.
    """

    cert: str
    key: str
    client_ca: str | None = None
    client_certs: str = "none"

    @classmethod
    def from_settings(cls, settings, env=None) -> "TlsConfig | None":
        """The TLS settings, checked (files exist, are readable and load), or None for plain HTTP."""
        env = os.environ if env is None else env
        spec = settings.section("server").get("tls")
        if spec in (None, False, "off"):
            spec = {}
        if not isinstance(spec, dict):
            raise ConfigError("server.tls must be a mapping: {cert: FILE, key: FILE, client_ca: FILE, "
                              "client_certs: none|optional|required}")
        for key in spec:
            if key not in TLS_KEYS:
                raise ConfigError(f"server.tls.{key}: unknown setting{did_you_mean(key, TLS_KEYS)}; "
                                  f"server.tls takes {', '.join(TLS_KEYS)}")
        files = {name: env.get(var) or spec.get(name) for name, var in TLS_ENV.items()}
        where = {name: f"${var}" if env.get(var) else f"server.tls.{name}" for name, var in TLS_ENV.items()}
        mode = spec.get("client_certs")
        if not files["cert"] and not files["key"]:
            if files["client_ca"] or mode not in (None, "none"):
                raise ConfigError("server.tls: client certificates need TLS: give cert and key "
                                  "(or BSSBUS_TLS_CERT and BSSBUS_TLS_KEY)")
            return None
        for name, other in (("cert", "key"), ("key", "cert")):
            if not files[name]:
                raise ConfigError(f"server.tls: {other} without {name}: give both (or {TLS_ENV['cert']} and "
                                  f"{TLS_ENV['key']})")
        mode = str(mode if mode is not None else ("optional" if files["client_ca"] else "none"))
        if mode not in CLIENT_CERT_MODES:
            raise ConfigError(f"server.tls.client_certs: {mode!r}; one of {', '.join(CLIENT_CERT_MODES)}")
        if mode != "none" and not files["client_ca"]:
            raise ConfigError(f"server.tls.client_certs: {mode} needs client_ca, the CA that issues the "
                              "consumers' client certificates (or BSSBUS_TLS_CLIENT_CA)")
        paths = {name: _readable(where[name], str(value)) for name, value in files.items() if value}
        config = cls(paths["cert"], paths["key"], paths.get("client_ca") if mode != "none" else None, mode)
        config.context()
        return config

    def context(self) -> ssl.SSLContext:
        """An SSL context of these files: ConfigError, in one line, when they do not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key, password=_no_password(self.key))
        except ssl.SSLError as exc:
            raise ConfigError(f"server.tls: the certificate {self.cert} and the key {self.key} do not load "
                              f"together ({exc.reason or exc}): both must be PEM, and the key the "
                              "certificate's") from None
        if self.client_ca:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except ssl.SSLError as exc:
                raise ConfigError(f"server.tls.client_ca: {self.client_ca} holds no PEM CA certificate "
                                  f"({exc.reason or exc})") from None
        context.verify_mode = CLIENT_CERT_MODES[self.client_certs]
        return context

    def gunicorn_options(self) -> dict:
        options = {"certfile": self.cert, "keyfile": self.key, "cert_reqs": CLIENT_CERT_MODES[self.client_certs]}
        if self.client_ca:
            options["ca_certs"] = self.client_ca
        return options


def _readable(where: str, value: str) -> str:
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{where}: {value} does not exist")
    if path.is_dir():
        raise ConfigError(f"{where}: {value} is a folder, not a PEM file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ConfigError(f"{where}: {value} is not readable ({exc.strerror})") from None
    return str(path.resolve())


def _no_password(key: str):
    def refuse():
        raise ConfigError(f"server.tls.key: {key} is encrypted; the bus cannot ask for its passphrase: give it "
                          "an unencrypted key readable only by the bus's user")
    return refuse


# -- client certificates ------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientCert:
    """A client certificate the TLS layer (the bus's or a trusted proxy's) verified."""

    subject: str                 # RFC 4514, as presented (for the log)
    sha256: str | None = None    # fingerprint of the DER certificate: lower-case hex, no colons

    def describe(self) -> str:
        return f"{self.subject or '(no subject)'}" + (f" sha256 {self.sha256[:16]}..." if self.sha256 else "")


@functools.lru_cache(maxsize=256)
def certificate_identity(der: bytes) -> tuple[str, str, str]:
    """(subject in RFC 4514, SHA-256 fingerprint, PEM) of a DER certificate."""
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.rfc4514_string(), hashlib.sha256(der).hexdigest(), ssl.DER_cert_to_PEM_cert(der)


def _name_overrides() -> dict:
    from cryptography.x509.oid import NameOID
    return {"emailAddress": NameOID.EMAIL_ADDRESS, "E": NameOID.EMAIL_ADDRESS,
            "serialNumber": NameOID.SERIAL_NUMBER, "businessCategory": NameOID.BUSINESS_CATEGORY}


# spaces around separators and `=`, as `openssl x509 -noout -subject` prints them ("C = CN, O = ICBC")
_DN_SPACES = re.compile(r"(^|(?<!\\)[,+])\s*([A-Za-z][\w-]*|[0-9][0-9.]*)\s*=\s*")


@functools.lru_cache(maxsize=1024)
def normalize_dn(text: str) -> tuple | None:
    """A distinguished name as a comparable value: its attributes (OID, value compared without
    case and with runs of spaces as one), whatever their order. ``CN=gw,O=ICBC`` (RFC 4514, as
    nginx's ``$ssl_client_s_dn`` prints it, most specific first) equals the subject ``O=ICBC,
    CN=gw`` of the certificate, and ``subject=O = ICBC, CN = gw`` as openssl prints it. None
    when ``text`` is not a DN."""
    from cryptography import x509
    text = _DN_SPACES.sub(r"\1\2=", re.sub(r"^\s*subject\s*=\s*", "", text))
    try:
        name = x509.Name.from_rfc4514_string(text.strip(), _name_overrides())
    except (ValueError, TypeError):
        return None
    pairs = sorted((attr.oid.dotted_string, " ".join(str(attr.value).split()).casefold()) for attr in name)
    return tuple(pairs) or None


_HEX = re.compile(r"[0-9a-f]{64}")


def normalize_sha256(text: str) -> str | None:
    value = re.sub(r"[\s:]", "", str(text)).lower()
    if value.startswith("sha256="):   # the form `openssl x509 -fingerprint -sha256` prints
        value = value[7:]
    return value if _HEX.fullmatch(value) else None


@dataclass(frozen=True)
class CertificateRule:
    """``consumers.<id>.client_cert``: ``{subject: "CN=icbc-gateway,O=ICBC"}`` and/or
    ``{sha256: FINGERPRINT or [FINGERPRINT, ...]}``. The subject survives the certificate's
    renewal by the same CA; a fingerprint pins certificates (list the new one beside the
    old one while they change over). With both, both must match."""

    subject: str | None
    subject_key: tuple | None
    sha256: frozenset

    @classmethod
    def parse(cls, spec, where: str) -> "CertificateRule | None":
        if spec is None:
            return None
        if not isinstance(spec, dict) or not spec or set(spec) - {"subject", "sha256"}:
            raise ConfigError(f"{where}: a mapping with subject (e.g. \"CN=icbc-gateway,O=ICBC\") and/or sha256 "
                              "(the certificate's fingerprint, or a list of them)")
        subject = spec.get("subject")
        key = None
        if subject is not None:
            key = normalize_dn(str(subject))
            if key is None:
                raise ConfigError(f"{where}.subject: {subject!r} is not a distinguished name (RFC 4514, "
                                  "e.g. \"CN=icbc-gateway,O=ICBC\")")
        prints = spec.get("sha256") or []
        prints = [prints] if isinstance(prints, str) else list(prints)
        fingerprints = set()
        for item in prints:
            value = normalize_sha256(item)
            if value is None:
                raise ConfigError(f"{where}.sha256: {item!r} is not a SHA-256 fingerprint (64 hex digits, "
                                  "colons allowed)")
            fingerprints.add(value)
        if key is None and not fingerprints:
            raise ConfigError(f"{where}: give subject or sha256")
        return cls(str(subject) if subject is not None else None, key, frozenset(fingerprints))

    def matches(self, cert: ClientCert) -> bool:
        if self.subject_key is not None and normalize_dn(cert.subject or "") != self.subject_key:
            return False
        return not self.sha256 or cert.sha256 in self.sha256

    def describe(self) -> str:
        parts = [f"subject {self.subject}"] if self.subject else []
        if self.sha256:
            parts.append("sha256 " + " or ".join(f"{f[:16]}..." for f in sorted(self.sha256)))
        return ", ".join(parts)


# -- addresses ----------------------------------------------------------------------------------
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(spec, where: str) -> tuple[Network, ...]:
    """A list of addresses and CIDR networks (``10.1.0.0/16``, ``192.0.2.7``, ``2001:db8::/32``)."""
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{where}: a list of addresses or CIDR networks, e.g. [10.1.0.0/16, 192.0.2.7]")
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item).strip(), strict=True))
        except ValueError as exc:
            hint = ""
            if "host bits set" in str(exc):
                hint = f"; did you mean {ipaddress.ip_network(str(item).strip(), strict=False)}?"
            raise ConfigError(f"{where}: {item!r} is not an address or CIDR network{hint}") from None
    return tuple(out)


def parse_address(text: str | None) -> Address | None:
    """An address as it appears in REMOTE_ADDR or X-Forwarded-For (``[v6]:port`` and ``v4:port``
    too); an IPv4-mapped IPv6 address is its IPv4 address. None if it is none."""
    if not text:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address | None, networks) -> bool:
    return address is not None and any(address in net for net in networks)


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as far as the bus can trust it."""

    address: str | None               # the client's address (None: not known)
    cert: ClientCert | None = None    # the verified client certificate it presented
    proxy: str | None = None          # the trusted proxy it came through

    @property
    def ip(self) -> Address | None:
        return parse_address(self.address)

    def describe(self) -> str:
        if self.proxy and self.proxy == self.address:
            return f"{self.address} (a trusted proxy, no X-Forwarded-For)"
        return (self.address or "an unknown address") + (f" (through the proxy {self.proxy})" if self.proxy else "")


class Origins:
    """Builds each request's :class:`Origin` from its WSGI environ (see the module docstring)."""

    def __init__(self, trusted_proxies: tuple = ()):
        self.trusted = tuple(trusted_proxies)

    @classmethod
    def from_settings(cls, settings) -> "Origins":
        return cls(parse_networks(settings.section("security").get("trusted_proxies"), "security.trusted_proxies"))

    def of(self, environ: dict) -> Origin:
        remote = environ.get("REMOTE_ADDR")
        if self.trusted and in_networks(parse_address(remote), self.trusted):
            return Origin(self._forwarded_for(environ.get("HTTP_X_FORWARDED_FOR"), remote),
                          self._proxy_cert(environ), proxy=remote)
        cert = None
        if environ.get("SSL_CLIENT_VERIFY") == "SUCCESS":
            cert = ClientCert(environ.get("SSL_CLIENT_S_DN") or "", environ.get("SSL_CLIENT_FINGERPRINT"))
        return Origin(remote, cert)

    def _forwarded_for(self, header: str | None, remote: str | None) -> str | None:
        """The rightmost hop of X-Forwarded-For that is not a trusted proxy (each proxy appends
        the address it saw; what lies left of the first untrusted hop anyone could have written)."""
        hops = [h for h in (header or "").split(",") if h.strip()]
        if not hops:
            return remote
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                return None
            if not in_networks(address, self.trusted):
                return str(address)
        return str(parse_address(hops[0]))

    @staticmethod
    def _proxy_cert(environ: dict) -> ClientCert | None:
        if (environ.get("HTTP_X_SSL_CLIENT_VERIFY") or "").strip() != "SUCCESS":
            return None
        subject = (environ.get("HTTP_X_SSL_CLIENT_S_DN") or "").strip()
        fingerprint = normalize_sha256(environ.get("HTTP_X_SSL_CLIENT_FINGERPRINT") or "")
        pem = environ.get("HTTP_X_SSL_CLIENT_CERT")
        if pem:   # nginx's $ssl_client_escaped_cert: the PEM, URL-encoded
            try:   # the certificate itself says best who it is
                subject, fingerprint, _ = certificate_identity(ssl.PEM_cert_to_DER_cert(unquote(pem).strip()))
            except (ValueError, TypeError):
                return None
        return ClientCert(subject, fingerprint)
