"""Adapter for the 3G e-sales platform: it is told of order status changes (NotifyOrderStatus).

The sandbox peer speaks the canonical contract, so the base mapping applies.
"""
from adapters.base import Adapter


class EsalesAdapter(Adapter):
    kind = "esales"
    services = ('OrderSync',)
