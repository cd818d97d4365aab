"""HOSTILE INPUT PROOF: a battery of hostile requests against the bus under gunicorn.

Starts the sandbox peers and the bus (`bssbus serve`, 2 gthread workers, SQLite) in their own
process groups, and a loopback "canary" listener that every external reference in the battery
points at. Then, while a background thread keeps sending normal traffic
(``BankPayment.QueryArrears`` through services/client.py's BusClient) and another samples the
RSS of every bus process from /proc, it sends the battery, class by class:

=================  ==========================================================================
xxe-file           external entities to file:///etc/passwd (body, header, SOAP 1.2, GBK, parameter entity)
xxe-loopback       entities, external DTDs, parameter entities and XInclude naming the canary's URL
billion-laughs     nested entity expansion (classic, SOAP 1.2, in an attribute, parameter entities)
quadratic          one large entity referenced thousands of times; long repeated attributes
deep-nesting       10,000 levels, in the Body, the Header and the operation, chunked too
huge-body          50 MB bodies, with a Content-Length and chunked
compressed         gzip / deflate bodies, a 100 MB gzip bomb
invalid-utf8       bytes that are no UTF-8 (stray, overlong, surrogates, cut sequences)
invalid-gbk        bytes that are no GBK / GB18030, labelled in the Content-Type or the declaration
wrong-action       SOAPAction / SOAP 1.2 action naming another or no operation; unknown operations,
                   another service's operation, unknown services
sql                ``' OR 1=1 --`` and ``; DROP TABLE journal;`` in every string field of every
                   operation's example (answered normally or refused by validation; afterwards
                   the journal and the sandbox tables are all there and no row count went down)
oversize-strings   a 20,000-character value in a string field of every operation; long
                   attributes and namespace names
too-many           more elements, attributes or namespace declarations than bus.max_elements,
                   bus.max_attributes, bus.max_namespaces
tokens             forged and replayed WS-Security UsernameTokens (SKIPPED until authentication
                   is configured)
=================  ==========================================================================

A refusal is correct when it is a SOAP fault in the request's SOAP version (1.1: HTTP 500;
1.2: HTTP 400 for a Client fault), a ``Client.*`` code of the kind the class expects, a
sentence, and no traceback or HTML. The ``sql`` class is correct when answered with a 200 valid
against the contract or refused with a Client fault. Every class prints sent, refused correctly,
answered correctly and wrong. The run fails (exit 1) on any wrong answer, any failed normal
request, any connection to the canary, a missing table or a shrunk one, or a bus process whose
RSS went over ``--rss-mb`` (400 MB by default).

    .venv/bin/python -m bench.hostile [--quick] [--rss-mb 400] [--class NAME ...]

``--quick`` sends every class but samples the ``sql`` and ``oversize-strings`` classes and sends
one 50 MB body (about 300 requests, under a minute); the full run sends about 1,000.
Adding a class: a function ``cls_<name>(ctx) -> list[Case]`` listed in CLASSES.
"""
from __future__ import annotations

import argparse
import base64
import copy
import gzip
import http.client
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lxml import etree
from sqlalchemy import create_engine, inspect, text

from bench.run import Server, _tree
from bus.security import username_token
from bus.server import free_port
from sandbox.store import seed_users
from services.client import BusClient
from services.contracts import ContractFiles
from services.models import CONTRACTS, to_xml
from services.models.common import WSDL_DIR

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
MEDIA = {"1.1": "text/xml", "1.2": "application/soap+xml"}
ENV_NS = {"1.1": SOAP11, "1.2": SOAP12}
SQL = ["' OR 1=1 --", "; DROP TABLE journal;"]
EXAMPLES = {tuple(p.stem.split(".")): json.loads(p.read_text("utf-8"))
            for p in sorted((WSDL_DIR / "examples").glob("*.json"))}
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- requests and answers -----------------------------------------------------------------------------

@dataclass
class Case:
    """One hostile request and what a correct answer is."""

    name: str
    body: bytes
    service: str = "BankPayment"
    version: str = "1.1"                      # the SOAP version the answer must be in
    charset: str | None = "utf-8"             # the Content-Type charset label (None: no label)
    headers: dict = field(default_factory=dict)
    codes: tuple = ()                         # Client.* codes that are a correct refusal (any Client.* if empty)
    may_answer: bool = False                  # a 200 valid against the contract is correct too (sql)
    chunked: bool = False
    body_parts: object = None                 # a callable yielding the body in parts (50 MB)
    raw_body: bool = False                    # chunked: ``body`` is sent as it is (its own, broken, framing)
    login: bool = True                        # send the credentials of the consumer the body speaks for
    path: str | None = None                   # where it is posted (default /ws/<service>)
    raw_request: bytes | None = None          # sent as it is, request line and headers included

    @property
    def content_type(self) -> str:
        return MEDIA[self.version] + (f"; charset={self.charset}" if self.charset else "")


def fresh(args: dict) -> dict:
    args = copy.deepcopy(args)
    head = args["UNI_BSS_HEAD"]
    head["TRANS_IDO"] = "H" + uuid.uuid4().hex[:26]
    head["PROC_ID"] = "H" + uuid.uuid4().hex[:26]
    head["PROCESS_TIME"] = time.strftime("%Y%m%d%H%M%S")
    body = args["UNI_BSS_BODY"]
    for key in ("BANK_SERIAL", "TOPUP_SERIAL", "REVERSE_SERIAL", "TRADE_ID"):
        if isinstance(body.get(key), str):
            body[key] = body[key][:-8] + uuid.uuid4().hex[:8].upper()
    return args


def envelope(service: str, operation: str, args: dict | None = None, version: str = "1.1",
             encoding: str = "utf-8", declaration: bool = True) -> bytes:
    args = fresh(EXAMPLES[(service, operation)]) if args is None else args
    ns = ENV_NS[version]
    env = etree.Element(f"{{{ns}}}Envelope", nsmap={"soapenv": ns})
    etree.SubElement(env, f"{{{ns}}}Body").append(to_xml(CONTRACTS[service], operation, args))
    return etree.tostring(env, xml_declaration=declaration, encoding=encoding)


