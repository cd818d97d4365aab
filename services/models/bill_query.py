"""spyne models of ``wsdl/BillQuery/BillQuery.xsd`` (e-sales -> HQ CRM -> billing).

Bill query (账单查询), call detail query (详单查询) and balance query: e-sales asks HQ CRM,
which asks the billing that owns the user (province Billing in phase 2, HQ Billing in
phase 3). Class names are the XSD complexType names; fields are in XSD order. Money is
integer fen.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Long, Unicode

from .common import (
    CodeType, Contract, CycleType, FenType, MsisdnType, NameType, NonNegativeFenType,
    Operation, TimeType, UserStateType, body_ns, head_ref, optional, required,
)

SERVICE = "BillQuery"
NS = body_ns(SERVICE)

#: Most records one QueryCallDetails page holds (PageSizeType's upper bound).
MAX_PAGE_SIZE = 200

__all__ = [
    "SERVICE", "NS", "CONTRACT", "MAX_PAGE_SIZE", "DETAIL_TYPES",
    "DetailTypeType", "PageNoType", "PageSizeType", "CountType", "OtherPartyType",
    "BillItem", "BillItemList", "CallDetail", "CallDetailList",
    "QueryBillReq", "QueryBillRsp", "QueryBillResult",
    "QueryCallDetailsReq", "QueryCallDetailsRsp", "QueryCallDetailsResult",
    "QueryBalanceReq", "QueryBalanceRsp", "QueryBalanceResult",
]

#: DETAIL_TYPE values (DetailTypeType).
DETAIL_TYPES = {"1": "voice", "2": "SMS", "3": "data"}

DetailTypeType = Unicode(type_name="DetailTypeType", __namespace__=NS, values=list(DETAIL_TYPES))
PageNoType = Long(type_name="PageNoType", __namespace__=NS, ge=1, le=999999)
PageSizeType = Long(type_name="PageSizeType", __namespace__=NS, ge=1, le=MAX_PAGE_SIZE)
CountType = Long(type_name="CountType", __namespace__=NS, ge=0)
OtherPartyType = Unicode(type_name="OtherPartyType", __namespace__=NS, pattern=r"\+?[0-9*#]{1,24}")


class BillItem(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ITEM_CODE", required(CodeType)),
        ("ITEM_NAME", required(NameType)),
        ("FEE", required(FenType)),
    ]


class BillItemList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BILL_ITEM", required(BillItem, max_occurs="unbounded")),
    ]


class CallDetail(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("START_TIME", required(TimeType)),
        ("OTHER_PARTY", optional(OtherPartyType)),
        ("DURATION", required(CountType)),
        ("CALL_TYPE", required(CodeType)),
        ("FEE", required(NonNegativeFenType)),
    ]


class CallDetailList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CALL_DETAIL", required(CallDetail, max_occurs=MAX_PAGE_SIZE)),
    ]


# ----- QueryBill ----------------------------------------------------------------------

class QueryBillReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("BILL_CYCLE", required(CycleType)),
    ]


class QueryBillRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("BILL_CYCLE", required(CycleType)),
        ("CUST_NAME", required(NameType)),
        ("TOTAL_FEE", required(FenType)),
        ("PAID_FEE", required(NonNegativeFenType)),
        ("UNPAID_FEE", required(NonNegativeFenType)),
        ("BILL_ITEMS", optional(BillItemList)),
    ]


class QueryBillResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryBillRsp)),
    ]


# ----- QueryCallDetails ---------------------------------------------------------------

class QueryCallDetailsReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("BILL_CYCLE", required(CycleType)),
        ("DETAIL_TYPE", required(DetailTypeType)),
        ("PAGE_NO", optional(PageNoType)),
        ("PAGE_SIZE", optional(PageSizeType)),
    ]


class QueryCallDetailsRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("BILL_CYCLE", required(CycleType)),
        ("TOTAL_COUNT", required(CountType)),
        ("CALL_DETAILS", optional(CallDetailList)),
    ]


class QueryCallDetailsResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryCallDetailsRsp)),
    ]


# ----- QueryBalance -------------------------------------------------------------------

class QueryBalanceReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
    ]


class QueryBalanceRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("USER_STATE", required(UserStateType)),
        ("BALANCE", required(FenType)),
        ("ARREARS_FEE", required(NonNegativeFenType)),
    ]


class QueryBalanceResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryBalanceRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="BillQuery/BillQuery.wsdl",
    operations={
        "QueryBill": Operation("QueryBill", QueryBillReq, QueryBillRsp, QueryBillResult),
        "QueryCallDetails": Operation("QueryCallDetails", QueryCallDetailsReq, QueryCallDetailsRsp,
                                      QueryCallDetailsResult),
        "QueryBalance": Operation("QueryBalance", QueryBalanceReq, QueryBalanceRsp, QueryBalanceResult),
    },
    caller="e-sales platform; HQ CRM",
    target="HQ CRM; billing (province Billing in phase 2, HQ Billing in phase 3)",
)
