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
The ``action`` parameter of a SOAP 1.2 Content-Type, like SOAPAction in SOAP 1.1, is optional;
the Body's element names the operation, and an action that names another one is refused
(:func:`check_action`).

Every limit (:class:`Limits`: body size, depth, element count, attributes per element, text and
attribute length) is checked while libxml2 parses, so a request over one is refused before it
becomes a whole tree; each is a ``Client.LimitExceeded`` fault naming its ``bus.*`` setting.
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from lxml import etree

from bus.faults import (SOAP11, SOAP11_ENV, SOAP12, SOAP12_ENV, SOAP_ENV, ActionMismatch, LimitExceeded,
                        MalformedRequest, UnknownOperation, ValidationFault)
from config.settings import LIMIT_DEFAULTS
from services.models.common import Contract

HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"

_XML_DECL = re.compile(rb'^\s*<\?xml[^>]*?encoding\s*=\s*["\']([A-Za-z0-9._:-]+)["\']')
_CHARSET = re.compile(r'charset\s*=\s*"?([^";\s]+)"?', re.I)
_UTF8 = {"utf-8", "utf8"}
# Legacy systems label GBK text "GB2312" and GB18030 text "GBK"; GB18030 decodes all of them.
_DECODE_AS = {"gb2312": "gb18030", "gbk": "gb18030"}
# Python codecs that are no character set a SOAP peer sends (escape schemes, UTF-7: a way
# round text filters); bytes-to-bytes codecs (zlib, base64...) are refused as not text encodings.
_NOT_CHARSETS = {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "utf-7", "undefined"}
_DOCTYPE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?[^>]*\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.S)


def _parser(encoding: str | None = None) -> etree.XMLPullParser:
    """The hardened parser. Comments and processing instructions are dropped, so the text around
    them is one text node: ``<AMOUNT>1<!---->00</AMOUNT>`` is 100 for the contract XSD, which
    reads all the text, and must be 100 for spyne too, which reads the first text node only."""
    return etree.XMLPullParser(events=("start", "end", "start-ns"),
                               resolve_entities=False, no_network=True, load_dtd=False,
                               dtd_validation=False, huge_tree=False, remove_pis=True,
                               remove_comments=True, collect_ids=False, encoding=encoding)


@dataclass(frozen=True)
class Limits:
    """The parser limits of one SOAP endpoint (``bus.*`` in config/bus.yaml). Each one exceeded
    is a ``Client.LimitExceeded`` fault naming its setting. The defaults pass every request the
    contracts allow (the longest contract string is 1,024 characters, the longest list 1,000
    cards; gSOAP clients declare 33 namespaces on the Envelope); libxml2 itself stops at 256 levels without ``huge_tree``, so ``max_depth`` above
    that has no effect."""

    max_body_bytes: int = LIMIT_DEFAULTS["max_body_bytes"]        # bytes of the HTTP body
    max_depth: int = LIMIT_DEFAULTS["max_depth"]                  # element nesting
    max_elements: int = LIMIT_DEFAULTS["max_elements"]            # elements in the whole envelope
    max_attributes: int = LIMIT_DEFAULTS["max_attributes"]        # attributes of one element
    max_namespaces: int = LIMIT_DEFAULTS["max_namespaces"]        # namespace declarations on one element
    max_text_chars: int = LIMIT_DEFAULTS["max_text_chars"]        # one text node: an element's text or tail
    max_attribute_chars: int = LIMIT_DEFAULTS["max_attribute_chars"]   # one attribute value, a namespace name
    max_name_chars: int = LIMIT_DEFAULTS["max_name_chars"]        # one element or attribute name


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
        info = codecs.lookup(label)
    except LookupError:
        info = None
    if info is None or info.name in _NOT_CHARSETS or not getattr(info, "_is_text_encoding", True):
        raise MalformedRequest(f"The request's charset {label[:40]!r} is not a known character set; "
                               "send UTF-8 or GBK and say so in the Content-Type charset.") from None
    return info.name


_CHUNK = 1 << 16
_EXCESSIVE_DEPTH = "Excessive depth"


def _name(element) -> str:
    """``<localname>`` of an element for a fault sentence (cut short: the caller chose it)."""
    try:
        name = etree.QName(element).localname
    except ValueError:
        name = str(element.tag)
    return name if len(name) <= 64 else name[:61] + "..."


def _too_long(what: str, element, length: int, limit: int, setting: str) -> LimitExceeded:
    return LimitExceeded(f"{what} element <{_name(element)}> has {length} characters; the limit "
                         f"(bus.{setting}) is {limit}.")


