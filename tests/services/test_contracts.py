"""The hand-written contracts in wsdl/ and the spyne models that mirror them.

1. Every WSDL/XSD is well formed and follows the contract conventions (document/literal
   wrapped, a SOAP 1.1 binding and port first and a SOAP 1.2 one second, relative
   schemaLocations, wrapper naming, no stray namespaces, no SOAP namespace in an XSD).
2. Every operation has exactly one example in wsdl/examples/, valid against its contract.
3. Drift: the spyne models describe the same elements, occurrences and facets as the XSDs.
4. Round trip: spyne reads the examples, and what spyne writes is valid against the XSDs.
"""
from __future__ import annotations

import io
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from spyne import Application, ServiceBase, rpc
from spyne.model.complex import ComplexModel, ComplexModelBase
from spyne.model.primitive import Long, Unicode
from spyne.protocol.soap import Soap11
from spyne.protocol.xml import XmlDocument
from spyne.server.wsgi import WsgiApplication

from services.models import CONTRACTS, Contract, Operation, from_xml, to_xml
from services.models import (account_sync, bank_payment, bill_query, card_activation, info_query,
                             order_sync, provisioning, reverse_sync, top_up)
from services.models.common import (
    FAULT_NS, HEAD_NS, PROVINCE_CODES, TYPES_NS, WSDL_DIR, BssFault, UniBssHead, body_ns,
    head_ref, required,
)

XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_BIND = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP11_HTTP = "http://schemas.xmlsoap.org/soap/http"
SOAP12_BIND = "http://schemas.xmlsoap.org/wsdl/soap12/"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
#: What every SOAP namespace (1.1 and 1.2 envelopes, encodings, WSDL bindings) contains: a schema
#: names none of them.
SOAP_MARKERS = ("schemas.xmlsoap.org/soap", "schemas.xmlsoap.org/wsdl/soap", "www.w3.org/2003/05/soap")
EXAMPLES = WSDL_DIR / "examples"
UNICOM_PREFIXES = ("130", "131", "132", "145", "155", "156", "166", "175", "176", "185", "186")

CONTRACT_FILES = sorted(WSDL_DIR.rglob("*.wsdl")) + sorted(WSDL_DIR.rglob("*.xsd"))
OPERATIONS = [(c, op) for c in CONTRACTS.values() for op in c.operations.values()]
OP_IDS = ["%s.%s" % (c.name, op.name) for c, op in OPERATIONS]
SERVICE_FILES = [p for c in CONTRACTS.values() for p in (c.wsdl_path, c.xsd_path)]


def _q(tag, ns=XS):
    return "{%s}%s" % (ns, tag)


def _parse(path):
    return etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))


def _resolve_qname(node, value):
    prefix, _, local = value.rpartition(":")
    ns = node.nsmap.get(prefix or None)
    assert ns is not None, "%s: prefix %r of %r is not declared" % (node.base, prefix, value)
    return ns, local


@pytest.fixture(scope="module")
def schemas():
    """Each contract's service XSD, compiled once (compiling concurrently is unsafe)."""
    return {name: etree.XMLSchema(_parse(c.xsd_path)) for name, c in CONTRACTS.items()}


def _example(contract, op):
    with open(EXAMPLES / ("%s.%s.json" % (contract.name, op.name)), encoding="utf-8") as f:
        return json.load(f)


# ======================================================================================
# 1. The contract files
# ======================================================================================

def test_registry_matches_the_wsdl_folder():
    assert list(CONTRACTS) == ["BankPayment", "OrderSync", "CardActivation", "AccountSync",
                               "BillQuery", "Provisioning", "TopUp", "ReverseSync", "InfoQuery"]
    for name, c in CONTRACTS.items():
        assert isinstance(c, Contract)
        assert c.name == name
        assert c.namespace == body_ns(name)
        assert c.wsdl == "%s/%s.wsdl" % (name, name)
        assert c.wsdl_path.is_file() and c.xsd_path.is_file()
        assert c.caller and c.target
        for op_name, op in c.operations.items():
            assert isinstance(op, Operation) and op.name == op_name
            for cls, suffix in ((op.request, "Req"), (op.response, "Rsp"), (op.result, "Result")):
                assert cls.get_type_name() == op_name + suffix
                assert cls.get_namespace() == c.namespace


def test_file_basenames_are_unique():
    names = [p.name for p in CONTRACT_FILES]
    assert len(names) == len(set(names)), "the bus serves imports as ?xsd=<basename>"


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=lambda p: str(p.relative_to(WSDL_DIR)))
def test_file_parses_and_only_a_wsdl_mentions_soap(path):
    """SOAP belongs to the WSDL's bindings; a schema that names a SOAP namespace (say, a stray
    SOAP 1.2 declaration) changes what some generators build (gSOAP picks its protocol from it)."""
    _parse(path)
    if path.suffix == ".xsd":
        text = path.read_text(encoding="utf-8")
        for marker in SOAP_MARKERS:
            assert marker not in text, "%s mentions a SOAP namespace (%s)" % (path, marker)


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=lambda p: str(p.relative_to(WSDL_DIR)))
def test_every_schema_location_is_relative_and_resolves(path):
    for imp in _parse(path).iter(_q("import"), _q("include")):
        loc = imp.get("schemaLocation")
        assert loc, "%s: xs:import of %s has no schemaLocation" % (path, imp.get("namespace"))
        assert "://" not in loc and not loc.startswith("/"), "%s: %s is not relative" % (path, loc)
        target = (path.parent / loc).resolve()
        assert target.is_file(), "%s: %s does not resolve" % (path, loc)
        if imp.get("namespace"):
            assert _parse(target).getroot().get("targetNamespace") == imp.get("namespace")


@pytest.mark.parametrize("path", CONTRACT_FILES, ids=lambda p: str(p.relative_to(WSDL_DIR)))
def test_schemas_compile(path):
    if path.suffix == ".xsd":
        etree.XMLSchema(_parse(path))
        return
    for schema in _parse(path).getroot().iterfind("%s/%s" % (_q("types", WSDL), _q("schema"))):
        for imp in schema.iterfind(_q("import")):
            etree.XMLSchema(_parse(path.parent / imp.get("schemaLocation")))


_QNAME_ATTRS = ("type", "ref", "base", "element", "message", "binding", "itemType")


@pytest.mark.parametrize("path", SERVICE_FILES + [WSDL_DIR / "common" / n for n in
                                                  ("UniBssHead.xsd", "BssTypes.xsd", "BssFault.xsd")],
                         ids=lambda p: p.name)
def test_declares_only_namespaces_it_uses(path):
    root = _parse(path).getroot()
    declared, used = set(), set()
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        parent_map = node.getparent().nsmap if node.getparent() is not None else {}
        declared.update(ns for p, ns in node.nsmap.items() if parent_map.get(p) != ns)
        used.add(etree.QName(node).namespace)
        used.update(etree.QName(a).namespace for a in node.attrib)
        for attr in _QNAME_ATTRS:
            if node.get(attr):
                used.add(_resolve_qname(node, node.get(attr))[0])
    assert declared <= used, "%s declares unused namespaces %s" % (path.name, declared - used)


