"""Who may call what: consumers, their credentials, WS-Security UsernameToken and HTTP basic.

Every system that calls the bus is a **consumer** (config ``consumers:``): an id, the
ORIG_DOMAIN it speaks as, the services and operations it may call and, for a bank, its bank
code and the provinces it is contracted for. Its password never lives in the repo: it comes
from ``BSSBUS_CONSUMER_<ID>_PASSWORD`` or from the secrets file (``security.secrets_file`` or
``$BSSBUS_SECRETS_FILE``: YAML ``consumers: {ID: {password: ...}}`` or, for a consumer that
only sends PasswordText or basic, ``password_hash: pbkdf2_sha256$<iterations>$<salt>$<hash>``,
which ``bssbus hash-password`` prints).

The :class:`Gatekeeper` answers "who is this?" for each request (:meth:`Gatekeeper.identify`):

- a ``wsse:Security`` header with a ``UsernameToken``: PasswordText (over TLS) or
  PasswordDigest (Base64(SHA-1(nonce + created + password))); ``Created`` must lie within
  ``security.created_window_seconds`` of the bus's clock, and a token with a ``Nonce`` is
  accepted once: the nonce is stored (table ``security_nonce``, unique per consumer), so a
  replay is refused by every worker and node sharing the database;
- else HTTP basic (``Authorization: Basic``), for toolkits that cannot add the header (TLS!).

A consumer may also be held to its transport: ``allow_from`` (the addresses it calls from)
and ``client_cert`` (the verified TLS client certificate it presents: subject and/or SHA-256
fingerprint), checked against the request's :class:`~bus.transport.Origin`.

Wrong user, wrong password, stale or replayed token, another address or certificate: one
generic ``Client.FailedAuthentication`` to the caller; the real reason goes to the bus's log
only. Then "may it?" (:meth:`Gatekeeper.authorize`): the service and operation, the ORIG_DOMAIN
it claims, a bank's own BANK_CODE and its provinces; refused: ``Client.NotAuthorized`` with the
reason.

``security.authentication``: ``required`` (every call identified), ``optional`` (identified
when credentials come, anonymous otherwise; for moving callers over), ``off``, or ``auto``
(the default): ``off`` while every peer is a sandbox peer (the embedded defaults, the demo,
the tests), ``required`` as soon as one peer is real, so a bus wired to real systems never
serves anonymous callers by default and does not start without its consumers' credentials.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from lxml import etree

from bus.faults import Busy, ClientFault
from bus.transport import CertificateRule, Origin, in_networks, parse_networks
from config.settings import ConfigError

log = logging.getLogger("bssbus.security")

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_TEXT = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
                 "#PasswordText")
PASSWORD_DIGEST = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
                   "#PasswordDigest")
MODES = ("auto", "required", "optional", "off")
RECONCILIATION_DOMAIN = "RECON"   # ORIG_DOMAIN of the bus's own reconciliation (bus/reconcile.py)
ALL = "*"


class FailedAuthentication(ClientFault):
    """Who the caller is could not be established; the reason is in the bus's log only."""
    code = "Client.FailedAuthentication"
    rsp_code = "8401"


class NotAuthorized(ClientFault):
    """The caller is known but may not do this."""
    code = "Client.NotAuthorized"
    rsp_code = "8403"


class MustUnderstand(ClientFault):
    """A SOAP header marked mustUnderstand that the bus does not process."""
    code = "Client.MustUnderstand"
    rsp_code = "8010"


GENERIC = ("The bus could not authenticate this request: send a valid WS-Security UsernameToken "
           "(or HTTP basic credentials) of a configured consumer.")


@dataclass
class Consumer:
    """A system allowed to call the bus (config ``consumers.<id>``)."""

    id: str
    domain: str
    services: dict[str, frozenset[str]]          # service -> operations (ALL: every one)
    bank_code: str | None = None
    provinces: frozenset[str] | None = None      # None: every province
    password: str | None = field(default=None, repr=False)        # clear, needed for digests
    password_hash: str | None = field(default=None, repr=False)   # pbkdf2_sha256$it$salt$hash
    allow_from: tuple = ()                       # networks it may call from (empty: anywhere)
    client_cert: CertificateRule | None = None   # the TLS client certificate it must present

    def may_call(self, service: str, operation: str) -> bool:
        allowed = self.services.get(service) or self.services.get(ALL)
        return bool(allowed) and (ALL in allowed or operation in allowed)

    def check_password(self, given: str) -> bool:
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), given.encode())
        return self.password_hash is not None and verify_hash(self.password_hash, given)


