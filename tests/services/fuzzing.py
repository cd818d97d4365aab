"""Mutated SOAP requests and the rule every answer to them must keep; shared by the hypothesis
test (tests/services/test_fuzz_inbound.py) and the atheris harness (bench/fuzz_inbound.py).

A request starts as one of wsdl/examples/ (any operation, SOAP 1.1 or 1.2, UTF-8 or GBK), then
takes a few mutations of its tree (an element duplicated, removed, renamed, moved to another
namespace; a huge, odd or SQL-looking value; attributes; deep nesting) and of its bytes (flips,
truncation, inserted garbage, a DOCTYPE, a wrong declaration), with a Content-Type, SOAPAction
and path that may be wrong too. :func:`check_answer` is the rule: parseable XML, a SOAP fault in
the request's version with a status to match, or a 200 valid against the contract; never a
traceback, never an HTML page, never Server.InternalError (a bug in the bus).
"""
from __future__ import annotations

import copy
import io
import json
import uuid
from dataclasses import dataclass, field

from lxml import etree

from services.models import CONTRACTS, to_xml
from services.models.common import WSDL_DIR

SOAP_ENV = {"1.1": "http://schemas.xmlsoap.org/soap/envelope/", "1.2": "http://www.w3.org/2003/05/soap-envelope"}
MEDIA = {"1.1": "text/xml", "1.2": "application/soap+xml"}
EXAMPLES = []
for _path in sorted((WSDL_DIR / "examples").glob("*.json")):
    _service, _operation = _path.stem.split(".")
    EXAMPLES.append((_service, _operation, json.loads(_path.read_text("utf-8"))))

ODD_VALUES = ["", " ", "x" * 20_000, "中" * 6_000, "' OR 1=1 --", "; DROP TABLE journal;", "<>&\"'",
              "\u202e\u200b", "99999999999999999999999", "-1", "1e309", "NaN", "13000000000", "00", "欧阳娜娜",
              "\U0001f4a9", "%s%s%n", "../../etc/passwd", "${jndi:ldap://127.0.0.1:1/x}"]
GARBAGE = [b"\x00", b"\xff\xfe", b"\x81\x20", b"<", b"&", b"]]>", b"<!--", b"<?pi x?>", b"&lol;", b"\xc0\xaf",
           b"<![CDATA[x]]>", b"\r\n", b"\xe4\xb8"]
PROLOGS = [b'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
           b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
           b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">']
CHARSET_LABELS = [None, "utf-8", "gbk", "GB2312", "gb18030", "latin-1", "utf-16", "utf-7", "klingon", "zlib"]


@dataclass
class FuzzRequest:
    service: str          # the contract the example came from (answers are validated against it)
    operation: str
    version: str          # the SOAP version of the envelope it started as
    path: str
    content_type: str
    body: bytes
    headers: dict = field(default_factory=dict)

    def environ(self) -> dict:
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": self.path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "CONTENT_TYPE": self.content_type, "CONTENT_LENGTH": str(len(self.body)),
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.input": io.BytesIO(self.body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
               "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
               "wsgi.run_once": False}
        for key, value in self.headers.items():
            env["HTTP_" + key.upper().replace("-", "_")] = value
        return env


class Chooser:
    """Where the random choices come from: hypothesis's ``data.draw`` or atheris's
    FuzzedDataProvider, behind the same three questions."""

    def integer(self, low: int, high: int) -> int:
        raise NotImplementedError

    def pick(self, items):
        return items[self.integer(0, len(items) - 1)]

    def text(self) -> str:
        return self.pick(ODD_VALUES)


def _fresh(args: dict) -> dict:
    args = copy.deepcopy(args)
    head = args["UNI_BSS_HEAD"]
    head["TRANS_IDO"] = "F" + uuid.uuid4().hex[:26]
    head["PROC_ID"] = "F" + uuid.uuid4().hex[:26]
    return args


