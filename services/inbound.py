"""Reading an inbound SOAP request safely: size, charset, hardened parse, envelope, contract.

Every problem is a :class:`~bus.faults.ClientFault` with a sentence the caller can act on.
The parser loads no DTD, resolves no entity, touches no network and refuses huge trees; a
document that declares a DOCTYPE is refused outright.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from lxml import etree

from bus.faults import MalformedRequest, UnknownOperation, ValidationFault
from services.models.common import Contract

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"

_XML_DECL = re.compile(rb'^\s*<\?xml[^>]*?encoding\s*=\s*["\']([A-Za-z0-9._:-]+)["\']')
_CHARSET = re.compile(r'charset\s*=\s*"?([^";\s]+)"?', re.I)
_UTF8 = {"utf-8", "utf8"}
# Legacy systems label GBK text "GB2312" and GB18030 text "GBK"; GB18030 decodes all of them.
_DECODE_AS = {"gb2312": "gb18030", "gbk": "gb18030"}
_DOCTYPE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.S)


def _parser(encoding: str | None = None) -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_pis=True,
                           collect_ids=False, encoding=encoding)


@dataclass
class InboundRequest:
    """A parsed, valid request: the envelope, the operation's wrapper element and its charset."""

    envelope: etree._Element
    wrapper: etree._Element
    operation: str
    charset: str


def charset_of(content_type: str | None, raw: bytes) -> str:
    """The request's charset: the HTTP label first, then the XML declaration, else UTF-8."""
    label = None
    if content_type:
        match = _CHARSET.search(content_type)
        if match:
            label = match.group(1)
    if not label:
        match = _XML_DECL.match(raw)
        if match:
            label = match.group(1).decode("ascii")
    if not label:
        return "utf-8"
    try:
        return codecs.lookup(label).name
    except LookupError:
        raise MalformedRequest(f"The request's charset {label!r} is not a known character set; "
                               "send UTF-8 or GBK and say so in the Content-Type charset.") from None


def parse_envelope(raw: bytes, content_type: str | None, max_depth: int) -> tuple[etree._Element, str]:
    """Decode and parse ``raw`` into a SOAP envelope element; returns (envelope, charset)."""
    if not raw.strip():
        raise MalformedRequest("The request body is empty; POST a SOAP envelope.")
    charset = charset_of(content_type, raw)
    data, parser = raw, _parser()
    if charset.replace("_", "-") not in _UTF8:
        try:
            text = raw.decode(_DECODE_AS.get(charset, charset))
        except UnicodeDecodeError as exc:
            raise MalformedRequest(f"The request body is not valid {charset}: byte {exc.start} "
                                   f"({raw[exc.start:exc.start + 1]!r}) cannot be decoded.") from None
        data, parser = text.encode("utf-8"), _parser("utf-8")
    elif b"\xef\xbb\xbf" != raw[:3]:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedRequest(f"The request body is not valid UTF-8: byte {exc.start} "
                                   f"({raw[exc.start:exc.start + 1]!r}) cannot be decoded; "
                                   "declare the charset you send.") from None
    if _DOCTYPE.match(data):  # refused before libxml2 sees it: no DTD is loaded, not even tried
        raise MalformedRequest("The request declares a DOCTYPE; DTDs and entities are not accepted.")
    try:
        tree = etree.ElementTree(etree.fromstring(data, parser))
    except etree.XMLSyntaxError as exc:
        raise MalformedRequest(f"The request is not well-formed XML: {exc.msg}.") from None
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise MalformedRequest("The request declares a DOCTYPE; DTDs and entities are not accepted.")
    root = tree.getroot()
    if _depth(root) > max_depth:
        raise MalformedRequest(f"The request nests elements deeper than {max_depth} levels.")
    return root, charset


def _depth(element: etree._Element) -> int:
    deepest, stack = 0, [(element, 1)]
    while stack:
        el, depth = stack.pop()
        if depth > deepest:
            deepest = depth
        stack.extend((child, depth + 1) for child in el)
    return deepest


