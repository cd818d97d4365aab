"""`bssbus soapui-project`: the SoapUI project file holds an interface per WSDL binding of every
service, one request per operation of the contracts, each well-formed and valid against the
service's XSD, the contracts as the bus serves them, and credentials only as placeholders."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from bus.security import load_consumers
from config.settings import load_settings
from services.contracts import ContractFiles
from services.models import CONTRACTS, from_xml
from services.soapui import CON, ENVELOPE, SOAP12_BINDING_NS, XSD_NS, password_property, soapui_project

ROOT = Path(__file__).resolve().parents[2]
NS = {"con": CON}
ENDPOINT = "http://bus.test.example:8080"


@pytest.fixture(scope="module")
def project():
    consumers = load_consumers(load_settings(env={}).section("consumers"), {}, {})
    return etree.fromstring(soapui_project(ENDPOINT, consumers))


@pytest.fixture(scope="module")
def files():
    return ContractFiles()


def interfaces(project):
    return project.findall("con:interface", NS)


def test_the_project_is_a_soapui_project(project):
    assert project.tag == f"{{{CON}}}soapui-project" and project.get("name") == "bssbus"
    assert project.get("soapui-version", "").startswith("5.")
    # the children SoapUI's schema puts in this order: interfaces, then properties, then WS-Security
    order = [etree.QName(c).localname for c in project]
    assert order[:2] == ["description", "settings"] and order[-2:] == ["properties", "wssContainer"]
    assert set(order[2:-2]) == {"interface"}


def test_an_interface_per_binding_of_every_service(project):
    got = {(i.get("name"), i.get("soapVersion")) for i in interfaces(project)}
    want = {(f"{s}Soap11Binding", "1_1") for s in CONTRACTS} | {(f"{s}Soap12Binding", "1_2") for s in CONTRACTS}
    assert got == want
    for iface in interfaces(project):
        service = iface.get("name").rsplit("Soap1", 1)[0]
        assert iface.get(f"{{{'http://www.w3.org/2001/XMLSchema-instance'}}}type") == "con:WsdlInterface"
        assert iface.get("bindingName") == f"{{{CONTRACTS[service].namespace}}}{iface.get('name')}"
        assert iface.get("definition") == f"{ENDPOINT}/ws/{service}?wsdl"
        assert [e.text for e in iface.findall("con:endpoints/con:endpoint", NS)] == [f"{ENDPOINT}/ws/{service}"]


def test_a_request_per_operation_of_the_contracts(project):
    for iface in interfaces(project):
        service = iface.get("name").rsplit("Soap1", 1)[0]
        ops = iface.findall("con:operation", NS)
        assert [o.get("name") for o in ops] == list(CONTRACTS[service].operations)
        for op in ops:
            assert op.get("action") == op.get("name") and op.get("type") == "Request-Response"
            (call,) = op.findall("con:call", NS)
            assert call.findtext("con:endpoint", namespaces=NS) == f"{ENDPOINT}/ws/{service}"
            assert call.findtext("con:encoding", namespaces=NS) == "UTF-8"


def test_every_request_is_the_example_valid_against_the_contract(project, files):
    seen = 0
    for iface in interfaces(project):
        service = iface.get("name").rsplit("Soap1", 1)[0]
        envelope_ns = ENVELOPE[iface.get("soapVersion")]
        for op in iface.findall("con:operation", NS):
            text = op.findtext("con:call/con:request", namespaces=NS)
            envelope = etree.fromstring(text.encode("utf-8"))   # well-formed
            assert envelope.tag == f"{{{envelope_ns}}}Envelope"
            header, body = list(envelope)
            assert header.tag == f"{{{envelope_ns}}}Header" and body.tag == f"{{{envelope_ns}}}Body"
            (wrapper,) = list(body)
            files.schemas[service].assertValid(wrapper)
            operation = op.get("name")
            example = json.loads((ROOT / "wsdl" / "examples" / f"{service}.{operation}.json").read_text("utf-8"))
            assert from_xml(CONTRACTS[service], operation, wrapper) == json.loads(json.dumps(example), parse_int=str)
            seen += 1
    assert seen == 2 * sum(len(c.operations) for c in CONTRACTS.values())


def test_the_contracts_are_embedded_as_the_bus_serves_them(project, files):
    for iface in interfaces(project):
        service = iface.get("name").rsplit("Soap1", 1)[0]
        address = f"{ENDPOINT}/ws/{service}"
        cache = iface.find("con:definitionCache", NS)
        parts = {p.findtext("con:url", namespaces=NS): p for p in cache.findall("con:part", NS)}
        assert cache.get("rootPart") == f"{address}?wsdl" and f"{address}?wsdl" in parts
        wsdl = etree.fromstring(parts[f"{address}?wsdl"].findtext("con:content", namespaces=NS).encode())
        assert wsdl.get("name") == service
        served = etree.fromstring(files.wsdl(service, address))
        assert etree.tostring(wsdl) == etree.tostring(served)
        # every schemaLocation the WSDL and its XSDs name is a part of the cache (SoapUI resolves
        # them there, offline), and each is the schema the bus serves at that URL
        for url, part in parts.items():
            content = etree.fromstring(part.findtext("con:content", namespaces=NS).encode())
            for location in content.xpath("//*[local-name()='import']/@schemaLocation"):
                assert location in parts, (url, location)
            if url != f"{address}?wsdl":
                assert part.findtext("con:type", namespaces=NS) == XSD_NS
                base, name = url.split("?xsd=")
                assert etree.tostring(content) == etree.tostring(etree.fromstring(files.xsd(name, base)))
        soap12 = wsdl.find(f".//{{{SOAP12_BINDING_NS}}}address")
        assert soap12 is not None and soap12.get("location") == address


def test_credentials_are_placeholders_a_tester_fills_in(project):
    properties = {p.findtext("con:name", namespaces=NS): p.findtext("con:value", namespaces=NS)
                  for p in project.findall("con:properties/con:property", NS)}
    consumers = load_consumers(load_settings(env={}).section("consumers"), {}, {})
    assert set(properties) == {password_property(c) for c in consumers}
    assert all(value in (None, "") for value in properties.values()), "never a real secret in the file"
    outgoing = {o.findtext("con:name", namespaces=NS): o for o in project.findall("con:wssContainer/con:outgoing", NS)}
    assert set(outgoing) == set(consumers)
    for cid, config in outgoing.items():
        (entry,) = config.findall("con:entry", NS)
        assert entry.get("type") == "Username" and entry.get("username") == cid
        assert entry.get("password") == f"${{#Project#{password_property(cid)}}}"
        settings = {c.tag: c.text for c in entry.find("con:configuration", NS)}
        assert settings == {"addCreated": "true", "addNonce": "true", "passwordType": "PasswordDigest"}
    # each request logs in as the consumer its example speaks for
    calls = {(i.get("name"), o.get("name")): o.find("con:call", NS)
             for i in interfaces(project) for o in i.findall("con:operation", NS)}
    assert calls[("BankPaymentSoap11Binding", "QueryArrears")].get("outgoingWss") == "ICBC"
    assert calls[("BankPaymentSoap12Binding", "QueryBalance")].get("outgoingWss") == "CCB"
    assert calls[("OrderSyncSoap11Binding", "NotifyOrderStatus")].get("outgoingWss") == "HQCRM"
    assert calls[("ReverseSyncSoap11Binding", "SyncVacChange")].get("outgoingWss") == "VAC"
    assert calls[("BankPaymentSoap11Binding", "ListPayments")].get("outgoingWss") is None   # ORIG_DOMAIN BUS
    assert all(c.get("outgoingWss") in set(consumers) | {None} for c in calls.values())


def test_the_same_contracts_give_the_same_file():
    assert soapui_project(ENDPOINT) == soapui_project(ENDPOINT + "/")


def test_the_command_writes_the_project(tmp_path):
    out = tmp_path / "project.xml"
    run = subprocess.run([sys.executable, "-m", "bus.cli", "soapui-project", "--output", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert str(out) in run.stdout
    root = etree.parse(str(out)).getroot()
    assert root.find("con:interface/con:endpoints/con:endpoint", NS).text == "http://127.0.0.1:8080/ws/BankPayment"
    bad = subprocess.run([sys.executable, "-m", "bus.cli", "soapui-project", "--endpoint", "ftp://x",
                          "--output", str(tmp_path / "no.xml")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--endpoint" in bad.stderr
    assert not (tmp_path / "no.xml").exists()
