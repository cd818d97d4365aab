"""Adapter (EIP Channel Adapter) base: calls a peer with zeep and maps faults.

One zeep ``Client`` per contract per process (the WSDL is parsed once), one requests
``Session`` per peer with a pooled keep-alive ``HTTPAdapter``, one service proxy per peer
address, a timeout on every call. A peer's answer is read like a caller's request: no DTD, no
entity, no external reference, no huge tree (:func:`zeep_settings`), never compressed and never
longer than ``max_answer_bytes`` (:class:`~services.client.BoundedTransport`). A peer fault, an
unreadable answer, a refused connection or a timeout becomes a ``Server`` fault naming the peer.

Every call goes through the :class:`~bus.breaker.CircuitBreaker` of its endpoint (the resolved
peer name, e.g. ``BILLING-51``), which the :class:`AdapterRegistry` holds for the process: while
it is open the call fails fast with ``Server.PeerUnavailable`` and nothing goes on the wire.

A peer with ``auth`` gets its credentials on every call (adapters/credentials.py: WS-Security
UsernameToken or HTTP basic); what the journal keeps of a request has its password masked, and
a peer that refuses the credentials is a ``Server.PeerFault`` (the bus's problem) and a failure
for the breaker.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import requests
import urllib3
import zeep
from lxml import etree
from requests.adapters import HTTPAdapter
from zeep.helpers import serialize_object
from zeep.plugins import Plugin

from adapters.credentials import WIRE_LOG, Credentials, refused_credentials
from bus.breaker import CircuitBreakers, is_peer_failure
from bus.faults import BusFault, Busy, PeerFault, PeerTimeout, PeerUnavailable
from bus.message import Message, Reply
from bus.security import mask_passwords
from config.settings import ConfigError, PeerConfig, did_you_mean
from services.client import BoundedTransport, safe_zeep_settings
from services.models import CONTRACTS
from services.models.common import WSDL_DIR, from_xml

POOL_SIZE = 64
_HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"
#: How a forwarded request's answer is parsed: no entities, no network, no DTD, no huge tree.
_ANSWER_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                 remove_blank_text=False)


class Passthrough:
    """A request the inbound fast path read and validated with lxml (services/app.py): a
    canonical peer gets it as it came, with the bus's few changes, instead of being rebuilt by
    zeep; its answer comes back the same way. ``schema`` is the contract's, compiled once per
    process, to check the answer with."""

    __slots__ = ("envelope", "schema")

    def __init__(self, envelope: etree._Element, schema: etree.XMLSchema):
        self.envelope = envelope
        self.schema = schema


class _RawCapture(Plugin):
    """zeep plugin keeping the last envelope sent (passwords masked) and received, per thread,
    for the journal."""

    def __init__(self):
        self.local = threading.local()

    def egress(self, envelope, http_headers, operation, binding_options):
        self.local.sent = mask_passwords(etree.tostring(envelope, encoding="utf-8"))
        self.local.received = b""
        return envelope, http_headers

    def ingress(self, envelope, http_headers, operation):
        self.local.received = etree.tostring(envelope, encoding="utf-8")
        return envelope, http_headers

    def take(self) -> tuple[bytes, bytes]:
        return getattr(self.local, "sent", b""), getattr(self.local, "received", b"")

    def reset(self) -> None:
        """Forget the last exchange of this thread (a call may fail before anything is sent)."""
        self.local.sent = self.local.received = b""


_wsdl_lock = threading.Lock()
_wsdl_documents: dict[str, zeep.wsdl.Document] = {}


class PeerTransport(BoundedTransport):
    """The bounded transport (a capped, uncompressed answer) logging what it posts and receives
    (at debug level) with passwords masked and in whatever charset it travels (zeep's own log
    decodes it as UTF-8, and fails on a GBK request)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.logger = WIRE_LOG

    def post(self, address, message, headers):
        debug = self.logger.isEnabledFor(logging.DEBUG)
        if debug:
            self.logger.debug("HTTP Post to %s:\n%s", address, _text(mask_passwords(message)))
        response = super().post(address, message, headers)
        if debug:
            self.logger.debug("HTTP Response from %s (status: %d):\n%s", address, response.status_code,
                              _text(response.content))
        return response


