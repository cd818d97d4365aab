"""The calls every generated client makes, and what each answer must hold.

Every case starts from ``wsdl/examples/<Service>.<Operation>.json`` (the request wrapper's
children) and swaps in numbers, cards and serials that exist in the deterministic sandbox
seed (sandbox/store.py ``seed_users`` / ``seed_cards``), so each answer can be checked to the
field: the peer that answered (``MSG_SENDER``), RSP_CODE 0000 and the body.

Each toolkit gets its own *slot*: its own bank serials, paying user, cards, order and user
ids and TRANS_IDOs, so the toolkits never see each other's writes (and the bus's idempotent
consumer never answers one toolkit with another's first answer) in a session-wide bus.

The cases of a toolkit are in call order: Pay before Reverse of that payment, SyncOrder
before QueryOrderStatus of that order, ActivateCards before QueryCardStatus of that card.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Callable

from lxml import etree

from bus.segments import SegmentTable
from config.settings import load_settings
from sandbox.store import mask_name, seed_cards, seed_users
from services.models.common import WSDL_DIR

HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"
EXAMPLES = WSDL_DIR / "examples"

# One slot a toolkit (see the module docstring). A new toolkit takes the next free slot.
TOOLKITS = ("zeep", "suds", "java", "gsoap", "php", "node", "dotnet")
# The phase-2 province (answered by its own Billing) and the phase-3 one (HQ Billing).
PHASE2, PHASE3 = "51", "11"
ORDER_PROVINCE = "31"          # OrderSync example's province; HQ CRM sends on to CRM-31
PAY_AMOUNT = 10000             # fen, as in the Pay example


def body_ns(service: str) -> str:
    return f"http://ws.chinaunicom.cn/{service}/unibssBody"


def example(service: str, operation: str) -> dict:
    return json.loads((EXAMPLES / f"{service}.{operation}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _segments() -> SegmentTable:
    settings = load_settings(env={})
    return SegmentTable.from_files(settings.segments_file, settings.overrides_file)


@lru_cache(maxsize=None)
def routed_users(province: str) -> list:
    """The seeded users of ``province`` whose number the bus also routes to ``province``."""
    out = []
    for user in seed_users(province):
        segment = _segments().lookup(user.msisdn)
        if segment is not None and segment.province_code == province:
            out.append(user)
    assert len(out) >= len(TOOLKITS) + 2, f"the sandbox seed has too few users in province {province}"
    return out


@dataclass
class Case:
    """One call: the request arguments and the checks on the answer."""

    id: str                            # unique within a toolkit, e.g. "BankPayment.QueryBalance[51]"
    service: str
    operation: str
    args: dict                         # {"UNI_BSS_HEAD": {...}, "UNI_BSS_BODY": {...}}
    sender: str                        # the MSG_SENDER the answer must name
    expect: dict = field(default_factory=dict)         # body field -> exact value (compared as text)
    check: Callable[[dict], None] | None = None        # further checks on the (normalized) body

    @property
    def trans_ido(self) -> str:
        return self.args["UNI_BSS_HEAD"]["TRANS_IDO"]


def _args(service: str, operation: str, trans_ido: str, route: tuple[str, str] | None = None,
          **body) -> dict:
    args = copy.deepcopy(example(service, operation))
    head = args["UNI_BSS_HEAD"]
    head["TRANS_IDO"] = trans_ido
    head["PROC_ID"] = trans_ido
    head["PROCESS_TIME"] = datetime.now().strftime("%Y%m%d%H%M%S")
    if route is not None:
        head["ROUTING"] = {"ROUTE_TYPE": route[0], "ROUTE_VALUE": route[1]}
    for key, value in body.items():
        assert key in args["UNI_BSS_BODY"], f"{service}.{operation} example has no {key}"
        args["UNI_BSS_BODY"][key] = value
    return args


def cases_for(toolkit: str) -> list[Case]:
    """Every operation of every service, in call order, with ``toolkit``'s own data."""
    slot = TOOLKITS.index(toolkit)
    tag = f"E2E{toolkit.upper()[:6]}"                # TRANS_IDO = tag + 2 digits: at most 11 chars
    p2, p3 = routed_users(PHASE2), routed_users(PHASE3)
    reader, payer, hq_user = p2[0], p2[1 + slot], p3[0]
    assert reader.balance < 0, "the first seeded user of a province is in arrears"
    cards = [c for c in seed_cards(PHASE2) if c["state"] == "0"][2 * slot:2 * slot + 2]
    today = datetime.now().strftime("%Y%m%d")
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    pay_serial, reverse_serial = f"{tag}PAY{slot:02d}", f"{tag}REV{slot:02d}"
    order_id = f"{tag}ORD{slot:02d}"
    user_id = f"{tag}USR{slot:02d}"
    n = iter(range(1, 100))

    def tid() -> str:
        return f"{tag}{next(n):02d}"

    def arrears_items(body):
        items = as_list((body.get("BILL_ITEMS") or {}).get("BILL_ITEM"))
        assert len(items) == 2, f"two unpaid bill items expected, got {items!r}"
        assert sum(int(i["FEE"]) for i in items) == -reader.balance
        assert {i["BILL_CYCLE"] for i in items} == {"202610"}

    def all_activated(body):
        results = as_list((body.get("RESULTS") or {}).get("CARD_RESULT"))
        assert [(r["CARD_NO"], r["RESULT"]) for r in results] == [(c["card_no"], "0") for c in cards]

    def has_bill_serial(body):
        assert body.get("BILL_SERIAL"), f"no BILL_SERIAL in {body!r}"

    def order_forwarded(body):
        assert str(body.get("PROVINCE_ORDER_ID", "")).startswith(ORDER_PROVINCE), body

    def order_provisioning(body):
        order_forwarded(body)
        assert body.get("ORDER_STATE") in ("20", "30"), body   # provisioning, or already completed

    return [
        Case("BankPayment.QueryBalance[51]", "BankPayment", "QueryBalance",
             _args("BankPayment", "QueryBalance", tid(), ("01", reader.msisdn), SERIAL_NUMBER=reader.msisdn),
             sender=f"BILLING-{PHASE2}",
             expect={"SERIAL_NUMBER": reader.msisdn, "USER_STATE": reader.user_state,
                     "BALANCE": reader.balance, "ARREARS_FEE": -reader.balance}),
        Case("BankPayment.QueryBalance[11]", "BankPayment", "QueryBalance",
             _args("BankPayment", "QueryBalance", tid(), ("01", hq_user.msisdn),
                   SERIAL_NUMBER=hq_user.msisdn),
             sender="HQ-BILLING",
             expect={"SERIAL_NUMBER": hq_user.msisdn, "USER_STATE": hq_user.user_state,
                     "BALANCE": hq_user.balance, "ARREARS_FEE": max(0, -hq_user.balance)}),
        Case("BankPayment.QueryArrears", "BankPayment", "QueryArrears",
             _args("BankPayment", "QueryArrears", tid(), ("01", reader.msisdn), SERIAL_NUMBER=reader.msisdn),
             sender=f"BILLING-{PHASE2}",
             expect={"SERIAL_NUMBER": reader.msisdn, "CUST_NAME": mask_name(reader.cust_name),
                     "USER_STATE": reader.user_state, "ARREARS_FEE": -reader.balance,
                     "BALANCE": reader.balance},
             check=arrears_items),
        Case("BankPayment.Pay", "BankPayment", "Pay",
             _args("BankPayment", "Pay", tid(), ("01", payer.msisdn), BANK_SERIAL=pay_serial,
                   SERIAL_NUMBER=payer.msisdn, AMOUNT=PAY_AMOUNT, TRADE_TIME=now),
             sender=f"BILLING-{PHASE2}",
             expect={"BANK_SERIAL": pay_serial, "SERIAL_NUMBER": payer.msisdn, "AMOUNT": PAY_AMOUNT,
                     "BALANCE": payer.balance + PAY_AMOUNT, "ACCT_DATE": today},
             check=has_bill_serial),
        Case("BankPayment.Reverse", "BankPayment", "Reverse",
             _args("BankPayment", "Reverse", tid(), ("01", payer.msisdn), BANK_SERIAL=reverse_serial,
                   ORIG_BANK_SERIAL=pay_serial, SERIAL_NUMBER=payer.msisdn, AMOUNT=PAY_AMOUNT,
                   TRADE_TIME=now),
             sender=f"BILLING-{PHASE2}",
             expect={"BANK_SERIAL": reverse_serial, "ORIG_BANK_SERIAL": pay_serial,
                     "SERIAL_NUMBER": payer.msisdn, "AMOUNT": PAY_AMOUNT, "BALANCE": payer.balance}),
        Case("OrderSync.SyncOrder", "OrderSync", "SyncOrder",
             _args("OrderSync", "SyncOrder", tid(), ORDER_ID=order_id),
             sender="HQ-CRM", expect={"ORDER_ID": order_id, "ORDER_STATE": "20"}, check=order_forwarded),
        Case("OrderSync.QueryOrderStatus", "OrderSync", "QueryOrderStatus",
             _args("OrderSync", "QueryOrderStatus", tid(), ORDER_ID=order_id),
             sender="HQ-CRM", expect={"ORDER_ID": order_id}, check=order_provisioning),
        Case("CardActivation.ActivateCards", "CardActivation", "ActivateCards",
             _args("CardActivation", "ActivateCards", tid(), ("00", PHASE2), PROVINCE_CODE=PHASE2,
                   CARDS={"CARD_NO": [c["card_no"] for c in cards]}),
             sender=f"CRM-{PHASE2}", check=all_activated),
        Case("CardActivation.QueryCardStatus", "CardActivation", "QueryCardStatus",
             _args("CardActivation", "QueryCardStatus", tid(), ("00", PHASE2), CARD_NO=cards[0]["card_no"]),
             sender=f"CRM-{PHASE2}",
             expect={"CARD_NO": cards[0]["card_no"], "CARD_STATE": "1", "FACE_VALUE": cards[0]["face_value"],
                     "PROVINCE_CODE": PHASE2, "EXPIRE_DATE": cards[0]["expire_date"]}),
        Case("AccountSync.SyncThreeAccount", "AccountSync", "SyncThreeAccount",
             _three_account_args(tid(), hq_user, user_id),
             sender="HQ-BILLING", expect={"USER_ID": user_id, "SYNC_SEQ": 1024, "APPLIED": "0"}),
    ]


