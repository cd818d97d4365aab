"""Shared spyne models of the contracts in ``wsdl/common/`` and the contract registry types.

The XSDs under ``wsdl/`` are the source of truth (contract first). This module mirrors
them for spyne: the UNI_BSS_HEAD header (``UniBssHead.xsd``), the shared simple types
(``BssTypes.xsd``) and the fault detail (``BssFault.xsd``). ``tests/services/
test_contracts.py`` walks both sides and fails when they drift apart.

Conventions the service modules follow:

* a ComplexModel class is named after its XSD complexType and lives in that schema's
  namespace; fields are declared in XSD order;
* every field is built with :func:`required` or :func:`optional` (spyne's own defaults,
  ``min_occurs=0`` and ``nillable=True``, do not match the XSD);
* a simple type with facets is a named spyne type (``type_name`` = the XSD type name), so a
  field keeps the facets and the name of the XSD type it mirrors;
* ``UNI_BSS_HEAD`` inside a body-namespace class is :func:`head_ref` (``sub_ns=HEAD_NS``),
  which is what ``<xs:element ref="head:UNI_BSS_HEAD"/>`` means.

Also here: :class:`Operation` and :class:`Contract` (what the rest of the bus looks a
service up by), and :func:`to_xml` / :func:`from_xml`, which turn the JSON argument files of
``wsdl/examples/`` into wrapper elements and back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from lxml import etree
from spyne.model.complex import ComplexModel, ComplexModelBase
from spyne.model.primitive import Long, Unicode

__all__ = [
    "WSDL_DIR", "HEAD_NS", "TYPES_NS", "FAULT_NS", "body_ns",
    "required", "optional", "head_ref",
    # header simple types (UniBssHead.xsd)
    "OrigDomainType", "ServiceNameType", "OperateNameType", "ActionCodeType",
    "RouteTypeType", "RouteValueType", "ProcIdType", "TransIdoType", "TransIdhType",
    "ProcessTimeType", "PeerNameType", "TestFlagType", "RspTypeType", "RspCodeType",
    "RspDescType",
    # header complex types
    "Routing", "ComBusInfo", "Response", "UniBssHead",
    # shared simple types (BssTypes.xsd)
    "PROVINCE_CODES", "MsisdnType", "FenType", "NonNegativeFenType", "PositiveFenType",
    "ProvinceCodeType", "EparchyCodeType", "TimeType", "DateType", "CycleType",
    "BankCodeType", "SerialType", "IdType", "CardNoType", "UserStateType", "ORDER_STATES",
    "OrderStateType", "NameType", "CodeType", "CertNumType", "AddressType", "BankAcctNoType",
    "ChannelIdType", "DescType",
    # fault detail (BssFault.xsd)
    "BssFault",
    # registry and conversion
    "Operation", "Contract", "to_xml", "from_xml",
]

#: Absolute path (a ``pathlib.Path``) of the repository's ``wsdl/`` folder.
WSDL_DIR = Path(__file__).resolve().parents[2] / "wsdl"

HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"
TYPES_NS = "http://ws.chinaunicom.cn/bssTypes"
FAULT_NS = "http://ws.chinaunicom.cn/bssFault"


def body_ns(service: str) -> str:
    """The UNI_BSS_BODY namespace of a service, e.g. ``body_ns("BankPayment")``."""
    return "http://ws.chinaunicom.cn/%s/unibssBody" % service


def required(cls, **kwargs):
    """A field that must occur once (``minOccurs=1``, not nillable), as in the XSD default."""
    kwargs.setdefault("min_occurs", 1)
    return cls.customize(nillable=False, **kwargs)


def optional(cls, **kwargs):
    """A field with ``minOccurs="0"`` (not nillable: absent, never ``xsi:nil``)."""
    kwargs.setdefault("min_occurs", 0)
    return cls.customize(nillable=False, **kwargs)


def _str(type_name, ns, **facets):
    return Unicode(type_name=type_name, __namespace__=ns, **facets)


def _long(type_name, ns, **facets):
    return Long(type_name=type_name, __namespace__=ns, **facets)


# --------------------------------------------------------------------------------------
# UniBssHead.xsd: http://ws.chinaunicom.cn/unibssHead
# --------------------------------------------------------------------------------------

OrigDomainType = _str("OrigDomainType", HEAD_NS, pattern="[A-Z]{2,8}")
ServiceNameType = _str("ServiceNameType", HEAD_NS, min_len=1, max_len=64)
OperateNameType = _str("OperateNameType", HEAD_NS, min_len=1, max_len=64)
ActionCodeType = _str("ActionCodeType", HEAD_NS, values=["0", "1"])
RouteTypeType = _str("RouteTypeType", HEAD_NS, values=["00", "01"])
RouteValueType = _str("RouteValueType", HEAD_NS, min_len=1, max_len=20)
ProcIdType = _str("ProcIdType", HEAD_NS, min_len=1, max_len=32)
TransIdoType = _str("TransIdoType", HEAD_NS, min_len=1, max_len=28)
TransIdhType = _str("TransIdhType", HEAD_NS, min_len=1, max_len=32)
ProcessTimeType = _str("ProcessTimeType", HEAD_NS, pattern="[0-9]{14}")
PeerNameType = _str("PeerNameType", HEAD_NS, min_len=1, max_len=32)
TestFlagType = _str("TestFlagType", HEAD_NS, values=["0", "1"])
RspTypeType = _str("RspTypeType", HEAD_NS, values=["0", "1", "2"])
RspCodeType = _str("RspCodeType", HEAD_NS, min_len=1, max_len=8)
RspDescType = _str("RspDescType", HEAD_NS, max_len=512)


class Routing(ComplexModel):
    """ROUTING: 00 + province code, or 01 + phone number."""

    __namespace__ = HEAD_NS
    _type_info = [
        ("ROUTE_TYPE", required(RouteTypeType)),
        ("ROUTE_VALUE", required(RouteValueType)),
    ]


class ComBusInfo(ComplexModel):
    """COM_BUS_INFO: where the caller's operator sits; every field optional."""

    __namespace__ = HEAD_NS
    _type_info = [
        ("OPER_ID", optional(Unicode)),
        ("PROVINCE_CODE", optional(Unicode)),
        ("EPARCHY_CODE", optional(Unicode)),
        ("CITY_CODE", optional(Unicode)),
        ("CHANNEL_ID", optional(Unicode)),
        ("CHANNEL_TYPE", optional(Unicode)),
        ("ACCESS_TYPE", optional(Unicode)),
    ]