def _text(data) -> str:
    """Bytes of a message as text for a log line: UTF-8, else GB18030, else with replacements."""
    if not isinstance(data, bytes):
        return str(data)
    for charset in ("utf-8", "gb18030"):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            pass
    return data.decode("utf-8", errors="replace")


def zeep_settings() -> zeep.Settings:
    """How every peer answer is parsed: services.client.safe_zeep_settings (no DTD, no entity,
    no external reference, no huge tree)."""
    return safe_zeep_settings()


class InFlight:
    """Calls in flight to each peer endpoint from this process (a bulkhead). Each one holds a
    server thread while it waits; an endpoint at its ``max_in_flight`` (a province answering
    slowly) gets no more, so the threads left serve everyone else: the next call to it is
    ``Server.Busy`` at once, naming the endpoint, instead of a thread lost to the wait."""

    def __init__(self):
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self.gauge = None   # bssbus_peer_in_flight (bus/metrics.py), when the bus counts


    def enter(self, name: str, peer: PeerConfig, trans_ido: str | None) -> None:
        with self._lock:
            calls = self._calls.get(name, 0)
            if calls >= peer.max_in_flight:
                raise Busy(f"{name} has {calls} calls in flight from this bus process, its limit "
                           f"(peers.{peer.key.partition('[')[0]}.max_in_flight): it is answering slowly; "
                           "retry in a moment.", trans_ido)
            self._calls[name] = calls + 1
        if self.gauge is not None:
            self.gauge.labels(name).inc()

    def leave(self, name: str) -> None:
        with self._lock:
            self._calls[name] -= 1
        if self.gauge is not None:
            self.gauge.labels(name).dec()

    def __getitem__(self, name: str) -> int:
        return self._calls.get(name, 0)


