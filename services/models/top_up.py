"""spyne models of ``wsdl/TopUp/TopUp.xsd`` (top-up card system -> billing).

Top-up (充值) with a top-up card, top-up query and balance query, answered by the billing of
the number's province (province Billing in phase 2, HQ Billing in phase 3). The service and
its first operation are both called ``TopUp``. Class names are the XSD complexType names;
fields are in XSD order. Money is integer fen.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Unicode

from .common import (
    CardNoType, ChannelIdType, Contract, DateType, FenType, MsisdnType, NonNegativeFenType,
    Operation, PositiveFenType, SerialType, TimeType, UserStateType, body_ns, head_ref,
    optional, required,
)

SERVICE = "TopUp"
NS = body_ns(SERVICE)

__all__ = [
    "SERVICE", "NS", "CONTRACT", "TOPUP_STATES", "TopUpStateType",
    "TopUpReq", "TopUpRsp", "TopUpResult",
    "QueryTopUpReq", "QueryTopUpRsp", "QueryTopUpResult",
    "QueryBalanceReq", "QueryBalanceRsp", "QueryBalanceResult",
]

#: TOPUP_STATE values (TopUpStateType).
TOPUP_STATES = {"0": "done", "1": "reversed"}

TopUpStateType = Unicode(type_name="TopUpStateType", __namespace__=NS, values=list(TOPUP_STATES))


# ----- TopUp --------------------------------------------------------------------------

class TopUpReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TOPUP_SERIAL", required(SerialType)),
        ("CARD_NO", required(CardNoType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("CHANNEL_ID", required(ChannelIdType)),
        ("TRADE_TIME", required(TimeType)),
    ]


class TopUpRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TOPUP_SERIAL", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("CARD_NO", required(CardNoType)),
        ("AMOUNT", required(PositiveFenType)),
        ("BALANCE", required(FenType)),
        ("BILL_SERIAL", required(SerialType)),
        ("ACCT_DATE", required(DateType)),
    ]


class TopUpResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(TopUpRsp)),
    ]


# ----- QueryTopUp ---------------------------------------------------------------------

class QueryTopUpReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TOPUP_SERIAL", required(SerialType)),
    ]


class QueryTopUpRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TOPUP_SERIAL", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("CARD_NO", required(CardNoType)),
        ("AMOUNT", required(PositiveFenType)),
        ("TOPUP_STATE", required(TopUpStateType)),
        ("TRADE_TIME", required(TimeType)),
        ("BALANCE", optional(FenType)),
        ("BILL_SERIAL", optional(SerialType)),
        ("ACCT_DATE", optional(DateType)),
    ]


class QueryTopUpResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryTopUpRsp)),
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
    wsdl="TopUp/TopUp.wsdl",
    operations={
        "TopUp": Operation("TopUp", TopUpReq, TopUpRsp, TopUpResult),
        "QueryTopUp": Operation("QueryTopUp", QueryTopUpReq, QueryTopUpRsp, QueryTopUpResult),
        "QueryBalance": Operation("QueryBalance", QueryBalanceReq, QueryBalanceRsp, QueryBalanceResult),
    },
    caller="top-up card system",
    target="billing (province Billing in phase 2, HQ Billing in phase 3)",
)
