"""spyne models of the hand-written contracts in ``wsdl/`` and the contract registry.

``CONTRACTS`` maps a service name (the ``/ws/<Service>`` path segment and the WSDL's
service name) to its :class:`~services.models.common.Contract`, in a stable order.
"""

from . import account_sync, bank_payment, card_activation, order_sync
from .common import Contract, Operation, from_xml, to_xml

__all__ = ["CONTRACTS", "Contract", "Operation", "to_xml", "from_xml"]

CONTRACTS: dict[str, Contract] = {
    c.name: c
    for c in (
        bank_payment.CONTRACT,
        order_sync.CONTRACT,
        card_activation.CONTRACT,
        account_sync.CONTRACT,
    )
}
