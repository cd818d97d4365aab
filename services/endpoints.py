"""spyne endpoints (EIP Endpoint) generated from the contracts' spyne models.

Every operation of a contract becomes a thin spyne method ``Op(UNI_BSS_HEAD, UNI_BSS_BODY)``
returning ``OpResult``: it hands the request to a handler and returns what the handler
gives back. The bus's handler turns the request into a Message and calls the bus; the
sandbox's handler answers as a simulated peer. The envelope was already parsed and validated
by :mod:`services.inbound`; :class:`PreparsedSoap11` hands that tree to spyne as it is.
"""
from __future__ import annotations

import logging
from typing import Callable

from spyne import Application, ServiceBase, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

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


def build_wsgi(contract: Contract, handler: Handler) -> WsgiApplication:
    """A spyne WSGI application for ``contract`` whose requests come pre-parsed."""
    app = Application([build_service(contract, handler)], tns=contract.namespace, name=contract.name,
                      in_protocol=PreparsedSoap11(validator=None), out_protocol=Soap11())
    return WsgiApplication(app)
