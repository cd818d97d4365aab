"""The fast path (lxml in, the canonical peer's answer forwarded as it came) and the typed path
(spyne in, zeep to the peer, spyne out) give the same answers, over real HTTP.

Two buses on their own sandboxes, seeded alike: one with ``bus.fast_path`` (the default), one
without. Every example request of wsdl/examples/ goes to both; their answers are compared as
data (every value as text) and as the caller's generated client sees them."""
from __future__ import annotations

import copy
import json
import re

import pytest
from lxml import etree
from sqlalchemy import func, select

from bus.embedded import EmbeddedBus
from config.settings import load_settings
from bus.idempotency import key_of
from bus.message import Message
from dao.models import IdempotencyKey, OutboxEntry
from services.client import BusClient
from services.models import CONTRACTS, from_xml
from services.models.common import WSDL_DIR
from tests.e2e.conftest import post, wait_for

EXAMPLES = sorted((WSDL_DIR / "examples").glob("*.json"))
#: Values that differ between two runs of one request (times the peers stamp, their serials).
VOLATILE = {"PROCESS_TIME", "TRANS_IDH", "UPDATE_TIME", "PROVINCE_ORDER_ID", "BILL_SERIAL", "TRADE_TIME"}


@pytest.fixture(scope="module")
def buses(tmp_path_factory):
    fast_dir, typed_dir = tmp_path_factory.mktemp("fast"), tmp_path_factory.mktemp("typed")
    typed = load_settings(env={}).copy()
    typed.raw.setdefault("bus", {})["fast_path"] = False
    with EmbeddedBus(workdir=fast_dir) as fast, EmbeddedBus(typed, workdir=typed_dir) as slow:
        yield fast, slow


def pending(embedded) -> int:
    """Messages the bus has accepted and not delivered yet."""
    t = OutboxEntry.__table__
    with embedded.bus.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(t).where(t.c.status == "pending")).scalar()


def stored_fingerprint(embedded, key: str) -> str | None:
    """The fingerprint of the request the bus stored its first answer for under ``key``."""
    t = IdempotencyKey.__table__
    with embedded.bus.engine.connect() as conn:
        reply = conn.execute(select(t.c.reply).where(t.c.key == key)).scalar()
    return json.loads(reply)["fingerprint"] if reply else None


def forwarded(embedded) -> int:
    text = embedded.app.metrics.render().decode()
    match = re.search(r"^bssbus_forwarded_total (\S+)$", text, re.M)
    return int(float(match.group(1))) if match else 0


def raw_call(url: str, service: str, operation: str, args: dict) -> tuple[int, dict]:
    """POST a request built from ``args``; (HTTP status, the answer's Result as text data)."""
    wrapper = from_args(service, operation, args)
    env = "http://schemas.xmlsoap.org/soap/envelope/"
    root = etree.Element(f"{{{env}}}Envelope", nsmap={"soapenv": env})
    etree.SubElement(root, f"{{{env}}}Body").append(wrapper)
    status, _, body = post(f"{url}/ws/{service}", etree.tostring(root, xml_declaration=True, encoding="utf-8"))
    answer = etree.fromstring(body)
    inner = answer[-1][0]
    if etree.QName(inner).localname == "Fault":
        return status, {"fault": inner.findtext("faultcode"), "string": inner.findtext("faultstring")}
    return status, from_xml(CONTRACTS[service], operation, inner, response=True)


def from_args(service, operation, args):
    from services.models.common import to_xml
    return to_xml(CONTRACTS[service], operation, args)


