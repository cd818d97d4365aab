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

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field

from lxml import etree

from bus.security import (WSSE, FailedAuthentication, basic_token, parse_time, password_digest,
                          read_username_token)
from sandbox.peers import peer_name

log = logging.getLogger("bssbus.sandbox")

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
        token = basic_token(authorization)
        if token is None:
            return "no HTTP basic credentials"
        if not (hmac.compare_digest(token.username.encode(), need.username.encode())
                & hmac.compare_digest(token.password.encode(), need.password.encode())):
            return f"wrong HTTP basic credentials for {token.username!r}"
        return None

    def _token(self, need: Requirement, envelope: etree._Element | None) -> str | None:
        found = [] if envelope is None else envelope.findall(
            f"{{*}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if len(found) != 1:
            return "no UsernameToken" if not found else "more than one UsernameToken"
        token = read_username_token(found[0])
        if not hmac.compare_digest(token.username.encode(), need.username.encode()):
            return f"unknown user {token.username!r}"
        if found[0].find(f"{{{WSSE}}}Password") is None:
            return f"no Password for {token.username!r}"
        if need.scheme == "username_token":
            if token.digest:
                return "a PasswordDigest, PasswordText expected"
            if not hmac.compare_digest(token.password.encode(), need.password.encode()):
                return f"wrong password for {token.username!r}"
            return None
        if not token.digest:
            return "a PasswordText, PasswordDigest expected"
        if not token.nonce or not token.created:
            return "a PasswordDigest without a readable Nonce or Created"
        when = parse_time(token.created)
        if when is None:
            return "an unreadable Created"
        if abs(time.time() - when.timestamp()) > FRESHNESS:
            return f"a token created at {token.created}, not within {FRESHNESS} s of now"
        expected = password_digest(token.nonce, token.created, need.password)
        if not hmac.compare_digest(token.password.strip().encode(), expected.encode()):
            return f"wrong password digest for {token.username!r}"
        if not self._fresh_nonce(token.nonce):
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