def soap_body_child(envelope: etree._Element) -> etree._Element:
    """The single element inside soap:Body, or a Client fault saying what is wrong."""
    if envelope.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise MalformedRequest("This endpoint takes SOAP 1.1 envelopes "
                               f"({SOAP11_ENV}); the request is SOAP 1.2.")
    if envelope.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise MalformedRequest(f"The root element is {envelope.tag}, not a SOAP 1.1 Envelope "
                               f"in namespace {SOAP11_ENV}.")
    bodies = envelope.findall(f"{{{SOAP11_ENV}}}Body")
    if len(bodies) != 1:
        raise MalformedRequest("The SOAP envelope must hold exactly one Body.")
    children = [c for c in bodies[0] if isinstance(c.tag, str)]
    if len(children) != 1:
        raise MalformedRequest(f"The SOAP Body must hold exactly one operation element; it holds {len(children)}.")
    return children[0]


def find_operation(contract: Contract, wrapper: etree._Element) -> str:
    qname = etree.QName(wrapper)
    if qname.namespace != contract.namespace:
        raise UnknownOperation(
            f"{qname.localname} is in namespace {qname.namespace!r}; {contract.name} operations "
            f"are in {contract.namespace!r}.")
    if qname.localname not in contract.operations:
        ops = ", ".join(contract.operations)
        raise UnknownOperation(f"{contract.name} has no operation {qname.localname!r}; it offers {ops}.")
    return qname.localname


def validate(schema: etree.XMLSchema, wrapper: etree._Element, trans_ido: str | None) -> None:
    """Validate the operation element against the contract XSD; the first error is the fault."""
    if schema.validate(wrapper):
        return
    error = schema.error_log.filter_from_errors()[0] if schema.error_log.filter_from_errors() else schema.error_log[0]
    message = re.sub(r"\{[^}]*\}", "", error.message)
    where = (error.path or "").replace("/*[local-name()='", "/").replace("']", "")
    raise ValidationFault(f"The request does not match the contract: {message}"
                          + (f" (at {where})" if where else ""), trans_ido)


def _one_of_cards(wrapper: etree._Element, ns: str) -> str | None:
    cards = wrapper.find(f"{{{ns}}}UNI_BSS_BODY/{{{ns}}}CARDS") is not None
    card_range = wrapper.find(f"{{{ns}}}UNI_BSS_BODY/{{{ns}}}CARD_RANGE") is not None
    if cards == card_range:
        return ("ActivateCards needs exactly one of CARDS and CARD_RANGE; the request has "
                + ("both." if cards else "neither."))
    return None


# Rules of a contract that its XSD cannot express (documented in the XSD's annotations).
RULES = {("CardActivation", "ActivateCards"): _one_of_cards}


def trans_ido_of(wrapper: etree._Element) -> str | None:
    value = wrapper.findtext(f"{{{HEAD_NS}}}UNI_BSS_HEAD/{{{HEAD_NS}}}TRANS_IDO")
    return value.strip() if value else None


def read_request(contract: Contract, schema: etree.XMLSchema, raw: bytes, content_type: str | None,
                 max_depth: int) -> InboundRequest:
    """The whole inbound check, in order; returns the parsed request or raises a Client fault."""
    envelope, charset = parse_envelope(raw, content_type, max_depth)
    wrapper = soap_body_child(envelope)
    operation = find_operation(contract, wrapper)
    trans_ido = trans_ido_of(wrapper)
    validate(schema, wrapper, trans_ido)
    rule = RULES.get((contract.name, operation))
    problem = rule(wrapper, contract.namespace) if rule else None
    if problem:
        raise ValidationFault(problem, trans_ido)
    return InboundRequest(envelope=envelope, wrapper=wrapper, operation=operation, charset=charset)