@pytest.mark.parametrize("contract", CONTRACTS.values(), ids=lambda c: c.name)
def test_wsdl_is_document_literal_wrapped_over_soap11_and_soap12(contract):
    root = _parse(contract.wsdl_path).getroot()
    tns = contract.namespace
    assert root.tag == _q("definitions", WSDL)
    assert root.get("targetNamespace") == tns

    # types: one schema that only imports the service XSD, beside the WSDL
    (schema,) = root.iterfind("%s/%s" % (_q("types", WSDL), _q("schema")))
    (imp,) = list(schema)
    assert imp.tag == _q("import") and imp.get("namespace") == tns
    assert imp.get("schemaLocation") == contract.xsd_path.name

    ops = list(contract.operations)
    messages = {m.get("name"): m for m in root.iterfind(_q("message", WSDL))}
    assert set(messages) == {o + s for o in ops for s in ("Request", "Response")}
    for op in ops:
        for suffix, element in (("Request", op), ("Response", op + "Response")):
            (part,) = messages[op + suffix]
            assert part.get("name") == "parameters"
            assert _resolve_qname(part, part.get("element")) == (tns, element)

    (port_type,) = root.iterfind(_q("portType", WSDL))
    assert port_type.get("name") == contract.name + "PortType"
    pt_ops = port_type.findall(_q("operation", WSDL))
    assert [o.get("name") for o in pt_ops] == ops
    for o in pt_ops:
        doc = o.find(_q("documentation", WSDL))
        assert doc is not None and "->" in doc.text, "%s needs caller -> target documentation" % o.get("name")
        assert _resolve_qname(o, o.find(_q("input", WSDL)).get("message")) == (tns, o.get("name") + "Request")
        assert _resolve_qname(o, o.find(_q("output", WSDL)).get("message")) == (tns, o.get("name") + "Response")

    # exactly two bindings of the one portType: SOAP 1.1 first, then SOAP 1.2, both of every operation
    bindings = root.findall(_q("binding", WSDL))
    assert [b.get("name") for b in bindings] == [contract.name + "Soap11Binding", contract.name + "Soap12Binding"]
    for binding, soap_ns in zip(bindings, (SOAP11_BIND, SOAP12_BIND)):
        assert _resolve_qname(binding, binding.get("type")) == (tns, contract.name + "PortType")
        (soap_binding,) = [c for c in binding if etree.QName(c).localname == "binding"]
        assert soap_binding.tag == _q("binding", soap_ns), "%s: not %s" % (binding.get("name"), soap_ns)
        assert soap_binding.get("style") == "document" and soap_binding.get("transport") == SOAP11_HTTP
        b_ops = binding.findall(_q("operation", WSDL))
        assert [o.get("name") for o in b_ops] == ops, \
            "%s must bind every portType operation, in portType order" % binding.get("name")
        for o in b_ops:
            name = o.get("name")
            (soap_op,) = [c for c in o if etree.QName(c).namespace in (SOAP11_BIND, SOAP12_BIND)]
            assert soap_op.tag == _q("operation", soap_ns)
            assert soap_op.get("soapAction") == name and soap_op.get("style") == "document"
            for direction in ("input", "output"):
                (body,) = list(o.find(_q(direction, WSDL)))
                assert body.tag == _q("body", soap_ns), "%s %s: %s" % (name, direction, body.tag)
                assert body.get("use") == "literal" and not body.get("parts")

    # one service, two ports at the same address: the SOAP 1.1 one first
    (service,) = root.iterfind(_q("service", WSDL))
    assert service.get("name") == contract.name
    ports = service.findall(_q("port", WSDL))
    assert [p.get("name") for p in ports] == [contract.name + "Soap11", contract.name + "Soap12"]
    for port, soap_ns in zip(ports, (SOAP11_BIND, SOAP12_BIND)):
        binding_name = port.get("name") + "Binding"
        assert _resolve_qname(port, port.get("binding")) == (tns, binding_name)
        (address,) = list(port)
        assert address.tag == _q("address", soap_ns)
        assert address.get("location") == "http://localhost:8080/ws/" + contract.name


def _seq(node):
    """The xs:element children of a complexType's sequence, as (name or ref, attributes)."""
    children = [c for c in node if c.tag != _q("annotation")]
    assert len(children) == 1 and children[0].tag == _q("sequence"), "only xs:sequence is used"
    return [e for e in children[0] if e.tag != _q("annotation")]


@pytest.mark.parametrize("contract", CONTRACTS.values(), ids=lambda c: c.name)
def test_wrapper_elements_follow_the_naming_rule(contract):
    root = _parse(contract.xsd_path).getroot()
    tns = contract.namespace
    assert root.get("targetNamespace") == tns and root.get("elementFormDefault") == "qualified"
    locations = {i.get("namespace"): i.get("schemaLocation") for i in root.iterfind(_q("import"))}
    assert locations == {HEAD_NS: "../common/UniBssHead.xsd", TYPES_NS: "../common/BssTypes.xsd"}
    elements = {e.get("name"): e for e in root.iterfind(_q("element"))}
    types = {t.get("name"): t for t in root.iterfind(_q("complexType"))}
    assert set(elements) == {o + s for o in contract.operations for s in ("", "Response")}

    for op in contract.operations:
        head, body = _seq(elements[op].find(_q("complexType")))
        assert _resolve_qname(head, head.get("ref")) == (HEAD_NS, "UNI_BSS_HEAD")
        assert body.get("name") == "UNI_BSS_BODY" and body.get("minOccurs") is None
        assert _resolve_qname(body, body.get("type")) == (tns, op + "Req")

        (result,) = _seq(elements[op + "Response"].find(_q("complexType")))
        assert result.get("name") == op + "Result"
        assert _resolve_qname(result, result.get("type")) == (tns, op + "Result")
        # JAX-WS wsimport fails when the response wrapper repeats the request's child names
        assert result.get("name") not in ("UNI_BSS_HEAD", "UNI_BSS_BODY")

        head, body = _seq(types[op + "Result"])
        assert _resolve_qname(head, head.get("ref")) == (HEAD_NS, "UNI_BSS_HEAD")
        assert body.get("name") == "UNI_BSS_BODY" and body.get("minOccurs") == "0"
        assert _resolve_qname(body, body.get("type")) == (tns, op + "Rsp")
        assert op + "Req" in types and op + "Rsp" in types


@pytest.mark.parametrize("path", SERVICE_FILES[1::2] + [WSDL_DIR / "common" / n for n in
                                                        ("UniBssHead.xsd", "BssTypes.xsd", "BssFault.xsd")],
                         ids=lambda p: p.name)
def test_no_anonymous_types_but_the_wrappers(path):
    root = _parse(path).getroot()
    for node in root.iter(_q("complexType"), _q("simpleType")):
        if node.get("name"):
            assert node.getparent() is root
            continue
        parent = node.getparent()
        assert node.tag == _q("complexType") and parent.tag == _q("element") \
            and parent.getparent() is root, "%s: anonymous type under %s" % (path.name, parent.get("name"))


# ======================================================================================
# 2. Examples
# ======================================================================================

def test_exactly_one_example_per_operation():
    expected = {"%s.%s.json" % (c.name, op.name) for c, op in OPERATIONS}
    present = {p.name for p in EXAMPLES.iterdir()}
    assert present - expected == set(), "examples for no operation"
    assert expected - present == set(), "operations without an example"


def _leaves(data, path=""):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, path + "/" + k)
    elif isinstance(data, list):
        for v in data:
            yield from _leaves(v, path)
    else:
        yield path, data


