"""spyne models of ``wsdl/ReverseSync/ReverseSync.xsd`` (province VAC -> province CRM).

Reverse interface (反向接口): a province VAC reports a value-added service subscription
change; the province CRM says whether the user is a 3G user and whether it passed the change
on to HQ CRM. The change is one-way: the bus answers the VAC 'accepted' (``MSG_SENDER`` BUS), a
Result with no ``UNI_BSS_BODY``. Class names are the XSD complexType names; fields are in XSD
order.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Unicode

from .common import (
    Contract, MsisdnType, Operation, ProvinceCodeType, SerialType, TimeType, body_ns,
    head_ref, optional, required,
)

SERVICE = "ReverseSync"
NS = body_ns(SERVICE)

__all__ = [
    "SERVICE", "NS", "CONTRACT", "VAC_ACTIONS", "IS_3G_VALUES", "SYNCED_VALUES",
    "VacActionType", "Is3GType", "SyncedType", "SpCodeType", "SpServiceCodeType",
    "SyncVacChangeReq", "SyncVacChangeRsp", "SyncVacChangeResult",
]

#: ACTION values (VacActionType).
VAC_ACTIONS = {"01": "subscribe", "02": "unsubscribe", "03": "change"}
#: IS_3G values (Is3GType).
IS_3G_VALUES = {"0": "not a 3G user", "1": "a 3G user"}
#: SYNCED values (SyncedType).
SYNCED_VALUES = {"0": "not passed on", "1": "passed on to HQ"}

VacActionType = Unicode(type_name="VacActionType", __namespace__=NS, values=list(VAC_ACTIONS))
Is3GType = Unicode(type_name="Is3GType", __namespace__=NS, values=list(IS_3G_VALUES))
SyncedType = Unicode(type_name="SyncedType", __namespace__=NS, values=list(SYNCED_VALUES))
SpCodeType = Unicode(type_name="SpCodeType", __namespace__=NS, pattern="[0-9A-Za-z]{1,20}")
SpServiceCodeType = Unicode(type_name="SpServiceCodeType", __namespace__=NS, min_len=1, max_len=32)


# ----- SyncVacChange ------------------------------------------------------------------

class SyncVacChangeReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("VAC_SEQ", required(SerialType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("SP_CODE", required(SpCodeType)),
        ("SERVICE_CODE", required(SpServiceCodeType)),
        ("ACTION", required(VacActionType)),
        ("EFFECT_TIME", required(TimeType)),
    ]


class SyncVacChangeRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("VAC_SEQ", required(SerialType)),
        ("IS_3G", required(Is3GType)),
        ("SYNCED", required(SyncedType)),
    ]


class SyncVacChangeResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(SyncVacChangeRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="ReverseSync/ReverseSync.wsdl",
    operations={
        "SyncVacChange": Operation("SyncVacChange", SyncVacChangeReq, SyncVacChangeRsp,
                                   SyncVacChangeResult),
    },
    caller="province VAC",
    target="province CRM",
)