MASK = b"********"
_PASSWORD = re.compile(rb"(<(?:[A-Za-z_][\w.-]*:)?Password\b[^>]*>)[^<]*(</(?:[A-Za-z_][\w.-]*:)?Password\s*>)")


def mask_passwords(data: bytes) -> bytes:
    """``data`` (a serialized envelope, in any ASCII-compatible charset) with the text of every
    ``Password`` element replaced by ``********``: what the journal and the logs keep of a
    request the bus received or sent."""
    if not data or b"Password" not in data:
        return data
    return _PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(2), data)


def hash_password(password: str, iterations: int = 200_000) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${digest.hex()}"


def verify_hash(stored: str, given: str) -> bool:
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", given.encode(), bytes.fromhex(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), expected)


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """WS-Security UsernameToken Profile 1.0: Base64(SHA-1(nonce + created + password))."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()


@dataclass
class Token:
    """What a request says about its caller."""

    username: str
    password: str
    digest: bool = False
    nonce: bytes | None = None
    created: str | None = None
    scheme: str = "wsse"


class SecurityConfigError(ConfigError):
    """A consumer or credential setting the bus cannot start with."""


def only_sandbox_peers(settings) -> bool:
    """True when every peer (and every province override) is served by the sandbox: its
    address is the ``{sandbox}`` template, or starts with the sandbox's URL."""
    sandbox = settings.sandbox_url

    def sandboxed(url) -> bool:
        url = str(url or "")
        return "{sandbox}" in url or bool(sandbox and url.startswith(sandbox))

    for spec in (settings.raw.get("peers") or {}).values():
        spec = spec or {}
        overrides = [over or {} for over in (spec.get("provinces") or {}).values()]
        if not sandboxed(spec.get("url")) or not all(sandboxed(o["url"]) for o in overrides if "url" in o):
            return False
    return True


def load_consumers(spec: dict | None, secrets_spec: dict, env) -> dict[str, Consumer]:
    """Consumers of config ``consumers:`` with their credentials from ``env`` / the secrets file."""
    out = {}
    for cid, item in (spec or {}).items():
        if not isinstance(item, dict):
            raise SecurityConfigError(f"consumers.{cid} must be a mapping (domain, services, ...)")
        unknown = set(item) - {"domain", "services", "bank_code", "provinces", "rate_limit", "allow_from",
                               "client_cert", "password", "password_hash"}
        if unknown:
            raise SecurityConfigError(f"consumers.{cid}: unknown setting {', '.join(sorted(unknown))}; a consumer "
                                      "takes domain, services, bank_code, provinces, rate_limit, allow_from, "
                                      "client_cert")
        if "password" in item or "password_hash" in item:
            raise SecurityConfigError(f"consumers.{cid}: credentials do not belong in the configuration; set "
                                      f"BSSBUS_CONSUMER_{_env_name(cid)}_PASSWORD or put them in the secrets file")
        if not item.get("domain"):
            raise SecurityConfigError(f"consumers.{cid}: say which ORIG_DOMAIN it speaks as (domain: BANK, ...)")
        services = {}
        for name, ops in (item.get("services") or {ALL: ALL}).items():
            services[str(name)] = frozenset([ALL] if ops in (ALL, "all", None) else [str(o) for o in ops])
        provinces = item.get("provinces")
        secret = dict((secrets_spec.get("consumers") or {}).get(cid) or {})
        password = env.get(f"BSSBUS_CONSUMER_{_env_name(cid)}_PASSWORD") or secret.get("password")
        out[str(cid)] = Consumer(
            id=str(cid), domain=str(item["domain"]), services=services,
            bank_code=str(item["bank_code"]) if item.get("bank_code") else None,
            provinces=frozenset(str(p) for p in provinces) if provinces else None,
            password=str(password) if password else None, password_hash=secret.get("password_hash"),
            allow_from=parse_networks(item.get("allow_from"), f"consumers.{cid}.allow_from"),
            client_cert=CertificateRule.parse(item.get("client_cert"), f"consumers.{cid}.client_cert"))
    return out


def consumer_password_variable(cid: str) -> str:
    """The environment variable holding consumer ``cid``'s password: BSSBUS_CONSUMER_<ID>_PASSWORD."""
    return f"BSSBUS_CONSUMER_{_env_name(cid)}_PASSWORD"


def _env_name(cid: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(cid)).upper()


def read_secrets(path: str | None) -> dict:
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise SecurityConfigError(f"the secrets file {path} does not exist")
    data = yaml.safe_load(file.read_text("utf-8")) or {}
    if not isinstance(data, dict):
        raise SecurityConfigError(f"the secrets file {path} must hold a mapping (consumers: ...)")
    return data


