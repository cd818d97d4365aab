"""Adapter for a province CRM: takes the orders and work orders of its province.

The sandbox peer speaks the canonical contract, so the base mapping applies; a peer with
its own contract overrides ``map_request`` / ``map_reply`` here.
"""
from adapters.base import Adapter


class ProvinceCrmAdapter(Adapter):
    kind = "province_crm"
    services = ('OrderSync', 'Provisioning', 'BillQuery', 'CardActivation', 'AccountSync', 'ReverseSync')