def arrears(version: str = "1.1", encoding: str = "utf-8") -> bytes:
    return envelope("BankPayment", "QueryArrears", version=version, encoding=encoding)


def with_prolog(prolog: bytes, body: bytes) -> bytes:
    """``body`` with ``prolog`` (a DOCTYPE) after its XML declaration."""
    end = body.index(b"?>") + 2 if body.startswith(b"<?xml") else 0
    return body[:end] + prolog + body[end:]


def in_header(payload: bytes, body: bytes, version: str = "1.1") -> bytes:
    return body.replace(b"<soapenv:Body>", b"<soapenv:Header><h>" + payload + b"</h></soapenv:Header><soapenv:Body>", 1)


def in_operation(payload: bytes, body: bytes) -> bytes:
    """``payload`` inside UNI_BSS_BODY (validation refuses what the contract does not name)."""
    return body.replace(b"</UNI_BSS_BODY>", payload + b"</UNI_BSS_BODY>", 1)


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    error: str = ""


# The bus runs with authentication required: every case but the forged ones carries valid HTTP
# basic credentials of the consumer its request speaks for (ORIG_DOMAIN, a bank's BANK_CODE), so
# a hostile request meets the parser, the validation and the peer, not only the gatekeeper.
PASSWORDS = {cid: "hostile-" + uuid.uuid4().hex[:12]
             for cid in ("ESALES", "HQCRM", "PCRM", "TOPUP", "VAC", "ICBC", "CCB")}
DOMAINS = {"ESALE": "ESALES", "UCRM": "HQCRM", "PCRM": "PCRM", "TOPUP": "TOPUP", "VAC": "VAC"}
_FIELD = re.compile(rb"<(?:[\w.-]+:)?(ORIG_DOMAIN|BANK_CODE)>([A-Z]{2,10})<")


def consumer_of(body: bytes) -> str:
    fields = {k.decode(): v.decode() for k, v in _FIELD.findall(body[:20000])}
    if fields.get("ORIG_DOMAIN") == "BANK":
        return fields.get("BANK_CODE") if fields.get("BANK_CODE") in PASSWORDS else "ICBC"
    return DOMAINS.get(fields.get("ORIG_DOMAIN", ""), "ICBC")


def basic(consumer: str, password: str | None = None) -> str:
    pw = PASSWORDS.get(consumer, "") if password is None else password
    return "Basic " + base64.b64encode(f"{consumer}:{pw}".encode()).decode()


