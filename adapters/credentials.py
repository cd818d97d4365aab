"""The credentials the bus sends a peer: a zeep egress plugin on every outbound call.

Each peer's ``auth`` (``config.settings.PeerAuth``) names a scheme:

* ``username_token``: a WS-Security ``wsse:Security`` header with a ``UsernameToken``
  (``Username``, ``Password`` of type PasswordText);
* ``username_token_digest``: the same with a PasswordDigest,
  Base64(SHA-1(nonce + created + password)), and the ``Nonce`` and ``wsu:Created`` it was
  made from (a fresh nonce on every call, a retry included);
* ``basic``: HTTP basic authentication (an ``Authorization`` header on the POST).

The user name may hold ``{province}``: it is filled in for the province of each call
(:meth:`Credentials.use`). A password never leaves the process except on the wire to its
peer: :func:`bus.security.mask_passwords` blanks every ``Password`` element in what the journal keeps and
in the debug log of what is posted, and the basic-auth header is neither journalled nor logged.

A peer that refuses the bus's credentials (a WS-Security fault such as
``wsse:FailedAuthentication`` or ``Client.FailedAuthentication``, or HTTP 401/403) is the
bus's problem, not the caller's: :func:`refused_credentials` recognises it, and the adapter
answers ``Server.PeerFault`` naming the peer; the breaker counts it as a failure.
"""
from __future__ import annotations

import base64
import logging
import threading

import zeep
from zeep.plugins import Plugin
from zeep.wsse.username import UsernameToken

from config.settings import PeerAuth


#: fault codes (local part, any prefix) that mean "your security credentials are refused":
#: WS-Security 1.1's, and the SOAP 1.1 dotted form peers use (``Client.FailedAuthentication``)
SECURITY_FAULTS = {"FailedAuthentication", "InvalidSecurity", "InvalidSecurityToken", "FailedCheck",
                   "SecurityTokenUnavailable", "MessageExpired", "UnsupportedSecurityToken"}


#: the logger of what every adapter posts (a child of zeep's, so zeep's level applies)
WIRE_LOG = logging.getLogger("zeep.transports.bssbus")


def basic_authorization(username: str, password: str) -> str:
    """The value of an HTTP basic ``Authorization`` header (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode("utf-8")).decode("ascii")


class Credentials(Plugin):
    """zeep plugin adding a peer's credentials to each request it sends (nothing when the peer
    has no ``auth``). Runs before the journal's capture plugin, so the capture sees the
    request as it goes on the wire, and masks it."""

    def __init__(self, auth: PeerAuth | None):
        self.auth = auth
        self.local = threading.local()

    def use(self, province: str | None) -> None:
        """The province of this thread's next call (its ``{province}`` in the user name)."""
        self.local.province = province

    def egress(self, envelope, http_headers, operation, binding_options):
        auth = self.auth
        if auth is None:
            return envelope, http_headers
        username = auth.username_for(getattr(self.local, "province", None))
        if auth.scheme == "basic":
            http_headers["Authorization"] = basic_authorization(username, auth.password)
        else:
            token = UsernameToken(username, auth.password, use_digest=auth.digest, zulu_timestamp=True)
            envelope, http_headers = token.apply(envelope, http_headers)
        return envelope, http_headers


def _local(code) -> str:
    """``Client.FailedAuthentication`` of ``soap:Client.FailedAuthentication``; ``X`` of ``wsse:X``."""
    return str(code or "").rsplit(":", 1)[-1].rsplit("}", 1)[-1]


def refused_credentials(exc: BaseException) -> str | None:
    """What a peer's refusal of the bus's credentials looked like (a fault code or an HTTP
    status), or None if ``exc`` is something else."""
    if isinstance(exc, zeep.exceptions.Fault):
        codes = [exc.code] + list(getattr(exc, "subcodes", None) or [])
        for code in codes:   # subcodes are QNames; str() gives "{namespace}local"
            if _local(code).split(".")[-1] in SECURITY_FAULTS:
                return str(code)
        return None
    if isinstance(exc, zeep.exceptions.TransportError) and exc.status_code in (401, 403):
        return f"HTTP {exc.status_code}"
    return None
