"""The outbound side: one Adapter module a peer kind, each owning the mapping to that peer.

``ADAPTERS`` maps the ``adapter:`` name used in config/bus.yaml to its class; an unknown
name is a configuration error that suggests the closest known one.
"""
from __future__ import annotations

from adapters.base import Adapter, AdapterRegistry
from adapters.esales import EsalesAdapter
from adapters.hq_billing import HqBillingAdapter
from adapters.hq_crm import HqCrmAdapter
from adapters.legacy_billing import LegacyBillingAdapter
from adapters.province_billing import ProvinceBillingAdapter
from adapters.province_crm import ProvinceCrmAdapter
from adapters.topup import TopUpAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    cls.kind: cls
    for cls in (HqCrmAdapter, HqBillingAdapter, ProvinceCrmAdapter, ProvinceBillingAdapter, TopUpAdapter,
                EsalesAdapter, LegacyBillingAdapter)
}

__all__ = ["ADAPTERS", "Adapter", "AdapterRegistry"]