def post(port: int, path: str, case: Case, timeout: float = 120) -> Answer:
    """POST ``case`` on a fresh connection; the answer is read even when the bus answers before
    the whole body is sent (it refuses an oversized body by its Content-Length)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Type: {case.content_type}"]
        head += [f"{k}: {v}" for k, v in case.headers.items()]
        if case.login and "Authorization" not in case.headers:
            head.append(f"Authorization: {basic(consumer_of(case.body))}")
        parts = case.body_parts() if case.body_parts else [case.body]
        if case.chunked:
            head.append("Transfer-Encoding: chunked")
        else:
            length = sum(len(p) for p in case.body_parts()) if case.body_parts else len(case.body)
            head.append(f"Content-Length: {length}")
        send_error = ""
        if case.raw_request is not None:
            try:
                sock.sendall(case.raw_request)
            except OSError as exc:
                send_error = f"{type(exc).__name__} while sending"
            parts, head = [], None
        try:
            if head is not None:
                sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for part in parts:
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if case.chunked and not case.raw_body else part)
            if case.chunked and not case.raw_body:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:   # the bus answered and closed before reading it all
            send_error = f"{type(exc).__name__} while sending"
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return Answer(response.status, response.getheader("Content-Type") or "", response.read(), send_error)
        except (OSError, http.client.HTTPException) as exc:
            return Answer(0, "", b"", f"{send_error} {type(exc).__name__}: {exc}".strip())
    finally:
        sock.close()


def judge(case: Case, answer: Answer, schemas: dict) -> tuple[str, str]:
    """("refused" | "answered" | "wrong", why)."""
    if answer.status == 0:
        return "wrong", f"no answer ({answer.error})"
    if b"Traceback" in answer.body or b"<html" in answer.body[:300].lower():
        return "wrong", "a traceback or an HTML page"
    if not answer.content_type.startswith(MEDIA[case.version]):
        return "wrong", f"Content-Type {answer.content_type!r}, not SOAP {case.version}"
    try:
        doc = etree.fromstring(answer.body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return "wrong", f"not XML: {exc}"
    ns = ENV_NS[case.version]
    body = doc.find(f"{{{ns}}}Body")
    first = body[0] if body is not None and len(body) else None
    if doc.tag != f"{{{ns}}}Envelope" or first is None:
        return "wrong", f"not a SOAP {case.version} envelope with a Body: {doc.tag}"
    if first.tag == f"{{{ns}}}Fault":
        if case.version == "1.1":
            code, reason, status = (first.findtext("faultcode") or "").split(":", 1)[-1], first.findtext("faultstring"), 500
        else:
            code = (first.findtext(f"{{{ns}}}Code/{{{ns}}}Subcode/{{{ns}}}Value") or "").split(":", 1)[-1]
            reason = first.findtext(f"{{{ns}}}Reason/{{{ns}}}Text")
            status = 400 if code.startswith("Client") else 500
        if answer.status != status:
            return "wrong", f"{code} with HTTP {answer.status}, not {status}"
        if not code.startswith("Client."):
            return "wrong", f"{code}: {reason}"
        if case.codes and code not in case.codes:
            return "wrong", f"{code} ({reason}), expected {' or '.join(case.codes)}"
        if not reason or not reason[0].isupper():
            return "wrong", f"{code} without a sentence: {reason!r}"
        return "refused", code
    if not case.may_answer:
        return "wrong", f"answered HTTP {answer.status} instead of refusing"
    if answer.status != 200 or not schemas[case.service].validate(first):
        return "wrong", f"HTTP {answer.status}, not valid against {case.service}"
    return "answered", "200"


# -- the classes -------------------------------------------------------------------------------------

MALFORMED, LIMIT, VALIDATION = "Client.MalformedRequest", "Client.LimitExceeded", "Client.ValidationError"
UNKNOWN_OP, ACTION = "Client.UnknownOperation", "Client.ActionMismatch"


def laughs(levels: int = 9, width: int = 10, name: str = "l") -> bytes:
    defs = f'<!ENTITY {name}0 "lol">' + "".join(
        f'<!ENTITY {name}{i} "{("&%s%d;" % (name, i - 1)) * width}">' for i in range(1, levels + 1))
    return f"<!DOCTYPE soapenv:Envelope [{defs}]>".encode()


def cls_xxe_file(ctx) -> list[Case]:
    file_entity = b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    cases = []
    for version in ("1.1", "1.2"):
        base = arrears(version)
        cases += [
            Case(f"entity in the body ({version})", with_prolog(file_entity, base.replace(b"<BANK_CODE>", b"<BANK_CODE>&xxe;")),
                 version=version, codes=(MALFORMED,)),
            Case(f"entity in a header ({version})", with_prolog(file_entity, in_header(b"&xxe;", base)),
                 version=version, codes=(MALFORMED,)),
            Case(f"entity in an attribute ({version})", with_prolog(
                b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
                base.replace(b"<UNI_BSS_BODY>", b'<UNI_BSS_BODY a="&xxe;">')), version=version, codes=(MALFORMED,)),
            Case(f"parameter entity ({version})", with_prolog(
                b'<!DOCTYPE soapenv:Envelope [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', base),
                version=version, codes=(MALFORMED,)),
        ]
    gbk = arrears(encoding="gbk")
    cases.append(Case("entity in a GBK request", with_prolog(file_entity, gbk.replace(b"<BANK_CODE>", b"<BANK_CODE>&xxe;")),
                      charset="GBK", codes=(MALFORMED,)))
    cases.append(Case("entity after a BOM and a comment", b"\xef\xbb\xbf<!-- hi -->" + file_entity + envelope(
        "BankPayment", "QueryArrears", declaration=False).replace(b"<BANK_CODE>", b"<BANK_CODE>&xxe;"), codes=(MALFORMED,)))
    cases.append(Case("entity, no XML declaration, no charset", file_entity + envelope(
        "BankPayment", "QueryArrears", declaration=False).replace(b"<BANK_CODE>", b"<BANK_CODE>&xxe;"),
        charset=None, codes=(MALFORMED,)))
    return cases


def cls_xxe_loopback(ctx) -> list[Case]:
    url = ctx.canary_url.encode()
    cases = []
    for version in ("1.1", "1.2"):
        base = arrears(version)
        cases += [
            Case(f"entity to a loopback URL ({version})", with_prolog(
                b'<!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "' + url + b'/xxe">]>',
                base.replace(b"<BANK_CODE>", b"<BANK_CODE>&xxe;")), version=version, codes=(MALFORMED,)),
            Case(f"external DTD on loopback ({version})", with_prolog(
                b'<!DOCTYPE soapenv:Envelope SYSTEM "' + url + b'/evil.dtd">', base), version=version, codes=(MALFORMED,)),
            Case(f"public DTD on loopback ({version})", with_prolog(
                b'<!DOCTYPE soapenv:Envelope PUBLIC "-//X//Y" "' + url + b'/p.dtd">', base), version=version,
                codes=(MALFORMED,)),
            Case(f"parameter entity to loopback ({version})", with_prolog(
                b'<!DOCTYPE soapenv:Envelope [<!ENTITY % p SYSTEM "' + url + b'/p.dtd"> %p;]>', base),
                version=version, codes=(MALFORMED,)),
            Case(f"XInclude of a loopback URL ({version})", in_operation(
                b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="' + url + b'/xi"/>', base),
                version=version, codes=(VALIDATION,)),
            Case(f"XInclude of a file ({version})", in_operation(
                b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" parse="text" href="file:///etc/passwd"/>', base),
                version=version, codes=(VALIDATION,)),
        ]
    cases.append(Case("out-of-band exfiltration DTD", with_prolog(
        b'<!DOCTYPE soapenv:Envelope [<!ENTITY % f SYSTEM "file:///etc/passwd"><!ENTITY % d SYSTEM "'
        + url + b'/oob.dtd"> %d;]>', arrears()), codes=(MALFORMED,)))
    return cases


def cls_billion_laughs(ctx) -> list[Case]:
    base = arrears()
    return [
        Case("classic, 10^9 lols", with_prolog(laughs(), base.replace(b"<BANK_CODE>", b"<BANK_CODE>&l9;")), codes=(MALFORMED,)),
        Case("SOAP 1.2", with_prolog(laughs(), arrears("1.2").replace(b"<BANK_CODE>", b"<BANK_CODE>&l9;")),
             version="1.2", codes=(MALFORMED,)),
        Case("in an attribute", with_prolog(laughs(), base.replace(b"<UNI_BSS_BODY>", b'<UNI_BSS_BODY a="&l9;">')),
             codes=(MALFORMED,)),
        Case("in a header block", with_prolog(laughs(), in_header(b"&l9;", base)), codes=(MALFORMED,)),
        Case("wide: 100 x 5 levels", with_prolog(laughs(5, 100), base.replace(b"<BANK_CODE>", b"<BANK_CODE>&l5;")),
             codes=(MALFORMED,)),
        Case("parameter entities", with_prolog(
            b'<!DOCTYPE soapenv:Envelope [<!ENTITY % a "<!ENTITY b \'lol\'>"> %a; %a; %a;]>', base), codes=(MALFORMED,)),
        Case("GBK", with_prolog(laughs(), arrears(encoding="gbk").replace(b"<BANK_CODE>", b"<BANK_CODE>&l9;")),
             charset="GBK", codes=(MALFORMED,)),
    ]


def cls_quadratic(ctx) -> list[Case]:
    base = arrears()
    big = b'<!DOCTYPE soapenv:Envelope [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
    refs = b"&a;" * 20_000
    return [
        Case("50 kB entity x 20,000", with_prolog(big, base.replace(b"<BANK_CODE>", b"<BANK_CODE>" + refs)),
             codes=(MALFORMED,)),
        Case("50 kB entity x 20,000 in attributes", with_prolog(big, base.replace(
            b"<UNI_BSS_BODY>", b'<UNI_BSS_BODY a="' + refs + b'">')), codes=(MALFORMED,)),
        Case("SOAP 1.2", with_prolog(big, arrears("1.2").replace(b"<BANK_CODE>", b"<BANK_CODE>" + refs)),
             version="1.2", codes=(MALFORMED,)),
        Case("without a DTD: 30 attributes of 30 kB", in_header(
            b"<q " + b" ".join(b'a%d="%s"' % (i, b"x" * 30_000) for i in range(30)) + b"/>", base), codes=(LIMIT,)),
        Case("without a DTD: a 900 kB text", in_header(b"<q>" + b"x" * 900_000 + b"</q>", base), codes=(LIMIT,)),
    ]


def cls_deep_nesting(ctx) -> list[Case]:
    deep = b"<d>" * 10_000 + b"</d>" * 10_000
    base = arrears()
    return [
        Case("10,000 levels in the Body", base.replace(b"</soapenv:Body>", deep + b"</soapenv:Body>"), codes=(LIMIT,)),
        Case("10,000 levels in a header", in_header(deep, base), codes=(LIMIT,)),
        Case("10,000 levels in the operation", in_operation(deep, base), codes=(LIMIT,)),
        Case("10,000 levels, SOAP 1.2", in_header(deep, arrears("1.2")), version="1.2", codes=(LIMIT,)),
        Case("10,000 levels, GBK", in_header(deep, arrears(encoding="gbk")), charset="GBK", codes=(LIMIT,)),
        Case("10,000 levels, chunked", in_header(deep, base), chunked=True, codes=(LIMIT,)),
        Case("10,000 levels, then a broken chunk", b"%x\r\n%s\r\nzz\r\n" % (len(in_header(deep, base)[:4000]),
             in_header(deep, base)[:4000]), chunked=True, raw_body=True, codes=(LIMIT, MALFORMED)),
        Case("a broken chunk size", b"zz\r\n" + base + b"\r\n0\r\n\r\n", chunked=True, raw_body=True, codes=(MALFORMED,)),
        Case("10,000 unclosed levels", in_header(b"<d>" * 10_000, base), codes=(LIMIT,)),
        Case("65 levels (one over the limit)", in_header(b"<d>" * 62 + b"</d>" * 62, base), codes=(LIMIT,)),
    ]


def _fifty_mb(prefix: bytes, suffix: bytes, total: int = 50 << 20):
    def parts():
        yield prefix
        left = total - len(prefix) - len(suffix)
        chunk = b" " * (1 << 20)
        while left > 0:
            yield chunk[:min(left, len(chunk))]
            left -= len(chunk)
        yield suffix
    return parts


def cls_huge_body(ctx) -> list[Case]:
    base = arrears()
    cut = base.index(b"<soapenv:Body>")
    cases = [Case("50 MB with a Content-Length", b"", body_parts=_fifty_mb(base[:cut], base[cut:]), codes=(LIMIT,)),
             Case("50 MB chunked", b"", body_parts=_fifty_mb(base[:cut], base[cut:]), chunked=True, codes=(LIMIT,))]
    if not ctx.quick:
        b12 = arrears("1.2")
        cut12 = b12.index(b"<soapenv:Body>")
        cases.append(Case("50 MB, SOAP 1.2", b"", version="1.2", body_parts=_fifty_mb(b12[:cut12], b12[cut12:]),
                          codes=(LIMIT,)))
    return cases


def cls_compressed(ctx) -> list[Case]:
    bomb = gzip.compress(b"<a>" + b" " * (100 << 20) + b"</a>", 9)
    return [
        Case("gzip", gzip.compress(arrears()), headers={"Content-Encoding": "gzip"}, codes=(MALFORMED,)),
        Case("deflate", zlib.compress(arrears()), headers={"Content-Encoding": "deflate"}, codes=(MALFORMED,)),
        Case("100 MB gzip bomb", bomb, headers={"Content-Encoding": "gzip"}, codes=(MALFORMED,)),
        Case("gzip, SOAP 1.2", gzip.compress(arrears("1.2")), version="1.2", headers={"Content-Encoding": "gzip"},
             codes=(MALFORMED,)),
        Case("gzip, no Content-Encoding", gzip.compress(arrears()), codes=(MALFORMED,)),
    ]


def cls_invalid_utf8(ctx) -> list[Case]:
    bad = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe4\xb8",
           b"\x80", b"\xf4\x90\x80\x80"]
    cases = []
    for i, seq in enumerate(bad):
        where = i % 3
        base = arrears("1.2" if i % 4 == 3 else "1.1")
        version = "1.2" if i % 4 == 3 else "1.1"
        if where == 0:
            body = base.replace(b"<BANK_CODE>", b"<BANK_CODE>" + seq)
        elif where == 1:
            body = base.replace(b"<soapenv:Body>", seq + b"<soapenv:Body>")
        else:
            body = base[:-5] + seq
        cases.append(Case(f"{seq!r} ({['in a value', 'between elements', 'at the end'][where]})", body,
                          version=version, codes=(MALFORMED,)))
    cases.append(Case("declared UTF-8 in the declaration only", arrears().replace(b"<BANK_CODE>", b"<BANK_CODE>\xff"),
                      charset=None, codes=(MALFORMED,)))
    cases.append(Case("a UTF-8 BOM, then bad bytes", b"\xef\xbb\xbf" + arrears().replace(b"<BANK_CODE>", b"<BANK_CODE>\xc3\x28"),
                      codes=(MALFORMED,)))
    return cases


def cls_invalid_gbk(ctx) -> list[Case]:
    bad = [b"\x81\x20", b"\xff", b"\x80", b"\x81\x7f", b"\xfe\xff", b"\xa1"]
    cases = []
    for i, seq in enumerate(bad):
        base = arrears(encoding="gbk")
        body = base.replace(b"<BANK_CODE>", b"<BANK_CODE>" + seq) if i % 2 == 0 else base[:-3] + seq
        label = ["GBK", "gb2312", "GB18030"][i % 3]
        cases.append(Case(f"{seq!r} labelled {label} in the Content-Type", body, charset=label, codes=(MALFORMED,)))
        declared = body.replace(b"encoding='gbk'", f"encoding='{label}'".encode())
        cases.append(Case(f"{seq!r} labelled {label} in the declaration", declared, charset=None, codes=(MALFORMED,)))
    cases.append(Case("GBK bytes labelled UTF-8", arrears().replace(b"<BANK_CODE>", "<BANK_CODE>工商".encode("gbk")),
                      codes=(MALFORMED,)))
    cases.append(Case("a charset nobody can name", arrears(), charset="gbk-ish", codes=(MALFORMED,)))
    cases.append(Case("UTF-7", arrears(), charset="utf-7", codes=(MALFORMED,)))
    return cases


def cls_http_layer(ctx) -> list[Case]:
    """What the HTTP server refuses before the bus reads a byte of SOAP: a header over 8 KB, a
    request line too long, a malformed request line, a broken chunk. A SOAP fault, not HTML."""
    body = arrears()
    head = (b"POST /ws/BankPayment HTTP/1.1\r\nHost: bus\r\nContent-Type: text/xml; charset=utf-8\r\n"
            b"Content-Length: %d\r\n" % len(body))
    cases = [
        Case("a 9 KB header", b"", raw_request=head + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n" + body,
             codes=(MALFORMED,)),
        Case("a 200-header request", b"", raw_request=head + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
             + b"\r\n" + body, codes=(MALFORMED,)),
        Case("an 8 KB request line", b"", raw_request=b"POST /ws/BankPayment?" + b"q" * 8200
             + b" HTTP/1.1\r\nHost: bus\r\nContent-Length: 0\r\n\r\n", codes=(MALFORMED,)),
        Case("a malformed request line", b"", raw_request=b"POST  /ws/BankPayment HTTP/9.9 extra\r\n\r\n",
             codes=(MALFORMED,)),
        Case("a broken chunk size", b"", raw_request=b"POST /ws/BankPayment HTTP/1.1\r\nHost: bus\r\n"
             b"Content-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n" + body + b"\r\n0\r\n\r\n",
             codes=(MALFORMED,)),
    ]
    return cases


def cls_wrong_action(ctx) -> list[Case]:
    base, base12 = arrears(), arrears("1.2")
    cases = [Case(f"SOAPAction {a!r} on QueryArrears", base, headers={"SOAPAction": a}, codes=(ACTION,))
             for a in ("Pay", '"Reverse"', "urn:BankPayment:Pay", "http://evil/QueryBalance", "DropJournal")]
    cases += [Case(f"SOAP 1.2 action {a!r}", base12, version="1.2", headers={}, codes=(ACTION,))
              for a in ("Pay", "Reverse")]
    for case, a in zip(cases[-2:], ("Pay", "Reverse")):
        case.charset = f'utf-8; action="{a}"'
    cases += [
        Case("an operation the service does not have", base.replace(b"QueryArrears", b"QueryEverything"), codes=(UNKNOWN_OP,)),
        Case("another service's operation", envelope("TopUp", "TopUp"), codes=(UNKNOWN_OP,)),
        Case("the operation in another namespace", base.replace(b"http://ws.chinaunicom.cn/BankPayment/unibssBody",
                                                                 b"urn:evil"), codes=(UNKNOWN_OP,)),
        Case("two operations in the Body", base.replace(b"</soapenv:Body>", envelope(
            "BankPayment", "Pay", declaration=False).split(b"<soapenv:Body>")[1].split(b"</soapenv:Body>")[0]
            + b"</soapenv:Body>"), codes=(MALFORMED,)),
        Case("no operation in the Body", b'<soapenv:Envelope xmlns:soapenv="' + SOAP11.encode()
             + b'"><soapenv:Body/></soapenv:Envelope>', codes=(MALFORMED,)),
        Case("not a SOAP envelope", b"<Envelope><Body/></Envelope>", codes=(MALFORMED,)),
        Case("SOAP 1.2 envelope, SOAPAction for another operation", base12, version="1.2",
             headers={"SOAPAction": "Pay"}, codes=(ACTION,)),
    ]
    for c in cases:
        c.path = "/ws/BankPayment"
    for name in ("NoSuchService", "BankPayment/../TopUp", "common"):
        case = Case(f"unknown service /ws/{name}", base, codes=(UNKNOWN_OP,))
        case.path = f"/ws/{name}"
        cases.append(case)
    case = Case("POST to a path that is no service", base, codes=(UNKNOWN_OP,))
    case.path = "/admin"
    cases.append(case)
    return cases


def string_fields(value, path=()):
    """Paths of every string leaf of an example's arguments."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from string_fields(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_fields(item, path + (i,))
    elif isinstance(value, str):
        yield path


