"""spyne models of ``wsdl/BankPayment/BankPayment.xsd`` (banks -> billing).

Arrears and balance query, payment (缴费) and reversal (冲正). Class names are the XSD
complexType names; fields are in XSD order. Money is integer fen.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Long, Unicode

from .common import (
    BankCodeType, Contract, CycleType, DateType, FenType, MsisdnType, NameType,
    NonNegativeFenType, Operation, PositiveFenType, ProvinceCodeType, SerialType, TimeType, UserStateType,
    body_ns, head_ref, optional, required,
)

SERVICE = "BankPayment"
NS = body_ns(SERVICE)

__all__ = [
    "SERVICE", "NS", "CONTRACT",
    "BillItem", "BillItemList",
    "QueryArrearsReq", "QueryArrearsRsp", "QueryArrearsResult",
    "QueryBalanceReq", "QueryBalanceRsp", "QueryBalanceResult",
    "PayReq", "PayRsp", "PayResult",
    "ReverseReq", "ReverseRsp", "ReverseResult",
    "TxnTypeType", "TxnStateType", "QueryPaymentReq", "QueryPaymentRsp", "QueryPaymentResult",
    "TxnRecordType", "TxnPageSizeType", "MoreType", "TxnList",
    "ListPaymentsReq", "ListPaymentsRsp", "ListPaymentsResult", "MAX_TXN_PAGE",
]


class BillItem(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BILL_CYCLE", required(CycleType)),
        ("ITEM_NAME", required(NameType)),
        ("FEE", required(FenType)),
    ]


class BillItemList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BILL_ITEM", required(BillItem, max_occurs="unbounded")),
    ]


# ----- QueryArrears -------------------------------------------------------------------

class QueryArrearsReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("BANK_CODE", required(BankCodeType)),
    ]


class QueryArrearsRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("CUST_NAME", required(NameType)),
        ("USER_STATE", required(UserStateType)),
        ("ARREARS_FEE", required(NonNegativeFenType)),
        ("BALANCE", required(FenType)),
        ("BILL_ITEMS", optional(BillItemList)),
    ]


class QueryArrearsResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryArrearsRsp)),
    ]


# ----- QueryBalance -------------------------------------------------------------------

class QueryBalanceReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("BANK_CODE", optional(BankCodeType)),
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


# ----- Pay ----------------------------------------------------------------------------

class PayReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_CODE", required(BankCodeType)),
        ("BANK_SERIAL", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("AMOUNT", required(PositiveFenType)),
        ("TRADE_TIME", required(TimeType)),
        ("RECON_DATE", optional(DateType)),   # set by the bus's reconciliation only
    ]


class PayRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_SERIAL", required(SerialType)),
        ("BILL_SERIAL", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("AMOUNT", required(PositiveFenType)),
        ("BALANCE", required(FenType)),
        ("ACCT_DATE", required(DateType)),
    ]


class PayResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(PayRsp)),
    ]


# ----- Reverse ------------------------------------------------------------------------

class ReverseReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_CODE", required(BankCodeType)),
        ("BANK_SERIAL", required(SerialType)),
        ("ORIG_BANK_SERIAL", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("AMOUNT", required(PositiveFenType)),
        ("TRADE_TIME", required(TimeType)),
        ("RECON_DATE", optional(DateType)),   # set by the bus's reconciliation only
    ]


class ReverseRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_SERIAL", required(SerialType)),
        ("ORIG_BANK_SERIAL", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("AMOUNT", required(PositiveFenType)),
        ("BALANCE", required(FenType)),
    ]


class ReverseResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(ReverseRsp)),
    ]


TxnTypeType = Unicode(type_name="TxnTypeType", __namespace__=NS, values=["0", "1"])    # 0 payment, 1 reversal
TxnStateType = Unicode(type_name="TxnStateType", __namespace__=NS, values=["0", "1"])  # 0 posted, 1 reversed


class QueryPaymentReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_CODE", required(BankCodeType)),
        ("BANK_SERIAL", required(SerialType)),
    ]


class QueryPaymentRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_SERIAL", required(SerialType)),
        ("TXN_TYPE", required(TxnTypeType)),
        ("ORIG_BANK_SERIAL", optional(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("AMOUNT", required(PositiveFenType)),
        ("BALANCE", required(FenType)),
        ("BILL_SERIAL", required(SerialType)),
        ("ACCT_DATE", required(DateType)),
        ("TXN_STATE", required(TxnStateType)),
    ]


class QueryPaymentResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryPaymentRsp)),
    ]


# ----- ListPayments (reconciliation) ---------------------------------------------------

#: Most transactions one ListPayments page holds (TxnPageSizeType's upper bound).
MAX_TXN_PAGE = 10000

TxnRecordType = Unicode(type_name="TxnRecordType", __namespace__=NS,
                        pattern=r"[^|]{1,32}\|[0-9]{14}\|1[3-9][0-9]{9}\|[1-9][0-9]{0,11}\|[01]\|[^|]{0,32}\|[01]")
TxnPageSizeType = Long(type_name="TxnPageSizeType", __namespace__=NS, ge=1, le=MAX_TXN_PAGE)
MoreType = Unicode(type_name="MoreType", __namespace__=NS, values=["0", "1"])


class ListPaymentsReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_CODE", required(BankCodeType)),
        ("ACCT_DATE", required(DateType)),
        ("PROVINCE_CODE", optional(ProvinceCodeType)),
        ("AFTER_SERIAL", optional(SerialType)),
        ("PAGE_SIZE", optional(TxnPageSizeType)),
    ]


class TxnList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TXN", required(TxnRecordType, max_occurs="unbounded")),
    ]


class ListPaymentsRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BANK_CODE", required(BankCodeType)),
        ("ACCT_DATE", required(DateType)),
        ("MORE", required(MoreType)),
        ("LAST_SERIAL", optional(SerialType)),
        ("TXNS", optional(TxnList)),
    ]


class ListPaymentsResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(ListPaymentsRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="BankPayment/BankPayment.wsdl",
    operations={
        "QueryArrears": Operation("QueryArrears", QueryArrearsReq, QueryArrearsRsp, QueryArrearsResult),
        "QueryBalance": Operation("QueryBalance", QueryBalanceReq, QueryBalanceRsp, QueryBalanceResult),
        "Pay": Operation("Pay", PayReq, PayRsp, PayResult),
        "Reverse": Operation("Reverse", ReverseReq, ReverseRsp, ReverseResult),
        "QueryPayment": Operation("QueryPayment", QueryPaymentReq, QueryPaymentRsp, QueryPaymentResult),
        "ListPayments": Operation("ListPayments", ListPaymentsReq, ListPaymentsRsp, ListPaymentsResult),
    },
    caller="banks",
    target="billing (province Billing in phase 2, HQ Billing in phase 3)",
)