class Adapter:
    """Base of every peer adapter. Subclasses name their ``kind`` and the contracts they carry."""

    kind: str = ""
    services: tuple[str, ...] = ()
    #: The peer speaks the canonical contract with no mapping: a request read by the inbound
    #: fast path is forwarded as it came (see :meth:`forward`). An adapter that maps sets False.
    canonical: bool = True

    def __init__(self, peer: PeerConfig):
        self.peer = peer
        self.capture = _RawCapture()
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy/netrc look-ups in os.environ on every call
        pooled = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
        self.session.mount("http://", pooled)
        self.session.mount("https://", pooled)
        self.transport = PeerTransport(session=self.session, timeout=peer.timeout,
                                       operation_timeout=peer.timeout, max_answer_bytes=peer.max_answer_bytes)
        self.credentials = Credentials(peer.auth)   # runs before the capture: it sees the token
        self._clients: dict[str, zeep.Client] = {}
        self._proxies: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()
        self.breakers = CircuitBreakers()   # the AdapterRegistry shares one set between adapters
        self.in_flight = InFlight()         # ...and one count of the calls in flight
        # a connection kept for each call that may be in flight to an endpoint at once
        self.pool = urllib3.PoolManager(num_pools=64, maxsize=max(POOL_SIZE, peer.max_in_flight), retries=False,
                                        block=False)

    # -- zeep plumbing: built once, then shared by every thread --------------------------
    def client(self, service: str) -> zeep.Client:
        client = self._clients.get(service)
        if client is None:
            with self._lock:
                client = self._clients.get(service)
                if client is None:
                    client = zeep.Client(str(self.wsdl_path(service)), transport=self.transport,
                                         settings=zeep_settings(), plugins=[self.credentials, self.capture])
                    self._clients[service] = client
        return client

    def proxy(self, service: str, url: str):
        key = (service, url)
        proxy = self._proxies.get(key)
        if proxy is None:
            proxy = self.client(service).create_service(self.binding(service), url)
            self._proxies[key] = proxy
        return proxy

    def wsdl_path(self, service: str) -> Path:
        """The contract the peer speaks for ``service``: the canonical one unless overridden."""
        return WSDL_DIR / CONTRACTS[service].wsdl

    def binding(self, service: str) -> str:
        """The qualified name of the SOAP 1.1 binding to call in :meth:`wsdl_path`."""
        return f"{{{CONTRACTS[service].namespace}}}{service}Soap11Binding"

    def endpoint(self, service: str, base_url: str) -> str:
        """The peer's address for one service: ``<peer url>/<Service>``."""
        return f"{base_url.rstrip('/')}/{service}"

    def offers(self, service: str, operation: str) -> bool:
        """Whether this peer has an operation for ``service.operation``."""
        return service in self.services and operation in CONTRACTS[service].operations

    # -- mapping hooks: canonical peers need none ------------------------------------------
    def map_request(self, message: Message, decision) -> tuple[dict, dict]:
        head = dict(message.head)
        head["MSG_RECEIVER"] = decision.peer_name
        return head, message.body

    def map_reply(self, message: Message, decision, head: dict, body: dict | None) -> tuple[dict, dict | None]:
        head = dict(head or {})
        head.setdefault("MSG_SENDER", decision.peer_name)
        head["TRANS_IDO"] = message.trans_ido
        head["ACTION_CODE"] = "1"
        return head, body

    # -- the call -------------------------------------------------------------------------
    def exchange(self, proxy, message: Message, decision) -> tuple[dict, dict | None]:
        """One round trip with the peer: map the request, call the operation, map the answer
        back to the canonical (head, body). A peer with its own operations overrides this."""
        head, body = self.map_request(message, decision)
        result = getattr(proxy, message.operation)(UNI_BSS_HEAD=head, UNI_BSS_BODY=body)
        data = serialize_object(result, dict) or {}
        return self.map_reply(message, decision, data.get("UNI_BSS_HEAD"), data.get("UNI_BSS_BODY"))

    def call(self, message: Message, decision) -> Reply:
        """Call the peer for ``message``; return its Reply or raise a Server fault naming it.

        At most ``max_in_flight`` calls to one endpoint at once in this process (:class:`InFlight`),
        and under the endpoint's CircuitBreaker: while it is open this raises ``PeerUnavailable``
        at once, and each call's outcome is judged by :func:`breaker_verdict`."""
        if message.service not in self.services:
            raise PeerFault(f"Peer {decision.peer_name} ({self.kind}) does not offer {message.service}; "
                            "the route table sends it to the wrong peer.", message.trans_ido)
        self.in_flight.enter(decision.peer_name, self.peer, message.trans_ido)
        try:
            return self._guarded(message, decision)
        finally:
            self.in_flight.leave(decision.peer_name)

    def _guarded(self, message: Message, decision) -> Reply:
        breaker = self.breakers.get(decision.peer_name, self.peer.breaker)
        if breaker is None:   # breaker: {enabled: false}
            return self.round_trip(message, decision)
        permit = breaker.acquire(message.trans_ido)   # fails fast while open
        try:
            reply = self.round_trip(message, decision)
        except BaseException as exc:
            verdict = breaker_verdict(exc)
            if verdict == FAILURE:
                breaker.failure(permit, getattr(exc, "message", None) or str(exc))
            elif verdict == SUCCESS:
                breaker.success(permit)
            else:
                breaker.release(permit)
            raise
        breaker.success(permit)
        return reply

    def round_trip(self, message: Message, decision) -> Reply:
        """One call of the peer, its failures mapped to Server faults naming it (no breaker)."""
        name = decision.peer_name
        url = self.endpoint(message.service, decision.url)
        self.capture.reset()
        self.credentials.use(decision.province)
        started = time.perf_counter()
        forwarded = None
        try:
            try:
                if self.forwards(message):
                    head, body, forwarded = self.forward(message, decision, url)
                else:
                    head, body = self.exchange(self.proxy(message.service, url), message, decision)
            except zeep.exceptions.Fault as exc:
                if refusal := refused_credentials(exc):
                    raise self.credentials_refused(message, decision, refusal) from None
                raise PeerFault(f"Peer {name} answered {message.operation} with a SOAP fault "
                                f"({exc.code}): {exc.message}", message.trans_ido, peer=name) from None
            except requests.Timeout:
                raise PeerTimeout(f"Peer {name} did not answer {message.operation} within "
                                  f"{self.peer.timeout:g} s.", message.trans_ido, peer=name) from None
            except requests.ConnectionError:
                raise PeerUnavailable(f"Peer {name} at {url} refused or dropped the connection.",
                                      message.trans_ido, peer=name) from None
            except (zeep.exceptions.TransportError, zeep.exceptions.XMLSyntaxError,
                    zeep.exceptions.ValidationError, etree.XMLSyntaxError, zeep.exceptions.Error) as exc:
                if refusal := refused_credentials(exc):   # HTTP 401/403 without a SOAP fault
                    raise self.credentials_refused(message, decision, refusal) from None
                raise PeerFault(f"Peer {name} gave an answer to {message.operation} the bus cannot use: "
                                f"{exc}", message.trans_ido, peer=name) from None
        except BusFault as fault:   # keep what went over the wire, for the journal
            fault.sent, fault.received = self.capture.take()
            raise
        elapsed = (time.perf_counter() - started) * 1000
        sent, received = self.capture.take()
        reply = Reply(head=head, body=body, peer=name, raw_request=sent, raw_response=received, elapsed_ms=elapsed)
        if forwarded is not None:
            reply.extra["answer"] = forwarded   # the caller's answer, ready to send
        return reply

    # -- the fast path: forward what the inbound side read, as it came ---------------------
    def forwards(self, message: Message) -> bool:
        """Whether ``message`` goes to this peer as it came (no zeep): a canonical peer, a
        request the inbound fast path read, and no credentials to add (those go through zeep's
        WS-Security plugin)."""
        return self.canonical and message.passthrough is not None and self.peer.auth is None

    def forward(self, message: Message, decision, url: str) -> tuple[dict, dict | None, bytes]:
        """POST the caller's envelope to the peer (its SOAP Header dropped: the caller's
        credentials are not the peer's; MSG_RECEIVER set), read the answer with lxml, check it
        against the contract, and apply :meth:`map_reply`'s changes in place. Returns the
        answer's (head, body) as the typed path gives them, and the answer's bytes for the
        caller. Failures are raised as zeep's and requests' (round_trip maps them)."""
        envelope = message.passthrough.envelope
        for child in list(envelope):
            if isinstance(child.tag, str) and etree.QName(child).localname == "Header":
                envelope.remove(child)
        op = CONTRACTS[message.service].operations[message.operation]
        wrapper = _body_child(envelope)
        _set_head(wrapper.find(f"{{{_HEAD_NS}}}UNI_BSS_HEAD"), "MSG_RECEIVER", decision.peer_name)
        data = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        self.capture.local.sent = data
        debug = WIRE_LOG.isEnabledFor(logging.DEBUG)
        if debug:
            WIRE_LOG.debug("HTTP Post to %s (forwarded):\n%s", url, _text(data))
        try:
            response = self.pool.request(
                "POST", url, body=data, preload_content=False, redirect=False,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{message.operation}"',
                         "Accept-Encoding": "identity"},
                timeout=urllib3.Timeout(connect=self.peer.timeout, read=self.peer.timeout))
            try:
                answer = _read_capped(response, self.peer.max_answer_bytes, self.peer.timeout)
            except BaseException:
                response.close()   # half read: its connection is not kept for another call
                raise
            finally:
                response.release_conn()
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError,
                urllib3.exceptions.MaxRetryError, ConnectionError) as exc:   # (NewConnectionError is a
            raise requests.ConnectionError(str(exc)) from None                  # ConnectTimeoutError too)
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError) as exc:
            raise requests.Timeout(str(exc)) from None
        self.capture.local.received = answer
        if debug:
            WIRE_LOG.debug("HTTP Response from %s (status: %d):\n%s", url, response.status, _text(answer))
        try:
            root = etree.fromstring(answer, _ANSWER_PARSER)
        except etree.XMLSyntaxError as exc:
            raise zeep.exceptions.TransportError(f"HTTP {response.status}: not XML ({exc})",
                                                 status_code=response.status) from None
        result = _body_child(root)
        if etree.QName(result).localname == "Fault":
            code = result.findtext("faultcode") or ""
            raise zeep.exceptions.Fault(result.findtext("faultstring") or "", code=code)
        if response.status != 200 or result.tag != f"{{{CONTRACTS[message.service].namespace}}}{op.name}Response":
            raise zeep.exceptions.TransportError(f"HTTP {response.status}: the answer is not a "
                                                 f"{op.name}Response", status_code=response.status)
        try:
            message.passthrough.schema.assertValid(result)
        except etree.DocumentInvalid as exc:
            raise zeep.exceptions.ValidationError(f"the answer breaks the contract: {exc}") from None
        data = from_xml(CONTRACTS[message.service], op, result, response=True, typed=True)
        head, body = self.map_reply(message, decision, data.get("UNI_BSS_HEAD"), data.get("UNI_BSS_BODY"))
        result_head = result[0].find(f"{{{_HEAD_NS}}}UNI_BSS_HEAD")
        for field in ("MSG_SENDER", "TRANS_IDO", "ACTION_CODE"):   # what map_reply changed, in the bytes too
            if head.get(field) is not None:
                _set_head(result_head, field, head[field])
        return head, body, etree.tostring(root, xml_declaration=True, encoding="utf-8")

    def credentials_refused(self, message: Message, decision, refusal: str) -> PeerFault:
        """The Server fault for a peer that refused the bus's credentials (or their absence):
        the bus's configuration must change, not the caller's request."""
        name, where = decision.peer_name, self.peer.auth_where
        what = f"the bus sends it none; configure {where}" if self.peer.auth is None else f"check {where}"
        fault = PeerFault(f"Peer {name} refused the bus's credentials for {message.operation} "
                          f"({refusal}): {what}.", message.trans_ido, peer=name)
        fault.credentials_refused = True
        return fault