@pytest.mark.parametrize("contract,op", OPERATIONS, ids=OP_IDS)
def test_example_is_valid_and_realistic(contract, op, schemas):
    data = _example(contract, op)
    assert list(data) == ["UNI_BSS_HEAD", "UNI_BSS_BODY"]
    element = to_xml(contract, op.name, data)
    assert element.tag == "{%s}%s" % (contract.namespace, op.name)
    schema = schemas[contract.name]
    assert schema.validate(element), str(schema.error_log)

    head = data["UNI_BSS_HEAD"]
    assert (head["SERVICE_NAME"], head["OPERATE_NAME"], head["ACTION_CODE"]) == (contract.name, op.name, "0")
    if head["ROUTING"]["ROUTE_TYPE"] == "00":
        assert head["ROUTING"]["ROUTE_VALUE"] in PROVINCE_CODES
    for path, value in _leaves(data):
        if path.endswith(("SERIAL_NUMBER", "ROUTE_VALUE")) and len(str(value)) == 11:
            assert str(value).startswith(UNICOM_PREFIXES), "%s: %s is not a Unicom number" % (path, value)
        if path.endswith("PROVINCE_CODE"):
            assert value in PROVINCE_CODES
        assert not isinstance(value, float), "%s: money is integer fen" % path


def test_the_schema_rejects_what_it_should(schemas):
    c = CONTRACTS["BankPayment"]
    good = _example(c, c.operations["Pay"])
    for path, bad in (("UNI_BSS_BODY/AMOUNT", 0),
                      ("UNI_BSS_BODY/SERIAL_NUMBER", "12603011234"),
                      ("UNI_BSS_HEAD/TRANS_IDO", "X" * 29),
                      ("UNI_BSS_HEAD/ROUTING/ROUTE_TYPE", "02"),
                      ("UNI_BSS_BODY/TRADE_TIME", None)):
        data = json.loads(json.dumps(good))
        *parents, leaf = path.split("/")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = bad
        assert not schemas["BankPayment"].validate(to_xml(c, "Pay", data)), path


@pytest.mark.parametrize("service,operation,field,bad", [
    ("BillQuery", "QueryCallDetails", "PAGE_SIZE", 201),
    ("BillQuery", "QueryCallDetails", "PAGE_NO", 0),
    ("BillQuery", "QueryCallDetails", "DETAIL_TYPE", "4"),
    ("Provisioning", "SubmitWorkOrder", "COMMANDS", {"COMMAND": [{"CMD_CODE": "OPEN_ACCOUNT"}] * 51}),
    ("Provisioning", "SubmitWorkOrder", "COMMANDS", {}),
    ("Provisioning", "ReportWorkOrderResult", "WORK_STATE", "4"),
    ("OrderSync", "NotifyOrderStatus", "ORDER_STATE", "60"),
    ("TopUp", "TopUp", "CARD_NO", "95100000000002"),
    ("ReverseSync", "SyncVacChange", "ACTION", "1"),
    ("InfoQuery", "QueryNumbers", "PREFIX", "12"),
    ("InfoQuery", "QueryNumbers", "PREFIX", "18607551"),
    ("InfoQuery", "QueryNumbers", "MAX_COUNT", 101),
], ids=lambda v: v if isinstance(v, str) else None)
def test_the_new_schemas_reject_what_they_should(schemas, service, operation, field, bad):
    c = CONTRACTS[service]
    data = _example(c, c.operations[operation])
    assert schemas[service].validate(to_xml(c, operation, data))
    data["UNI_BSS_BODY"][field] = bad
    assert not schemas[service].validate(to_xml(c, operation, data)), (field, bad)


def test_to_xml_orders_children_and_refuses_nonsense():
    c = CONTRACTS["BankPayment"]
    data = _example(c, c.operations["Pay"])
    shuffled = {"UNI_BSS_BODY": dict(reversed(list(data["UNI_BSS_BODY"].items()))),
                "UNI_BSS_HEAD": data["UNI_BSS_HEAD"]}
    assert etree.tostring(to_xml(c, "Pay", shuffled)) == etree.tostring(to_xml(c, "Pay", data))
    with pytest.raises(ValueError, match="AMOUNTT"):
        to_xml(c, "Pay", {"UNI_BSS_BODY": {"AMOUNTT": 1}})
    with pytest.raises(TypeError, match="fen"):
        to_xml(c, "Pay", {"UNI_BSS_BODY": {"AMOUNT": 100.5}})
    with pytest.raises(KeyError, match="QueryArrears"):
        to_xml(c, "Charge", data)


def test_an_answer_written_leniently_leaves_out_what_the_contract_has_not():
    """The fast path writes answers from the reply's dicts as spyne does: a key the contract
    does not have is left out (spyne's from_dict drops it), never a failure of the call."""
    c = CONTRACTS["BankPayment"]
    head = {"ORIG_DOMAIN": "UBIL", "SERVICE_NAME": "BankPayment", "OPERATE_NAME": "QueryBalance",
            "ACTION_CODE": "1", "ROUTING": {"ROUTE_TYPE": "00", "ROUTE_VALUE": "51"}, "PROC_ID": "P1",
            "TRANS_IDO": "T1", "PROCESS_TIME": "20261127120000", "INTERNAL_NOTE": "not in the contract",
            "RESPONSE": {"RSP_TYPE": "0", "RSP_CODE": "0000", "RSP_DESC": "ok"}}
    data = {"UNI_BSS_HEAD": head, "UNI_BSS_BODY": None}
    with pytest.raises(ValueError, match="INTERNAL_NOTE"):
        to_xml(c, "QueryBalance", data, response=True)
    written = to_xml(c, "QueryBalance", data, response=True, strict=False)
    assert b"INTERNAL_NOTE" not in etree.tostring(written)
    assert from_xml(c, "QueryBalance", written, response=True)["UNI_BSS_HEAD"]["TRANS_IDO"] == "T1"


@pytest.mark.parametrize("contract,op", OPERATIONS, ids=OP_IDS)
def test_from_xml_inverts_to_xml(contract, op):
    data = _example(contract, op)
    as_text = json.loads(json.dumps(data), parse_int=str)
    assert from_xml(contract, op, to_xml(contract, op, data)) == as_text


# ======================================================================================
# 3. Drift between the XSDs and the spyne models
# ======================================================================================

def _occurs(value):
    if value in ("unbounded", Decimal("inf"), float("inf")):
        return "unbounded"
    return int(value)


def _facets(base, pattern=(), enumeration=(), minLength=None, maxLength=None,
            minInclusive=None, maxInclusive=None, minExclusive=None, maxExclusive=None):
    return {"base": base, "pattern": tuple(pattern), "enumeration": tuple(enumeration),
            "minLength": minLength, "maxLength": maxLength,
            "minInclusive": minInclusive, "maxInclusive": maxInclusive,
            "minExclusive": minExclusive, "maxExclusive": maxExclusive}


def _entry(position, ns, min_occurs, max_occurs, nillable, type_qname, facets):
    """What the drift check compares about one element; ``position`` is its index in the sequence."""
    return {"position": position, "ns": ns, "minOccurs": _occurs(min_occurs),
            "maxOccurs": _occurs(max_occurs), "nillable": bool(nillable), "type": type_qname,
            "facets": facets}


