"""spyne endpoints (EIP Endpoint) generated from the contracts' spyne models.

Every operation of a contract becomes a thin spyne method ``Op(UNI_BSS_HEAD, UNI_BSS_BODY)``
returning ``OpResult``: it hands the request to a handler and returns what the handler
gives back. The bus's handler turns the request into a Message and calls the bus; the
sandbox's handler answers as a simulated peer. The envelope was already parsed and validated
by :mod:`services.inbound`; :class:`PreparsedSoap11` and :class:`PreparsedSoap12` hand that
tree to spyne as it is.

A contract gets one spyne Application per SOAP version (:func:`build_wsgi`), with the same
thin methods: read with ``PreparsedSoap11`` and answered with ``Soap11``, or read with
``PreparsedSoap12`` and answered with ``Soap12``. spyne's SOAP 1.2
protocol is marked experimental and its schema-validation fault crashes; neither matters here:
spyne validates nothing (``validator=None``, the contract XSD already did) and never renders a
fault the caller sees (services/soap.py renders them with :func:`bus.faults.fault_envelope`).
"""
from __future__ import annotations

import logging
from typing import Callable

from spyne import Application, ServiceBase, rpc
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

from bus.faults import SOAP11, SOAP12
from services.models.common import HEAD_NS, Contract, Operation, UniBssHead

ENVELOPE_KEY = "bssbus.envelope"

# spyne logs every Fault a method raises with a traceback; the bus journals and logs its
# own faults, so spyne's application logger only reports what is worse than that.
logging.getLogger("spyne.application").setLevel(logging.CRITICAL)
logging.getLogger("spyne.application.server").setLevel(logging.CRITICAL)
# The bus and the sandbox each build an Application per contract in one process (tests, demo):
# spyne's registry warns about it, harmlessly.
logging.getLogger("spyne.util.appreg").setLevel(logging.ERROR)

Handler = Callable[[object, Contract, Operation, object, object], object]


class PreparsedSoap11(Soap11):
    """Soap11 that reads the envelope :mod:`services.inbound` parsed, instead of parsing again."""

    def create_in_document(self, ctx, charset=None):
        ctx.in_document = (ctx.transport.req_env[ENVELOPE_KEY], {})


class PreparsedSoap12(Soap12):
    """Soap12 that reads the envelope :mod:`services.inbound` parsed, instead of parsing again.

    Soap12 is Soap11 with the SOAP 1.2 envelope namespace (it finds Header and Body by
    ``ns_soap_env``), so the same one-line override serves."""

    def create_in_document(self, ctx, charset=None):
        ctx.in_document = (ctx.transport.req_env[ENVELOPE_KEY], {})


#: (in-protocol, out-protocol) classes of each SOAP version.
PROTOCOLS = {SOAP11: (PreparsedSoap11, Soap11), SOAP12: (PreparsedSoap12, Soap12)}


def _method(contract: Contract, operation: Operation, handler: Handler):
    def method(ctx, UNI_BSS_HEAD, UNI_BSS_BODY):  # noqa: N803 - the contract's element names
        return handler(ctx, contract, operation, UNI_BSS_HEAD, UNI_BSS_BODY)

    method.__name__ = operation.name
    return rpc(UniBssHead.customize(sub_ns=HEAD_NS, min_occurs=1, nillable=False),
               operation.request.customize(min_occurs=1, nillable=False),
               _returns=operation.result,
               _body_style="wrapped",
               _operation_name=operation.name,
               _in_message_name=operation.name,
               _out_message_name=f"{operation.name}Response",
               _out_variable_name=f"{operation.name}Result")(method)


def build_service(contract: Contract, handler: Handler) -> type[ServiceBase]:
    """A spyne ServiceBase with one method per operation of ``contract``."""
    methods = {op.name: _method(contract, op, handler) for op in contract.operations.values()}
    return type(f"{contract.name}Endpoint", (ServiceBase,), methods)


def build_wsgi(contract: Contract, handler: Handler, soap_version: str = SOAP11) -> WsgiApplication:
    """A spyne WSGI application for ``contract`` in ``soap_version`` whose requests come pre-parsed."""
    in_protocol, out_protocol = PROTOCOLS[soap_version]
    app = Application([build_service(contract, handler)], tns=contract.namespace, name=contract.name,
                      in_protocol=in_protocol(validator=None), out_protocol=out_protocol())
    return WsgiApplication(app)