def _envelope(service: str, operation: str, args: dict, version: str) -> etree._Element:
    ns = SOAP_ENV[version]
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soapenv": ns})
    etree.SubElement(env, f"{{{ns}}}Body").append(to_xml(CONTRACTS[service], operation, args))
    return env


def _elements(tree: etree._Element) -> list:
    return [el for el in tree.iter() if isinstance(el.tag, str) and el.getparent() is not None]


def _safe_text(text: str) -> str:
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20 and not 0xD800 <= ord(ch) <= 0xDFFF
                   and ch not in "\ufffe\uffff")


def _mutate_tree(c: Chooser, tree: etree._Element) -> None:
    elements = _elements(tree)
    if not elements:
        return
    el = c.pick(elements)
    kind = c.integer(0, 9)
    parent = el.getparent()
    if kind == 0:                                   # duplicate
        parent.insert(parent.index(el), copy.deepcopy(el))
    elif kind == 1:                                 # remove
        parent.remove(el)
    elif kind == 2:                                 # an odd value (replacing any children)
        for child in list(el):
            el.remove(child)
        el.text = _safe_text(c.text())
    elif kind == 3:                                 # another namespace
        el.tag = f"{{{c.pick(['urn:wrong', SOAP_ENV['1.1'], SOAP_ENV['1.2'], ''])}}}{etree.QName(el).localname}"
    elif kind == 4:                                 # another name
        el.tag = etree.QName(etree.QName(el).namespace, c.pick(["X", "Body", "Envelope", "UNI_BSS_HEAD", "a" * 300]))
    elif kind == 5:                                 # attributes
        for i in range(c.integer(1, 40)):
            el.set(f"a{i}", _safe_text(c.text())[:5000])
    elif kind == 6:                                 # nesting
        inner = el
        for _ in range(c.integer(1, 300)):
            inner = etree.SubElement(inner, "n")
    elif kind == 7:                                 # moved elsewhere
        target = c.pick(elements)
        if el is not target and el not in target.iterancestors() and target not in el.iter():
            target.append(el)
    elif kind == 8:                                 # many siblings
        for _ in range(c.integer(1, 3_000)):
            parent.append(etree.Element(el.tag))
    else:                                           # a comment or xsi:nil
        if c.integer(0, 1):
            el.addprevious(etree.Comment(_safe_text(c.text()).replace("-", "_")))
        else:
            el.set("{http://www.w3.org/2001/XMLSchema-instance}nil", "true")


def _mutate_bytes(c: Chooser, data: bytes) -> bytes:
    if not data:
        return c.pick(GARBAGE)
    kind = c.integer(0, 5)
    at = c.integer(0, len(data) - 1)
    if kind == 0:                                   # flip a byte
        return data[:at] + bytes([c.integer(0, 255)]) + data[at + 1:]
    if kind == 1:                                   # truncate
        return data[:at]
    if kind == 2:                                   # insert garbage
        return data[:at] + c.pick(GARBAGE) + data[at:]
    if kind == 3:                                   # a DOCTYPE after the declaration
        end = data.find(b"?>") + 2 if data.startswith(b"<?xml") else 0
        return data[:end] + c.pick(PROLOGS) + data[end:]
    if kind == 4:                                   # another declared encoding
        label = c.pick(CHARSET_LABELS[1:]).encode()
        return b'<?xml version="1.0" encoding="' + label + b'"?>' + data[data.find(b"?>") + 2:] \
            if data.startswith(b"<?xml") else data
    return data[:at] + data[at:at + c.integer(1, 200)] * c.integer(2, 5) + data[at:]   # repeat a slice