def _body_child(envelope: etree._Element) -> etree._Element:
    """The first element in an envelope's Body (any SOAP version)."""
    for child in envelope:
        if isinstance(child.tag, str) and etree.QName(child).localname == "Body":
            for inner in child:
                if isinstance(inner.tag, str):
                    return inner
    raise zeep.exceptions.TransportError("the answer is not a SOAP envelope with a Body")


#: UNI_BSS_HEAD's fields in contract order (where a field the bus sets goes).
_HEAD_ORDER = ("ORIG_DOMAIN", "SERVICE_NAME", "OPERATE_NAME", "ACTION_CODE", "ROUTING", "PROC_ID", "TRANS_IDO",
               "TRANS_IDH", "PROCESS_TIME", "COM_BUS_INFO", "MSG_SENDER", "MSG_RECEIVER", "TEST_FLAG", "RESPONSE")


def _set_head(head: etree._Element, name: str, value: str) -> None:
    """Set UNI_BSS_HEAD's field ``name`` to ``value``, inserting it in contract order."""
    tag = f"{{{_HEAD_NS}}}{name}"
    found = head.find(tag)
    if found is None:
        later = _HEAD_ORDER[_HEAD_ORDER.index(name) + 1:]
        found = etree.Element(tag)
        following = next((c for c in head if isinstance(c.tag, str) and etree.QName(c).localname in later), None)
        if following is None:
            head.append(found)
        else:
            following.addprevious(found)
    found.text = value