def _parse_limited(data: bytes, parser: etree.XMLPullParser, limits: Limits) -> etree._Element:
    """Parse ``data`` in chunks, counting as libxml2 goes: the first limit exceeded stops the
    parse (the rest of the body is never turned into a tree)."""
    depth = elements = declared = 0
    for start in range(0, len(data), _CHUNK):
        parser.feed(data[start:start + _CHUNK])
        for event, item in parser.read_events():
            if event == "start":
                depth += 1
                elements += 1
                if depth > limits.max_depth:
                    raise LimitExceeded(f"The request nests elements deeper than {limits.max_depth} levels, "
                                        f"the limit (bus.max_depth).")
                if elements > limits.max_elements:
                    raise LimitExceeded(f"The request holds more than {limits.max_elements} elements, the "
                                        "limit (bus.max_elements); send fewer items in one request.")
                local = item.tag.rpartition("}")[2]
                if len(local) > limits.max_name_chars:
                    raise LimitExceeded(f"An element's name has {len(local)} characters; the limit "
                                        f"(bus.max_name_chars) is {limits.max_name_chars}.")
                attrib = item.attrib
                if len(attrib) > limits.max_attributes:
                    raise LimitExceeded(f"Element <{_name(item)}> carries {len(attrib)} attributes; the limit "
                                        f"(bus.max_attributes) is {limits.max_attributes}.")
                declared = 0
                for key, value in attrib.items():
                    if len(value) > limits.max_attribute_chars:
                        raise _too_long("An attribute of", item, len(value), limits.max_attribute_chars,
                                        "max_attribute_chars")
                    if len(key) - key.find("}") - 1 > limits.max_name_chars:
                        raise LimitExceeded(f"An attribute name of element <{_name(item)}> has more than "
                                            f"{limits.max_name_chars} characters, the limit (bus.max_name_chars).")
                previous = item.getprevious()   # its tail is complete now
                if previous is not None and previous.tail and len(previous.tail) > limits.max_text_chars:
                    raise _too_long("The text after", previous, len(previous.tail), limits.max_text_chars,
                                    "max_text_chars")
            elif event == "end":
                depth -= 1
                if item.text and len(item.text) > limits.max_text_chars:
                    raise _too_long("The text of", item, len(item.text), limits.max_text_chars, "max_text_chars")
                if len(item) and item[-1].tail and len(item[-1].tail) > limits.max_text_chars:
                    raise _too_long("The text after", item[-1], len(item[-1].tail), limits.max_text_chars,
                                    "max_text_chars")
            else:   # start-ns: (prefix, namespace name), before the start of its element
                declared += 1
                if declared > limits.max_namespaces:
                    raise LimitExceeded(f"An element declares more than {limits.max_namespaces} namespaces, the "
                                        "limit (bus.max_namespaces).")
                if len(item[0]) > limits.max_name_chars:
                    raise LimitExceeded(f"A namespace prefix has {len(item[0])} characters; the limit "
                                        f"(bus.max_name_chars) is {limits.max_name_chars}.")
                if len(item[1]) > limits.max_attribute_chars:
                    raise LimitExceeded(f"A namespace name has {len(item[1])} characters; the limit "
                                        f"(bus.max_attribute_chars) is {limits.max_attribute_chars}.")
    return parser.close()


def parse_envelope(raw: bytes, content_type: str | None, limits: Limits | None = None
                   ) -> tuple[etree._Element, str]:
    """Decode and parse ``raw`` into a SOAP envelope element under ``limits``; returns
    (envelope, charset)."""
    limits = limits or Limits()
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
        except (LookupError, ValueError):   # a codec Python knows but cannot decode with
            raise MalformedRequest(f"The request's charset {charset!r} cannot be read; send UTF-8 or GBK "
                                   "and say so in the Content-Type charset.") from None
        try:
            data, parser = text.encode("utf-8"), _parser("utf-8")
        except UnicodeEncodeError:   # lone surrogates: no XML text holds them
            raise MalformedRequest(f"The request body decoded as {charset} holds characters that are "
                                   "not allowed in XML.") from None
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
        root = _parse_limited(data, parser, limits)
    except etree.XMLSyntaxError as exc:
        if _EXCESSIVE_DEPTH in (exc.msg or ""):   # libxml2's own cap (256) came before ours
            raise LimitExceeded(f"The request nests elements deeper than {limits.max_depth} levels, "
                                "the limit (bus.max_depth).") from None
        raise MalformedRequest(f"The request is not well-formed XML: {exc.msg}.") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise MalformedRequest("The request declares a DOCTYPE; DTDs and entities are not accepted.")
    return root, charset


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


_ACTION = re.compile(r'(?:^|;)\s*action\s*=\s*"?([^";]*)"?', re.I)


def actions_of(environ: dict) -> list[str]:
    """The actions a request names: its SOAPAction header (SOAP 1.1) and its Content-Type's
    ``action`` parameter (SOAP 1.2), whichever it sends."""
    found = []
    if environ.get("HTTP_SOAPACTION") is not None:
        found.append(environ["HTTP_SOAPACTION"])
    match = _ACTION.search(environ.get("CONTENT_TYPE") or "")
    if match:
        found.append(match.group(1))
    return found


def check_action(actions, operation: str, trans_ido: str | None = None) -> None:
    """An action is optional, but when one is sent it must name the Body's operation: the WSDLs'
    ``soapAction`` is the operation's name (a URI ending in ``/Name``, ``#Name`` or ``:Name`` is
    taken too). A gateway that lets requests through by their SOAPAction must not be fooled into
    passing another operation."""
    for value in actions:
        action = value.strip().strip('"').strip()
        if action and action != operation and re.split(r"[/#:]", action)[-1] != operation:
            shown = action if len(action) <= 80 else action[:77] + "..."
            raise ActionMismatch(f"The action {shown!r} (SOAPAction header or Content-Type action) does not "
                                 f"name the operation in the Body, {operation}; send {operation!r} or no "
                                 "action.", trans_ido)


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
                 soap_version: str, actions=()) -> InboundRequest:
    """The checks after the parse (:func:`parse_envelope`, :func:`soap_version_of`), in order:
    envelope and Body, operation, the action (:func:`check_action`), contract XSD, the
    contract's extra rules. Returns the request or raises a Client fault."""
    wrapper = soap_body_child(envelope, soap_version)
    operation = find_operation(contract, wrapper)
    trans_ido = trans_ido_of(wrapper)
    check_action(actions, operation, trans_ido)
    validate(schema, wrapper, trans_ido)
    rule = RULES.get((contract.name, operation))
    problem = rule(wrapper, contract.namespace) if rule else None
    if problem:
        raise ValidationFault(problem, trans_ido)
    return InboundRequest(envelope=envelope, wrapper=wrapper, operation=operation, charset=charset,
                          soap_version=soap_version)
