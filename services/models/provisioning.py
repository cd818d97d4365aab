"""spyne models of ``wsdl/Provisioning/Provisioning.xsd`` (HQ CRM <-> province CRM).

Service provisioning (服务开通): HQ CRM submits a work order (工单) of network commands to
the province CRM, which reports the outcome back. ``ORDER_STATE`` is the shared
``bss:OrderStateType`` of OrderSync. Both operations are one-way: the bus answers them
'accepted' (``MSG_SENDER`` BUS), a Result with no ``UNI_BSS_BODY``. Class names are the XSD
complexType names; fields are in XSD order.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Unicode

from .common import (
    Contract, DescType, IdType, MsisdnType, Operation, OrderStateType, ProvinceCodeType,
    TimeType, body_ns, head_ref, optional, required,
)

SERVICE = "Provisioning"
NS = body_ns(SERVICE)

#: Most commands one work order may carry.
MAX_COMMANDS = 50

__all__ = [
    "SERVICE", "NS", "CONTRACT", "MAX_COMMANDS", "WORK_STATES",
    "WorkStateType", "CmdCodeType", "CmdParamType",
    "Command", "CommandList",
    "SubmitWorkOrderReq", "SubmitWorkOrderRsp", "SubmitWorkOrderResult",
    "ReportWorkOrderResultReq", "ReportWorkOrderResultRsp", "ReportWorkOrderResultResult",
]

#: WORK_STATE values (WorkStateType).
WORK_STATES = {"0": "submitted", "1": "in progress", "2": "failed", "3": "done"}

WorkStateType = Unicode(type_name="WorkStateType", __namespace__=NS, values=list(WORK_STATES))
CmdCodeType = Unicode(type_name="CmdCodeType", __namespace__=NS, pattern="[0-9A-Za-z_]{1,32}")
CmdParamType = Unicode(type_name="CmdParamType", __namespace__=NS, min_len=1, max_len=1024)


class Command(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CMD_CODE", required(CmdCodeType)),
        ("CMD_PARAM", optional(CmdParamType)),
    ]


class CommandList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("COMMAND", required(Command, max_occurs=MAX_COMMANDS)),
    ]


# ----- SubmitWorkOrder ----------------------------------------------------------------

class SubmitWorkOrderReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TRADE_ID", required(IdType)),
        ("ORDER_ID", required(IdType)),
        ("USER_ID", required(IdType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("PRODUCT_ID", required(IdType)),
        ("COMMANDS", required(CommandList)),
    ]


class SubmitWorkOrderRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TRADE_ID", required(IdType)),
        ("WORK_STATE", required(WorkStateType)),
    ]


class SubmitWorkOrderResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(SubmitWorkOrderRsp)),
    ]


# ----- ReportWorkOrderResult ----------------------------------------------------------

class ReportWorkOrderResultReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TRADE_ID", required(IdType)),
        ("ORDER_ID", required(IdType)),
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("WORK_STATE", required(WorkStateType)),
        ("RESULT_DESC", optional(DescType)),
        ("FINISH_TIME", required(TimeType)),
    ]


class ReportWorkOrderResultRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("TRADE_ID", required(IdType)),
        ("ORDER_ID", required(IdType)),
        ("ORDER_STATE", required(OrderStateType)),
    ]


class ReportWorkOrderResultResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(ReportWorkOrderResultRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="Provisioning/Provisioning.wsdl",
    operations={
        "SubmitWorkOrder": Operation("SubmitWorkOrder", SubmitWorkOrderReq, SubmitWorkOrderRsp,
                                     SubmitWorkOrderResult),
        "ReportWorkOrderResult": Operation("ReportWorkOrderResult", ReportWorkOrderResultReq,
                                           ReportWorkOrderResultRsp, ReportWorkOrderResultResult),
    },
    caller="HQ CRM (SubmitWorkOrder); province CRM (ReportWorkOrderResult)",
    target="province CRM (SubmitWorkOrder); HQ CRM (ReportWorkOrderResult)",
)