def _three_account_args(trans_ido: str, user, user_id: str) -> dict:
    """The SyncThreeAccount example, moved to a user of the phase-3 province (HQ Billing)."""
    args = _args("AccountSync", "SyncThreeAccount", trans_ido, ("01", user.msisdn))
    body = args["UNI_BSS_BODY"]
    body["USER"].update(USER_ID=user_id, SERIAL_NUMBER=user.msisdn, PROVINCE_CODE=user.province,
                        EPARCHY_CODE="010")
    body["PAY_RELATION"]["USER_ID"] = user_id
    return args


# -- what a toolkit hands back -------------------------------------------------------------

def as_list(value) -> list:
    """A repeated element: toolkits give one occurrence as an object and several as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def normalize(value):
    """Leaves as text (xs:long comes back as int, str or Long), nulls and empty optionals dropped."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def verify(case: Case, result: dict) -> None:
    """Assert the answer of ``case``: RSP_CODE 0000, the peer named, the body's fields."""
    result = normalize(result)
    head = result.get("UNI_BSS_HEAD") or {}
    response = head.get("RESPONSE") or {}
    assert response.get("RSP_CODE") == "0000", f"{case.id}: RESPONSE {response!r}"
    assert head.get("MSG_SENDER") == case.sender, (
        f"{case.id}: answered by {head.get('MSG_SENDER')!r}, expected {case.sender!r}")
    assert head.get("TRANS_IDO") == case.trans_ido, f"{case.id}: TRANS_IDO not echoed: {head!r}"
    body = result.get("UNI_BSS_BODY")
    assert body, f"{case.id}: no UNI_BSS_BODY in {result!r}"
    wrong = {k: (body.get(k), str(v)) for k, v in case.expect.items() if body.get(k) != str(v)}
    assert not wrong, f"{case.id}: body fields (got, expected): {wrong!r}; body {body!r}"
    if case.check is not None:
        case.check(body)


