"""spyne models of ``wsdl/OrderSync/OrderSync.xsd`` (e-sales -> HQ CRM -> province CRM).

Order sync (订单同步), order status query, and the order status notification HQ CRM sends
back to e-sales. ``ORDER_STATE`` is the shared ``bss:OrderStateType`` (also used by
Provisioning), re-exported here. HQ CRM's SyncOrder to a province and NotifyOrderStatus are
one-way: the bus answers them 'accepted' (``MSG_SENDER`` BUS), a Result with no
``UNI_BSS_BODY``. Class names are the XSD complexType names; fields are in XSD order.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Unicode

from .common import (
    ORDER_STATES, CertNumType, CodeType, Contract, DescType, EparchyCodeType, FenType, IdType,
    MsisdnType, NameType, NonNegativeFenType, Operation, OrderStateType, ProvinceCodeType,
    TimeType, body_ns, head_ref, optional, required,
)

SERVICE = "OrderSync"
NS = body_ns(SERVICE)

__all__ = [
    "SERVICE", "NS", "CONTRACT", "ORDER_TYPES", "ORDER_STATES",
    "OrderTypeType", "OrderStateType",
    "CustInfo", "FeeItem", "FeeItemList", "PayInfo",
    "SyncOrderReq", "SyncOrderRsp", "SyncOrderResult",
    "QueryOrderStatusReq", "QueryOrderStatusRsp", "QueryOrderStatusResult",
    "NotifyOrderStatusReq", "NotifyOrderStatusRsp", "NotifyOrderStatusResult",
]

#: ORDER_TYPE values (OrderTypeType).
ORDER_TYPES = {"10": "new subscription", "20": "change", "30": "cancel"}

OrderTypeType = Unicode(type_name="OrderTypeType", __namespace__=NS, values=list(ORDER_TYPES))


class CustInfo(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CUST_NAME", required(NameType)),
        ("CERT_TYPE", required(CodeType)),
        ("CERT_NUM", required(CertNumType)),
    ]


class FeeItem(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("FEE_TYPE", required(CodeType)),
        ("FEE", required(FenType)),
    ]


class FeeItemList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("FEE_ITEM", required(FeeItem, max_occurs="unbounded")),
    ]


class PayInfo(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PAY_TYPE", required(CodeType)),
        ("PAY_FEE", required(NonNegativeFenType)),
    ]


# ----- SyncOrder ----------------------------------------------------------------------

class SyncOrderReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ORDER_ID", required(IdType)),
        ("PROVINCE_ORDER_ID", optional(IdType)),
        ("ORDER_TYPE", required(OrderTypeType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("EPARCHY_CODE", optional(EparchyCodeType)),
        ("CUST_INFO", required(CustInfo)),
        ("PRODUCT_ID", required(IdType)),
        ("FEE_ITEMS", optional(FeeItemList)),
        ("PAY_INFO", optional(PayInfo)),
    ]


class SyncOrderRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ORDER_ID", required(IdType)),
        ("PROVINCE_ORDER_ID", optional(IdType)),
        ("ORDER_STATE", required(OrderStateType)),
    ]


class SyncOrderResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(SyncOrderRsp)),
    ]


# ----- QueryOrderStatus ---------------------------------------------------------------

class QueryOrderStatusReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ORDER_ID", required(IdType)),
    ]


class QueryOrderStatusRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ORDER_ID", required(IdType)),
        ("PROVINCE_ORDER_ID", optional(IdType)),
        ("ORDER_STATE", required(OrderStateType)),
        ("STATE_DESC", optional(DescType)),
        ("UPDATE_TIME", required(TimeType)),
    ]


class QueryOrderStatusResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryOrderStatusRsp)),
    ]


# ----- NotifyOrderStatus --------------------------------------------------------------

class NotifyOrderStatusReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ORDER_ID", required(IdType)),
        ("PROVINCE_ORDER_ID", optional(IdType)),
        ("ORDER_STATE", required(OrderStateType)),
        ("STATE_DESC", optional(DescType)),
        ("UPDATE_TIME", required(TimeType)),
    ]


class NotifyOrderStatusRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ORDER_ID", required(IdType)),
    ]


class NotifyOrderStatusResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(NotifyOrderStatusRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="OrderSync/OrderSync.wsdl",
    operations={
        "SyncOrder": Operation("SyncOrder", SyncOrderReq, SyncOrderRsp, SyncOrderResult),
        "QueryOrderStatus": Operation("QueryOrderStatus", QueryOrderStatusReq,
                                      QueryOrderStatusRsp, QueryOrderStatusResult),
        "NotifyOrderStatus": Operation("NotifyOrderStatus", NotifyOrderStatusReq,
                                       NotifyOrderStatusRsp, NotifyOrderStatusResult),
    },
    caller="e-sales platform; HQ CRM",
    target="HQ CRM; province CRM; e-sales platform (NotifyOrderStatus)",
)
