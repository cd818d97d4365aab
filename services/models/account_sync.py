"""spyne models of ``wsdl/AccountSync/AccountSync.xsd`` (province CRM -> billing).

Three-account sync (三户同步): customer, user, account, pay relation and subscription
instances of one user, ordered by ``SYNC_SEQ`` per user (an older update is ignored,
``APPLIED`` 1). The sync is one-way: the bus answers it 'accepted' (``MSG_SENDER`` BUS), a
Result with no ``UNI_BSS_BODY``. Only a route configured synchronous with several recipients
answers with a body that lists their answers in ``RECIPIENTS``. Class names are the XSD
complexType names; fields are in XSD order.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Long, Unicode

from .common import (
    AddressType, BankAcctNoType, CertNumType, CodeType, Contract, DateType,
    EparchyCodeType, IdType, MsisdnType, NameType, Operation, PeerNameType, ProvinceCodeType,
    RspCodeType, RspDescType, TimeType, UserStateType, body_ns, head_ref, optional, required,
)

SERVICE = "AccountSync"
NS = body_ns(SERVICE)

__all__ = [
    "SERVICE", "NS", "CONTRACT", "PREPAY_TAGS", "INST_TYPES", "APPLIED_VALUES",
    "PrepayTagType", "InstTypeType", "AppliedType",
    "Customer", "User", "Account", "PayRelation", "Subscription", "SubscriptionList",
    "Recipient", "RecipientList",
    "SyncThreeAccountReq", "SyncThreeAccountRsp", "SyncThreeAccountResult",
]

#: PREPAY_TAG values (PrepayTagType).
PREPAY_TAGS = {"0": "postpaid", "1": "prepaid"}
#: INST_TYPE values (InstTypeType).
INST_TYPES = {"P": "product", "S": "service", "D": "discount"}
#: APPLIED values (AppliedType).
APPLIED_VALUES = {"0": "applied", "1": "ignored: older than the stored data"}

PrepayTagType = Unicode(type_name="PrepayTagType", __namespace__=NS, values=list(PREPAY_TAGS))
InstTypeType = Unicode(type_name="InstTypeType", __namespace__=NS, values=list(INST_TYPES))
AppliedType = Unicode(type_name="AppliedType", __namespace__=NS, values=list(APPLIED_VALUES))


class Customer(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CUST_ID", required(IdType)),
        ("CUST_NAME", required(NameType)),
        ("CERT_TYPE", required(CodeType)),
        ("CERT_NUM", required(CertNumType)),
        ("CUST_ADDR", optional(AddressType)),
    ]


class User(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("USER_ID", required(IdType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("CUST_ID", required(IdType)),
        ("PRODUCT_ID", required(IdType)),
        ("NET_TYPE_CODE", required(CodeType)),
        ("PREPAY_TAG", required(PrepayTagType)),
        ("SERVICE_STATE", required(UserStateType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("EPARCHY_CODE", required(EparchyCodeType)),
        ("UPDATE_TIME", required(TimeType)),
    ]


class Account(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("ACCT_ID", required(IdType)),
        ("CUST_ID", required(IdType)),
        ("PAY_NAME", required(NameType)),
        ("PAY_MODE_CODE", required(CodeType)),
        ("BANK_ACCT_NO", optional(BankAcctNoType)),
    ]


class PayRelation(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("USER_ID", required(IdType)),
        ("ACCT_ID", required(IdType)),
        ("START_DATE", required(DateType)),
        ("END_DATE", optional(DateType)),
    ]


class Subscription(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("INST_ID", required(IdType)),
        ("INST_TYPE", required(InstTypeType)),
        ("ITEM_ID", required(IdType)),
        ("START_DATE", required(DateType)),
        ("END_DATE", optional(DateType)),
    ]


class SubscriptionList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SUBSCRIPTION", required(Subscription, max_occurs="unbounded")),
    ]


class Recipient(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PEER", required(PeerNameType)),
        ("RSP_CODE", required(RspCodeType)),
        ("RSP_DESC", optional(RspDescType)),
    ]


class RecipientList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("RECIPIENT", required(Recipient, max_occurs="unbounded")),
    ]


# ----- SyncThreeAccount ---------------------------------------------------------------

class SyncThreeAccountReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SYNC_SEQ", required(Long)),
        ("CUSTOMER", optional(Customer)),
        ("USER", required(User)),
        ("ACCOUNT", optional(Account)),
        ("PAY_RELATION", optional(PayRelation)),
        ("SUBSCRIPTIONS", optional(SubscriptionList)),
    ]


class SyncThreeAccountRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("USER_ID", required(IdType)),
        ("SYNC_SEQ", required(Long)),
        ("APPLIED", required(AppliedType)),
        ("RECIPIENTS", optional(RecipientList)),
    ]


class SyncThreeAccountResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(SyncThreeAccountRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="AccountSync/AccountSync.wsdl",
    operations={
        "SyncThreeAccount": Operation("SyncThreeAccount", SyncThreeAccountReq,
                                      SyncThreeAccountRsp, SyncThreeAccountResult),
    },
    caller="province CRM",
    target="billing",
)