def _read_capped(response, limit: int, timeout: float) -> bytes:
    """The answer's body, refused past ``limit`` bytes or when it trickles in for longer than
    ``timeout`` in all."""
    started, size, chunks = time.monotonic(), 0, []
    for chunk in response.stream(1 << 16, decode_content=False):
        size += len(chunk)
        if size > limit:
            raise zeep.exceptions.TransportError(f"the answer is longer than {limit} bytes", status_code=response.status)
        if time.monotonic() - started > timeout:
            raise requests.Timeout(f"the answer took longer than {timeout:g} s to arrive")
        chunks.append(chunk)
    return b"".join(chunks)


# -- what one call tells the CircuitBreaker ---------------------------------------------------
SUCCESS, FAILURE = "success", "failure"


def sender_fault(code) -> bool:
    """A SOAP fault code that blames the sender: ``soap:Client[.X]`` (1.1), ``env:Sender`` (1.2)."""
    local = str(code or "").rsplit(":", 1)[-1]
    return local.split(".", 1)[0] in ("Client", "Sender")


def breaker_verdict(exc: BaseException) -> str | None:
    """What a failed call tells the peer's CircuitBreaker.

    FAILURE: ``PeerUnavailable`` (refused or dropped connection), ``PeerTimeout``, and a
    ``PeerFault`` once the request went on the wire: a SOAP Server fault, an unusable answer,
    a legacy "system error". SUCCESS: a SOAP Client fault (the peer is up, and rejects this
    request), unless it refuses the bus's credentials: that is a FAILURE (the bus cannot use the
    peer until its configuration is fixed). None, counting nothing: the bus's own bugs, client faults, and a ``PeerFault``
    raised before anything was sent (the message cannot be mapped to the peer's contract).
    A reply, whatever its RSP_CODE, is a SUCCESS (a business refusal is an answer).
    """
    if not is_peer_failure(exc):
        return None
    if isinstance(exc, (PeerUnavailable, PeerTimeout)) or getattr(exc, "credentials_refused", False):
        return FAILURE
    if not getattr(exc, "sent", b""):
        return None
    cause = exc.__context__   # the zeep Fault a PeerFault was raised from (``from None`` keeps it)
    if isinstance(cause, zeep.exceptions.Fault) and sender_fault(cause.code):
        return SUCCESS
    return FAILURE