class XsdModel:
    """The global elements and named types of a schema and everything it imports."""

    _FACETS = {"minLength", "maxLength", "minInclusive", "maxInclusive", "minExclusive", "maxExclusive"}

    def __init__(self, path):
        self.elements, self.complex, self.simple = {}, {}, {}
        self._loaded = set()
        self._load(Path(path).resolve())

    def _load(self, path):
        if path in self._loaded:
            return
        self._loaded.add(path)
        root = _parse(path).getroot()
        tns = root.get("targetNamespace")
        qualified = root.get("elementFormDefault") == "qualified"
        for node in root:
            if node.tag in (_q("import"), _q("include")):
                self._load((path.parent / node.get("schemaLocation")).resolve())
            elif node.tag == _q("element"):
                self.elements[(tns, node.get("name"))] = (node, tns, qualified)
            elif node.tag == _q("complexType"):
                self.complex[(tns, node.get("name"))] = (node, tns, qualified)
            elif node.tag == _q("simpleType"):
                self.simple[(tns, node.get("name"))] = (node, tns, qualified)

    def simple_facets(self, node):
        (restriction,) = [c for c in node if c.tag != _q("annotation")]
        assert restriction.tag == _q("restriction"), "only xs:restriction simple types are modelled"
        base = _resolve_qname(restriction, restriction.get("base"))
        if base[0] == XS:
            facets = _facets(base[1])
        else:
            facets = self.simple_facets(self.simple[base][0])
        patterns, values = [], []
        for f in restriction:
            name = etree.QName(f).localname
            if name == "annotation":
                continue
            if name == "pattern":
                patterns.append(f.get("value"))
            elif name == "enumeration":
                values.append(f.get("value"))
            elif name in self._FACETS:
                facets[name] = int(f.get("value"))
            else:
                raise AssertionError("facet %s has no spyne counterpart in this walker" % name)
        if patterns:
            facets["pattern"] = facets["pattern"] + tuple(patterns)
        if values:
            facets["enumeration"] = tuple(values)
        return facets

    def walk(self, ns, name):
        """Flat map path -> entry for the global element {ns}name and all it contains."""
        node, tns, qualified = self.elements[(ns, name)]
        out = {}
        type_qname = _resolve_qname(node, node.get("type")) if node.get("type") else None
        out[name] = _entry(0, tns, 1, 1, node.get("nillable") == "true", type_qname, None)
        self._content(node, type_qname, name, out)
        return out

    def _content(self, node, type_qname, path, out):
        if type_qname is None:
            inline = node.find(_q("complexType"))
            assert inline is not None, "%s: element without a type" % path
            self._complex(inline, path, out)
        elif type_qname in self.complex:
            self._complex(self.complex[type_qname][0], path, out)
        elif type_qname in self.simple:
            out[path]["facets"] = self.simple_facets(self.simple[type_qname][0])
        else:
            assert type_qname[0] == XS, "%s: unknown type %s" % (path, type_qname)
            out[path]["facets"] = _facets(type_qname[1])

    def _complex(self, node, path, out):
        assert node.find(_q("attribute")) is None, "%s: attributes are not used" % path
        schema_root = node.getroottree().getroot()
        tns = schema_root.get("targetNamespace")
        qualified = schema_root.get("elementFormDefault") == "qualified"
        for position, child in enumerate(_seq(node)):
            assert child.tag == _q("element"), "%s: only xs:element inside xs:sequence" % path
            min_occurs = child.get("minOccurs", "1")
            max_occurs = child.get("maxOccurs", "1")
            if child.get("ref"):
                ref = _resolve_qname(child, child.get("ref"))
                target, target_ns, _ = self.elements[ref]
                name, ns = target.get("name"), target_ns
                nillable = target.get("nillable") == "true"
                type_node = target
            else:
                name = child.get("name")
                form = child.get("form") or ("qualified" if qualified else "unqualified")
                ns = tns if form == "qualified" else ""
                nillable = child.get("nillable") == "true"
                type_node = child
            type_qname = _resolve_qname(type_node, type_node.get("type")) if type_node.get("type") else None
            sub = "%s/%s" % (path, name)
            assert sub not in out, "%s appears twice" % sub
            out[sub] = _entry(position, ns, min_occurs, max_occurs, nillable, type_qname, None)
            self._content(type_node, type_qname, sub, out)


def _is_complex(cls):
    return issubclass(cls, ComplexModelBase)


def _declared_type(cls):
    """(namespace, name) of the named type a spyne field class is a customization of."""
    if _is_complex(cls):
        orig = getattr(cls, "__orig__", None) or cls
        return orig.get_namespace(), orig.get_type_name()
    while not cls.Attributes._explicit_type_name and getattr(cls, "__extends__", None) is not None:
        cls = cls.__extends__
    return cls.get_namespace(), cls.get_type_name()


def _bound(value, infinite):
    return None if value is None or value == infinite else int(value)


def _spyne_facets(cls):
    root = cls
    while getattr(root, "__extends__", None) is not None:
        root = root.__extends__
    a = cls.Attributes
    facets = _facets(root.get_type_name(),
                     pattern=(a.pattern,) if a.pattern else (),
                     enumeration=tuple(a.values) if a.values else ())
    if issubclass(cls, Unicode):
        facets["minLength"] = a.min_len or None
        facets["maxLength"] = _bound(a.max_len, Decimal("inf"))
    elif issubclass(cls, Long):
        facets["minInclusive"] = _bound(a.ge, Decimal("-inf"))
        facets["maxInclusive"] = _bound(a.le, Decimal("inf"))
        facets["minExclusive"] = _bound(a.gt, Decimal("-inf"))
        facets["maxExclusive"] = _bound(a.lt, Decimal("inf"))
    else:
        raise AssertionError("%r: only Unicode and Long simple types are used" % cls)
    return facets


def spyne_map(cls, name, ns, type_qname=None):
    """Flat map path -> entry for the spyne class ``cls`` serialized as element {ns}name."""
    out = {name: _entry(0, ns, 1, 1, False, type_qname, None)}
    _spyne_walk(cls, name, out)
    return out


def _spyne_walk(cls, path, out):
    for position, (key, member) in enumerate(cls._type_info.items()):
        a = member.Attributes
        sub = "%s/%s" % (path, a.sub_name or key)
        complex_ = _is_complex(member)
        out[sub] = _entry(position, a.sub_ns or cls.get_namespace(), a.min_occurs, a.max_occurs, a.nillable,
                          _declared_type(member), None if complex_ else _spyne_facets(member))
        if complex_:
            _spyne_walk(member, sub, out)


def _diff(left, right):
    lines = []
    for path in sorted(set(left) | set(right)):
        lv, rv = left.get(path), right.get(path)
        if lv != rv:
            if lv is None or rv is None:
                lines.append("%s: only in %s" % (path, "XSD" if rv is None else "spyne"))
            else:
                changed = {k: (lv[k], rv[k]) for k in lv if lv[k] != rv[k] and k != "facets"}
                if lv["facets"] != rv["facets"]:
                    if lv["facets"] is None or rv["facets"] is None:
                        changed["facets"] = (lv["facets"], rv["facets"])
                    else:
                        changed.update({"facets." + k: (v, rv["facets"][k])
                                        for k, v in lv["facets"].items() if v != rv["facets"][k]})
                lines.append("%s: XSD vs spyne %r" % (path, changed))
    return lines


@pytest.fixture(scope="module")
def xsd_models():
    return {name: XsdModel(c.xsd_path) for name, c in CONTRACTS.items()}


