"""spyne models of ``wsdl/InfoQuery/InfoQuery.xsd`` (e-sales -> HQ CRM).

Information queries (信息查询): the products, the free numbers (选号) and the sales channels
of a province. Read only. Class names are the XSD complexType names; fields are in XSD
order. Money is integer fen.
"""

from spyne.model.complex import ComplexModel
from spyne.model.primitive import Long, Unicode

from .common import (
    ChannelIdType, CodeType, Contract, DescType, EparchyCodeType, IdType, MsisdnType, NameType,
    NonNegativeFenType, Operation, ProvinceCodeType, body_ns, head_ref, optional, required,
)

SERVICE = "InfoQuery"
NS = body_ns(SERVICE)

#: Most numbers one QueryNumbers returns (MaxCountType's upper bound).
MAX_NUMBERS = 100

__all__ = [
    "SERVICE", "NS", "CONTRACT", "MAX_NUMBERS",
    "NumberPrefixType", "MaxCountType",
    "Product", "ProductList", "NumberInfo", "NumberInfoList", "Channel", "ChannelList",
    "QueryProductsReq", "QueryProductsRsp", "QueryProductsResult",
    "QueryNumbersReq", "QueryNumbersRsp", "QueryNumbersResult",
    "QueryChannelsReq", "QueryChannelsRsp", "QueryChannelsResult",
]

NumberPrefixType = Unicode(type_name="NumberPrefixType", __namespace__=NS, pattern="1[3-9][0-9]{1,5}")
MaxCountType = Long(type_name="MaxCountType", __namespace__=NS, ge=1, le=MAX_NUMBERS)


class Product(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PRODUCT_ID", required(IdType)),
        ("PRODUCT_NAME", required(NameType)),
        ("PRODUCT_TYPE", required(CodeType)),
        ("NET_TYPE_CODE", required(CodeType)),
        ("MONTHLY_FEE", required(NonNegativeFenType)),
        ("PRODUCT_DESC", optional(DescType)),
    ]


class ProductList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PRODUCT", required(Product, max_occurs="unbounded")),
    ]


class NumberInfo(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("SERIAL_NUMBER", required(MsisdnType)),
        ("NUMBER_LEVEL", required(CodeType)),
        ("PRE_FEE", required(NonNegativeFenType)),
    ]


class NumberInfoList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("NUMBER_INFO", required(NumberInfo, max_occurs=MAX_NUMBERS)),
    ]


class Channel(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CHANNEL_ID", required(ChannelIdType)),
        ("CHANNEL_NAME", required(NameType)),
        ("CHANNEL_TYPE", required(CodeType)),
    ]


class ChannelList(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CHANNEL", required(Channel, max_occurs="unbounded")),
    ]


# ----- QueryProducts ------------------------------------------------------------------

class QueryProductsReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("NET_TYPE_CODE", optional(CodeType)),
        ("PRODUCT_TYPE", optional(CodeType)),
    ]


class QueryProductsRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PRODUCTS", optional(ProductList)),
    ]


class QueryProductsResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryProductsRsp)),
    ]


# ----- QueryNumbers -------------------------------------------------------------------

class QueryNumbersReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("EPARCHY_CODE", optional(EparchyCodeType)),
        ("PREFIX", optional(NumberPrefixType)),
        ("MAX_COUNT", optional(MaxCountType)),
    ]


class QueryNumbersRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("NUMBERS", optional(NumberInfoList)),
    ]


class QueryNumbersResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryNumbersRsp)),
    ]


# ----- QueryChannels ------------------------------------------------------------------

class QueryChannelsReq(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("PROVINCE_CODE", required(ProvinceCodeType)),
        ("EPARCHY_CODE", optional(EparchyCodeType)),
    ]


class QueryChannelsRsp(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("CHANNELS", optional(ChannelList)),
    ]


class QueryChannelsResult(ComplexModel):
    __namespace__ = NS
    _type_info = [
        ("UNI_BSS_HEAD", head_ref()),
        ("UNI_BSS_BODY", optional(QueryChannelsRsp)),
    ]


CONTRACT = Contract(
    name=SERVICE,
    namespace=NS,
    wsdl="InfoQuery/InfoQuery.wsdl",
    operations={
        "QueryProducts": Operation("QueryProducts", QueryProductsReq, QueryProductsRsp,
                                   QueryProductsResult),
        "QueryNumbers": Operation("QueryNumbers", QueryNumbersReq, QueryNumbersRsp, QueryNumbersResult),
        "QueryChannels": Operation("QueryChannels", QueryChannelsReq, QueryChannelsRsp,
                                   QueryChannelsResult),
    },
    caller="e-sales platform",
    target="HQ CRM",
)