def replaced(args: dict, path: tuple, value) -> dict:
    args = copy.deepcopy(args)
    target = args
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return args


def cls_sql(ctx) -> list[Case]:
    cases = []
    items = sorted(EXAMPLES.items())
    for n, ((service, operation), example) in enumerate(items):
        for payload in (SQL if not ctx.quick else [SQL[n % 2]]):
            fields = list(string_fields(example))
            if ctx.quick:
                fields = fields[n % 3::4]
            for path in fields:
                args = replaced(fresh(example), path, payload)
                version = "1.2" if len(cases) % 5 == 4 else "1.1"
                cases.append(Case(f"{service}.{operation} {'.'.join(map(str, path))} = {payload!r}",
                                  envelope(service, operation, args, version), service=service, version=version,
                                  may_answer=True))
    for case in cases:
        case.path = f"/ws/{case.service}"
    return cases


def cls_oversize_strings(ctx) -> list[Case]:
    cases = []
    for n, ((service, operation), example) in enumerate(sorted(EXAMPLES.items())):
        fields = [p for p in string_fields(example) if p[0] == "UNI_BSS_BODY"] or list(string_fields(example))
        picks = fields[:1] if ctx.quick else fields[:2] + fields[-1:]
        for path in picks:
            args = replaced(fresh(example), path, "名" * 20_000)
            case = Case(f"{service}.{operation} {'.'.join(map(str, path))}: 20,000 characters",
                        envelope(service, operation, args), service=service, codes=(LIMIT,))
            cases.append(case)
        args = replaced(fresh(example), fields[0], "x" * 2_000)   # within the parser's limit, over the contract's
        cases.append(Case(f"{service}.{operation} {'.'.join(map(str, fields[0]))}: 2,000 characters",
                          envelope(service, operation, args), service=service, codes=(VALIDATION,)))
    base = arrears()
    cases += [
        Case("a 5,000-character attribute", base.replace(b"<UNI_BSS_BODY>", b'<UNI_BSS_BODY a="' + b"x" * 5_000 + b'">'),
             codes=(LIMIT,)),
        Case("a 5,000-character namespace name", base.replace(b"<UNI_BSS_BODY>", b'<UNI_BSS_BODY xmlns:p="urn:'
                                                              + b"x" * 5_000 + b'">'), codes=(LIMIT,)),
        Case("a 40,000-character element name", in_header(b"<" + b"n" * 40_000 + b"/>", base), codes=(LIMIT,)),
        Case("a 40,000-character attribute name", in_header(b"<n " + b"a" * 40_000 + b'="1"/>', base), codes=(LIMIT,)),
        Case("a 40,000-character namespace prefix", in_header(b"<n xmlns:" + b"p" * 40_000 + b'="urn:x"/>', base),
             codes=(LIMIT,)),
    ]
    for case in cases:
        case.path = f"/ws/{case.service}"
    return cases