class Response(ComplexModel):
    """RESPONSE: RSP_TYPE 0 ok / 1 business error / 2 system error; RSP_CODE 0000 = success."""

    __namespace__ = HEAD_NS
    _type_info = [
        ("RSP_TYPE", required(RspTypeType)),
        ("RSP_CODE", required(RspCodeType)),
        ("RSP_DESC", optional(RspDescType)),
    ]


class UniBssHead(ComplexModel):
    """UNI_BSS_HEAD, the common header of every request and response."""

    __namespace__ = HEAD_NS
    _type_info = [
        ("ORIG_DOMAIN", required(OrigDomainType)),
        ("SERVICE_NAME", required(ServiceNameType)),
        ("OPERATE_NAME", required(OperateNameType)),
        ("ACTION_CODE", required(ActionCodeType)),
        ("ROUTING", required(Routing)),
        ("PROC_ID", required(ProcIdType)),
        ("TRANS_IDO", required(TransIdoType)),
        ("TRANS_IDH", optional(TransIdhType)),
        ("PROCESS_TIME", required(ProcessTimeType)),
        ("COM_BUS_INFO", optional(ComBusInfo)),
        ("MSG_SENDER", optional(PeerNameType)),
        ("MSG_RECEIVER", optional(PeerNameType)),
        ("TEST_FLAG", optional(TestFlagType)),
        ("RESPONSE", optional(Response)),
    ]


def head_ref():
    """The ``<xs:element ref="head:UNI_BSS_HEAD"/>`` member of a body-namespace class.

    ``sub_ns`` makes spyne write (and expect) the element in the header namespace although
    its parent is in the body namespace. A fresh customization each call, so no two
    parents share (and spyne never mutates) one class.
    """
    return UniBssHead.customize(sub_ns=HEAD_NS, min_occurs=1, nillable=False)


