"""The bus's WSGI application: where every message enters.

URLs: ``POST /ws/<Service>`` (SOAP 1.1 or SOAP 1.2, told apart by the envelope's namespace;
services/inbound.py), ``GET /ws/<Service>?wsdl``, ``?xsd=<name>``,
``/`` (an index of the services), ``/healthz`` and ``/metrics``. Whatever goes wrong, a SOAP
caller gets a SOAP fault and anyone else a short plain-text answer: never an HTML error page
or a traceback.
"""
from __future__ import annotations

import html
import json
import logging
import time
from functools import cached_property
from urllib.parse import parse_qs

from spyne import Fault
from sqlalchemy import text

from bus import logs, privacy
from bus.core import Bus
from bus.metrics import ANONYMOUS, CONTENT_TYPE, OK
from adapters.base import Passthrough
from bus.faults import SOAP11, BusFault, ClientFault, InternalError, UnknownOperation
from bus.message import Message, Reply
from bus.transport import Origins
from services.contracts import SHARED, ContractFiles
from services.mapping import from_dict, to_dict
from services.models import CONTRACTS
from services.models.common import UniBssHead, from_xml, to_xml
from services.inbound import soap_version_hint
from services.soap import FAULT_KEY, XML_TYPE, SoapEndpoint, envelope_of, read_body, soap_fault

log = logging.getLogger("bssbus.inbound")


def base_url(environ: dict) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return f"{scheme}://{host}{environ.get('SCRIPT_NAME', '')}"


