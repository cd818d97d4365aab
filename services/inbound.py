"""Reading an inbound SOAP request safely: size, charset, hardened parse, envelope, contract.

Every problem is a :class:`~bus.faults.ClientFault` with a sentence the caller can act on.
The parser loads no DTD, resolves no entity, touches no network and refuses huge trees; a
document that declares a DOCTYPE is refused outright.

SOAP 1.1 and SOAP 1.2 go through the same checks; the **envelope namespace** decides the
version (:func:`soap_version_of`), and the request is answered in that version. The
Content-Type is not held against the caller: a SOAP 1.2 envelope sent as ``text/xml``, or a
SOAP 1.1 envelope sent as ``application/soap+xml``, is read and answered by its envelope.
Only a problem found before the envelope is known (empty body, not XML, a DOCTYPE, too big,
an undecodable charset) is answered in the version the Content-Type suggests
(:func:`soap_version_hint`: ``application/soap+xml`` is SOAP 1.2, anything else SOAP 1.1).
The ``action`` parameter of a SOAP 1.2 Content-Type, like SOAPAction in SOAP 1.1, is optional
and not checked: the Body's element names the operation.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from lxml import etree

from bus.faults import (SOAP11, SOAP11_ENV, SOAP12, SOAP12_ENV, SOAP_ENV, MalformedRequest,
                        UnknownOperation, ValidationFault)
from services.models.common import Contract

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
    """A parsed, valid request: the envelope, the operation's wrapper element, its charset and
    its SOAP version ("1.1" or "1.2")."""

    envelope: etree._Element
    wrapper: etree._Element
    operation: str
    charset: str
    soap_version: str = SOAP11


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


def soap_version_hint(content_type: str | None) -> str:
    """The SOAP version a Content-Type suggests: ``application/soap+xml`` is SOAP 1.2, anything
    else (``text/xml``, none) SOAP 1.1. Used only until the envelope says which it is."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return SOAP12 if media == "application/soap+xml" else SOAP11


def soap_version_of(envelope: etree._Element) -> str:
    """The SOAP version of a parsed envelope, by its namespace; anything else is a Client fault."""
    for version, ns in SOAP_ENV.items():
        if envelope.tag == f"{{{ns}}}Envelope":
            return version
    raise MalformedRequest(f"The root element is {envelope.tag}, not a SOAP Envelope in namespace "
                           f"{SOAP11_ENV} (SOAP 1.1) or {SOAP12_ENV} (SOAP 1.2).")


def soap_body_child(envelope: etree._Element, soap_version: str = SOAP11) -> etree._Element:
    """The single element inside the Body of a ``soap_version`` envelope, or a Client fault
    saying what is wrong. (The legacy billing peer, which speaks SOAP 1.1 only, uses the default.)"""
    ns = SOAP_ENV[soap_version]
    if envelope.tag != f"{{{ns}}}Envelope":
        other = [v for v, other_ns in SOAP_ENV.items() if envelope.tag == f"{{{other_ns}}}Envelope"]
        if other:
            raise MalformedRequest(f"This endpoint takes SOAP {soap_version} envelopes ({ns}); "
                                   f"the request is SOAP {other[0]}.")
        raise MalformedRequest(f"The root element is {envelope.tag}, not a SOAP {soap_version} Envelope "
                               f"in namespace {ns}.")
    bodies = envelope.findall(f"{{{ns}}}Body")
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


def read_request(contract: Contract, schema: etree.XMLSchema, envelope: etree._Element, charset: str,
                 soap_version: str) -> InboundRequest:
    """The checks after the parse (:func:`parse_envelope`, :func:`soap_version_of`), in order:
    envelope and Body, operation, contract XSD, the contract's extra rules. Returns the request
    or raises a Client fault."""
    wrapper = soap_body_child(envelope, soap_version)
    operation = find_operation(contract, wrapper)
    trans_ido = trans_ido_of(wrapper)
    validate(schema, wrapper, trans_ido)
    rule = RULES.get((contract.name, operation))
    problem = rule(wrapper, contract.namespace) if rule else None
    if problem:
        raise ValidationFault(problem, trans_ido)
    return InboundRequest(envelope=envelope, wrapper=wrapper, operation=operation, charset=charset,
                          soap_version=soap_version)
