"""The ContentBasedRouter: a message built from literal XML, and where it was routed."""
from __future__ import annotations

import pytest
from lxml import etree

from bus.faults import UnknownNumber, UnknownProvince, UnknownRoute
from bus.message import Message
from bus.router import ContentBasedRouter
from config.settings import ConfigError, load_settings
from services.models import CONTRACTS, from_xml

SETTINGS = load_settings(env={})
SETTINGS.set_sandbox_url("http://sandbox.invalid")


def message(service, operation, caller, route_type, route_value) -> Message:
    ns = CONTRACTS[service].namespace
    xml = f"""<{operation} xmlns="{ns}" xmlns:h="http://ws.chinaunicom.cn/unibssHead">
      <h:UNI_BSS_HEAD><h:ORIG_DOMAIN>{caller}</h:ORIG_DOMAIN><h:SERVICE_NAME>{service}</h:SERVICE_NAME>
        <h:OPERATE_NAME>{operation}</h:OPERATE_NAME><h:ACTION_CODE>0</h:ACTION_CODE>
        <h:ROUTING><h:ROUTE_TYPE>{route_type}</h:ROUTE_TYPE><h:ROUTE_VALUE>{route_value}</h:ROUTE_VALUE></h:ROUTING>
        <h:PROC_ID>P1</h:PROC_ID><h:TRANS_IDO>T1</h:TRANS_IDO><h:PROCESS_TIME>20261127120000</h:PROCESS_TIME>
      </h:UNI_BSS_HEAD><UNI_BSS_BODY/></{operation}>"""
    data = from_xml(CONTRACTS[service], operation, etree.fromstring(xml))
    return Message(service, operation, data["UNI_BSS_HEAD"], data.get("UNI_BSS_BODY") or {})


@pytest.fixture(scope="module")
def router():
    return ContentBasedRouter.from_settings(SETTINGS)


@pytest.mark.parametrize("route_value, peer, phase", [
    ("13007300000", "BILLING-74", 2),   # a Hunan number, phase 2
    ("18601800000", "HQ-BILLING", 3),   # a Beijing number, phase 3
    ("18600000000", "BILLING-51", 2),   # moved to Guangdong by the override list
])
def test_by_number_follows_the_home_provinces_phase(router, route_value, peer, phase):
    decision = router.resolve(message("BankPayment", "Pay", "BANK", "01", route_value))
    assert (decision.peer_name, decision.phase) == (peer, phase)
    assert decision.url.endswith("/peers/" + ("hq_billing" if phase == 3 else f"province_billing/{decision.province}"))


def test_by_province_code(router):
    decision = router.resolve(message("AccountSync", "SyncThreeAccount", "PCRM", "00", "36"))
    assert (decision.peer_name, decision.route.name) == ("HQ-BILLING", "three-account-from-province")


def test_caller_selects_the_route(router):
    assert router.resolve(message("OrderSync", "SyncOrder", "ESALE", "00", "51")).peer_name == "HQ-CRM"
    assert router.resolve(message("OrderSync", "SyncOrder", "UCRM", "00", "51")).peer_name == "CRM-51"
    with pytest.raises(UnknownRoute, match="ESALE, UCRM"):
        router.resolve(message("OrderSync", "SyncOrder", "BANK", "00", "51"))


@pytest.mark.parametrize("service, operation, caller, route, delivery", [
    ("OrderSync", "SyncOrder", "ESALE", "order-from-esales", "sync"),          # HQ CRM answers e-sales
    ("OrderSync", "SyncOrder", "UCRM", "order-to-province", "store-and-forward"),
    ("OrderSync", "QueryOrderStatus", "UCRM", "order-query-to-province", "sync"),   # a query answers
    ("OrderSync", "NotifyOrderStatus", "UCRM", "order-status-to-esales", "store-and-forward"),
    ("Provisioning", "SubmitWorkOrder", "UCRM", "work-order", "store-and-forward"),
    ("Provisioning", "ReportWorkOrderResult", "PCRM", "work-order-result", "store-and-forward"),
    ("CardActivation", "ActivateCards", "UCRM", "card-activation", "store-and-forward"),
    ("CardActivation", "QueryCardStatus", "UCRM", "card-status-query", "sync"),
    ("AccountSync", "SyncThreeAccount", "PCRM", "three-account-from-province", "store-and-forward"),
    ("AccountSync", "SyncThreeAccount", "UCRM", "three-account-from-hq-crm", "store-and-forward"),
    ("AccountSync", "SyncThreeAccount", "UBIL", "three-account-sync", "store-and-forward"),
    ("ReverseSync", "SyncVacChange", "VAC", "vac-to-province", "store-and-forward"),
    ("BillQuery", "QueryBill", "UCRM", "bill-query-from-hq-crm", "sync"),
])
def test_one_way_traffic_is_stored_and_forwarded_and_queries_answer(router, service, operation, caller, route,
                                                                   delivery):
    decision = router.resolve(message(service, operation, caller, "00", "51"))
    assert (decision.route.name, decision.route.delivery) == (route, delivery)


def test_hq_code_only_for_routes_without_a_phase(router):
    assert router.resolve(message("OrderSync", "QueryOrderStatus", "ESALE", "00", "99")).peer_name == "HQ-CRM"
    with pytest.raises(UnknownProvince, match="HQ"):
        router.resolve(message("BankPayment", "QueryBalance", "BANK", "00", "99"))


def test_unknowns_say_what_was_not_found(router):
    with pytest.raises(UnknownNumber, match="19999999999"):
        router.resolve(message("BankPayment", "QueryBalance", "BANK", "01", "19999999999"))
    with pytest.raises(UnknownProvince, match="'12'"):
        router.resolve(message("BankPayment", "QueryBalance", "BANK", "00", "12"))


def test_set_phase_moves_traffic_at_once():
    router = ContentBasedRouter.from_settings(SETTINGS)
    msg = message("BankPayment", "QueryBalance", "BANK", "00", "51")
    assert router.resolve(msg).peer_name == "BILLING-51"
    router.set_phase("51", 3)
    assert router.resolve(msg).peer_name == "HQ-BILLING"


def test_a_route_to_an_unknown_peer_is_a_config_error_with_a_suggestion(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - {service: BankPayment, target: hq_biling}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match='did you mean "hq_billing"'):
        load_settings(bad, env={})


def test_a_province_override_covers_only_the_services_it_lists(router):
    legacy = router.resolve(message("BankPayment", "QueryBalance", "BANK", "00", "34"))
    assert (legacy.peer.adapter, legacy.peer_name) == ("legacy_billing", "BILLING-34")
    assert legacy.url.endswith("/peers/legacy_billing/34")
    canonical = router.resolve(message("TopUp", "QueryBalance", "TOPUP", "00", "34"))
    assert (canonical.peer.adapter, canonical.peer_name) == ("province_billing", "BILLING-34")