# -- XML in and out, for the toolkits driven by XML documents ------------------------------

def request_xml(case: Case) -> bytes:
    """The request wrapper element ``<Operation>`` as an XML document: the header's elements in
    the header namespace, the body's in the service's namespace, in the example's (= the XSD's)
    order; a JSON list becomes a repeated element."""
    ns = body_ns(case.service)
    root = etree.Element(f"{{{ns}}}{case.operation}", nsmap={"tns": ns, "head": HEAD_NS})

    def add(parent, name, value, ns):
        if isinstance(value, list):
            for item in value:
                add(parent, name, item, ns)
            return
        child = etree.SubElement(parent, f"{{{ns}}}{name}")
        if isinstance(value, dict):
            for k, v in value.items():
                add(child, k, v, ns)
        else:
            child.text = str(value)

    add(root, "UNI_BSS_HEAD", case.args["UNI_BSS_HEAD"], HEAD_NS)
    add(root, "UNI_BSS_BODY", case.args["UNI_BSS_BODY"], ns)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def xml_to_dict(element) -> dict | str | None:
    """An element as a dict by local name (repeated names become lists), a leaf as its text."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        if element.get("{http://www.w3.org/2001/XMLSchema-instance}nil") in ("true", "1"):
            return None
        return element.text or ""
    out: dict = {}
    for child in children:
        name = etree.QName(child).localname
        value = xml_to_dict(child)
        if name in out:
            if not isinstance(out[name], list):
                out[name] = [out[name]]
            out[name].append(value)
        else:
            out[name] = value
    return out