# --------------------------------------------------------------------------------------
# BssTypes.xsd: http://ws.chinaunicom.cn/bssTypes
# --------------------------------------------------------------------------------------

#: Unicom two-digit province codes (31 provinces) and 99 for HQ, as in BssTypes.xsd.
PROVINCE_CODES = {
    "11": "北京", "13": "天津", "18": "河北", "19": "山西", "10": "内蒙古",
    "91": "辽宁", "90": "吉林", "97": "黑龙江", "31": "上海", "34": "江苏",
    "36": "浙江", "30": "安徽", "38": "福建", "75": "江西", "17": "山东",
    "76": "河南", "71": "湖北", "74": "湖南", "51": "广东", "59": "广西",
    "50": "海南", "83": "重庆", "81": "四川", "85": "贵州", "86": "云南",
    "79": "西藏", "84": "陕西", "87": "甘肃", "70": "青海", "88": "宁夏",
    "89": "新疆", "99": "总部",
}

_FEN_MAX = 999999999999  # 12 digits: 9,999,999,999.99 yuan

MsisdnType = _str("MsisdnType", TYPES_NS, pattern="1[3-9][0-9]{9}")
FenType = _long("FenType", TYPES_NS, ge=-_FEN_MAX, le=_FEN_MAX)
NonNegativeFenType = _long("NonNegativeFenType", TYPES_NS, ge=0, le=_FEN_MAX)
PositiveFenType = _long("PositiveFenType", TYPES_NS, ge=1, le=_FEN_MAX)
ProvinceCodeType = _str("ProvinceCodeType", TYPES_NS, values=list(PROVINCE_CODES))
EparchyCodeType = _str("EparchyCodeType", TYPES_NS, min_len=1, max_len=8)
TimeType = _str("TimeType", TYPES_NS, pattern="[0-9]{14}")
DateType = _str("DateType", TYPES_NS, pattern="[0-9]{8}")
CycleType = _str("CycleType", TYPES_NS, pattern="[0-9]{6}")
BankCodeType = _str("BankCodeType", TYPES_NS, pattern="[0-9A-Z]{2,10}")
SerialType = _str("SerialType", TYPES_NS, min_len=1, max_len=32)
IdType = _str("IdType", TYPES_NS, min_len=1, max_len=32)
CardNoType = _str("CardNoType", TYPES_NS, pattern="[0-9]{15}")
UserStateType = _str("UserStateType", TYPES_NS, values=["00", "01", "02", "03", "04", "99"])
#: ORDER_STATE values (OrderStateType), shared by OrderSync and Provisioning.
ORDER_STATES = {
    "00": "received", "10": "sent to province", "20": "provisioning",
    "30": "completed", "40": "failed", "50": "cancelled",
}
OrderStateType = _str("OrderStateType", TYPES_NS, values=list(ORDER_STATES))
NameType = _str("NameType", TYPES_NS, min_len=1, max_len=128)
CodeType = _str("CodeType", TYPES_NS, pattern="[0-9A-Za-z_]{1,8}")
CertNumType = _str("CertNumType", TYPES_NS, min_len=1, max_len=32)
AddressType = _str("AddressType", TYPES_NS, min_len=1, max_len=256)
BankAcctNoType = _str("BankAcctNoType", TYPES_NS, min_len=1, max_len=32)
ChannelIdType = _str("ChannelIdType", TYPES_NS, min_len=1, max_len=32)
DescType = _str("DescType", TYPES_NS, max_len=512)


# --------------------------------------------------------------------------------------
# BssFault.xsd: http://ws.chinaunicom.cn/bssFault
# --------------------------------------------------------------------------------------

class BssFault(ComplexModel):
    """The ``detail`` of every SOAP fault the bus returns (global element ``BssFault``)."""

    __namespace__ = FAULT_NS
    _type_info = [
        ("TRANS_IDO", optional(TransIdoType)),
        ("RSP_CODE", required(RspCodeType)),
        ("RSP_DESC", required(RspDescType)),
    ]