class Gatekeeper:
    """Authenticates and authorizes inbound requests (see the module docstring)."""

    def __init__(self, mode: str, consumers: dict[str, Consumer], nonces=None,
                 created_window: float = 300.0):
        if mode not in MODES:
            raise SecurityConfigError(f"security.authentication: {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.consumers = consumers
        self.nonces = nonces
        self.window = timedelta(seconds=created_window)
        if mode != "off":
            missing = [c.id for c in consumers.values() if c.password is None and c.password_hash is None]
            if missing and mode == "required":
                raise SecurityConfigError(
                    "no credentials for consumer(s) " + ", ".join(missing) + ": set BSSBUS_CONSUMER_<ID>_PASSWORD "
                    "or put them in the secrets file (security.secrets_file / BSSBUS_SECRETS_FILE)")

    @classmethod
    def from_settings(cls, settings, nonces=None, env=None) -> "Gatekeeper":
        env = env if env is not None else (settings.env if getattr(settings, "env", None) is not None else os.environ)
        section = settings.section("security")
        secrets_spec = read_secrets(env.get("BSSBUS_SECRETS_FILE") or section.get("secrets_file"))
        consumers = load_consumers(settings.section("consumers"), secrets_spec, env)
        mode = str(section.get("authentication", "auto"))
        if mode == "auto":   # anonymous only while every peer is a sandbox peer
            mode = "off" if only_sandbox_peers(settings) else "required"
        return cls(mode, consumers, nonces, float(section.get("created_window_seconds", 300)))

    # -- who is it? ---------------------------------------------------------------------------
    def identify(self, envelope: etree._Element | None, authorization: str | None,
                 soap_ns: str | None = None, origin: Origin | None = None) -> Consumer | None:
        """The consumer the request's credentials name, None for an anonymous caller when
        authentication is optional or off; FailedAuthentication otherwise, also when the
        consumer calls from outside its ``allow_from`` or without its ``client_cert``
        (``origin``: the request's address and verified client certificate)."""
        check_must_understand(envelope, soap_ns)   # whatever the mode: never silently ignored
        if self.mode == "off":
            return None
        token = wsse_token(envelope) or basic_token(authorization)
        if token is None:
            if self.mode == "optional":
                return None
            return self._refuse("no credentials (no wsse:Security UsernameToken, no HTTP basic)")
        consumer = self.consumers.get(token.username)
        if consumer is None:
            return self._refuse(f"unknown consumer {token.username!r}")
        self._check_origin(consumer, origin or Origin(None))
        if token.digest:
            if consumer.password is None:
                return self._refuse(f"{consumer.id}: PasswordDigest needs the clear password on the bus side, "
                                    "and only a hash is configured")
            if not token.nonce or not token.created:
                return self._refuse(f"{consumer.id}: a UsernameToken needs a Nonce and a Created (replay protection)")
            ok = hmac.compare_digest(password_digest(token.nonce, token.created, consumer.password), token.password)
        else:
            ok = consumer.check_password(token.password)
        if not ok:
            return self._refuse(f"{consumer.id}: wrong password ({token.scheme})")
        if token.scheme == "wsse" and (not token.nonce or not token.created):
            return self._refuse(f"{consumer.id}: a UsernameToken needs a Nonce and a Created (replay protection)")
        if token.created is not None:
            created = parse_time(token.created)
            if created is None:
                return self._refuse(f"{consumer.id}: Created {token.created!r} is not a UTC timestamp")
            skew = abs(datetime.now(timezone.utc) - created)
            if skew > self.window:
                return self._refuse(f"{consumer.id}: Created {token.created} is {skew.total_seconds():.0f} s "
                                    f"from the bus's clock (window {self.window.total_seconds():.0f} s)")
        if token.nonce is not None and self.nonces is not None:
            if not self.nonces.remember(consumer.id, base64.b64encode(token.nonce).decode(),
                                        datetime.now(timezone.utc) + 2 * self.window):
                return self._refuse(f"{consumer.id}: nonce already used (a replayed token)")
        return consumer

    def _check_origin(self, consumer: Consumer, origin: Origin) -> None:
        """The consumer's transport: its addresses and its client certificate (checked before
        its password: a caller from elsewhere costs no password hashing)."""
        if consumer.allow_from and not in_networks(origin.ip, consumer.allow_from):
            self._refuse(f"{consumer.id}: calls from {origin.describe()}, outside its allow_from "
                         f"({', '.join(map(str, consumer.allow_from))})")
        rule = consumer.client_cert
        if rule is not None:
            if origin.cert is None:
                self._refuse(f"{consumer.id}: no verified client certificate from {origin.describe()}; "
                             f"it needs {rule.describe()}")
            if not rule.matches(origin.cert):
                self._refuse(f"{consumer.id}: the client certificate {origin.cert.describe()} from "
                             f"{origin.describe()} is not its own ({rule.describe()})")

    @staticmethod
    def _refuse(reason: str):
        log.warning("authentication failed: %s", reason)
        raise FailedAuthentication(GENERIC)

    # -- may it? ------------------------------------------------------------------------------
    def authorize(self, consumer: Consumer | None, message) -> None:
        """NotAuthorized unless ``consumer`` may send ``message`` (anonymous: when allowed)."""
        if consumer is None:
            return
        if not consumer.may_call(message.service, message.operation):
            raise NotAuthorized(f"Consumer {consumer.id} may not call {message.service}.{message.operation}.",
                                message.trans_ido)
        if message.caller != consumer.domain:
            raise NotAuthorized(f"Consumer {consumer.id} speaks as ORIG_DOMAIN {consumer.domain}, not "
                                f"{message.caller}.", message.trans_ido)
        bank = (message.body or {}).get("BANK_CODE")
        if consumer.bank_code and bank and bank != consumer.bank_code:
            raise NotAuthorized(f"Consumer {consumer.id} is bank {consumer.bank_code}; it may not act as bank "
                                f"{bank}.", message.trans_ido)

    @staticmethod
    def refuse_bus_only(message) -> None:
        """What only the bus itself may send (its reconciliation's corrections) is refused from
        any caller, in every authentication mode."""
        if message.caller == RECONCILIATION_DOMAIN or "RECON_DATE" in (message.body or {}):
            raise NotAuthorized(f"ORIG_DOMAIN {RECONCILIATION_DOMAIN} and RECON_DATE are the bus's own "
                                "reconciliation's; leave them out.", message.trans_ido)

    @staticmethod
    def authorize_province(consumer: Consumer | None, message, province: str | None) -> None:
        if consumer is None or consumer.provinces is None or province is None:
            return
        if province not in consumer.provinces:
            raise NotAuthorized(f"Consumer {consumer.id} is not contracted for province {province} "
                                f"(number {message.msisdn or '-'}); it is for {', '.join(sorted(consumer.provinces))}.",
                                message.trans_ido)


def check_must_understand(envelope, soap_ns: str | None) -> None:
    """A header entry marked mustUnderstand that the bus does not process is a fault."""
    if envelope is None:
        return
    header = next((child for child in envelope if isinstance(child.tag, str)
                   and etree.QName(child).localname == "Header"), None)
    if header is None:
        return
    env_ns = soap_ns or etree.QName(envelope).namespace
    for entry in header:
        if not isinstance(entry.tag, str):
            continue
        flag = entry.get(f"{{{env_ns}}}mustUnderstand")
        if flag in ("1", "true") and entry.tag != f"{{{WSSE}}}Security":
            raise MustUnderstand(f"The header {etree.QName(entry).localname} ({etree.QName(entry).namespace}) is "
                                 "marked mustUnderstand, and the bus does not process it; leave it out or "
                                 "clear mustUnderstand.")


def wsse_token(envelope) -> Token | None:
    """The UsernameToken of ``envelope``'s wsse:Security header, or None."""
    if envelope is None:
        return None
    found = envelope.find(f"./{{*}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    return None if found is None else read_username_token(found)


def read_username_token(found: etree._Element) -> Token:
    """What a ``wsse:UsernameToken`` element says (an unreadable Nonce reads as none)."""
    username = (found.findtext(f"{{{WSSE}}}Username") or "").strip()
    password_el = found.find(f"{{{WSSE}}}Password")
    password = password_el.text or "" if password_el is not None else ""
    digest = password_el is not None and password_el.get("Type") == PASSWORD_DIGEST
    nonce_text = found.findtext(f"{{{WSSE}}}Nonce")
    try:
        nonce = base64.b64decode(nonce_text.strip(), validate=True) if nonce_text else None
    except (binascii.Error, ValueError):
        nonce = None
    created = found.findtext(f"{{{WSU}}}Created")
    return Token(username, password, digest, nonce, created.strip() if created else None)


def basic_token(authorization: str | None) -> Token | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:].strip()).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return Token("", "", scheme="basic")
    return Token(user, password, scheme="basic")