def fuzz_request(c: Chooser) -> FuzzRequest:
    """One mutated request, every choice made by ``c``."""
    service, operation, args = c.pick(EXAMPLES)
    version = c.pick(["1.1", "1.2"])
    charset = c.pick(["utf-8", "utf-8", "gbk"])
    tree = _envelope(service, operation, _fresh(args), version)
    for _ in range(c.integer(0, 3)):
        _mutate_tree(c, tree)
    body = etree.tostring(tree, xml_declaration=True, encoding=charset)
    for _ in range(c.integer(0, 2)):
        body = _mutate_bytes(c, body)
    media = MEDIA[version] if c.integer(0, 4) else c.pick(["text/xml", "application/soap+xml", "text/plain", ""])
    label = charset if c.integer(0, 4) else c.pick(CHARSET_LABELS)
    content_type = media + (f"; charset={label}" if label and media else "")
    headers = {}
    choice = c.integer(0, 5)
    if choice == 1:
        headers["SOAPAction"] = operation
    elif choice == 2:
        headers["SOAPAction"] = c.pick(["", '""', "Pay", "x" * 300])
    elif choice == 3:
        headers["Content-Encoding"] = c.pick(["gzip", "identity", "br"])
    path = f"/ws/{service}" if c.integer(0, 9) else c.pick(["/ws/NoSuch", "/ws/", "/ws/BankPayment", "/ws/TopUp"])
    return FuzzRequest(service, operation, version, path, content_type, body, headers)


# -- the rule --------------------------------------------------------------------------------------

class BadAnswer(AssertionError):
    pass


_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def check_answer(request: FuzzRequest, status: str, headers: list, body: bytes, schemas: dict) -> str:
    """Raise BadAnswer unless the answer keeps the rule; returns its outcome: "ok" or the fault
    code (for statistics)."""
    def bad(why: str):
        raise BadAnswer(f"{why}\nrequest: {request.path} {request.content_type!r} {request.headers} "
                        f"{request.body[:300]!r}...\nanswer: {status} {headers} {body[:600]!r}")

    ctype = dict(headers).get("Content-Type", "")
    code = int(status.split()[0])
    if b"Traceback" in body or b"<html" in body.lower()[:200]:
        bad("a traceback or an HTML page")
    if not ctype.startswith(("text/xml", "application/soap+xml")):
        bad(f"not a SOAP answer ({ctype})")
    try:
        doc = etree.fromstring(body, _SAFE)
    except etree.XMLSyntaxError as exc:
        bad(f"not parseable XML: {exc}")
    version = next((v for v, ns in SOAP_ENV.items() if doc.tag == f"{{{ns}}}Envelope"), None)
    if version is None or not ctype.startswith(MEDIA[version]):
        bad(f"not a SOAP envelope matching its Content-Type: {doc.tag}")
    ns = SOAP_ENV[version]
    first = doc.find(f"{{{ns}}}Body")
    first = first[0] if first is not None and len(first) else None
    if first is None:
        bad("an empty Body")
    if first.tag == f"{{{ns}}}Fault":
        if version == "1.1":
            fault_code = (first.findtext("faultcode") or "").split(":", 1)[-1]
            reason = first.findtext("faultstring") or ""
            expected = 500
        else:
            fault_code = (first.findtext(f"{{{ns}}}Code/{{{ns}}}Subcode/{{{ns}}}Value") or "").split(":", 1)[-1]
            reason = first.findtext(f"{{{ns}}}Reason/{{{ns}}}Text") or ""
            expected = 400 if fault_code.startswith("Client") else 500
        if code != expected:
            bad(f"a SOAP {version} {fault_code} fault with HTTP {code}, not {expected}")
        if not fault_code.startswith(("Client.", "Server.")) or not reason.strip():
            bad(f"a fault without a code or reason: {fault_code!r} {reason!r}")
        if fault_code == "Server.InternalError":
            bad("Server.InternalError: a bug in the bus")
        return fault_code
    if code != 200:
        bad(f"a non-fault answer with HTTP {code}")
    service = request.path.rsplit("/", 1)[-1]
    schema = schemas.get(service)
    if schema is None or not schema.validate(first):
        error = schema.error_log[0].message if schema is not None and schema.error_log else "no schema"
        bad(f"a 200 answer that is not valid against the {service} contract: {error}")
    return "ok"
