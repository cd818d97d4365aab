"""Adapter for the top-up card system (一卡充): card activation and card status.

The sandbox peer speaks the canonical contract, so the base mapping applies; a peer with
its own contract overrides ``map_request`` / ``map_reply`` here.
"""
from adapters.base import Adapter


class TopUpAdapter(Adapter):
    kind = "topup"
    services = ('CardActivation',)
