"""Simulated peers that demand credentials, as real peers do: a WS-Security UsernameToken
(PasswordText, or PasswordDigest with Nonce and Created) or HTTP basic authentication.

Off unless asked: ``sandbox.require_auth: true`` in the configuration makes every simulated
peer endpoint whose bus-side peer has ``auth`` (config.settings.PeerAuth) demand exactly those
credentials, read from the same environment variables or files as the bus reads them (the
sandbox is a test double of the peers the bus is configured for). ``POST /control`` changes
one peer (by name, e.g. ``BILLING-51``) at run time:

``{"peer": "BILLING-51", "require_auth": {"scheme": "basic", "username": "u", "password": "p"}}``
    demand these credentials;
``{"peer": "BILLING-51", "require_auth": true}``
    demand what the bus is configured to send it (even with ``sandbox.require_auth`` off);
``{"peer": "BILLING-51", "require_auth": false}``
    demand nothing;
``{"peer": "BILLING-51", "require_auth": null}``
    back to what the sandbox started with.

A request without the demanded credentials, or with wrong ones, gets a SOAP fault
``Client.FailedAuthentication`` with a generic message (it never says what was wrong; the
sandbox's log does), before the peer does any work: HTTP 401 with ``WWW-Authenticate`` for
basic authentication, the usual fault status otherwise. A digest is checked as the
UsernameToken Profile 1.1 defines it, Base64(SHA-1(nonce + created + password)) with the nonce
decoded from Base64; Created must be within :data:`FRESHNESS` of now, and a nonce is accepted
once while it is fresh (a replayed token is refused).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from lxml import etree

from bus.security import FailedAuthentication
from sandbox.peers import peer_name

log = logging.getLogger("bssbus.sandbox")

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TOKEN_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = f"{TOKEN_PROFILE}#PasswordText"
PASSWORD_DIGEST = f"{TOKEN_PROFILE}#PasswordDigest"
SCHEMES = ("username_token", "username_token_digest", "basic")
FRESHNESS = 300   # seconds a digest's Created may lie from now, either way
REALM = "bssbus-sandbox"
GENERIC = "The security credentials of the request are missing or not valid."


@dataclass(frozen=True)
class Requirement:
    """The credentials one simulated peer endpoint demands."""

    scheme: str
    username: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, spec) -> "Requirement":
        """From ``/control``'s ``require_auth`` mapping; ValueError if unusable."""
        if not isinstance(spec, dict) or spec.get("scheme") not in SCHEMES \
                or not all(isinstance(spec.get(k), str) and spec.get(k) for k in ("username", "password")):
            raise ValueError(f"require_auth needs scheme ({' | '.join(SCHEMES)}), username and password")
        return cls(spec["scheme"], spec["username"], spec["password"])


_CONFIGURED = object()   # /control's ``true``: what the bus is configured to send


def _peer_name(kind: str, province: str | None) -> str:
    """The name a /control request calls the endpoint by (a legacy billing: its province's)."""
    return peer_name("province_billing" if kind == "legacy_billing" else kind, province)