def _wrapper_maps(contract, op, xsd, request_wrapper=None, response_wrapper=None):
    ns = contract.namespace
    return [
        (xsd.walk(ns, op.name),
         spyne_map(request_wrapper or op.request_wrapper, op.name, ns)),
        (xsd.walk(ns, op.name + "Response"),
         spyne_map(response_wrapper or op.response_wrapper, op.name + "Response", ns)),
    ]


@pytest.mark.parametrize("contract,op", OPERATIONS, ids=OP_IDS)
def test_spyne_models_match_the_xsd(contract, op, xsd_models):
    for xsd_side, spyne_side in _wrapper_maps(contract, op, xsd_models[contract.name]):
        assert len(xsd_side) > 15
        assert _diff(xsd_side, spyne_side) == []
        assert xsd_side == spyne_side


def test_fault_detail_model_matches_the_xsd():
    xsd = XsdModel(WSDL_DIR / "common" / "BssFault.xsd")
    assert _diff(xsd.walk(FAULT_NS, "BssFault"),
                 spyne_map(BssFault, "BssFault", FAULT_NS, (FAULT_NS, "BssFault"))) == []


def _rebuild(cls, parts, change):
    """A copy of ComplexModel ``cls`` whose member at ``parts`` is ``change(member)``
    (``change`` returning None drops the member)."""
    members = []
    for key, member in cls._type_info.items():
        if key == parts[0]:
            if len(parts) == 1:
                member = change(member)
            else:
                a = member.Attributes
                member = _rebuild(member, parts[1:], change).customize(
                    min_occurs=a.min_occurs, max_occurs=a.max_occurs, nillable=a.nillable, sub_ns=a.sub_ns)
        if member is not None:
            members.append((key, member))
    return type(cls.get_type_name(), (ComplexModel,),
                {"__namespace__": cls.get_namespace(), "_type_info": members})


_DRIFTS = {
    "optional instead of required": ("UNI_BSS_BODY/AMOUNT", lambda m: m.customize(min_occurs=0),
                                     "minOccurs"),
    "nillable": ("UNI_BSS_BODY/TRADE_TIME", lambda m: m.customize(nillable=True), "nillable"),
    "other pattern": ("UNI_BSS_BODY/SERIAL_NUMBER",
                      lambda m: required(Unicode(pattern="1[0-9]{10}", type_name="MsisdnType",
                                                 __namespace__=TYPES_NS)), "facets.pattern"),
    "other enumeration": ("UNI_BSS_HEAD/ACTION_CODE",
                          lambda m: required(Unicode(values=["0", "1", "2"], type_name="ActionCodeType",
                                                     __namespace__=HEAD_NS)), "facets.enumeration"),
    "other max length": ("UNI_BSS_BODY/BANK_SERIAL",
                         lambda m: required(Unicode(min_len=1, max_len=64, type_name="SerialType",
                                                    __namespace__=TYPES_NS)), "facets.maxLength"),
    "other lower bound": ("UNI_BSS_BODY/AMOUNT",
                          lambda m: required(Long(ge=0, le=999999999999, type_name="PositiveFenType",
                                                  __namespace__=TYPES_NS)), "facets.minInclusive"),
    "other type name": ("UNI_BSS_BODY/BANK_CODE",
                        lambda m: required(Unicode(pattern="[0-9A-Z]{2,10}", type_name="BankCode",
                                                   __namespace__=TYPES_NS)), "type"),
    "header without sub_ns": ("UNI_BSS_HEAD", lambda m: UniBssHead.customize(min_occurs=1, nillable=False),
                              "ns"),
    "repeated": ("UNI_BSS_BODY/BANK_SERIAL", lambda m: m.customize(max_occurs=2), "maxOccurs"),
    "missing field": ("UNI_BSS_BODY/TRADE_TIME", lambda m: None, "only in XSD"),
    "header field missing": ("UNI_BSS_HEAD/ROUTING/ROUTE_VALUE", lambda m: None, "only in XSD"),
}


@pytest.mark.parametrize("drift", list(_DRIFTS))
def test_drift_check_catches(drift, xsd_models):
    """The drift check is not vacuous: a model changed in any way the map covers differs."""
    path, change, expected = _DRIFTS[drift]
    contract = CONTRACTS["BankPayment"]
    op = contract.operations["Pay"]
    drifted = _rebuild(op.request_wrapper, path.split("/"), change)
    (xsd_side, spyne_side), _ = _wrapper_maps(contract, op, xsd_models[contract.name], request_wrapper=drifted)
    diff = _diff(xsd_side, spyne_side)
    assert diff, "the drift %r went unnoticed" % drift
    assert any(line.startswith("Pay/" + path) and expected in line for line in diff), diff


def test_drift_check_catches_a_reordered_sequence(xsd_models):
    contract = CONTRACTS["BankPayment"]
    op = contract.operations["Pay"]
    members = list(op.request._type_info.items())
    members[0], members[1] = members[1], members[0]
    swapped = type("PayReq", (ComplexModel,), {"__namespace__": contract.namespace, "_type_info": members})
    drifted = _rebuild(op.request_wrapper, ["UNI_BSS_BODY"], lambda m: required(swapped))
    (xsd_side, spyne_side), _ = _wrapper_maps(contract, op, xsd_models[contract.name], request_wrapper=drifted)
    assert _diff(xsd_side, spyne_side) == [
        "Pay/UNI_BSS_BODY/BANK_CODE: XSD vs spyne {'position': (0, 1)}",
        "Pay/UNI_BSS_BODY/BANK_SERIAL: XSD vs spyne {'position': (1, 0)}",
    ]


def test_drift_check_catches_an_xsd_change(tmp_path):
    copy = tmp_path / "wsdl"
    shutil.copytree(WSDL_DIR, copy, ignore=shutil.ignore_patterns("examples", "peers"))
    xsd_path = copy / "BankPayment" / "BankPayment.xsd"
    text = xsd_path.read_text(encoding="utf-8")
    changed = text.replace('<xs:element name="ORIG_BANK_SERIAL" type="bss:SerialType">',
                           '<xs:element name="ORIG_BANK_SERIAL" type="bss:SerialType" minOccurs="0">', 1)
    assert changed != text
    xsd_path.write_text(changed, encoding="utf-8")
    contract = CONTRACTS["BankPayment"]
    op = contract.operations["Reverse"]
    (xsd_side, spyne_side), _ = _wrapper_maps(contract, op, XsdModel(xsd_path))
    assert _diff(xsd_side, spyne_side) == [
        "Reverse/UNI_BSS_BODY/ORIG_BANK_SERIAL: XSD vs spyne {'minOccurs': (0, 1)}"]


# ======================================================================================
# 4. Round trip through spyne
# ======================================================================================

def _assert_same(obj, data, path):
    """Every value of the JSON example arrived in the spyne object, with its type."""
    for key, value in data.items():
        got = getattr(obj, key)
        here = "%s/%s" % (path, key)
        if isinstance(value, dict):
            _assert_same(got, value, here)
        elif isinstance(value, list):
            assert len(got) == len(value), here
            for g, v in zip(got, value):
                if isinstance(v, dict):
                    _assert_same(g, v, here)
                else:
                    assert g == v, here
        else:
            assert got == value and type(got) is type(value), "%s: %r != %r" % (here, got, value)


