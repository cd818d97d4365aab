"""spyne models of ``wsdl/CardActivation/CardActivation.xsd`` (HQ CRM -> top-up card system).

Card activation (卡激活) and card status query. ``ActivateCardsReq`` carries exactly one
of ``CARDS`` and ``CARD_RANGE`` (documented, not an xs:choice: spyne cannot model one);
the bus enforces it. ActivateCards is one-way: the bus answers it 'accepted' (``MSG_SENDER``
BUS), a Result with no ``UNI_BSS_BODY``; QueryCardStatus answers. Class names are the XSD
complexType names; fields in XSD order.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Unicode

from .common import (
    CardNoType, ChannelIdType, Contract, DateType, DescType, Operation, PositiveFenType,
    ProvinceCodeType, body_ns, head_ref, optional, required,
)

SERVICE = "CardActivation"
NS = body_ns(SERVICE)

#: Most cards one ActivateCards may list in CARDS.
MAX_CARDS = 1000

__all__ = [
    "SERVICE", "NS", "CONTRACT", "MAX_CARDS", "ACTIVATION_RESULTS", "CARD_STATES",
    "ActivationResultType", "CardStateType",
    "CardList", "CardRange", "CardResult", "CardResultList",
    "ActivateCardsReq", "ActivateCardsRsp", "ActivateCardsResult",
    "QueryCardStatusReq", "QueryCardStatusRsp", "QueryCardStatusResult",
]

#: RESULT values of CARD_RESULT (ActivationResultType).
ACTIVATION_RESULTS = {"0": "activated", "1": "already active", "2": "unknown card"}
#: CARD_STATE values (CardStateType).
CARD_STATES = {"0": "not activated", "1": "active", "2": "used", "3": "expired"}

ActivationResultType = Unicode(type_name="ActivationResultType", __namespace__=NS,
                               values=list(ACTIVATION_RESULTS))
CardStateType = Unicode(type_name="CardStateType", __namespace__=NS, values=list(CARD_STATES))


class CardList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CARD_NO", required(CardNoType, max_occurs=MAX_CARDS)),
    ]


class CardRange(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("BEGIN_CARD_NO", required(CardNoType)),
        ("END_CARD_NO", required(CardNoType)),
    ]


class CardResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CARD_NO", required(CardNoType)),
        ("RESULT", required(ActivationResultType)),
        ("RESULT_DESC", optional(DescType)),
    ]


class CardResultList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CARD_RESULT", required(CardResult, max_occurs="unbounded")),
    ]


# ----- ActivateCards ------------------------------------------------------------------

class ActivateCardsReq(ComplexModel):
    """Exactly one of CARDS and CARD_RANGE must be present."""

    __namespace__ = NS
    _type_info = [
        ("CHANNEL_ID", required(ChannelIdType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("CARDS", optional(CardList)),
        ("CARD_RANGE", optional(CardRange)),
    ]


class ActivateCardsRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("RESULTS", required(CardResultList)),
    ]


class ActivateCardsResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(ActivateCardsRsp)),
    ]


# ----- QueryCardStatus ----------------------------------------------------------------

class QueryCardStatusReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CARD_NO", required(CardNoType)),
    ]


class QueryCardStatusRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CARD_NO", required(CardNoType)),
        ("CARD_STATE", required(CardStateType)),
        ("FACE_VALUE", required(PositiveFenType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("EXPIRE_DATE", required(DateType)),
    ]


class QueryCardStatusResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryCardStatusRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="CardActivation/CardActivation.wsdl",
    operations={
        "ActivateCards": Operation("ActivateCards", ActivateCardsReq, ActivateCardsRsp,
                                   ActivateCardsResult),
        "QueryCardStatus": Operation("QueryCardStatus", QueryCardStatusReq, QueryCardStatusRsp,
                                     QueryCardStatusResult),
    },
    caller="HQ CRM",
    target="top-up card system",
)