class CredentialGate:
    """What each simulated peer endpoint ``(kind, province)`` demands, and the check of a
    request against it. ``configured``: the bus's own credentials for each endpoint (see
    :func:`configured_requirements`); ``enforce``: whether they are demanded from the start."""

    def __init__(self, configured: dict | None = None, enforce: bool = False):
        self.configured: dict[tuple[str, str | None], Requirement] = dict(configured or {})
        self.enforce = enforce
        self.control: dict[str, object] = {}   # peer name -> Requirement | False | _CONFIGURED
        self._nonces: dict[bytes, float] = {}
        self._lock = threading.Lock()

    # -- what is demanded -----------------------------------------------------------------
    def set(self, peer: str, spec) -> dict:
        """``/control``'s ``require_auth`` for ``peer``; returns what it now demands (no password)."""
        if spec is None:
            self.control.pop(peer, None)
        elif spec is True:
            if not any(_peer_name(*endpoint) == peer for endpoint in self.configured):
                raise ValueError(f"the bus is configured to send {peer} no credentials")
            self.control[peer] = _CONFIGURED
        elif spec is False:
            self.control[peer] = False
        else:
            self.control[peer] = Requirement.parse(spec)
        demanded = self.control.get(peer)
        if isinstance(demanded, Requirement):
            return {"scheme": demanded.scheme, "username": demanded.username}
        return {"demanded": "configured" if demanded is _CONFIGURED else
                "nothing" if demanded is False else "as started"}

    def requirement(self, kind: str, province: str | None) -> Requirement | None:
        demanded = self.control.get(_peer_name(kind, province), None)
        if demanded is None:
            return self.configured.get((kind, province)) if self.enforce else None
        if demanded is _CONFIGURED:
            return self.configured.get((kind, province))
        return demanded or None

    # -- the check ------------------------------------------------------------------------
    def check(self, kind: str, province: str | None, authorization: str | None,
              envelope: etree._Element | None) -> FailedAuthentication | None:
        """None if the request carries what the endpoint demands, else the fault to answer
        (the reason goes to the sandbox's log, never to the caller)."""
        need = self.requirement(kind, province)
        if need is None:
            return None
        if need.scheme == "basic":
            reason = self._basic(need, authorization)
        else:
            reason = self._token(need, envelope)
        if reason is None:
            return None
        log.info("sandbox peer %s refused a request: %s", _peer_name(kind, province), reason)
        fault = FailedAuthentication(GENERIC)
        fault.basic = need.scheme == "basic"
        return fault

    @staticmethod
    def _basic(need: Requirement, authorization: str | None) -> str | None:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return "no HTTP basic credentials"
        try:
            username, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "unreadable HTTP basic credentials"
        if not sep or not (hmac.compare_digest(username.encode(), need.username.encode())
                           & hmac.compare_digest(password.encode(), need.password.encode())):
            return f"wrong HTTP basic credentials for {username!r}"
        return None

    def _token(self, need: Requirement, envelope: etree._Element | None) -> str | None:
        tokens = [] if envelope is None else envelope.findall(
            f"{{*}}Header/{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
        if len(tokens) != 1:
            return "no UsernameToken" if not tokens else "more than one UsernameToken"
        token = tokens[0]
        username = (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip()
        password = token.find(f"{{{WSSE_NS}}}Password")
        if not hmac.compare_digest(username.encode(), need.username.encode()):
            return f"unknown user {username!r}"
        if password is None:
            return f"no Password for {username!r}"
        kind = password.get("Type") or PASSWORD_TEXT
        if need.scheme == "username_token":
            if kind != PASSWORD_TEXT:
                return f"a Password of type {kind}, PasswordText expected"
            if not hmac.compare_digest((password.text or "").encode(), need.password.encode()):
                return f"wrong password for {username!r}"
            return None
        if kind != PASSWORD_DIGEST:
            return f"a Password of type {kind}, PasswordDigest expected"
        nonce_text = token.findtext(f"{{{WSSE_NS}}}Nonce")
        created = token.findtext(f"{{{WSU_NS}}}Created")
        if not nonce_text or not created:
            return "a PasswordDigest without Nonce or Created"
        try:
            nonce = base64.b64decode(nonce_text.strip(), validate=True)
            when = datetime.fromisoformat(created.strip().replace("Z", "+00:00"))
        except (binascii.Error, ValueError):
            return "an unreadable Nonce or Created"
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if abs(time.time() - when.timestamp()) > FRESHNESS:
            return f"a token created at {created}, not within {FRESHNESS} s of now"
        expected = base64.b64encode(hashlib.sha1(nonce + created.strip().encode("utf-8")
                                                 + need.password.encode("utf-8")).digest())
        if not hmac.compare_digest((password.text or "").strip().encode(), expected):
            return f"wrong password digest for {username!r}"
        if not self._fresh_nonce(nonce):
            return "a nonce already used (a replayed token)"
        return None

    def _fresh_nonce(self, nonce: bytes) -> bool:
        """True the first time ``nonce`` is seen within the freshness window."""
        now = time.monotonic()
        with self._lock:
            if len(self._nonces) > 10_000:
                self._nonces = {n: t for n, t in self._nonces.items() if now - t <= 2 * FRESHNESS}
            seen = self._nonces.get(nonce)
            if seen is not None and now - seen <= 2 * FRESHNESS:
                return False
            self._nonces[nonce] = now
            return True


def configured_requirements(settings, provinces) -> dict[tuple[str, str | None], Requirement]:
    """What each simulated endpoint ``(kind, province)`` demands if it demands what the bus is
    configured to send it: for each peer with ``auth``, its adapter kind (the sandbox serves a
    kind at ``/peers/<kind>/...``) in every province (a per-province peer), a province's own
    override (its adapter, its ``auth``) replacing it there."""
    out = {}
    for key, spec in (settings.raw.get("peers") or {}).items():
        spec = spec or {}
        kind = str(spec.get("adapter", key))
        per_province = "{province}" in str(spec.get("url", ""))
        auth = settings.peer_auth(key)
        if auth is not None:
            for province in (sorted(provinces) if per_province else [None]):
                out[(kind, province)] = Requirement(auth.scheme, auth.username_for(province), auth.password)
        for code, over in (spec.get("provinces") or {}).items():
            code, over = str(code), over or {}
            endpoint = (str(over.get("adapter", kind)), code)
            auth = settings.peer_auth(key, code)
            if auth is None:
                out.pop(endpoint, None)
            else:
                out[endpoint] = Requirement(auth.scheme, auth.username_for(code), auth.password)
    return out


def gate_for(settings, provinces) -> CredentialGate:
    """The sandbox's gate for ``settings``: enforced from the start if ``sandbox.require_auth``."""
    return CredentialGate(configured_requirements(settings, provinces),
                          enforce=bool(settings.section("sandbox").get("require_auth", False)))
