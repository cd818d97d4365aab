"""The sandbox's WSGI application: every simulated peer at ``/peers/<kind>[/<province>]/<Service>``.

Kinds: ``hq_crm``, ``hq_billing``, ``topup`` (one each) and ``province_crm``,
``province_billing`` (one per province code). Requests are read and validated exactly as
the bus reads them (services/soap.py), in SOAP 1.1 or 1.2; ``?wsdl`` serves the contract with
this address.

A simulated peer can demand credentials as a real one does (sandbox/auth.py): off by default;
``sandbox.require_auth: true`` makes every peer demand what the bus is configured to send it,
and ``POST /control`` with ``"require_auth"`` changes one peer.
"""
from __future__ import annotations

import json
import logging
import threading
import time

from spyne import Fault

from adapters import ADAPTERS
from bus.faults import InternalError, PeerFault, UnknownOperation
from services.contracts import ContractFiles
from services.mapping import from_dict, to_dict
from services.models import CONTRACTS
from services.models.common import UniBssHead
from services.inbound import soap_version_hint
from services.soap import FAULT_KEY, XML_TYPE, SoapEndpoint, soap_fault
from sandbox.auth import CredentialGate, FailedAuthentication, REALM
from sandbox.legacy import KIND as LEGACY, SERVICE as LEGACY_SERVICE, LegacyBillingPeer
from sandbox.peers import Peers, peer_name
from sandbox.store import default_provinces, open_store

log = logging.getLogger("bssbus.sandbox")

SINGLE = ("hq_crm", "hq_billing", "topup", "esales")
PER_PROVINCE = ("province_crm", "province_billing")
# What each simulated peer serves: the contracts its adapter carries.
OFFERS = {kind: ADAPTERS[kind].services for kind in SINGLE + PER_PROVINCE}


