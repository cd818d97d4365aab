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
import threading
from collections import Counter
from urllib.parse import parse_qs

from spyne import Fault
from sqlalchemy import text

from bus import privacy
from bus.core import Bus
from bus.faults import BusFault, ClientFault, InternalError, UnknownOperation
from bus.message import Message
from bus.transport import Origins
from services.contracts import SHARED, ContractFiles
from services.mapping import from_dict, to_dict
from services.models import CONTRACTS
from services.models.common import UniBssHead
from services.inbound import soap_version_hint
from services.soap import FAULT_KEY, XML_TYPE, SoapEndpoint, read_body, soap_fault

log = logging.getLogger("bssbus.inbound")


class Metrics:
    """Request counters by service, operation and outcome, in Prometheus text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter = Counter()

    def count(self, service: str, operation: str | None, outcome: str) -> None:
        with self._lock:
            self.requests[(service, operation or "", outcome)] += 1

    def render(self) -> bytes:
        lines = ["# HELP bssbus_requests_total SOAP requests by service, operation and outcome.",
                 "# TYPE bssbus_requests_total counter"]
        with self._lock:
            items = sorted(self.requests.items())
        for (service, operation, outcome), n in items:
            lines.append(f'bssbus_requests_total{{service="{service}",operation="{operation}",'
                         f'outcome="{outcome}"}} {n}')
        return ("\n".join(lines) + "\n").encode()


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
        self.metrics = Metrics()
        self.origins = Origins.from_settings(bus.settings)   # the client's address and certificate
        limits = bus.settings.limits   # bus.max_* (services/inbound.py Limits)
        self.endpoints = {name: SoapEndpoint(contract, self.files.schemas[name], self._handle, **limits)
                          for name, contract in CONTRACTS.items()}

    def close(self) -> None:
        """Stop the bus behind this app (gunicorn calls it when a worker exits)."""
        self.bus.stop()

    # -- the handler every spyne method calls -------------------------------------------
    def _handle(self, ctx, contract, operation, head, body):
        exchange = ctx.transport.req_env["bssbus.exchange"]
        message = Message(service=contract.name, operation=operation.name,
                          head=to_dict(head, UniBssHead), body=to_dict(body, operation.request),
                          raw=exchange.raw, charset=exchange.request.charset)
        exchange.context["message"] = message
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
            exchange.context[FAULT_KEY] = fault
            raise Fault(fault.code, fault.message) from None
        except Exception as exc:
            log.exception("unexpected failure on %s.%s", contract.name, operation.name)
            fault = InternalError(f"The bus failed on {contract.name}.{operation.name}; the message is "
                                  f"journalled as {message.msg_id}.", message.trans_ido)
            exchange.context[FAULT_KEY] = fault
            raise Fault(fault.code, fault.message) from exc
        exchange.context["decision"] = decision
        exchange.context["rsp_code"] = reply.rsp_code
        return from_dict({"UNI_BSS_HEAD": reply.head, "UNI_BSS_BODY": reply.body}, operation.result)

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
            return "200 OK", [("Content-Type", "text/plain; version=0.0.4")], self.metrics.render()
        return "404 Not Found", [("Content-Type", "text/plain; charset=utf-8")], \
            f"Nothing at {path}. Services are listed at /.\n".encode()

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
            self.metrics.count(name[:40], None, fault.code)
            return self._soap_fault(fault, environ)
        exchange = endpoint.serve(environ, context={"authorization": environ.get("HTTP_AUTHORIZATION"),
                                                    "origin": self.origins.of(environ)})
        message = exchange.context.get("message")
        if message is not None:
            self.bus.complete(message, exchange.response, exchange.fault,
                              exchange.context.get("decision"), exchange.context.get("rsp_code"))
        else:
            self.bus.reject(exchange.raw, exchange.fault, service=name,
                            operation=exchange.operation, response=exchange.response)
        self.metrics.count(name, exchange.operation, exchange.fault.code if exchange.fault else "ok")
        status, ctype, body = exchange.answer()
        return status, [("Content-Type", ctype)], body

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
