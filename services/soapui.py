"""A SoapUI 5 project of every service the bus exposes, for integration testers.

``bssbus soapui-project`` writes it (:func:`soapui_project`): the usual SoapUI project format
(``con:soapui-project``, namespace ``http://eviware.com/soapui/config``) holding

- one ``con:interface`` (a ``WsdlInterface``) per WSDL binding: ``<Service>Soap11Binding``
  and ``<Service>Soap12Binding``, each with its contract embedded in ``con:definitionCache``
  (the WSDL and every XSD it imports, as the bus serves them from ``<endpoint>/ws/<Service>``),
  so the project opens without the bus running and stays what the bus validates against;
- per operation one ``con:call`` filled from ``wsdl/examples/<Service>.<Operation>.json``,
  posted to ``<endpoint>/ws/<Service>`` with the binding's SOAPAction;
- the credentials as SoapUI's own WS-Security configuration: one outgoing configuration per
  consumer (``con:wssContainer``/``con:outgoing``, named after the consumer id: a UsernameToken
  with PasswordDigest, Nonce and Created), whose password is the project property
  ``<ID>_PASSWORD``, empty in the file: the tester fills it in. A request uses
  (``outgoingWss``) the consumer its example speaks for (its ORIG_DOMAIN, a bank's BANK_CODE),
  as the sandbox's systems and ``bssbus call`` log in (:func:`bus.security.speaks_for`). An
  example no consumer speaks for (``BankPayment.ListPayments``, the bus's own reconciliation
  query) goes without credentials.

Ids are derived from the names, so the same contracts and endpoint give the same file.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from bus.security import speaks_for
from services.contracts import ContractFiles, SOAP11_BINDING_NS, WSDL_NS
from services.models import CONTRACTS
from services.models.common import WSDL_DIR, to_xml

CON = "http://eviware.com/soapui/config"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SOAP12_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
ENVELOPE = {"1_1": "http://schemas.xmlsoap.org/soap/envelope/", "1_2": "http://www.w3.org/2003/05/soap-envelope"}
SOAPUI_VERSION = "5.7.0"
PROJECT_NAME = "bssbus"
_IDS = uuid.UUID("6f1c9a52-4d3e-4b8a-9c1e-5b2f7d0a8e31")   # namespace of the project's stable ids


@dataclass(frozen=True)
class Binding:
    """One WSDL binding of a service: its name, SOAP version ("1_1" / "1_2") and SOAPActions."""

    name: str
    soap_version: str
    actions: dict[str, str]   # operation -> soapAction


def password_property(consumer_id: str) -> str:
    """The project property holding ``consumer_id``'s password."""
    return re.sub(r"\W", "_", consumer_id).upper() + "_PASSWORD"


def bindings(contract) -> list[Binding]:
    """The SOAP bindings of a contract's WSDL, in file order."""
    tree = etree.parse(str(contract.wsdl_path))
    out = []
    for binding in tree.getroot().iterfind(f"{{{WSDL_NS}}}binding"):
        for ns, version in ((SOAP11_BINDING_NS, "1_1"), (SOAP12_BINDING_NS, "1_2")):
            if binding.find(f"{{{ns}}}binding") is not None:
                actions = {op.get("name"): op.find(f"{{{ns}}}operation").get("soapAction", "")
                           for op in binding.iterfind(f"{{{WSDL_NS}}}operation")}
                out.append(Binding(binding.get("name"), version, actions))
    return out


def example(service: str, operation: str) -> dict:
    return json.loads((WSDL_DIR / "examples" / f"{service}.{operation}.json").read_text(encoding="utf-8"))


def request_envelope(service: str, operation: str, data: dict, soap_version: str = "1_1") -> str:
    """The SOAP envelope of ``data`` (an example's head and body), as SoapUI shows a request:
    indented, an empty Header for SoapUI's WS-Security to fill, no XML declaration."""
    env = ENVELOPE[soap_version]
    root = etree.Element(f"{{{env}}}Envelope", nsmap={"soapenv": env})
    etree.SubElement(root, f"{{{env}}}Header")
    etree.SubElement(root, f"{{{env}}}Body").append(to_xml(CONTRACTS[service], operation, data))
    etree.indent(root, space="   ")
    return etree.tostring(root, encoding="unicode")


def definition_cache(files: ContractFiles, service: str, address: str) -> etree._Element:
    """``con:definitionCache`` of a service: its WSDL and XSDs as served from ``address``."""
    wsdl_url = f"{address}?wsdl"
    cache = etree.Element(f"{{{CON}}}definitionCache", type="TEXT", rootPart=wsdl_url)
    wsdl_name = Path(CONTRACTS[service].wsdl).name
    for name in files.imports(wsdl_name):
        if name == wsdl_name:
            url, content, kind = wsdl_url, files.wsdl(service, address), WSDL_NS
        else:
            url = files.location(name, address)
            content, kind = files.xsd(name, url.split("?", 1)[0]), XSD_NS
        part = etree.SubElement(cache, f"{{{CON}}}part")
        etree.SubElement(part, f"{{{CON}}}url").text = url
        text = re.sub(r"^<\?xml[^>]*\?>\s*", "", content.decode("utf-8"))
        etree.SubElement(part, f"{{{CON}}}content").text = etree.CDATA(text)
        etree.SubElement(part, f"{{{CON}}}type").text = kind
    return cache