class BusApplication:
    """WSGI entry of the bus: finds the service, runs its SoapEndpoint, journals the hop."""

    def __init__(self, bus: Bus, files: ContractFiles | None = None):
        privacy.configure(bus.settings)   # personal data is masked in every log line of this process
        self.bus = bus
        self.files = files or ContractFiles()
        self.metrics = bus.metrics   # bus/metrics.py: counted here and by the bus, rendered at /metrics
        self.origins = Origins.from_settings(bus.settings)   # the client's address and certificate
        limits = bus.settings.limits   # bus.max_* (services/inbound.py Limits)
        self.fast_path = bool(bus.settings.section("bus").get("fast_path", True))
        self.endpoints = {name: SoapEndpoint(contract, self.files.schemas[name], self._handle, **limits)
                          for name, contract in CONTRACTS.items()}

    def close(self) -> None:
        """Stop the bus behind this app (gunicorn calls it when a worker exits)."""
        self.bus.stop()

    # -- one message, whichever path read it ------------------------------------------
    def _process(self, message: Message, exchange) -> Reply:
        """Who sent it, may they, then the bus; a BusFault (with the message's TRANS_IDO) or an
        InternalError for anything unexpected."""
        exchange.context["message"] = message
        exchange.context["log"] = logs.about(message)   # log lines from here on carry its TRANS_IDO
        gatekeeper = self.bus.gatekeeper
        try:
            message.consumer = gatekeeper.identify(exchange.request.envelope, exchange.context.get("authorization"),
                                                   origin=exchange.context.get("origin"))
            gatekeeper.authorize(message.consumer, message)
            gatekeeper.refuse_bus_only(message)
            release = self.bus.limiter.acquire(getattr(message.consumer, "id", None)
                                               or f"anonymous {message.caller}", message.trans_ido)
            try:
                reply, decision = self.bus.handle(message)
            finally:
                release()
        except BusFault as fault:
            fault.trans_ido = fault.trans_ido or message.trans_ido
            raise
        except Exception as exc:
            log.exception("unexpected failure on %s.%s", message.service, message.operation)
            raise InternalError(f"The bus failed on {message.service}.{message.operation}; the message is "
                                f"journalled as {message.msg_id}.", message.trans_ido) from exc
        exchange.context["decision"] = decision
        exchange.context["rsp_code"] = reply.rsp_code
        return reply

    # -- the typed path: spyne objects in, the answer written by spyne ----------------------
    def _handle(self, ctx, contract, operation, head, body):
        """What every spyne method calls (SOAP 1.2, or with ``bus.fast_path: false``)."""
        exchange = ctx.transport.req_env["bssbus.exchange"]
        message = Message(service=contract.name, operation=operation.name,
                          head=to_dict(head, UniBssHead), body=to_dict(body, operation.request),
                          raw=exchange.raw, charset=exchange.request.charset, received_at=exchange.started)
        try:
            reply = self._process(message, exchange)
        except BusFault as fault:
            exchange.context[FAULT_KEY] = fault
            raise Fault(fault.code, fault.message) from None
        return from_dict({"UNI_BSS_HEAD": reply.head, "UNI_BSS_BODY": reply.body}, operation.result)

    # -- the fast path: lxml in; a canonical peer's answer out as it came --------------------
    def _fast(self, endpoint: SoapEndpoint, exchange) -> None:
        """Answer a read SOAP 1.1 request without spyne: the dicts come from the validated tree
        (as the typed path gives them), a canonical peer gets the envelope forwarded as it
        came (adapters.base.Adapter.forward) and its answer goes back as it came; any other
        answer (accepted, repeated, from a mapping adapter) is written from the reply's dicts."""
        request, contract = exchange.request, endpoint.contract
        data = from_xml(contract, request.operation, request.wrapper, typed=True)
        message = Message(service=contract.name, operation=request.operation, head=data["UNI_BSS_HEAD"],
                          body=data["UNI_BSS_BODY"], raw=exchange.raw, charset=request.charset,
                          received_at=exchange.started,
                          passthrough=Passthrough(request.envelope, endpoint.schema))
        try:
            reply = self._process(message, exchange)
        except BusFault as fault:
            endpoint.fault(exchange, fault)
            return
        answer = reply.extra.get("answer")
        if answer is not None:
            self.metrics.forwarded.inc()
        else:
            try:   # (a key the contract does not have is left out, as spyne leaves it out)
                answer = envelope_of(to_xml(contract, request.operation, {"UNI_BSS_HEAD": reply.head,
                                                                         "UNI_BSS_BODY": reply.body},
                                            response=True, strict=False))
            except (TypeError, ValueError) as exc:   # a bug: a fault, and the message still journalled
                log.exception("could not write the answer to %s.%s", contract.name, request.operation)
                endpoint.fault(exchange, InternalError(
                    f"The bus could not write its answer to {contract.name}.{request.operation}; the message is "
                    f"journalled as {message.msg_id}.", message.trans_ido))
                return
        exchange.response, exchange.status = answer, "200 OK"

    # -- WSGI -----------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        try:
            status, headers, body = self.route(environ)
        except Exception:  # the last line of defence: never a traceback to the caller
            log.exception("unhandled error for %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, headers, body = self._soap_fault(InternalError("The bus failed unexpectedly; "
                                                                   "the failure is in the bus's log."), environ)
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def route(self, environ):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if path.startswith("/ws/"):
            name = path[4:].strip("/")
            if method == "POST":
                return self.soap(name, environ)
            if method in ("GET", "HEAD"):
                return self.contract_document(name, environ)
            return "405 Method Not Allowed", [("Allow", "GET, POST"), ("Content-Type", "text/plain")], \
                b"POST SOAP requests to this address; GET ?wsdl for the contract.\n"
        if path == "/console" or path.startswith("/console/"):
            return self.console(environ)   # the operators' web console (services/console/)
        if method not in ("GET", "HEAD"):
            if method == "POST":
                return self._soap_fault(UnknownOperation(f"There is no SOAP service at {path}; services "
                                                         "are at /ws/<Service>, listed at /."), environ)
            return "405 Method Not Allowed", [("Allow", "GET"), ("Content-Type", "text/plain")], b"GET only here.\n"
        if path == "/":
            return "200 OK", [("Content-Type", "text/html; charset=utf-8")], self.index(environ)
        if path == "/healthz":
            return "200 OK", [("Content-Type", "application/json")], self.health()
        if path == "/metrics":
            return "200 OK", [("Content-Type", CONTENT_TYPE)], self.metrics.render()
        return "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], \
            f"Nothing at {path}. Services are listed at /.\n".encode()

    @cached_property
    def console(self):
        from services.console import Console
        return Console(self.bus)

    @staticmethod
    def _soap_fault(fault: BusFault, environ: dict):
        """A fault for a request whose envelope was not read: in the version its Content-Type says."""
        status, ctype, body = soap_fault(fault, soap_version_hint(environ.get("CONTENT_TYPE")))
        return status, [("Content-Type", ctype)], body

    def soap(self, name: str, environ):
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            fault = UnknownOperation(f"There is no service {name!r} on this bus; it offers "
                                     f"{', '.join(self.endpoints)}.")
            try:   # kept for the journal; its own problems matter less than the missing service
                raw = read_body(environ, self.bus.settings.max_body_bytes)
            except ClientFault:
                raw = b""
            self.bus.reject(raw, fault, service=name[:40])
            self.metrics.request("", "", ANONYMOUS, fault.code, 0.0)   # no service: one series, whatever the path
            return self._soap_fault(fault, environ)
        exchange = endpoint.read(environ, context={"authorization": environ.get("HTTP_AUTHORIZATION"),
                                                   "origin": self.origins.of(environ)})
        try:
            if exchange.fault is None:
                if self.fast_path and exchange.soap_version == SOAP11:
                    self._fast(endpoint, exchange)
                else:
                    endpoint.dispatch(exchange, environ)
            message = exchange.context.get("message")
            if message is not None:
                self.bus.complete(message, exchange.response, exchange.fault,
                                  exchange.context.get("decision"), exchange.context.get("rsp_code"))
            else:
                self.bus.reject(exchange.raw, exchange.fault, service=name,
                                operation=exchange.operation, response=exchange.response)
            self._count(endpoint, exchange, message)
        finally:
            if "log" in exchange.context:
                logs.done(exchange.context["log"])
        status, ctype, body = exchange.answer()
        return status, [("Content-Type", ctype)], body

    def _count(self, endpoint: SoapEndpoint, exchange, message: Message | None) -> None:
        """The request in /metrics (labels from the contract and the configuration only: an
        operation the contract lacks is counted as ""), and a log line at INFO."""
        operation = exchange.operation if exchange.operation in endpoint.contract.operations else ""
        consumer = (getattr(message.consumer, "id", None) if message is not None else None) or ANONYMOUS
        outcome = exchange.fault.code if exchange.fault else OK
        seconds = time.time() - exchange.started
        self.metrics.request(endpoint.contract.name, operation, consumer, outcome, seconds)
        if log.isEnabledFor(logging.INFO):
            log.info("%s.%s from %s: %s in %.1f ms", endpoint.contract.name, operation or "?",
                     consumer, outcome, seconds * 1000)

    def contract_document(self, name: str, environ):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        address = f"{base_url(environ)}/ws/{name}"
        if name == SHARED and "xsd" in query:
            return self._xsd(name, query["xsd"][0], address)
        if name not in self.endpoints:
            return "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], \
                f"No service {name!r}; see / for the list.\n".encode()
        if "wsdl" in query or "WSDL" in query:
            return "200 OK", [("Content-Type", XML_TYPE)], self.files.wsdl(name, address)
        if "xsd" in query:
            return self._xsd(name, query["xsd"][0], address)
        return "200 OK", [("Content-Type", "text/plain; charset=utf-8")], \
            f"{name}: POST SOAP 1.1 or 1.2 here. Contract: {address}?wsdl\n".encode()

    def _xsd(self, name: str, xsd: str, address: str):
        doc = self.files.xsd(xsd, address)
        if doc is None:
            return "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], \
                f"No schema {xsd!r} in the {name} contracts.\n".encode()
        return "200 OK", [("Content-Type", XML_TYPE)], doc

    def index(self, environ) -> bytes:
        base = base_url(environ)
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(', '.join(c.operations))}</td>"
            f"<td>{html.escape(c.caller)} &rarr; {html.escape(c.target)}</td>"
            f"<td><a href='{base}/ws/{name}?wsdl'>{base}/ws/{name}?wsdl</a></td></tr>"
            for name, c in CONTRACTS.items())
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>bssbus</title></head><body>"
                f"<h1>bssbus services</h1><table border='1' cellpadding='4'><tr><th>service</th>"
                f"<th>operations</th><th>caller &rarr; target</th><th>contract</th></tr>{rows}</table>"
                f"<p><a href='{base}/healthz'>/healthz</a> &middot; <a href='{base}/metrics'>/metrics</a></p>"
                f"</body></html>").encode()

    def health(self) -> bytes:
        try:
            with self.bus.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            db = "ok"
        except Exception as exc:  # reported, not raised: health must always answer
            db = f"error: {type(exc).__name__}"
        adapters = self.bus.adapters   # each peer endpoint's CircuitBreaker, once it was called
        return json.dumps({"status": "ok" if db == "ok" else "degraded", "database": db,
                           "services": list(self.endpoints),
                           "breakers": adapters.breakers.snapshot() if adapters else {}}).encode()