def scrub(data):
    if isinstance(data, dict):
        return {k: ("*" if k in VOLATILE else scrub(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [scrub(v) for v in data]
    return data


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_both_paths_answer_every_example_alike(buses, example):
    fast, typed = buses
    service, operation = example.stem.split(".")
    args = json.loads(example.read_text(encoding="utf-8"))
    before = forwarded(fast)
    answers = []
    wait_for(lambda: not pending(fast) and not pending(typed))   # the sandboxes in the same state
    for embedded in (fast, typed):
        one = copy.deepcopy(args)
        one["UNI_BSS_HEAD"]["TRANS_IDO"] = f"FP{example.stem[:18]}"[:28]
        answers.append(raw_call(embedded.url, service, operation, one))
    (fast_status, fast_answer), (typed_status, typed_answer) = answers
    assert fast_status == typed_status
    assert scrub(fast_answer) == scrub(typed_answer)
    # the request's dicts were the same too: the idempotency key's fingerprint is of the body;
    # a read has no key, so there the journal's columns taken from the dicts are compared
    sent = copy.deepcopy(args)
    sent["UNI_BSS_HEAD"]["TRANS_IDO"] = f"FP{example.stem[:18]}"[:28]
    message = Message(service, operation, sent["UNI_BSS_HEAD"], sent["UNI_BSS_BODY"])
    prints = [stored_fingerprint(embedded, key_of(message)) for embedded in (fast, typed)]
    if message.read:
        assert prints == [None, None], "a read has no idempotency key"
        rows = [[{k: h[k] for k in ("direction", "service", "operation", "trans_ido", "proc_id", "msisdn",
                                    "source", "status", "rsp_code", "target", "province", "route")}
                 for h in embedded.bus.journal.hops(message.trans_ido)] for embedded in (fast, typed)]
        assert rows[0] and rows[0] == rows[1], rows
    else:
        assert prints[0] is not None and prints[0] == prints[1], (key_of(message), prints)
    # and through a generated (zeep) client, typed values and all
    zeep_fast = BusClient(fast.url).call(service, operation, _renamed(args, "FZ"))
    zeep_typed = BusClient(typed.url).call(service, operation, _renamed(args, "FZ"))
    assert (zeep_fast.fault_code, scrub(zeep_fast.head), scrub(zeep_fast.body)) == (
        zeep_typed.fault_code, scrub(zeep_typed.head), scrub(zeep_typed.body))
    assert forwarded(typed) == 0
    if operation.startswith("Query") and service != "OrderSync" and zeep_fast.fault_code is None:
        assert forwarded(fast) > before, "a canonical peer's read goes the fast way"


def _renamed(args, prefix):
    one = copy.deepcopy(args)
    one["UNI_BSS_HEAD"]["TRANS_IDO"] = (prefix + one["UNI_BSS_HEAD"]["TRANS_IDO"])[:28]
    return one


def test_the_callers_soap_header_never_reaches_the_peer(buses):
    """A caller's WS-Security header (its password) is the bus's, not the peer's: the fast path
    drops the SOAP Header before it forwards the envelope."""
    fast, _ = buses
    args = json.loads((WSDL_DIR / "examples" / "BankPayment.QueryArrears.json").read_text(encoding="utf-8"))
    args["UNI_BSS_HEAD"]["TRANS_IDO"] = "FPHEADER0000000000001"
    env = "http://schemas.xmlsoap.org/soap/envelope/"
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    root = etree.Element(f"{{{env}}}Envelope", nsmap={"soapenv": env})
    header = etree.SubElement(root, f"{{{env}}}Header")
    token = etree.SubElement(etree.SubElement(header, f"{{{wsse}}}Security"), f"{{{wsse}}}UsernameToken")
    etree.SubElement(token, f"{{{wsse}}}Username").text = "ICBC"
    etree.SubElement(token, f"{{{wsse}}}Password").text = "s3cret-of-the-bank"
    etree.SubElement(root, f"{{{env}}}Body").append(from_args("BankPayment", "QueryArrears", args))
    before = forwarded(fast)
    status, _, _ = post(f"{fast.url}/ws/BankPayment", etree.tostring(root, xml_declaration=True, encoding="utf-8"))
    assert status == 200 and forwarded(fast) == before + 1
    [out] = [h for h in fast.bus.journal.hops("FPHEADER0000000000001") if h["direction"] == "out"]
    sent = out["request"].decode("utf-8")
    assert "Security" not in sent and "s3cret" not in sent and "Header" not in sent
    assert "<ns0:MSG_RECEIVER" in sent or "MSG_RECEIVER>BILLING-51<" in sent.replace("ns0:", "")