# --------------------------------------------------------------------------------------
# Contract registry
# --------------------------------------------------------------------------------------

def _wrapper(ns, name, members):
    return type(name, (ComplexModel,), {"__namespace__": ns, "_type_info": members})


@functools.lru_cache(maxsize=None)
def _request_wrapper(name, request):
    return _wrapper(request.get_namespace(), name, [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", required(request)),
    ])


@functools.lru_cache(maxsize=None)
def _response_wrapper(name, result):
    return _wrapper(result.get_namespace(), name + "Response", [
        (name + "Result", required(result)),
    ])


@dataclass(frozen=True)
class Operation:
    """One operation of a contract: the spyne classes of its bodies.

    ``request`` is ``<Op>Req`` (the request's UNI_BSS_BODY), ``response`` is ``<Op>Rsp``
    (the response's UNI_BSS_BODY) and ``result`` is ``<Op>Result`` (UNI_BSS_HEAD +
    optional UNI_BSS_BODY, the single child of ``<Op>Response``).
    """

    name: str
    request: type
    response: type
    result: type

    @property
    def request_wrapper(self):
        """spyne class of the request wrapper element ``<Op>`` (UNI_BSS_HEAD, UNI_BSS_BODY)."""
        return _request_wrapper(self.name, self.request)

    @property
    def response_wrapper(self):
        """spyne class of the response wrapper element ``<Op>Response`` (``<Op>Result``)."""
        return _response_wrapper(self.name, self.result)


@dataclass(frozen=True)
class Contract:
    """A service the bus exposes, as its hand-written WSDL defines it.

    ``namespace`` is the body namespace (also the WSDL's targetNamespace), ``wsdl`` the
    WSDL's path relative to ``wsdl/``, ``operations`` the operations by name in WSDL order,
    ``caller`` / ``target`` who calls the service and who answers it (for people).
    """

    name: str
    namespace: str
    wsdl: str
    operations: dict[str, Operation] = field(hash=False, compare=False)
    caller: str = ""
    target: str = ""

    @property
    def wsdl_path(self) -> Path:
        """Absolute path of the WSDL file."""
        return WSDL_DIR / self.wsdl

    @property
    def xsd_path(self) -> Path:
        """Absolute path of the service XSD (the wrapper elements and bodies), beside the WSDL."""
        return self.wsdl_path.with_suffix(".xsd")

    def operation(self, name: str) -> Operation:
        """The operation called ``name``; ``KeyError`` naming the known ones otherwise."""
        try:
            return self.operations[name]
        except KeyError:
            raise KeyError("%s has no operation %r (it has: %s)" % (
                self.name, name, ", ".join(self.operations))) from None


# --------------------------------------------------------------------------------------
# JSON argument files <-> wrapper elements
# --------------------------------------------------------------------------------------

def _is_complex(cls):
    return issubclass(cls, ComplexModelBase)


def _members(cls):
    """(element name, namespace, spyne class) of the children of a ComplexModel, in order."""
    ns = cls.get_namespace()
    for key, member in cls._type_info.items():
        attrs = member.Attributes
        yield (attrs.sub_name or key), (attrs.sub_ns or ns), member


def _text(value, path):
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError("%s: %r is not allowed (use a string, or an integer in fen)" % (path, value))
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError("%s: expected a string or an integer, got %s" % (path, type(value).__name__))


def _fill(parent, cls, data, path, strict=True):
    if not isinstance(data, dict):
        raise TypeError("%s: expected an object, got %s" % (path, type(data).__name__))
    members = list(_members(cls))
    known = {name for name, _, _ in members}
    unknown = [k for k in data if k not in known]
    if unknown and strict:
        raise ValueError("%s: unknown field(s) %s; expected some of %s" % (
            path, ", ".join(unknown), ", ".join(name for name, _, _ in members)))
    for name, ns, member in members:
        value = data.get(name)
        if value is None:
            continue
        many = member.Attributes.max_occurs > 1
        values = value if many and isinstance(value, list) else [value]
        if isinstance(value, list) and not many:
            raise TypeError("%s/%s: a list is not allowed here" % (path, name))
        for item in values:
            child = etree.SubElement(parent, "{%s}%s" % (ns, name))
            if _is_complex(member):
                _fill(child, member, item, path + "/" + name, strict)
            else:
                child.text = _text(item, path + "/" + name)


