"""One SOAP endpoint: read the request safely, hand it to spyne, answer a response or a fault.

Used by the bus (services/app.py) and by the sandbox peers alike, so both refuse bad input
the same way. The caller of :meth:`SoapEndpoint.serve` gets an :class:`Exchange` telling what
happened, for the journal, and what to answer (:meth:`Exchange.answer`).

SOAP 1.1 and 1.2 share the pipeline: the version is a parameter of each step, not a second
copy of it. Until the envelope is parsed, the Content-Type's guess is the version a fault is
rendered in; from then on the envelope's namespace decides (see services/inbound.py). A SOAP
1.1 answer is ``text/xml`` and a fault HTTP 500; a SOAP 1.2 answer is ``application/soap+xml``,
a Sender (``Client.*``) fault HTTP 400 and a Receiver (``Server.*``) fault HTTP 500.
"""
from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field

from lxml import etree

from bus.faults import (SOAP11, SOAP12, BusFault, ClientFault, InternalError, LimitExceeded,
                        MalformedRequest, fault_envelope, fault_status)
from services.endpoints import ENVELOPE_KEY, Handler, build_wsgi
from services.inbound import (InboundRequest, Limits, actions_of, parse_envelope, read_request,
                              soap_version_hint, soap_version_of)
from services.models.common import Contract

log = logging.getLogger("bssbus.soap")

#: The media type of each SOAP version's messages.
MEDIA_TYPE = {SOAP11: "text/xml", SOAP12: "application/soap+xml"}
XML_TYPE = "text/xml; charset=utf-8"
FAULT_KEY = "bssbus.fault"
#: For re-reading the bus's own answers: still no entities, no network, no DTD.
_OWN = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


_SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope_of(wrapper: etree._Element) -> bytes:
    """A SOAP 1.1 envelope around a response wrapper element, as bytes (UTF-8)."""
    root = etree.Element(f"{{{_SOAP11_NS}}}Envelope", nsmap={"soapenv": _SOAP11_NS})
    etree.SubElement(root, f"{{{_SOAP11_NS}}}Body").append(wrapper)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def content_type(soap_version: str = SOAP11, charset: str = "utf-8") -> str:
    """The Content-Type of a ``soap_version`` message in ``charset``."""
    return f"{MEDIA_TYPE[soap_version]}; charset={charset}"


def soap_fault(fault: BusFault, soap_version: str = SOAP11) -> tuple[str, str, bytes]:
    """(status, Content-Type, body) of a fault answered in ``soap_version``."""
    return fault_status(fault, soap_version), content_type(soap_version), fault_envelope(fault, soap_version)


@dataclass
class Exchange:
    """What one POST became: the parsed request (if any), the answer and the fault (if any)."""

    raw: bytes
    request: InboundRequest | None = None
    response: bytes = b""
    status: str = "200 OK"
    fault: BusFault | None = None
    context: dict = field(default_factory=dict)
    soap_version: str = SOAP11   # the Content-Type's guess, then the envelope's namespace
    started: float = field(default_factory=time.time)   # when the bus began to read it

    @property
    def operation(self) -> str | None:
        return self.request.operation if self.request else None

    def answer(self) -> tuple[str, str, bytes]:
        """(status, Content-Type, body) for the caller: an answer in the caller's charset (see
        :func:`encode_for`), a fault in UTF-8; both in the request's SOAP version."""
        if self.fault is None and self.request is not None:
            body, ctype = encode_for(self.request.charset, self.response, self.soap_version)
            return self.status, ctype, body
        return self.status, content_type(self.soap_version), self.response


#: Content-Encoding values that mean "not encoded"; the bus reads no compressed body, so a
#: decompression bomb has nothing to go off in.
_IDENTITY = {"", "identity"}


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; more is a Client fault (``LimitExceeded``), not a
    truncation. A compressed body (any Content-Encoding but identity) is refused, unread by a
    parser."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        raise MalformedRequest("The Content-Length header is not a number.") from None
    stream = environ["wsgi.input"]
    try:
        if length > limit:
            _drain(stream, length, 8 * limit)
            raise LimitExceeded(f"The request body has {length} bytes; the limit (bus.max_body_bytes) is {limit}.")
        data = stream.read(length) if length >= 0 else stream.read(limit + 1)
    except ClientFault:
        raise
    except Exception as exc:   # the server's reader: a broken chunk, a connection cut mid-body
        raise MalformedRequest(f"The request body could not be read ({type(exc).__name__}); check its "
                               "Content-Length or chunked encoding.") from None
    if len(data) > limit:
        raise LimitExceeded(f"The request body is larger than the limit of {limit} bytes (bus.max_body_bytes).")
    encoding = (environ.get("HTTP_CONTENT_ENCODING") or "").strip().lower()
    if encoding not in _IDENTITY:
        shown = encoding if len(encoding) <= 40 else encoding[:37] + "..."
        raise MalformedRequest(f"The request body is encoded ({shown!r} in Content-Encoding); the bus reads "
                               "uncompressed bodies only: send it without Content-Encoding.")
    return data