@pytest.mark.parametrize("contract,op", OPERATIONS, ids=OP_IDS)
def test_spyne_reads_the_example(contract, op):
    data = _example(contract, op)
    element = to_xml(contract, op.name, data)
    obj = XmlDocument(validator="soft").from_element(None, op.request_wrapper, element)
    _assert_same(obj, data, op.name)
    # and a few spot checks by name
    assert obj.UNI_BSS_HEAD.TRANS_IDO == data["UNI_BSS_HEAD"]["TRANS_IDO"]
    assert obj.UNI_BSS_HEAD.ROUTING.ROUTE_TYPE in ("00", "01")
    assert isinstance(obj.UNI_BSS_BODY, op.request)


def test_spot_check_values():
    bp = CONTRACTS["BankPayment"]
    pay = XmlDocument().from_element(None, bp.operations["Pay"].request_wrapper,
                                     to_xml(bp, "Pay", _example(bp, bp.operations["Pay"])))
    assert pay.UNI_BSS_BODY.AMOUNT == 10000 and pay.UNI_BSS_BODY.SERIAL_NUMBER == "18603011234"
    cards = CONTRACTS["CardActivation"]
    act = XmlDocument().from_element(None, cards.operations["ActivateCards"].request_wrapper,
                                     to_xml(cards, "ActivateCards",
                                            _example(cards, cards.operations["ActivateCards"])))
    assert act.UNI_BSS_BODY.CARDS.CARD_NO == ["510240315000121", "510240315000122", "510240315000123"]
    assert act.UNI_BSS_BODY.CARD_RANGE is None
    acc = CONTRACTS["AccountSync"]
    sync = XmlDocument().from_element(None, acc.operations["SyncThreeAccount"].request_wrapper,
                                      to_xml(acc, "SyncThreeAccount",
                                             _example(acc, acc.operations["SyncThreeAccount"])))
    assert sync.UNI_BSS_BODY.SYNC_SEQ == 1024
    assert sync.UNI_BSS_BODY.CUSTOMER.CUST_NAME == "王建国"
    assert [s.INST_TYPE for s in sync.UNI_BSS_BODY.SUBSCRIPTIONS.SUBSCRIPTION] == ["P", "S", "D"]
    prov = CONTRACTS["Provisioning"]
    work = XmlDocument().from_element(None, prov.operations["SubmitWorkOrder"].request_wrapper,
                                      to_xml(prov, "SubmitWorkOrder",
                                             _example(prov, prov.operations["SubmitWorkOrder"])))
    assert [c.CMD_CODE for c in work.UNI_BSS_BODY.COMMANDS.COMMAND] == ["OPEN_ACCOUNT", "OPEN_3G_DATA",
                                                                        "OPEN_VOICEMAIL"]
    assert work.UNI_BSS_BODY.COMMANDS.COMMAND[2].CMD_PARAM is None
    bills = CONTRACTS["BillQuery"]
    details = XmlDocument().from_element(None, bills.operations["QueryCallDetails"].request_wrapper,
                                         to_xml(bills, "QueryCallDetails",
                                                _example(bills, bills.operations["QueryCallDetails"])))
    assert (details.UNI_BSS_BODY.DETAIL_TYPE, details.UNI_BSS_BODY.PAGE_NO, details.UNI_BSS_BODY.PAGE_SIZE) == \
        ("1", 1, 20)


_OK = {"RSP_TYPE": "0", "RSP_CODE": "0000", "RSP_DESC": "成功"}

#: A realistic UNI_BSS_BODY answer for every operation (responses have no example files).
RESPONSE_BODIES = {
    ("BankPayment", "QueryArrears"): {
        "SERIAL_NUMBER": "18603011234", "CUST_NAME": "张*明", "USER_STATE": "01",
        "ARREARS_FEE": 15830, "BALANCE": -15830,
        "BILL_ITEMS": {"BILL_ITEM": [
            {"BILL_CYCLE": "202402", "ITEM_NAME": "月租费", "FEE": 5800},
            {"BILL_CYCLE": "202402", "ITEM_NAME": "国内通话费", "FEE": 10030}]}},
    ("BankPayment", "QueryBalance"): {
        "SERIAL_NUMBER": "18610012345", "USER_STATE": "00", "BALANCE": 4250, "ARREARS_FEE": 0},
    ("BankPayment", "Pay"): {
        "BANK_SERIAL": "ICBC202403151031050007", "BILL_SERIAL": "5124031510310500001",
        "SERIAL_NUMBER": "18603011234", "AMOUNT": 10000, "BALANCE": -5830, "ACCT_DATE": "20240315"},
    ("BankPayment", "Reverse"): {
        "BANK_SERIAL": "ICBC202403151145220019", "ORIG_BANK_SERIAL": "ICBC202403151031050007",
        "SERIAL_NUMBER": "18603011234", "AMOUNT": 10000, "BALANCE": -15830},
    ("BankPayment", "QueryPayment"): {
        "BANK_SERIAL": "ICBC202403151031050007", "TXN_TYPE": "0", "SERIAL_NUMBER": "18603011234",
        "AMOUNT": 10000, "BALANCE": -5830, "BILL_SERIAL": "BI000000000001", "ACCT_DATE": "20240315",
        "TXN_STATE": "0"},
    ("BankPayment", "ListPayments"): {
        "BANK_CODE": "ICBC", "ACCT_DATE": "20240315", "MORE": "1", "LAST_SERIAL": "ICBC202403151031050009",
        "TXNS": {"TXN": ["ICBC202403151031050007|20240315103105|18603011234|10000|0||1",
                         "ICBC202403151031050009|20240315104512|18603011234|10000|1|ICBC202403151031050007|0"]}},
    ("OrderSync", "SyncOrder"): {
        "ORDER_ID": "ES2024031500001234", "PROVINCE_ORDER_ID": "3124031500778899", "ORDER_STATE": "10"},
    ("OrderSync", "QueryOrderStatus"): {
        "ORDER_ID": "ES2024031500001234", "PROVINCE_ORDER_ID": "3124031500778899", "ORDER_STATE": "30",
        "STATE_DESC": "竣工", "UPDATE_TIME": "20240315161502"},
    ("CardActivation", "ActivateCards"): {"RESULTS": {"CARD_RESULT": [
        {"CARD_NO": "510240315000121", "RESULT": "0"},
        {"CARD_NO": "510240315000122", "RESULT": "1", "RESULT_DESC": "卡已激活"},
        {"CARD_NO": "510240315000123", "RESULT": "2", "RESULT_DESC": "卡号不存在"}]}},
    ("CardActivation", "QueryCardStatus"): {
        "CARD_NO": "510240315000123", "CARD_STATE": "1", "FACE_VALUE": 5000, "PROVINCE_CODE": "51",
        "EXPIRE_DATE": "20251231"},
    ("OrderSync", "NotifyOrderStatus"): {"ORDER_ID": "ES2024031500001234"},
    ("AccountSync", "SyncThreeAccount"): {
        "USER_ID": "1724031500067890", "SYNC_SEQ": 1024, "APPLIED": "0",
        "RECIPIENTS": {"RECIPIENT": [
            {"PEER": "BILLING-17", "RSP_CODE": "0000", "RSP_DESC": "applied"},
            {"PEER": "HQ-CRM", "RSP_CODE": "9002", "RSP_DESC": "HQ-CRM did not answer within 10 s"}]}},
    ("BillQuery", "QueryBill"): {
        "SERIAL_NUMBER": "18603011234", "BILL_CYCLE": "202402", "CUST_NAME": "**明", "TOTAL_FEE": 15830,
        "PAID_FEE": 0, "UNPAID_FEE": 15830,
        "BILL_ITEMS": {"BILL_ITEM": [
            {"ITEM_CODE": "1001", "ITEM_NAME": "月租费", "FEE": 9600},
            {"ITEM_CODE": "2001", "ITEM_NAME": "国内通话费", "FEE": 7230},
            {"ITEM_CODE": "9001", "ITEM_NAME": "套餐优惠", "FEE": -1000}]}},
    ("BillQuery", "QueryCallDetails"): {
        "SERIAL_NUMBER": "18610012345", "BILL_CYCLE": "202402", "TOTAL_COUNT": 57,
        "CALL_DETAILS": {"CALL_DETAIL": [
            {"START_TIME": "20240201083015", "OTHER_PARTY": "13901012345", "DURATION": 185, "CALL_TYPE": "MO",
             "FEE": 60},
            {"START_TIME": "20240201120744", "OTHER_PARTY": "01065881234", "DURATION": 42, "CALL_TYPE": "MT",
             "FEE": 0}]}},
    ("BillQuery", "QueryBalance"): {
        "SERIAL_NUMBER": "15605318866", "USER_STATE": "00", "BALANCE": 3620, "ARREARS_FEE": 0},
    ("Provisioning", "SubmitWorkOrder"): {"TRADE_ID": "9924031514062000311", "WORK_STATE": "0"},
    ("Provisioning", "ReportWorkOrderResult"): {
        "TRADE_ID": "9924031514062000311", "ORDER_ID": "ES2024031500001234", "ORDER_STATE": "30"},
    ("TopUp", "TopUp"): {
        "TOPUP_SERIAL": "YKC202403151200300001", "SERIAL_NUMBER": "18603011234", "CARD_NO": "951000000000022",
        "AMOUNT": 5000, "BALANCE": -5000, "BILL_SERIAL": "TU000000000001", "ACCT_DATE": "20240315"},
    ("TopUp", "QueryTopUp"): {
        "TOPUP_SERIAL": "YKC202403151200300001", "SERIAL_NUMBER": "18603011234", "CARD_NO": "951000000000022",
        "AMOUNT": 5000, "TOPUP_STATE": "0", "TRADE_TIME": "20240315120030", "BALANCE": -5000,
        "BILL_SERIAL": "TU000000000001", "ACCT_DATE": "20240315"},
    ("TopUp", "QueryBalance"): {
        "SERIAL_NUMBER": "18610012345", "USER_STATE": "00", "BALANCE": 4250, "ARREARS_FEE": 0},
    ("ReverseSync", "SyncVacChange"): {
        "SERIAL_NUMBER": "15605318866", "VAC_SEQ": "1724031509300000123", "IS_3G": "1", "SYNCED": "1"},
    ("InfoQuery", "QueryProducts"): {"PRODUCTS": {"PRODUCT": [
        {"PRODUCT_ID": "99002401", "PRODUCT_NAME": "沃3G 96元基本套餐", "PRODUCT_TYPE": "A", "NET_TYPE_CODE": "50",
         "MONTHLY_FEE": 9600, "PRODUCT_DESC": "国内通话240分钟，国内流量300MB"},
        {"PRODUCT_ID": "99002402", "PRODUCT_NAME": "沃3G 126元基本套餐", "PRODUCT_TYPE": "A",
         "NET_TYPE_CODE": "50", "MONTHLY_FEE": 12600}]}},
    ("InfoQuery", "QueryNumbers"): {"NUMBERS": {"NUMBER_INFO": [
        {"SERIAL_NUMBER": "18607558888", "NUMBER_LEVEL": "1", "PRE_FEE": 50000},
        {"SERIAL_NUMBER": "18607551233", "NUMBER_LEVEL": "2", "PRE_FEE": 10000},
        {"SERIAL_NUMBER": "18607551274", "NUMBER_LEVEL": "3", "PRE_FEE": 0}]}},
    ("InfoQuery", "QueryChannels"): {"CHANNELS": {"CHANNEL": [
        {"CHANNEL_ID": "51010001", "CHANNEL_NAME": "深圳福田自有营业厅", "CHANNEL_TYPE": "01"},
        {"CHANNEL_ID": "51030001", "CHANNEL_NAME": "广东联通网上营业厅", "CHANNEL_TYPE": "03"}]}},
}