def _resolve(contract, operation):
    if isinstance(operation, Operation):
        return operation
    return contract.operation(operation)


def to_xml(contract: Contract, operation, data: dict, *, response: bool = False, strict: bool = True):
    """Build the wrapper element of ``operation`` from JSON-like ``data``.

    ``data`` holds the wrapper's children, ``{"UNI_BSS_HEAD": {...}, "UNI_BSS_BODY": {...}}``,
    as in ``wsdl/examples/<Service>.<Operation>.json``: an object becomes child elements,
    a list becomes repeated elements, strings and integers become text (floats and
    booleans are refused: money is integer fen). Children are written in contract order
    and in their contract namespace (the header's fields in the header namespace) whatever
    the order of the keys; an unknown key raises ``ValueError`` (with ``strict=False`` it is
    left out, as spyne leaves it out of an answer). Nothing is validated here: validate the
    result against the contract XSD.

    Returns the request wrapper ``{body_ns}<Op>``, or with ``response=True`` the response
    wrapper ``{body_ns}<Op>Response`` whose ``<Op>Result`` holds ``data``.
    ``operation`` is an operation name or an :class:`Operation`.
    """
    op = _resolve(contract, operation)
    nsmap = {None: contract.namespace, "head": HEAD_NS}
    if response:
        root = etree.Element("{%s}%sResponse" % (contract.namespace, op.name), nsmap=nsmap)
        parent = etree.SubElement(root, "{%s}%sResult" % (contract.namespace, op.name))
        _fill(parent, op.result, data, "%s.%sResult" % (contract.name, op.name), strict)
        return root
    root = etree.Element("{%s}%s" % (contract.namespace, op.name), nsmap=nsmap)
    _fill(root, op.request_wrapper, data, "%s.%s" % (contract.name, op.name), strict)
    return root


@functools.lru_cache(maxsize=None)
def _by_tag(cls):
    return {"{%s}%s" % (ns, name): (name, member) for name, ns, member in _members(cls)}


def _leaf(member, text, typed):
    """A simple value: its text, or with ``typed`` as spyne reads it (an integer for xs:long)."""
    text = text or ""
    if typed and issubclass(member, Long):
        return int(text)
    return text


def _read(elem, cls, path, typed=False):
    out = {}
    by_tag = _by_tag(cls)
    for child in elem:
        if not isinstance(child.tag, str):
            continue  # comments, processing instructions
        try:
            name, member = by_tag[child.tag]
        except KeyError:
            raise ValueError("%s: unexpected element %s" % (path, child.tag)) from None
        value = (_read(child, member, path + "/" + name, typed) if _is_complex(member)
                 else _leaf(member, child.text, typed))
        if member.Attributes.max_occurs > 1:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def from_xml(contract: Contract, operation, element, *, response: bool = False, typed: bool = False) -> dict:
    """The inverse of :func:`to_xml`: a wrapper element to JSON-like data.

    Every simple value comes back as a string (the text in the XML), or with ``typed`` as
    spyne reads it (``xs:long`` as an integer: the dicts the bus carries, as
    services.mapping.to_dict gives them); repeated elements come back as lists.
    ``element`` is ``<Op>`` or, with ``response=True``, ``<Op>Response``.
    """
    op = _resolve(contract, operation)
    if response:
        tag = "{%s}%sResponse" % (contract.namespace, op.name)
        if element.tag != tag:
            raise ValueError("expected %s, got %s" % (tag, element.tag))
        result = element.find("{%s}%sResult" % (contract.namespace, op.name))
        if result is None:
            raise ValueError("%s has no %sResult" % (tag, op.name))
        return _read(result, op.result, "%s.%sResult" % (contract.name, op.name), typed)
    tag = "{%s}%s" % (contract.namespace, op.name)
    if element.tag != tag:
        raise ValueError("expected %s, got %s" % (tag, element.tag))
    return _read(element, op.request_wrapper, "%s.%s" % (contract.name, op.name), typed)