def cls_too_many(ctx) -> list[Case]:
    base = arrears()
    cards = fresh(EXAMPLES[("CardActivation", "ActivateCards")])
    cards["UNI_BSS_BODY"].pop("CARD_RANGE", None)
    cards["UNI_BSS_BODY"]["CARDS"] = {"CARD_NO": [f"95100000{i:07d}" for i in range(12_000)]}
    cases = [
        Case("20,000 empty elements in a header", in_header(b"<e/>" * 20_000, base), codes=(LIMIT,)),
        Case("10,001 elements in the operation", in_operation(b"<e/>" * 10_001, base), codes=(LIMIT,)),
        Case("12,000 cards in one activation", envelope("CardActivation", "ActivateCards", cards),
             service="CardActivation", codes=(LIMIT,)),
        Case("100,000 elements, SOAP 1.2", in_header(b"<e/>" * 100_000, arrears("1.2")), version="1.2", codes=(LIMIT,)),
        Case("33 attributes on one element", base.replace(b"<UNI_BSS_BODY>", b"<UNI_BSS_BODY "
                                                          + b" ".join(b'a%d="1"' % i for i in range(33)) + b">"),
             codes=(LIMIT,)),
        Case("5,000 attributes on one element", in_header(b"<e " + b" ".join(b'a%d="1"' % i for i in range(5_000))
                                                          + b"/>", base), codes=(LIMIT,)),
        Case("5,000 namespace declarations", in_header(b"<e " + b" ".join(b'xmlns:p%d="urn:%d"' % (i, i)
                                                                          for i in range(5_000)) + b"/>", base),
             codes=(LIMIT,)),
        Case("duplicated UNI_BSS_HEAD x 2,000", base.replace(b"</UNI_BSS_BODY>", b"</UNI_BSS_BODY>" + (
            base[base.index(b"<head:UNI_BSS_HEAD>"):base.index(b"</head:UNI_BSS_HEAD>") + 20] * 2_000)),
            codes=(LIMIT, VALIDATION)),
    ]
    for case in cases:
        case.path = f"/ws/{case.service}"
    return cases


