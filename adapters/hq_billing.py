"""Adapter for HQ Billing (phase 3): arrears, balances, payments, three-account data.

The sandbox peer speaks the canonical contract, so the base mapping applies; a peer with
its own contract overrides ``map_request`` / ``map_reply`` here.
"""
from adapters.base import Adapter


class HqBillingAdapter(Adapter):
    kind = "hq_billing"
    services = ('BankPayment', 'AccountSync', 'BillQuery', 'TopUp')