class SandboxApplication:
    """WSGI app serving every simulated peer from one process.

    ``POST /control`` with JSON ``{"peer": "BILLING-51", "delay_ms": 2000, "fault": "text"}``
    makes that peer slow or answer with a SOAP Server fault until told otherwise
    (``{"peer": "BILLING-51"}`` alone resets it); ``"delay_after_ms"`` makes it do the work
    (post the payment) and only then wait: the answer that gets lost. For outage, timeout
    and unknown-outcome tests. ``"operations": ["Pay"]`` limits it to those operations, and
    ``"calls": N`` to the next N calls of them (then the peer is itself again): a peer slow for
    one call only.

    ``{"peer": "BILLING-51", "require_auth": {...} | true | false | null}`` changes only what
    credentials that peer demands (see sandbox/auth.py); ``credentials`` is what the peers
    demand from the start (:func:`sandbox.auth.gate_for`; nothing by default).
    """

    def __init__(self, db_url: str, bus_url: str | None = None, provinces=None,
                 files: ContractFiles | None = None, credentials: CredentialGate | None = None):
        self.provinces = set(provinces or default_provinces())
        self.engine = open_store(db_url, self.provinces)
        self.peers = Peers(self.engine, bus_url)
        self.files = files or ContractFiles()
        self.endpoints = {name: SoapEndpoint(c, self.files.schemas[name], self._handle)
                          for name, c in CONTRACTS.items()}
        self.behaviour: dict[str, dict] = {}   # peer name -> {"delay_ms": int, "fault": str}
        self._behaviour_lock = threading.Lock()
        self.credentials = credentials or CredentialGate()
        self.legacy = LegacyBillingPeer(self.engine, self.behaviour,   # /peers/legacy_billing/<code>/LegacyBilling
                                        credentials=self.credentials)

    def _handle(self, ctx, contract, operation, head, body):
        exchange = ctx.transport.req_env["bssbus.exchange"]
        kind, province = exchange.context["peer"]
        refused = self.credentials.check(kind, province, exchange.context.get("authorization"),
                                         exchange.request.envelope)
        if refused is not None:   # before any work, as a real peer's security layer does
            exchange.context[FAULT_KEY] = refused
            raise Fault("Client", refused.message)
        behaviour = self._behaviour(peer_name(kind, province), operation.name)
        if behaviour.get("delay_ms"):
            time.sleep(behaviour["delay_ms"] / 1000)
        if behaviour.get("fault"):
            exchange.context[FAULT_KEY] = PeerFault(behaviour["fault"])
            raise Fault("Server", behaviour["fault"])
        try:
            rsp_head, rsp_body = self.peers.handle(kind, province, contract.name, operation.name,
                                                   to_dict(head, UniBssHead), to_dict(body, operation.request))
            if behaviour.get("delay_after_ms"):
                time.sleep(behaviour["delay_after_ms"] / 1000)
        except Exception as exc:
            log.exception("sandbox peer %s failed", kind)
            exchange.context[FAULT_KEY] = InternalError(f"sandbox peer {kind} failed: {exc}")
            raise Fault("Server", str(exc)) from exc
        return from_dict({"UNI_BSS_HEAD": rsp_head, "UNI_BSS_BODY": rsp_body}, operation.result)

    def _behaviour(self, peer: str, operation: str) -> dict:
        """What /control asked of ``peer`` for one call of ``operation`` (counting it when the
        behaviour holds for a number of calls only)."""
        with self._behaviour_lock:
            behaviour = self.behaviour.get(peer, {})
            if behaviour.get("operations") and operation not in behaviour["operations"]:
                return {}
            if behaviour.get("calls"):
                behaviour["calls"] -= 1
                if behaviour["calls"] == 0:
                    del self.behaviour[peer]
            return dict(behaviour)

    def _peer(self, path: str):
        """(kind, province, service) from /peers/..., or None."""
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "peers" and parts[1] in SINGLE:
            return parts[1], None, parts[2]
        if len(parts) == 4 and parts[0] == "peers" and parts[1] in PER_PROVINCE and parts[2] in self.provinces:
            return parts[1], parts[2], parts[3]
        if len(parts) == 4 and parts[:2] == ["peers", LEGACY] and parts[2] in self.provinces \
                and parts[3] == LEGACY_SERVICE:
            return LEGACY, parts[2], parts[3]
        return None

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        peer = self._peer(path)
        if path == "/control" and method == "POST":
            return self._control(environ, start_response)
        if path == "/healthz":
            return self._send(start_response, "200 OK", "application/json", json.dumps({"status": "ok"}).encode())
        if peer is not None and peer[0] == LEGACY:   # its own contract, GBK: sandbox/legacy.py
            return self._send(start_response, *self.legacy.serve(environ, peer[1]))
        if peer is None or peer[2] not in OFFERS[peer[0]]:
            text = (f"No simulated peer at {path}. Peers: /peers/{{hq_crm|hq_billing|topup}}/<Service> "
                    "and /peers/{province_crm|province_billing}/<province>/<Service>.")
            if method == "POST":
                return self._send(start_response, *soap_fault(UnknownOperation(text),
                                                              soap_version_hint(environ.get("CONTENT_TYPE"))))
            return self._send(start_response, "404 Not Found", "text/plain; charset=utf-8", text.encode())
        kind, province, service = peer
        if method != "POST":
            address = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}{path}"
            return self._send(start_response, "200 OK", XML_TYPE, self.files.wsdl(service, address))
        exchange = self.endpoints[service].serve(environ, context={
            "peer": (kind, province), "authorization": environ.get("HTTP_AUTHORIZATION")})
        status, ctype, body = exchange.answer()
        if isinstance(exchange.fault, FailedAuthentication) and exchange.fault.basic:
            status = "401 Unauthorized"
        return self._send(start_response, status, ctype, body)

    def _control(self, environ, start_response):
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            spec = json.loads(environ["wsgi.input"].read(min(length, 4096)) or b"{}")
            peer = str(spec["peer"])
            if "require_auth" in spec:   # only what the peer demands; its behaviour stays
                demanded = self.credentials.set(peer, spec["require_auth"])
                return self._send(start_response, "200 OK", "application/json",
                                  json.dumps({peer: {"require_auth": demanded}}).encode())
            behaviour = {"delay_ms": int(spec.get("delay_ms") or 0),
                         "delay_after_ms": int(spec.get("delay_after_ms") or 0),
                         "fault": spec.get("fault") or None,
                         "operations": list(spec.get("operations") or []),
                         "calls": int(spec.get("calls") or 0)}
            with self._behaviour_lock:
                self.behaviour[peer] = behaviour
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(start_response, "400 Bad Request", "text/plain; charset=utf-8",
                              f"POST JSON {{\"peer\": NAME, \"delay_ms\": N, \"fault\": TEXT}}: {exc}\n".encode())
        return self._send(start_response, "200 OK", "application/json", json.dumps({peer: behaviour}).encode())

    @staticmethod
    def _send(start_response, status, ctype, body):
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        if status.startswith("401"):
            headers.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
        start_response(status, headers)
        return [body]