def parse_time(text: str) -> datetime | None:
    value = text.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def username_token(username: str, password: str, digest: bool = True, nonce: bytes | None = None,
                   created: str | None = None) -> etree._Element:
    """A ``wsse:Security`` header with a UsernameToken (Nonce and Created always), for clients."""
    nonce = nonce if nonce is not None else os.urandom(16)
    created = created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    security = etree.Element(f"{{{WSSE}}}Security", nsmap={"wsse": WSSE, "wsu": WSU})
    token = etree.SubElement(security, f"{{{WSSE}}}UsernameToken")
    etree.SubElement(token, f"{{{WSSE}}}Username").text = username
    pw = etree.SubElement(token, f"{{{WSSE}}}Password", Type=PASSWORD_DIGEST if digest else PASSWORD_TEXT)
    pw.text = password_digest(nonce, created, password) if digest else password
    etree.SubElement(token, f"{{{WSSE}}}Nonce", EncodingType=(
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary")
    ).text = base64.b64encode(nonce).decode()
    etree.SubElement(token, f"{{{WSU}}}Created").text = created
    return security


def speaks_for(consumer: Consumer, args: dict) -> bool:
    """Whether a request (its head and body dicts) speaks for ``consumer``: its ORIG_DOMAIN and,
    for a bank, its BANK_CODE."""
    head, body = args.get("UNI_BSS_HEAD") or {}, args.get("UNI_BSS_BODY") or {}
    return consumer.domain == head.get("ORIG_DOMAIN") and (
        consumer.bank_code is None or consumer.bank_code == body.get("BANK_CODE"))


def login_for(consumers: dict[str, Consumer], digest: bool = True):
    """For a client acting for every consumer (the sandbox's systems, the demo, tests): the
    ``wsse:Security`` header of the consumer a request's head and body speak for, or None."""
    def login(args: dict) -> etree._Element | None:
        for consumer in consumers.values():
            if consumer.password and speaks_for(consumer, args):
                return username_token(consumer.id, consumer.password, digest)
        return None
    return login


@dataclass
class Limit:
    per_second: float
    burst: float
    in_flight: int | None = None

    @classmethod
    def parse(cls, spec, where: str) -> "Limit | None":
        if spec is None:
            return None
        if not isinstance(spec, dict) or set(spec) - {"per_second", "burst", "in_flight"} or "per_second" not in spec:
            raise SecurityConfigError(f"{where}: a mapping of per_second (and burst, in_flight), e.g. "
                                      "{per_second: 50, burst: 100, in_flight: 16}")
        rate = float(spec["per_second"])
        burst = float(spec.get("burst", max(1.0, rate)))
        in_flight = spec.get("in_flight")
        if rate <= 0 or burst < 1 or (in_flight is not None and int(in_flight) < 1):
            raise SecurityConfigError(f"{where}: per_second > 0, burst >= 1, in_flight >= 1")
        return cls(rate, burst, int(in_flight) if in_flight is not None else None)


class RateLimiter:
    """A token bucket (``per_second``, ``burst``) and a cap on calls in flight, per consumer
    (or per ORIG_DOMAIN for anonymous callers), in this bus process: a caller over its limit
    gets ``Server.Busy`` at once instead of a place in an unbounded queue, so one consumer
    flooding the bus cannot take the threads the others need. With several workers each has
    its own buckets: give each worker its share of a consumer's limit."""

    def __init__(self, default: Limit | None, limits: dict[str, Limit], clock=None):
        import threading
        import time
        self.default, self.limits = default, limits
        self.clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}   # key -> [tokens, last refill]
        self._in_flight: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings) -> "RateLimiter":
        default = Limit.parse(settings.section("security").get("rate_limit"), "security.rate_limit")
        limits = {}
        for cid, item in (settings.section("consumers") or {}).items():
            limit = Limit.parse((item or {}).get("rate_limit"), f"consumers.{cid}.rate_limit")
            if limit is not None:
                limits[str(cid)] = limit
        return cls(default, limits)

    def acquire(self, key: str, trans_ido: str | None = None) -> "callable":
        """Take one call's place for ``key``; returns the function that gives it back."""
        limit = self.limits.get(key, self.default)
        if limit is None:
            return _nothing
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, [limit.burst, now])
            tokens = min(limit.burst, tokens + (now - last) * limit.per_second)
            busy = tokens < 1 or (limit.in_flight is not None and self._in_flight.get(key, 0) >= limit.in_flight)
            if busy:
                self._buckets[key] = [tokens, now]
                raise Busy(f"{key} sends faster than its limit ({limit.per_second:g}/s, bursts of {limit.burst:g}"
                           + (f", {limit.in_flight} at a time" if limit.in_flight else "")
                           + "); retry in a moment.", trans_ido)
            self._buckets[key] = [tokens - 1, now]
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

        def release():
            with self._lock:
                self._in_flight[key] -= 1
        return release


def _nothing() -> None:
    return None