def _id(*names: str) -> str:
    return str(uuid.uuid5(_IDS, "/".join(names)))


def _sub(parent, tag: str, text: str | None = None, **attrs) -> etree._Element:
    el = etree.SubElement(parent, f"{{{CON}}}{tag}", {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def soapui_project(endpoint: str, consumers: dict | None = None) -> bytes:
    """The SoapUI project (UTF-8 bytes) calling the bus at ``endpoint`` (its base URL, e.g.
    ``http://127.0.0.1:8080``). ``consumers``: :class:`bus.security.Consumer` by id (config
    ``consumers:``); each gets an outgoing WS-Security configuration and a password property."""
    endpoint = endpoint.rstrip("/")
    consumers = consumers or {}
    files = ContractFiles()
    nsmap = {"con": CON}
    project = etree.Element(f"{{{CON}}}soapui-project", {
        "id": _id(PROJECT_NAME), "activeEnvironment": "Default", "name": PROJECT_NAME, "resourceRoot": "",
        "soapui-version": SOAPUI_VERSION, "abortOnError": "false", "runType": "SEQUENTIAL"}, nsmap=nsmap)
    _sub(project, "description", f"Every service of the bus at {endpoint}: one request per operation from "
         "wsdl/examples/. Fill in the project properties <ID>_PASSWORD of the consumers you call as "
         "(empty is fine while the bus runs with security.authentication off, as `make serve` does).")
    _sub(project, "settings")
    used: set[str] = set()
    for service, contract in CONTRACTS.items():
        address = f"{endpoint}/ws/{service}"
        for binding in bindings(contract):
            iface = _sub(project, "interface", None, id=_id(service, binding.name), wsaVersion="NONE",
                         name=binding.name, type="wsdl", bindingName=f"{{{contract.namespace}}}{binding.name}",
                         soapVersion=binding.soap_version, anonymous="optional", definition=f"{address}?wsdl")
            iface.set(f"{{{XSI}}}type", "con:WsdlInterface")
            _sub(iface, "settings")
            iface.append(definition_cache(files, service, address))
            _sub(_sub(iface, "endpoints"), "endpoint", address)
            for operation in contract.operations:
                action = binding.actions[operation]
                op = _sub(iface, "operation", None, id=_id(service, binding.name, operation), isOneWay="false",
                          action=action, name=operation, bindingOperationName=operation,
                          type="Request-Response", inputName="", receivesAttachments="false",
                          sendsAttachments="false", anonymous="optional")
                _sub(op, "settings")
                data = example(service, operation)
                consumer = next((c for c in consumers.values() if speaks_for(c, data)), None)
                call = _sub(op, "call", None, id=_id(service, binding.name, operation, "example"),
                            name=f"{operation} example", outgoingWss=consumer.id if consumer else None)
                head = data["UNI_BSS_HEAD"]
                who = (f"as consumer {consumer.id} (WS-Security {consumer.id}, property "
                       f"{password_property(consumer.id)})" if consumer else
                       "without credentials: no consumer speaks as this ORIG_DOMAIN, so only a bus with "
                       "security.authentication off or optional answers it")
                _sub(call, "description", f"wsdl/examples/{service}.{operation}.json: ORIG_DOMAIN "
                     f"{head.get('ORIG_DOMAIN')}, TRANS_IDO {head.get('TRANS_IDO')}; sent {who}.")
                _sub(call, "settings")
                _sub(call, "encoding", "UTF-8")
                _sub(call, "endpoint", address)
                _sub(call, "request").text = etree.CDATA(
                    request_envelope(service, operation, data, binding.soap_version))
                _sub(_sub(call, "credentials"), "authType", "No Authorization")
                _sub(call, "wsaConfig", None, mustUnderstand="NONE", version="200508", action=action)
                if consumer:
                    used.add(consumer.id)
    properties = _sub(project, "properties")
    wss = etree.Element(f"{{{CON}}}wssContainer")
    for cid in sorted(used):
        prop = _sub(properties, "property")
        _sub(prop, "name", password_property(cid))
        _sub(prop, "value", "")
        outgoing = _sub(wss, "outgoing", None, mustUnderstand="true")
        _sub(outgoing, "name", cid)
        entry = _sub(outgoing, "entry", None, type="Username", username=cid,
                     password=f"${{#Project#{password_property(cid)}}}")
        config = _sub(entry, "configuration")
        for tag, value in (("addCreated", "true"), ("addNonce", "true"), ("passwordType", "PasswordDigest")):
            etree.SubElement(config, tag).text = value
    project.append(wss)
    return etree.tostring(project, xml_declaration=True, encoding="UTF-8", pretty_print=True)
