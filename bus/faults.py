"""One fault taxonomy: a class a fault code, each with the RSP_CODE it carries.

``Client.*`` faults are for what the caller must fix, ``Server.*`` for what the bus or a
peer failed. The faultstring is a sentence a person can act on; the detail carries the
caller's TRANS_IDO and the result code (see wsdl/common/BssFault.xsd).

:func:`fault_envelope` renders a fault in either SOAP version (:func:`fault_status` gives
the HTTP status that goes with it):

* SOAP 1.1: ``soap:Fault`` with ``faultcode`` ``soap:Client.X`` / ``soap:Server.X``,
  ``faultstring`` and ``detail``; always HTTP 500.
* SOAP 1.2: ``env:Fault`` with ``env:Code/env:Value`` ``env:Sender`` (``Client.*``) or
  ``env:Receiver`` (``Server.*``), the bus's own code as ``env:Subcode/env:Value``
  (``bss:Client.X``, ``bss`` bound to :data:`FAULT_NS`), ``env:Reason/env:Text xml:lang="en"``
  with the same sentence as the 1.1 faultstring, and ``env:Detail``; HTTP 400 for a Sender
  fault and 500 for a Receiver fault (SOAP 1.2 Part 2, HTTP binding).

Both carry the same ``BssFault`` detail element.
"""
from __future__ import annotations

from lxml import etree

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
FAULT_NS = "http://ws.chinaunicom.cn/bssFault"
XML_NS = "http://www.w3.org/XML/1998/namespace"

SOAP11, SOAP12 = "1.1", "1.2"
#: The envelope namespace of each SOAP version the bus speaks.
SOAP_ENV = {SOAP11: SOAP11_ENV, SOAP12: SOAP12_ENV}


class BusFault(Exception):
    """Base of every fault the bus answers with."""

    code = "Server"
    rsp_code = "9999"
    sent: bytes = b""        # what the bus sent to a peer, when a peer call failed
    received: bytes = b""    # what the peer answered, if anything

    def __init__(self, message: str, trans_ido: str | None = None, *, peer: str | None = None):
        super().__init__(message)
        self.message = message
        self.trans_ido = trans_ido
        self.peer = peer

    @property
    def is_client(self) -> bool:
        return self.code.startswith("Client")


class ClientFault(BusFault):
    code = "Client"
    rsp_code = "8000"


class MalformedRequest(ClientFault):
    """Not XML, not a SOAP envelope, a DOCTYPE, an undecodable charset, a compressed body."""
    code = "Client.MalformedRequest"
    rsp_code = "8001"


class ValidationFault(ClientFault):
    """Well-formed, but not valid against the contract XSD."""
    code = "Client.ValidationError"
    rsp_code = "8002"


class UnknownOperation(ClientFault):
    code = "Client.UnknownOperation"
    rsp_code = "8003"


class LimitExceeded(ClientFault):
    """A request over one of the bus's parser limits (``bus.max_*`` in config/bus.yaml): body
    size, nesting depth, element count, attributes per element, text or attribute length. The
    faultstring names the setting and its value."""
    code = "Client.LimitExceeded"
    rsp_code = "8008"


class ActionMismatch(ClientFault):
    """The SOAPAction header (SOAP 1.1) or the Content-Type's ``action`` (SOAP 1.2) names an
    operation other than the one in the Body."""
    code = "Client.ActionMismatch"
    rsp_code = "8009"


class UnknownRoute(ClientFault):
    """No route for this service/operation/caller, or no province for the routing value."""
    code = "Client.UnknownRoute"
    rsp_code = "8004"


class UnknownNumber(ClientFault):
    code = "Client.UnknownNumber"
    rsp_code = "8005"


class UnknownProvince(ClientFault):
    code = "Client.UnknownProvince"
    rsp_code = "8006"


class ServerFault(BusFault):
    code = "Server"
    rsp_code = "9000"


class PeerUnavailable(ServerFault):
    code = "Server.PeerUnavailable"
    rsp_code = "9001"


class PeerTimeout(ServerFault):
    code = "Server.PeerTimeout"
    rsp_code = "9002"


class PeerFault(ServerFault):
    """The peer answered with a SOAP fault or with something that is not a valid answer."""
    code = "Server.PeerFault"
    rsp_code = "9003"


class Busy(ServerFault):
    """Not now: the same key is still being handled, or the caller is over its rate limit;
    the caller may retry in a moment."""
    code = "Server.Busy"
    rsp_code = "9004"


class InternalError(ServerFault):
    code = "Server.InternalError"
    rsp_code = "9999"


def bss_fault(fault: BusFault) -> etree._Element:
    """The ``BssFault`` element (wsdl/common/BssFault.xsd): TRANS_IDO, RSP_CODE and RSP_DESC."""
    bss = etree.Element(f"{{{FAULT_NS}}}BssFault", nsmap={"f": FAULT_NS})
    if fault.trans_ido:
        etree.SubElement(bss, f"{{{FAULT_NS}}}TRANS_IDO").text = fault.trans_ido
    etree.SubElement(bss, f"{{{FAULT_NS}}}RSP_CODE").text = fault.rsp_code
    etree.SubElement(bss, f"{{{FAULT_NS}}}RSP_DESC").text = fault.message
    return bss


def fault_detail(fault: BusFault) -> etree._Element:
    """The SOAP 1.1 ``<detail>`` child: the BssFault element."""
    detail = etree.Element("detail")
    detail.append(bss_fault(fault))
    return detail


def fault_envelope(fault: BusFault, soap_version: str = SOAP11) -> bytes:
    """A complete fault envelope (UTF-8 bytes) in ``soap_version`` ("1.1" or "1.2")."""
    if soap_version == SOAP12:
        return _soap12_fault(fault)
    env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
    body = etree.SubElement(env, f"{{{SOAP11_ENV}}}Body")
    el = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(el, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(el, "faultstring").text = fault.message
    el.append(fault_detail(fault))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def _soap12_fault(fault: BusFault) -> bytes:
    ns = SOAP12_ENV
    # bss is declared on the Envelope so that the Subcode's QName value resolves anywhere below
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"env": ns, "bss": FAULT_NS})
    body = etree.SubElement(env, f"{{{ns}}}Body")
    el = etree.SubElement(body, f"{{{ns}}}Fault")
    code = etree.SubElement(el, f"{{{ns}}}Code")
    etree.SubElement(code, f"{{{ns}}}Value").text = "env:Sender" if fault.is_client else "env:Receiver"
    subcode = etree.SubElement(code, f"{{{ns}}}Subcode")
    etree.SubElement(subcode, f"{{{ns}}}Value").text = f"bss:{fault.code}"
    reason = etree.SubElement(el, f"{{{ns}}}Reason")
    text = etree.SubElement(reason, f"{{{ns}}}Text", {f"{{{XML_NS}}}lang": "en"})
    text.text = fault.message
    etree.SubElement(el, f"{{{ns}}}Detail").append(bss_fault(fault))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


def fault_status(fault: BusFault, soap_version: str = SOAP11) -> str:
    """The HTTP status line of a fault: always 500 in SOAP 1.1; in SOAP 1.2, 400 for a Sender
    (``Client.*``) fault and 500 for a Receiver (``Server.*``) fault."""
    if soap_version == SOAP12 and fault.is_client:
        return "400 Bad Request"
    return "500 Internal Server Error"
