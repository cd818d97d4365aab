"""One fault taxonomy: a class a fault code, each with the RSP_CODE it carries.

``Client.*`` faults are for what the caller must fix, ``Server.*`` for what the bus or a
peer failed. The faultstring is a sentence a person can act on; the detail carries the
caller's TRANS_IDO and the result code (see wsdl/common/BssFault.xsd).
"""
from __future__ import annotations

from lxml import etree

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_NS = "http://ws.chinaunicom.cn/bssFault"


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
    """Not XML, not a SOAP envelope, a DOCTYPE, an undecodable charset, too big or too deep."""
    code = "Client.MalformedRequest"
    rsp_code = "8001"


class ValidationFault(ClientFault):
    """Well-formed, but not valid against the contract XSD."""
    code = "Client.ValidationError"
    rsp_code = "8002"


class UnknownOperation(ClientFault):
    code = "Client.UnknownOperation"
    rsp_code = "8003"


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


class InternalError(ServerFault):
    code = "Server.InternalError"
    rsp_code = "9999"


def fault_detail(fault: BusFault) -> etree._Element:
    """The ``<detail>`` child: BssFault with TRANS_IDO, RSP_CODE and RSP_DESC."""
    detail = etree.Element("detail")
    bss = etree.SubElement(detail, f"{{{FAULT_NS}}}BssFault", nsmap={"f": FAULT_NS})
    if fault.trans_ido:
        etree.SubElement(bss, f"{{{FAULT_NS}}}TRANS_IDO").text = fault.trans_ido
    etree.SubElement(bss, f"{{{FAULT_NS}}}RSP_CODE").text = fault.rsp_code
    etree.SubElement(bss, f"{{{FAULT_NS}}}RSP_DESC").text = fault.message
    return detail


def fault_envelope(fault: BusFault) -> bytes:
    """A complete SOAP 1.1 fault envelope (UTF-8 bytes), sent with HTTP 500."""
    env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap": SOAP11_ENV})
    body = etree.SubElement(env, f"{{{SOAP11_ENV}}}Body")
    el = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(el, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(el, "faultstring").text = fault.message
    el.append(fault_detail(fault))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")
