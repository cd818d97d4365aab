"""spyne models of the hand-written contracts in ``wsdl/`` and the contract registry.

``CONTRACTS`` maps a service name (the ``/ws/<Service>`` path segment and the WSDL's
service name) to its :class:`~services.models.common.Contract`, in a stable order.
"""

from . import (account_sync, bank_payment, bill_query, card_activation, info_query, order_sync,
               provisioning, reverse_sync, top_up)
from .common import Contract, Operation, from_xml, to_xml

__all__ = ["CONTRACTS", "Contract", "Operation", "to_xml", "from_xml"]

CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (
        bank_payment.CONTRACT,
        order_sync.CONTRACT,
        card_activation.CONTRACT,
        account_sync.CONTRACT,
        bill_query.CONTRACT,
        provisioning.CONTRACT,
        top_up.CONTRACT,
        reverse_sync.CONTRACT,
        info_query.CONTRACT,
    )
}