class AdapterRegistry:
    """One adapter instance per configured peer, created on first use, and the process's
    :class:`~bus.breaker.CircuitBreakers` (one breaker per peer endpoint) and the
    :class:`InFlight` counts they all share."""

    def __init__(self, peers: dict[str, PeerConfig], kinds: dict[str, type[Adapter]],
                 breakers: CircuitBreakers | None = None):
        self.peers = peers
        self.kinds = kinds
        self.breakers = breakers or CircuitBreakers()
        self.in_flight = InFlight()
        self._adapters: dict[str, Adapter] = {}
        self._lock = threading.Lock()
        for key, peer in peers.items():
            for where, name in [(f"peers.{key}.adapter", peer.adapter)] + [
                    (f"peers.{key}.provinces.{code}.adapter", over["adapter"])
                    for code, over in peer.provinces if "adapter" in over]:
                if name not in kinds:
                    raise ConfigError(f"{where}: unknown adapter {name!r}{did_you_mean(name, kinds)}")

    def for_peer(self, peer: PeerConfig) -> Adapter:
        adapter = self._adapters.get(peer.key)
        if adapter is None:
            with self._lock:
                adapter = self._adapters.get(peer.key)
                if adapter is None:
                    adapter = self.kinds[peer.adapter](peer)
                    adapter.breakers, adapter.in_flight = self.breakers, self.in_flight
                    self._adapters[peer.key] = adapter
        return adapter
