"""Adapter for HQ CRM: products, orders, three-account data and resources.

The sandbox peer speaks the canonical contract, so the base mapping applies; a peer with
its own contract overrides ``map_request`` / ``map_reply`` here.
"""
from adapters.base import Adapter


class HqCrmAdapter(Adapter):
    kind = "hq_crm"
    services = ('OrderSync', 'Provisioning', 'BillQuery', 'AccountSync', 'InfoQuery')