def _drain(stream, length: int, cap: int) -> None:
    """Read and drop an oversized body (up to ``cap`` bytes), so a client that sends the whole
    body before reading gets the fault instead of a broken pipe; beyond ``cap`` the connection
    is dropped by the server after the answer."""
    left = min(length, cap)
    while left > 0:
        chunk = stream.read(min(left, 1 << 16))
        if not chunk:
            break
        left -= len(chunk)


def encode_for(charset: str, response: bytes, soap_version: str = SOAP11) -> tuple[bytes, str]:
    """Answer in the caller's charset (a GBK caller gets GBK), UTF-8 otherwise; returns the
    bytes and their Content-Type (``text/xml`` for SOAP 1.1, ``application/soap+xml`` for 1.2)."""
    if charset in ("utf-8", "ascii"):
        return response, content_type(soap_version)
    try:
        tree = etree.fromstring(response, _OWN)
        return etree.tostring(tree, xml_declaration=True, encoding=charset), content_type(soap_version, charset)
    except (LookupError, UnicodeEncodeError, etree.Error):
        return response, content_type(soap_version)


class SoapEndpoint:
    """A contract served at one address: safe parse, contract validation, spyne dispatch."""

    def __init__(self, contract: Contract, schema: etree.XMLSchema, handler: Handler, **limits):
        """``limits``: the :class:`~services.inbound.Limits` fields (``max_body_bytes``,
        ``max_depth``, ``max_elements``...) that differ from its defaults."""
        self.contract = contract
        self.schema = schema
        self.wsgi = {version: build_wsgi(contract, handler, version) for version in MEDIA_TYPE}
        self.limits = Limits(**limits)

    @property
    def max_body_bytes(self) -> int:
        return self.limits.max_body_bytes

    def serve(self, environ: dict, context: dict | None = None) -> Exchange:
        """Read the request and hand it to spyne (:meth:`read`, then :meth:`dispatch`)."""
        exchange = self.read(environ, context)
        return exchange if exchange.fault is not None else self.dispatch(exchange, environ)

    def read(self, environ: dict, context: dict | None = None) -> Exchange:
        """The request read, parsed and validated; a Client fault answered when it is bad."""
        ctype = environ.get("CONTENT_TYPE")
        exchange = Exchange(raw=b"", context=dict(context or {}), soap_version=soap_version_hint(ctype))
        try:
            exchange.raw = read_body(environ, self.limits.max_body_bytes)
            envelope, charset = parse_envelope(exchange.raw, ctype, self.limits)
            exchange.soap_version = soap_version_of(envelope)
            exchange.request = read_request(self.contract, self.schema, envelope, charset,
                                            exchange.soap_version, actions_of(environ))
        except ClientFault as fault:
            return self.fault(exchange, fault)
        return exchange

    def dispatch(self, exchange: Exchange, environ: dict) -> Exchange:
        """Run a read request through spyne (its method calls the handler) and keep the answer."""
        inner = {
            "REQUEST_METHOD": "POST", "CONTENT_TYPE": content_type(exchange.soap_version),
            "CONTENT_LENGTH": "0",
            "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "SERVER_NAME": environ.get("SERVER_NAME", "localhost"),
            "SERVER_PORT": environ.get("SERVER_PORT", "80"), "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": environ.get("wsgi.url_scheme", "http"),
            "wsgi.errors": environ.get("wsgi.errors"), "wsgi.version": (1, 0),
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
            ENVELOPE_KEY: exchange.request.envelope, "bssbus.exchange": exchange,
        }
        status_holder = []
        wsgi = self.wsgi[exchange.soap_version]
        try:
            body = b"".join(wsgi(inner, lambda status, headers, exc_info=None: status_holder.append(status)))
        except Exception:  # spyne's SOAP 1.2 fault writer can raise (TypeError) instead of answering
            log.exception("spyne failed on %s.%s (SOAP %s)", self.contract.name, exchange.operation,
                          exchange.soap_version)
            body, status_holder = b"", []
        if FAULT_KEY in exchange.context:
            return self.fault(exchange, exchange.context[FAULT_KEY])
        if not status_holder or not status_holder[0].startswith("200"):
            log.error("spyne answered %s for %s.%s: %s", status_holder, self.contract.name,
                      exchange.operation, body[:500])
            return self.fault(exchange, InternalError(
                f"The bus could not handle {self.contract.name}.{exchange.operation}; "
                "the failure is in the bus's log.", None))
        exchange.response, exchange.status = body, "200 OK"
        return exchange

    @staticmethod
    def fault(exchange: Exchange, fault: BusFault) -> Exchange:
        """Answer ``exchange`` with ``fault``, in its SOAP version."""
        exchange.fault = fault
        exchange.response = fault_envelope(fault, exchange.soap_version)
        exchange.status = fault_status(fault, exchange.soap_version)
        return exchange