def test_every_operation_has_a_response_sample():
    assert set(RESPONSE_BODIES) == {(c.name, op.name) for c, op in OPERATIONS}


def _answer(contract, op, rsp_body, response=_OK, sender="HQ-BILLING"):
    head = dict(_example(contract, op)["UNI_BSS_HEAD"], ACTION_CODE="1", TRANS_IDH="H" + "2024031510310501",
                MSG_SENDER=sender, RESPONSE=response)
    data = {"UNI_BSS_HEAD": head}
    if rsp_body is not None:
        data["UNI_BSS_BODY"] = rsp_body
    return data


def _post(wsgi, envelope: bytes, action: str):
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "text/xml; charset=utf-8",
               "CONTENT_LENGTH": str(len(envelope)), "wsgi.input": io.BytesIO(envelope),
               "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "HTTP_SOAPACTION": '"%s"' % action}
    status = []
    body = b"".join(wsgi(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def _spyne_app(contract, answers):
    """A minimal spyne application serving ``contract`` whose methods answer from ``answers``."""
    def method_for(op):
        def method(ctx, UNI_BSS_HEAD, UNI_BSS_BODY):  # noqa: N803 - the contract's element names
            assert isinstance(UNI_BSS_BODY, op.request)
            return answers[op.name]
        method.__name__ = op.name
        return rpc(head_ref(), required(op.request), _returns=op.result, _body_style="wrapped",
                   _operation_name=op.name, _in_message_name=op.name,
                   _out_message_name=op.name + "Response", _out_variable_name=op.name + "Result")(method)

    service = type(contract.name + "TestEndpoint", (ServiceBase,),
                   {op.name: method_for(op) for op in contract.operations.values()})
    app = Application([service], tns=contract.namespace, name=contract.name,
                      in_protocol=Soap11(validator="soft"), out_protocol=Soap11())
    return WsgiApplication(app)


def _envelope(element):
    env = etree.Element(_q("Envelope", SOAP_ENV), nsmap={"soapenv": SOAP_ENV})
    etree.SubElement(env, _q("Body", SOAP_ENV)).append(element)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("contract", CONTRACTS.values(), ids=lambda c: c.name)
def test_spyne_serves_the_contract(contract, schemas):
    """A whole SOAP 1.1 exchange through spyne: the request is read into the models, and the
    answer spyne writes from the models is valid against the contract and says what was meant."""
    schema = schemas[contract.name]
    expected, answers = {}, {}
    for op in contract.operations.values():
        data = _answer(contract, op, RESPONSE_BODIES[(contract.name, op.name)])
        element = to_xml(contract, op, data, response=True)
        assert schema.validate(element), str(schema.error_log)
        expected[op.name] = from_xml(contract, op, element, response=True)
        answers[op.name] = XmlDocument(validator="soft").from_element(None, op.result, element[0])
    wsgi = _spyne_app(contract, answers)
    for op in contract.operations.values():
        status, raw = _post(wsgi, _envelope(to_xml(contract, op, _example(contract, op))), op.name)
        assert status.startswith("200"), raw
        (answer,) = etree.fromstring(raw).find(_q("Body", SOAP_ENV))
        assert answer.tag == "{%s}%sResponse" % (contract.namespace, op.name)
        assert schema.validate(answer), str(schema.error_log)
        assert from_xml(contract, op, answer, response=True) == expected[op.name]
        head = answer[0][0]
        assert head.tag == "{%s}UNI_BSS_HEAD" % HEAD_NS, "the header must be in the header namespace"


def test_spyne_writes_a_business_error_without_body(schemas):
    contract = CONTRACTS["BankPayment"]
    op = contract.operations["Pay"]
    error = {"RSP_TYPE": "1", "RSP_CODE": "1544", "RSP_DESC": "号码已销户，不能缴费"}
    element = to_xml(contract, op, _answer(contract, op, None, response=error, sender="BILLING-51"),
                     response=True)
    assert schemas["BankPayment"].validate(element), str(schemas["BankPayment"].error_log)
    result = XmlDocument().from_element(None, op.result, element[0])
    assert result.UNI_BSS_BODY is None and result.UNI_BSS_HEAD.RESPONSE.RSP_CODE == "1544"
    status, raw = _post(_spyne_app(contract, {name: result for name in contract.operations}),
                        _envelope(to_xml(contract, op, _example(contract, op))), "Pay")
    (answer,) = etree.fromstring(raw).find(_q("Body", SOAP_ENV))
    assert schemas["BankPayment"].validate(answer), str(schemas["BankPayment"].error_log)
    assert answer.find(".//{%s}UNI_BSS_BODY" % contract.namespace) is None
    assert from_xml(contract, op, answer, response=True)["UNI_BSS_HEAD"]["RESPONSE"] == error


def test_a_query_top_up_answer_without_what_top_up_answered_stays_valid(schemas):
    """BALANCE, BILL_SERIAL and ACCT_DATE came to QueryTopUp later, as optional elements: the
    answer of a billing that does not send them is still valid, and so is one with them."""
    contract = CONTRACTS["TopUp"]
    op = contract.operations["QueryTopUp"]
    full = RESPONSE_BODIES[("TopUp", "QueryTopUp")]
    older = {k: v for k, v in full.items() if k not in ("BALANCE", "BILL_SERIAL", "ACCT_DATE")}
    for body in (full, older):
        element = to_xml(contract, op, _answer(contract, op, body, sender="BILLING-51"), response=True)
        assert schemas["TopUp"].validate(element), str(schemas["TopUp"].error_log)
        assert set(from_xml(contract, op, element, response=True)["UNI_BSS_BODY"]) == set(body)


def _store_and_forward_operations() -> set[tuple[str, str]]:
    """(service, operation) of every route of config/bus.yaml that the bus stores and forwards
    for a caller (not the bus's own reconciliation corrections: nobody gets their answer)."""
    from bus.router import Route
    from bus.security import RECONCILIATION_DOMAIN
    from config.settings import load_settings
    out = set()
    for route in (Route.from_config(r) for r in load_settings(env={}).routes):
        if route.delivery == "store-and-forward" and route.caller != RECONCILIATION_DOMAIN:
            out |= {(route.service, op) for op in (route.operations or CONTRACTS[route.service].operations)}
    return out


ONE_WAY = sorted(_store_and_forward_operations())


def test_the_one_way_operations_are_the_ones_the_route_table_stores_and_forwards():
    assert ONE_WAY == sorted([
        ("AccountSync", "SyncThreeAccount"), ("CardActivation", "ActivateCards"), ("OrderSync", "NotifyOrderStatus"),
        ("OrderSync", "SyncOrder"), ("Provisioning", "ReportWorkOrderResult"), ("Provisioning", "SubmitWorkOrder"),
        ("ReverseSync", "SyncVacChange")])


def _result_documentation(contract, operation) -> str:
    found = _parse(contract.xsd_path).getroot().xpath(
        "xs:complexType[@name=$name]/xs:annotation/xs:documentation/text()", name=operation + "Result",
        namespaces={"xs": XS})
    assert found, "%s.%s: the Result type has no documentation" % (contract.name, operation)
    return found[0]


@pytest.mark.parametrize("contract, op", OPERATIONS, ids=OP_IDS)
def test_the_result_documentation_says_when_the_body_is_absent(contract, op):
    """A one-way operation's Result says the bus's 'accepted' answer has no UNI_BSS_BODY; no
    other operation's does (the documentation follows the route table)."""
    text = _result_documentation(contract, op.name)
    one_way = (contract.name, op.name) in ONE_WAY
    assert ("'accepted' answer" in text) == one_way, text
    if one_way:
        assert "UNI_BSS_BODY is present when RSP_CODE is 0000" in text and "no UNI_BSS_BODY" in text, text


@pytest.mark.parametrize("service, operation", ONE_WAY, ids=["%s.%s" % k for k in ONE_WAY])
def test_the_accepted_answer_fits_the_contract_without_a_body(schemas, service, operation):
    """What the bus answers when it accepted a one-way message (bus/outbox.py): RSP_CODE 0000,
    MSG_SENDER BUS, no UNI_BSS_BODY; valid against the contract, and spyne writes it so."""
    contract = CONTRACTS[service]
    op = contract.operations[operation]
    accepted = {"RSP_TYPE": "0", "RSP_CODE": "0000", "RSP_DESC": "Accepted: the bus delivers it to CRM-51."}
    element = to_xml(contract, op, _answer(contract, op, None, response=accepted, sender="BUS"), response=True)
    assert schemas[service].validate(element), str(schemas[service].error_log)
    result = XmlDocument().from_element(None, op.result, element[0])
    assert result.UNI_BSS_BODY is None and result.UNI_BSS_HEAD.MSG_SENDER == "BUS"
    status, raw = _post(_spyne_app(contract, {name: result for name in contract.operations}),
                        _envelope(to_xml(contract, op, _example(contract, op))), operation)
    (answer,) = etree.fromstring(raw).find(_q("Body", SOAP_ENV))
    assert schemas[service].validate(answer), str(schemas[service].error_log)
    assert answer.find(".//{%s}UNI_BSS_BODY" % contract.namespace) is None
    assert from_xml(contract, op, answer, response=True)["UNI_BSS_HEAD"]["RESPONSE"] == accepted


def test_modules_export_their_contracts():
    modules = (bank_payment, order_sync, card_activation, account_sync, bill_query, provisioning, top_up,
               reverse_sync, info_query)
    assert [m.CONTRACT for m in modules] == list(CONTRACTS.values())
    for m in modules:
        assert m.SERVICE == m.CONTRACT.name and m.NS == m.CONTRACT.namespace
        missing = [name for name in m.__all__ if not hasattr(m, name)]
        assert not missing, "%s.__all__ names %s, which it does not define" % (m.__name__, missing)


def test_order_state_is_one_shared_type():
    """OrderSync and Provisioning answer ORDER_STATE with the same bss:OrderStateType."""
    assert order_sync.OrderStateType is provisioning.OrderStateType
    assert order_sync.OrderStateType.get_namespace() == TYPES_NS
    assert list(order_sync.ORDER_STATES) == list(order_sync.OrderStateType.Attributes.values)
    for contract, rsp in ((CONTRACTS["OrderSync"], "QueryOrderStatusRsp"),
                          (CONTRACTS["Provisioning"], "ReportWorkOrderResultRsp")):
        xsd = XsdModel(contract.xsd_path)
        (state,) = [e for e in _seq(xsd.complex[(contract.namespace, rsp)][0]) if e.get("name") == "ORDER_STATE"]
        assert _resolve_qname(state, state.get("type")) == (TYPES_NS, "OrderStateType")