def with_token(body: bytes, token: etree._Element, version: str = "1.1") -> bytes:
    """``body`` (an envelope) with ``token`` (a wsse:Security element) as its SOAP header."""
    doc = etree.fromstring(body)
    header = etree.Element(f"{{{ENV_NS[version]}}}Header")
    header.append(token)
    doc.insert(0, header)
    return etree.tostring(doc, xml_declaration=True, encoding="utf-8")


def cls_tokens(ctx) -> list[Case]:
    """Forged and replayed credentials: unknown users, wrong passwords, digests over another
    nonce or time, stale and future Created, tokens without Nonce or Created, the same token
    sent twice (the second is a replay), garbage in every field, wrong basic credentials, and
    none at all. Every one: Client.FailedAuthentication, the generic refusal."""
    from bus.security import WSSE, password_digest
    failed = ("Client.FailedAuthentication",)
    now = datetime.now(timezone.utc)
    stamp = lambda seconds: (now + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")   # noqa: E731
    cases = []
    n = 8 if ctx.quick else 20
    for i in range(n):
        base = arrears()
        cases += [
            Case(f"unknown user {i}", with_token(base, username_token(f"NOBODY{i}", "x")), codes=failed, login=False),
            Case(f"wrong password {i}", with_token(base, username_token("ICBC", f"guess{i}")), codes=failed, login=False),
            Case(f"wrong text password {i}", with_token(base, username_token("ICBC", f"guess{i}", digest=False)),
                 codes=failed, login=False),
            Case(f"stale Created {i}", with_token(base, username_token("ICBC", PASSWORDS["ICBC"],
                                                                         created=stamp(-3600 - i))), codes=failed, login=False),
            Case(f"future Created {i}", with_token(base, username_token("ICBC", PASSWORDS["ICBC"],
                                                                          created=stamp(3600 + i))), codes=failed, login=False),
            Case(f"wrong basic {i}", base, headers={"Authorization": basic("ICBC", f"guess{i}")}, codes=failed, login=False),
            Case(f"no credentials {i}", base, codes=failed, login=False),
        ]
        # a digest computed over another nonce than the one sent
        forged = username_token("ICBC", PASSWORDS["ICBC"])
        ut = forged.find(f"{{{WSSE}}}UsernameToken")
        ut.find(f"{{{WSSE}}}Password").text = password_digest(b"another nonce!!!", ut.findtext("{*}Created"),
                                                                  PASSWORDS["ICBC"])
        cases.append(Case(f"digest over another nonce {i}", with_token(base, forged), codes=failed, login=False))
        # no Nonce, no Created
        for drop in ("Nonce", "Created"):
            token = username_token("ICBC", PASSWORDS["ICBC"], digest=False)
            ut = token.find(f"{{{WSSE}}}UsernameToken")
            ut.remove(ut.find(f"{{*}}{drop}"))
            cases.append(Case(f"no {drop} {i}", with_token(base, token), codes=failed, login=False))
        # garbage in the token's fields
        token = username_token("ICBC", PASSWORDS["ICBC"])
        ut = token.find(f"{{{WSSE}}}UsernameToken")
        ut.find(f"{{{WSSE}}}Nonce").text = "%%% not base64 %%%"
        ut.find("{*}Created").text = "yesterday"
        cases.append(Case(f"garbage Nonce and Created {i}", with_token(base, token), codes=failed, login=False))
        # a valid token sent twice: the first is answered (by the peer), the replay refused
        once = with_token(arrears(), username_token("ICBC", PASSWORDS["ICBC"]))
        cases.append(Case(f"first use of a token {i}", once, may_answer=True, login=False))
        cases.append(Case(f"replay of that token {i}", once, codes=failed, login=False))
    return cases


CLASSES = {
    "xxe-file": cls_xxe_file,
    "xxe-loopback": cls_xxe_loopback,
    "billion-laughs": cls_billion_laughs,
    "quadratic": cls_quadratic,
    "deep-nesting": cls_deep_nesting,
    "huge-body": cls_huge_body,
    "compressed": cls_compressed,
    "invalid-utf8": cls_invalid_utf8,
    "invalid-gbk": cls_invalid_gbk,
    "http-layer": cls_http_layer,
    "wrong-action": cls_wrong_action,
    "sql": cls_sql,
    "oversize-strings": cls_oversize_strings,
    "too-many": cls_too_many,
    "tokens": cls_tokens,
}
SKIP_NOTES: dict[str, str] = {}


# -- what runs beside the battery ----------------------------------------------------------------------

class Canary:
    """A loopback listener: every URL in the battery points here, and nothing may connect."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.hits = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self):
        self.sock.close()


class NormalTraffic(threading.Thread):
    """QueryArrears through BusClient every ``every`` seconds while the battery runs."""

    def __init__(self, url: str, every: float = 0.1):
        super().__init__(daemon=True)
        self.client = BusClient(url, timeout=30, login=lambda args: username_token("ICBC", PASSWORDS["ICBC"]))
        self.every = every
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.user = seed_users("51")[0]

    def run(self):
        while not self.stop.is_set():
            args = fresh(EXAMPLES[("BankPayment", "QueryArrears")])
            args["UNI_BSS_HEAD"]["ROUTING"] = {"ROUTE_TYPE": "01", "ROUTE_VALUE": self.user.msisdn}
            args["UNI_BSS_BODY"]["SERIAL_NUMBER"] = self.user.msisdn
            try:
                result = self.client.call("BankPayment", "QueryArrears", args)
                if result.ok:
                    self.ok += 1
                else:
                    self.failed.append(f"{result.fault_code or result.rsp_code}: {result.fault_string}")
            except Exception as exc:   # a refused connection, a timeout: the bus stopped serving
                self.failed.append(f"{type(exc).__name__}: {exc}")
            self.stop.wait(self.every)


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / (1 << 20)
    except (OSError, IndexError, ValueError):
        return 0.0


class RssSampler(threading.Thread):
    """The RSS of every process of the bus's gunicorn tree, every ``every`` seconds: peak per pid."""

    def __init__(self, root: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.stop = threading.Event()
        self.peak: dict[int, float] = {}
        self.start_rss: dict[int, float] = {}

    def sample(self):
        for pid in _tree(self.root):
            value = rss_mb(pid)
            self.start_rss.setdefault(pid, value)
            if value > self.peak.get(pid, 0):
                self.peak[pid] = value

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)


class Tables:
    """The journal and sandbox databases: tables and row counts, before and after."""

    def __init__(self, *urls: str):
        self.engines = [create_engine(u) for u in urls]

    def snapshot(self) -> dict[str, int]:
        out = {}
        for engine in self.engines:
            with engine.connect() as conn:
                for name in inspect(conn).get_table_names():
                    out[f"{engine.url.database.rsplit('/', 1)[-1]}:{name}"] = conn.execute(
                        text(f'SELECT count(*) FROM "{name}"')).scalar()
        return out

    def dispose(self):
        for engine in self.engines:
            engine.dispose()


# -- main ------------------------------------------------------------------------------------------

@dataclass
class Ctx:
    quick: bool
    canary_url: str


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="every class, the large ones sampled (about a minute)")
    p.add_argument("--rss-mb", type=float, default=400.0, help="the bound on each bus process's peak RSS (400)")
    p.add_argument("--class", dest="classes", action="append", choices=list(CLASSES),
                   help="run only this class (repeatable)")
    p.add_argument("--show", type=int, default=5, help="wrong answers shown per class (5)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run the finally below
    started = time.monotonic()
    schemas = ContractFiles().schemas
    problems: list[str] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="bssbus-hostile-") as tmp:
        tmp = Path(tmp)
        bus_db, sandbox_db = f"sqlite:///{tmp}/bus.db", f"sqlite:///{tmp}/sandbox.db"
        canary = Canary()
        sandbox = bus = traffic = sampler = tables = None
        try:
            secrets, override = tmp / "secrets.yaml", tmp / "security.yaml"
            secrets.write_text(json.dumps({"consumers": {c: {"password": p} for c, p in PASSWORDS.items()}}),
                               encoding="utf-8")
            override.write_text(json.dumps({"security": {"authentication": "required",
                                                         "secrets_file": str(secrets)}}), encoding="utf-8")
            sandbox = Server("sandbox", ["sandbox", "--db-url", sandbox_db, "--config", str(override)],
                             free_port(), tmp)
            sandbox.wait_ready()
            bus = Server("bus", ["serve", "--no-sandbox", "--db-url", bus_db, "--workers", "2",
                                 "--config", str(override)], free_port(), tmp,
                         env={"BSSBUS_SANDBOX_URL": sandbox.url})
            bus.wait_ready()
            print(f"bssbus hostile battery: bus {bus.url} (gunicorn, 2 workers, authentication required), "
                  f"sandbox {sandbox.url}, "
                  f"canary {canary.url}{' (quick)' if args.quick else ''}", flush=True)
            ctx = Ctx(quick=args.quick, canary_url=canary.url)
            sampler = RssSampler(bus.proc.pid, every=0.25)
            sampler.start()
            traffic = NormalTraffic(bus.url)
            traffic.start()
            time.sleep(1.0)   # some normal traffic first: the workers have imported and served
            tables = Tables(bus_db, sandbox_db)
            before = tables.snapshot()

            print(f"\n{'class':<18}{'sent':>6}{'refused':>9}{'answered':>10}{'wrong':>7}  codes", flush=True)
            for name, build in CLASSES.items():
                if args.classes and name not in args.classes:
                    continue
                cases = build(ctx)
                if cases is None:
                    rows.append((name, None))
                    print(f"{name:<18}{'SKIPPED: ' + SKIP_NOTES.get(name, ''):>30}", flush=True)
                    continue
                tally, codes, wrong = Counter(), Counter(), []
                t0 = time.monotonic()
                for case in cases:
                    answer = post(bus.port, case.path or f"/ws/{case.service}", case)
                    verdict, why = judge(case, answer, schemas)
                    tally[verdict] += 1
                    if verdict == "wrong":
                        wrong.append(f"{case.name}: {why}")
                    else:
                        codes[why] += 1
                rows.append((name, (len(cases), tally["refused"], tally["answered"], tally["wrong"])))
                shown = ", ".join(f"{c.replace('Client.', '')} {n}" for c, n in codes.most_common())
                print(f"{name:<18}{len(cases):>6}{tally['refused']:>9}{tally['answered']:>10}{tally['wrong']:>7}"
                      f"  {shown} ({time.monotonic() - t0:.1f} s)", flush=True)
                for line in wrong[:args.show]:
                    print(f"    WRONG {line[:400]}", flush=True)
                problems += [f"{name}: {w}" for w in wrong]
                sampler.sample()
            time.sleep(1.0)   # normal traffic after the last class too
        finally:
            if traffic is not None:
                traffic.stop.set()
                traffic.join(40)
            if sampler is not None:
                sampler.stop.set()
                sampler.join(5)
            after = tables.snapshot() if tables is not None else {}
            if tables is not None:
                tables.dispose()
            for server in (bus, sandbox):
                if server is not None:
                    server.stop()
            canary.close()

    done = [r for _, r in rows if r is not None]
    sent, refused, answered, wrong = (sum(r[i] for r in done) for i in range(4))
    print(f"\n{'total':<18}{sent:>6}{refused:>9}{answered:>10}{wrong:>7}")
    skipped = [name for name, r in rows if r is None]
    if skipped:
        notes = ", ".join(f"{n} ({SKIP_NOTES.get(n, 'skipped')})" for n in skipped)
        print(f"skipped: {notes}")

    print(f"\ncanary (loopback URL named by the battery) contacted: {canary.hits} times")
    if canary.hits:
        problems.append(f"the canary at {canary.url} was contacted {canary.hits} times")
    print(f"normal traffic during the run: {traffic.ok} succeeded, {len(traffic.failed)} failed")
    if traffic.failed or not traffic.ok:
        problems.append(f"normal traffic: {len(traffic.failed)} of {traffic.ok + len(traffic.failed)} failed, "
                        f"e.g. {traffic.failed[:3]}")
    missing = sorted(set(before) - set(after))
    shrunk = sorted(k for k in before if k in after and after[k] < before[k])
    journal = next((v for k, v in after.items() if k.endswith(":journal")), None)
    print(f"tables: {len(after)} after the run, {len(before)} before; journal rows {journal} "
          f"(from {next((v for k, v in before.items() if k.endswith(':journal')), None)})"
          + (f"; MISSING {missing}" if missing else "") + (f"; SHRUNK {shrunk}" if shrunk else ""))
    if missing or shrunk or journal is None:
        problems.append(f"tables missing {missing} or shrunk {shrunk}")
    peaks = sorted(sampler.peak.items(), key=lambda kv: -kv[1]) if sampler else []
    print("peak RSS of the bus processes: " + ", ".join(
        f"pid {pid} {mb:.0f} MB (from {sampler.start_rss.get(pid, 0):.0f})" for pid, mb in peaks)
        + f"; bound {args.rss_mb:.0f} MB each")
    over = [(pid, mb) for pid, mb in peaks if mb > args.rss_mb]
    if over or not peaks:
        problems.append(f"RSS over {args.rss_mb:.0f} MB: {over}" if over else "no RSS sampled")
    print(f"took {time.monotonic() - started:.0f} s")
    for problem in problems[:20]:
        print(f"PROBLEM: {problem[:500]}")
    print("RESULT: " + ("FAIL" if problems else f"OK: {refused + answered} of {sent} hostile requests handled "
                                                  "correctly, the bus served normal traffic throughout"))
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:   # the servers are already stopped by main's finally
        sys.exit("hostile: interrupted")
