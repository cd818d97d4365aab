"""The calls every generated client makes, and what each answer must hold.

Every case starts from ``wsdl/examples/<Service>.<Operation>.json`` (the request wrapper's
children) and swaps in numbers, cards, serials and ids that exist in the deterministic sandbox
seed (sandbox/store.py ``seed_users`` / ``seed_cards`` / ``products`` / ``free_numbers`` /
``channels`` / ``call_details``), so each answer can be checked to the field: the RSP_CODE, the
peer that answered (``MSG_SENDER``) and the body. Every operation of every service is called,
by the caller (``ORIG_DOMAIN``) its route names, and in both phases where the route depends on
the phase: for a user (or the cards) of province 51 (phase 2) and of province 11 (phase 3).

Where the answer alone does not show the route (HQ CRM answers a bill query in both phases,
having asked the billing that owns the user; a VAC change goes on to the billing and to HQ CRM),
``flow`` names every hop the bus journalled for the case's PROC_ID; ``verify`` checks it, and
that the toolkit's request was a SOAP 1.1 envelope, when given the bus.

One-way operations (store-and-forward routes: HQ CRM's orders and work orders to a province, card
activation, three-account and VAC syncs, work-order results and notices to e-sales) are answered
by the bus itself, 'accepted' (``MSG_SENDER`` BUS, no body, the recipients named). For those
``verify`` waits until the Forwarder delivered the message to each recipient and checks each
peer's answer as the journal keeps it (``expect``/``check`` apply to it), then ``after`` checks
what the flow left in the sandbox.

Each toolkit gets its own *slot*: its own bank and top-up serials, users that pay and top up,
cards, order, trade and user ids and TRANS_IDOs, so the toolkits never see each other's writes in
a session-wide bus. Users only read (the first user of a province, in arrears; its GSM user) are
shared.

The cases of a toolkit are in call order: Pay before Reverse of that payment, then the top-up of
the same user (its expected balance counts on the reversal), SyncOrder before QueryOrderStatus of
that order, TopUp before QueryTopUp and before QueryCardStatus of the card it used.
"""
from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Callable

from lxml import etree

from sqlalchemy import select

from bus.segments import SegmentTable
from config.settings import load_settings
from sandbox import store
from sandbox.store import (SeedUser, call_details, channels, free_numbers, mask_name, products, seed_cards,
                           seed_users)
from services.client import BusClient
from services.models.common import WSDL_DIR
from tests.e2e.conftest import delivered, peer_answer, wait_for

HEAD_NS = "http://ws.chinaunicom.cn/unibssHead"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
EXAMPLES = WSDL_DIR / "examples"

# One slot a toolkit (see the module docstring). A new toolkit takes the next free slot.
TOOLKITS = ("zeep", "suds", "java", "gsoap", "php", "node", "dotnet")
# The phase-2 province (its own Billing, reached through its CRM) and the phase-3 one (HQ Billing).
PHASE2, PHASE3 = "51", "11"
PROVINCES = (PHASE2, PHASE3)
ORDER_PROVINCE = "31"          # OrderSync example's province; HQ CRM sends on to CRM-31
PAY_AMOUNT = 10000             # fen, as in the Pay example
BILL_CYCLE = "202610"          # the cycle of the seeded bill items
# Who answers, by phase: banks and the top-up system reach the billing; cards are the province
# CRM's in phase 2 and the top-up card system's in phase 3; HQ CRM asks the province CRM (which
# answers from its Billing) in phase 2 and HQ Billing in phase 3.
BILLING = {PHASE2: f"BILLING-{PHASE2}", PHASE3: "HQ-BILLING"}
CARD_SYSTEM = {PHASE2: f"CRM-{PHASE2}", PHASE3: "TOPUP"}
BILL_OWNER = {PHASE2: f"CRM-{PHASE2}", PHASE3: "HQ-BILLING"}
EPARCHY = {PHASE2: "0755", PHASE3: "010"}      # Shenzhen, Beijing


def body_ns(service: str) -> str:
    return f"http://ws.chinaunicom.cn/{service}/unibssBody"


def example(service: str, operation: str) -> dict:
    return json.loads((EXAMPLES / f"{service}.{operation}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _segments() -> SegmentTable:
    settings = load_settings(env={})
    phases = {p: settings.phases.get(p) for p in PROVINCES}
    assert phases == {PHASE2: 2, PHASE3: 3}, f"config/bus.yaml moved a province these cases rely on: {phases}"
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


@dataclass(frozen=True)
class Users:
    """The users of one province a toolkit calls with."""

    reader: SeedUser     # in arrears, 3G, normal state: only read (bills, balances); shared
    gsm: SeedUser        # the GSM user: only read (no HQ-CRM recipient, no VAC sync); shared
    own: SeedUser        # this toolkit's own 3G user: pays, reverses, tops up, syncs


def users_of(province: str, slot: int) -> Users:
    users = routed_users(province)
    reader = users[0]
    assert reader.balance < 0 and reader.net_type == "50" and reader.user_state == "00", \
        f"the first seeded user of {province} is a normal 3G user in arrears: {reader}"
    gsm = next(u for u in users if u.net_type == "10")
    own = [u for u in users if u.net_type == "50" and u is not reader]
    assert len(own) > slot, f"the sandbox seed has no 3G user left in province {province} for slot {slot}"
    return Users(reader, gsm, own[slot])


def toolkit_cards(province: str, slot: int) -> tuple[list[dict], dict]:
    """Two not-yet-activated cards of ``province`` to activate, and one active card to top up with."""
    cards = seed_cards(province)
    fresh = [c for c in cards if c["state"] == "0"][2 * slot:2 * slot + 2]
    active = [c for c in cards if c["state"] == "1"]
    assert len(fresh) == 2 and len(active) > slot, f"the sandbox seed has too few cards in {province}"
    return fresh, active[slot]


Hop = tuple[str, str, str]      # (direction, source, target) of a journalled hop


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
    rsp_code: str = "0000"             # the RESPONSE/RSP_CODE the answer must carry
    flow: list[Hop] | None = None      # every hop journalled for the PROC_ID, in time order
    flow_continues: bool = False       # True: asynchronous hops may follow ``flow`` (a prefix)
    settled: list[Hop] | None = None   # every hop once the asynchronous ones are done, in any order
    accepted: bool = False             # a store-and-forward route: the bus answers "accepted" (no body)
    delivered_to: tuple[str, ...] = ()  # ... naming these recipients; its Forwarder delivers to each,
    peer_rsp_code: str = "0000"        # which answers this RSP_CODE, its body checked by expect/check
    after: Callable[[object], None] | None = None      # checks on the bus (EmbeddedBus) once settled

    @property
    def trans_ido(self) -> str:
        return self.args["UNI_BSS_HEAD"]["TRANS_IDO"]


def _args(service: str, operation: str, trans_ido: str, route: tuple[str, str] | None = None,
          caller: str | None = None, **body) -> dict:
    args = copy.deepcopy(example(service, operation))
    head = args["UNI_BSS_HEAD"]
    head["TRANS_IDO"] = trans_ido
    head["PROC_ID"] = trans_ido
    head["PROCESS_TIME"] = datetime.now().strftime("%Y%m%d%H%M%S")
    if caller is not None:
        head["ORIG_DOMAIN"] = caller
    if route is not None:
        head["ROUTING"] = {"ROUTE_TYPE": route[0], "ROUTE_VALUE": route[1]}
    for key, value in body.items():
        assert key in args["UNI_BSS_BODY"], f"{service}.{operation} example has no {key}"
        args["UNI_BSS_BODY"][key] = value
    return args


def direct(caller: str, target: str) -> list[Hop]:
    """The hops of a message the bus delivered to one peer."""
    return [("in", caller, target), ("out", "BUS", target)]


def rows_equal(what: str, got, want: list[dict]) -> None:
    """A repeated element's occurrences equal ``want`` (compared as normalized text), in order."""
    got, want = as_list(got), normalize(want)
    assert got == want, f"{what}: got {got!r}, expected {want!r}"


def no_recipients(body) -> None:
    """A peer's own answer: RECIPIENTS is what the bus adds on a synchronous recipient list only."""
    assert not body.get("RECIPIENTS"), f"a peer's answer with RECIPIENTS: {body!r}"


def cases_for(toolkit: str) -> list[Case]:
    """Every operation of every service (both phases where the route follows the phase), in call
    order, with ``toolkit``'s own data."""
    slot = TOOLKITS.index(toolkit)
    tag = f"E2E{toolkit.upper()[:6]}"                # TRANS_IDO = tag + 2 digits: at most 11 chars
    today = datetime.now().strftime("%Y%m%d")
    now = datetime.now().strftime("%Y%m%d%H%M%S")
    users = {p: users_of(p, slot) for p in PROVINCES}
    cards = {p: toolkit_cards(p, slot) for p in PROVINCES}
    order_id = f"{tag}ORD{slot:02d}"
    n = iter(range(1, 100))

    def tid() -> str:
        return f"{tag}{next(n):02d}"

    def has_bill_serial(body):
        assert body.get("BILL_SERIAL"), f"no BILL_SERIAL in {body!r}"

    cases: list[Case] = []
    add = cases.append

    # -- BankPayment: banks -> the billing of the number's province -------------------------
    for p in PROVINCES:
        u = users[p]
        reader, own = u.reader, u.own
        pay_serial, reverse_serial = f"{tag}PAY{p}", f"{tag}REV{p}"

        def arrears_items(body, reader=reader):
            items = as_list((body.get("BILL_ITEMS") or {}).get("BILL_ITEM"))
            assert len(items) == 2, f"two unpaid bill items expected, got {items!r}"
            assert sum(int(i["FEE"]) for i in items) == -reader.balance
            assert {i["BILL_CYCLE"] for i in items} == {BILL_CYCLE}

        add(Case(f"BankPayment.QueryBalance[{p}]", "BankPayment", "QueryBalance",
                 _args("BankPayment", "QueryBalance", tid(), ("01", reader.msisdn), SERIAL_NUMBER=reader.msisdn),
                 sender=BILLING[p], flow=direct("BANK", BILLING[p]),
                 expect={"SERIAL_NUMBER": reader.msisdn, "USER_STATE": reader.user_state,
                         "BALANCE": reader.balance, "ARREARS_FEE": -reader.balance}))
        add(Case(f"BankPayment.QueryArrears[{p}]", "BankPayment", "QueryArrears",
                 _args("BankPayment", "QueryArrears", tid(), ("01", reader.msisdn), SERIAL_NUMBER=reader.msisdn),
                 sender=BILLING[p], flow=direct("BANK", BILLING[p]),
                 expect={"SERIAL_NUMBER": reader.msisdn, "CUST_NAME": mask_name(reader.cust_name),
                         "USER_STATE": reader.user_state, "ARREARS_FEE": -reader.balance,
                         "BALANCE": reader.balance},
                 check=arrears_items))
        add(Case(f"BankPayment.Pay[{p}]", "BankPayment", "Pay",
                 _args("BankPayment", "Pay", tid(), ("01", own.msisdn), BANK_SERIAL=pay_serial,
                       SERIAL_NUMBER=own.msisdn, AMOUNT=PAY_AMOUNT, TRADE_TIME=now),
                 sender=BILLING[p], flow=direct("BANK", BILLING[p]),
                 expect={"BANK_SERIAL": pay_serial, "SERIAL_NUMBER": own.msisdn, "AMOUNT": PAY_AMOUNT,
                         "BALANCE": own.balance + PAY_AMOUNT, "ACCT_DATE": today},
                 check=has_bill_serial))
        add(Case(f"BankPayment.Reverse[{p}]", "BankPayment", "Reverse",
                 _args("BankPayment", "Reverse", tid(), ("01", own.msisdn), BANK_SERIAL=reverse_serial,
                       ORIG_BANK_SERIAL=pay_serial, SERIAL_NUMBER=own.msisdn, AMOUNT=PAY_AMOUNT,
                       TRADE_TIME=now),
                 sender=BILLING[p], flow=direct("BANK", BILLING[p]),
                 expect={"BANK_SERIAL": reverse_serial, "ORIG_BANK_SERIAL": pay_serial,
                         "SERIAL_NUMBER": own.msisdn, "AMOUNT": PAY_AMOUNT, "BALANCE": own.balance}))
        add(Case(f"BankPayment.QueryPayment[{p}]", "BankPayment", "QueryPayment",
                 _args("BankPayment", "QueryPayment", tid(), ("01", own.msisdn), BANK_SERIAL=pay_serial),
                 sender=BILLING[p], flow=direct("BANK", BILLING[p]),
                 expect={"BANK_SERIAL": pay_serial, "TXN_TYPE": "0", "SERIAL_NUMBER": own.msisdn,
                         "AMOUNT": PAY_AMOUNT, "BALANCE": own.balance + PAY_AMOUNT, "ACCT_DATE": today,
                         "TXN_STATE": "1"},   # the payment above, reversed since
                 check=has_bill_serial))

    # -- TopUp: the top-up card system -> the billing of the number's province ---------------
    for p in PROVINCES:
        own, card = users[p].own, cards[p][1]
        serial = f"{tag}TOPUP{p}"
        after = own.balance + card["face_value"]        # the payment above was reversed

        add(Case(f"TopUp.TopUp[{p}]", "TopUp", "TopUp",
                 _args("TopUp", "TopUp", tid(), ("01", own.msisdn), TOPUP_SERIAL=serial, CARD_NO=card["card_no"],
                       SERIAL_NUMBER=own.msisdn, TRADE_TIME=now),
                 sender=BILLING[p], flow=direct("TOPUP", BILLING[p]),
                 expect={"TOPUP_SERIAL": serial, "SERIAL_NUMBER": own.msisdn, "CARD_NO": card["card_no"],
                         "AMOUNT": card["face_value"], "BALANCE": after, "ACCT_DATE": today},
                 check=has_bill_serial))
        add(Case(f"TopUp.QueryTopUp[{p}]", "TopUp", "QueryTopUp",
                 _args("TopUp", "QueryTopUp", tid(), ("01", own.msisdn), TOPUP_SERIAL=serial),
                 sender=BILLING[p], flow=direct("TOPUP", BILLING[p]),
                 expect={"TOPUP_SERIAL": serial, "SERIAL_NUMBER": own.msisdn, "CARD_NO": card["card_no"],
                         "AMOUNT": card["face_value"], "TOPUP_STATE": "0", "TRADE_TIME": now,
                         "BALANCE": after, "ACCT_DATE": today},
                 check=has_bill_serial))
        add(Case(f"TopUp.QueryBalance[{p}]", "TopUp", "QueryBalance",
                 _args("TopUp", "QueryBalance", tid(), ("01", own.msisdn), SERIAL_NUMBER=own.msisdn),
                 sender=BILLING[p], flow=direct("TOPUP", BILLING[p]),
                 expect={"SERIAL_NUMBER": own.msisdn, "USER_STATE": own.user_state, "BALANCE": after,
                         "ARREARS_FEE": max(0, -after)}))

    # -- OrderSync: e-sales -> HQ CRM (-> CRM-31 through the bus); HQ CRM -> e-sales ----------
    crm31 = f"CRM-{ORDER_PROVINCE}"

    def order_sent(body):
        assert not body.get("PROVINCE_ORDER_ID"), f"the province has not answered HQ CRM yet: {body!r}"

    def order_state(body):   # sent to the province (10), or completed (30) with the province's id
        state, province_order_id = body.get("ORDER_STATE"), str(body.get("PROVINCE_ORDER_ID") or "")
        assert (state, bool(province_order_id)) in (("10", False), ("30", True)), body
        assert province_order_id.startswith(ORDER_PROVINCE) or not province_order_id, body

    def order_completed(bus, order_id=order_id):
        """HQ CRM got the province's order id (it asked the province once the work order was
        reported) and told e-sales: its notice carries that id."""
        with bus.sandbox.engine.connect() as conn:
            o, n = store.orders.c, store.notifications.c
            ids = dict(conn.execute(select(o.peer, o.province_order_id).where(o.order_id == order_id)).all())
            notices = conn.execute(select(n.peer, n.order_state, n.province_order_id).where(
                n.order_id == order_id)).all()
        assert set(ids) == {"HQ-CRM", crm31} and ids["HQ-CRM"] == ids[crm31], ids
        assert ids[crm31].startswith(ORDER_PROVINCE), ids
        assert [tuple(n) for n in notices] == [("ESALES", "30", ids[crm31])], notices

    add(Case("OrderSync.SyncOrder", "OrderSync", "SyncOrder",
             _args("OrderSync", "SyncOrder", tid(), caller="ESALE", ORDER_ID=order_id),
             sender="HQ-CRM", expect={"ORDER_ID": order_id, "ORDER_STATE": "10"}, check=order_sent,
             # HQ CRM's order to the province, accepted by the bus while HQ CRM answers ...
             flow=direct("ESALE", "HQ-CRM") + [("in", "UCRM", crm31)], flow_continues=True,
             # ... then its work order, both delivered; the province reports, HQ CRM asks it for its
             # order id and tells e-sales
             settled=direct("ESALE", "HQ-CRM") + direct("UCRM", crm31) * 3 + direct("PCRM", "HQ-CRM")
             + direct("UCRM", "ESALES"), after=order_completed))
    add(Case("OrderSync.QueryOrderStatus", "OrderSync", "QueryOrderStatus",
             _args("OrderSync", "QueryOrderStatus", tid(), caller="ESALE", ORDER_ID=order_id),
             sender="HQ-CRM", expect={"ORDER_ID": order_id}, check=order_state,
             flow=direct("ESALE", "HQ-CRM")))
    notice_id = f"{tag}NTC{slot:02d}"

    def notice_received(bus, notice_id=notice_id):
        with bus.sandbox.engine.connect() as conn:
            n = store.notifications.c
            got = conn.execute(select(n.peer, n.order_state, n.province_order_id).where(
                n.order_id == notice_id)).all()
        assert [tuple(r) for r in got] == [("ESALES", "30", f"{ORDER_PROVINCE}{notice_id}")], got

    add(Case("OrderSync.NotifyOrderStatus", "OrderSync", "NotifyOrderStatus",
             _args("OrderSync", "NotifyOrderStatus", tid(), caller="UCRM", ORDER_ID=notice_id,
                   PROVINCE_ORDER_ID=f"{ORDER_PROVINCE}{notice_id}", UPDATE_TIME=now),
             sender="BUS", accepted=True, delivered_to=("ESALES",), expect={"ORDER_ID": notice_id},
             flow=direct("UCRM", "ESALES"), after=notice_received))

    # -- Provisioning: HQ CRM -> the province CRM; the province CRM -> HQ CRM (-> e-sales) ----
    own = users[PHASE2].own
    trade_id, work_order = f"{tag}TRD{slot:02d}", f"{tag}WOD{slot:02d}"

    def work_done(bus, trade_id=trade_id):
        with bus.sandbox.engine.connect() as conn:
            w = store.work_orders.c
            got = conn.execute(select(w.peer, w.state).where(w.trade_id == trade_id)).all()
        assert [tuple(r) for r in got] == [(f"CRM-{PHASE2}", "3")], got   # the network was activated

    add(Case("Provisioning.SubmitWorkOrder", "Provisioning", "SubmitWorkOrder",
             _args("Provisioning", "SubmitWorkOrder", tid(), ("00", PHASE2), caller="UCRM", TRADE_ID=trade_id,
                   ORDER_ID=work_order, USER_ID=f"{tag}WOU{slot:02d}", SERIAL_NUMBER=own.msisdn,
                   PROVINCE_CODE=PHASE2),
             sender="BUS", accepted=True, delivered_to=(f"CRM-{PHASE2}",),
             expect={"TRADE_ID": trade_id, "WORK_STATE": "1"},
             # delivered to CRM-51, which reports the result to HQ CRM through the bus a moment
             # later; HQ CRM tells e-sales (all stored and forwarded)
             flow=direct("UCRM", f"CRM-{PHASE2}") + direct("PCRM", "HQ-CRM") + direct("UCRM", "ESALES"),
             after=work_done))
    report_trade, report_order = f"{tag}RTD{slot:02d}", f"{tag}ROD{slot:02d}"
    add(Case("Provisioning.ReportWorkOrderResult", "Provisioning", "ReportWorkOrderResult",
             _args("Provisioning", "ReportWorkOrderResult", tid(), ("00", PHASE2), caller="PCRM",
                   TRADE_ID=report_trade, ORDER_ID=report_order, SERIAL_NUMBER=own.msisdn,
                   PROVINCE_CODE=PHASE2, WORK_STATE="3", FINISH_TIME=now),
             sender="BUS", accepted=True, delivered_to=("HQ-CRM",),
             expect={"TRADE_ID": report_trade, "ORDER_ID": report_order, "ORDER_STATE": "30"},
             # delivered to HQ CRM, which tells e-sales (both stored and forwarded)
             flow=direct("PCRM", "HQ-CRM") + direct("UCRM", "ESALES")))

    # -- CardActivation: HQ CRM -> the province CRM (phase 2) or the top-up card system (3) ---
    for p in PROVINCES:
        fresh, used = cards[p]

        def all_activated(body, fresh=fresh):
            results = as_list((body.get("RESULTS") or {}).get("CARD_RESULT"))
            assert [(r["CARD_NO"], r["RESULT"]) for r in results] == [(c["card_no"], "0") for c in fresh]

        def now_active(bus, fresh=fresh, p=p):
            """The card system says so when asked (QueryCardStatus: synchronous, it answers)."""
            for card in fresh:
                status = BusClient(bus.url).call("CardActivation", "QueryCardStatus", _args(
                    "CardActivation", "QueryCardStatus", f"{tag}{card['card_no']}", ("00", p), caller="UCRM",
                    CARD_NO=card["card_no"]))
                assert (status.sender, (status.body or {}).get("CARD_STATE")) == (CARD_SYSTEM[p], "1"), status

        add(Case(f"CardActivation.ActivateCards[{p}]", "CardActivation", "ActivateCards",
                 _args("CardActivation", "ActivateCards", tid(), ("00", p), caller="UCRM", PROVINCE_CODE=p,
                       CARDS={"CARD_NO": [c["card_no"] for c in fresh]}),
                 sender="BUS", accepted=True, delivered_to=(CARD_SYSTEM[p],), check=all_activated,
                 flow=direct("UCRM", CARD_SYSTEM[p]), after=now_active))
        add(Case(f"CardActivation.QueryCardStatus[{p}]", "CardActivation", "QueryCardStatus",
                 _args("CardActivation", "QueryCardStatus", tid(), ("00", p), caller="UCRM",
                       CARD_NO=used["card_no"]),
                 sender=CARD_SYSTEM[p], flow=direct("UCRM", CARD_SYSTEM[p]),
                 expect={"CARD_NO": used["card_no"], "CARD_STATE": "2",   # used by this toolkit's top-up
                         "FACE_VALUE": used["face_value"], "PROVINCE_CODE": p, "EXPIRE_DATE": used["expire_date"]}))

    # -- AccountSync: a province CRM -> the billing of its phase (+ HQ CRM for a 3G user);
    #    HQ CRM -> HQ Billing and the province CRM (phase 3) -----------------------------------
    def three_account(case_id, user, caller, targets):
        user_id = f"{tag}USR{len(cases):02d}"

        def stored(bus, user_id=user_id, targets=targets):
            with bus.sandbox.engine.connect() as conn:
                t = store.three_accounts.c
                got = dict(conn.execute(select(t.peer, t.sync_seq).where(t.user_id == user_id)).all())
            assert got == {peer: 1024 for peer in targets}, got

        # accepted, then delivered to each recipient in turn (one user's messages in order);
        # each answers APPLIED 0
        add(Case(case_id, "AccountSync", "SyncThreeAccount",
                 _three_account_args(tid(), user, user_id, caller),
                 sender="BUS", accepted=True, delivered_to=tuple(targets),
                 expect={"USER_ID": user_id, "SYNC_SEQ": 1024, "APPLIED": "0"}, check=no_recipients,
                 flow=[("in", caller, targets[0])] + [("out", "BUS", t) for t in targets], after=stored))

    for p in PROVINCES:
        three_account(f"AccountSync.SyncThreeAccount[{p}]", users[p].own, "PCRM", [BILLING[p], "HQ-CRM"])
    three_account(f"AccountSync.SyncThreeAccount[{PHASE2}-GSM]", users[PHASE2].gsm, "PCRM", [BILLING[PHASE2]])
    three_account(f"AccountSync.SyncThreeAccount[{PHASE3}-from-HQ-CRM]", users[PHASE3].own, "UCRM",
                  ["HQ-BILLING", f"CRM-{PHASE3}"])

    # -- BillQuery: e-sales -> HQ CRM, which asks the billing that owns the user ---------------
    for p in PROVINCES:
        reader = users[p].reader
        via = direct("ESALE", "HQ-CRM") + direct("UCRM", BILL_OWNER[p])
        half = -reader.balance // 2

        def bill_items(body, half=half, reader=reader):
            items = as_list((body.get("BILL_ITEMS") or {}).get("BILL_ITEM"))
            want = [("月租费", str(half)), ("通话费", str(-reader.balance - half))]   # seeded in this order
            assert sorted(i.get("ITEM_CODE") for i in items) == ["0001", "0002"], f"BILL_ITEMS: {items!r}"
            assert sorted((i.get("ITEM_NAME"), i.get("FEE")) for i in items) == sorted(want), \
                f"BILL_ITEMS: got {items!r}, expected (ITEM_NAME, FEE) {want!r}"

        details = call_details(reader.msisdn, BILL_CYCLE, "1")

        def page_two(body, details=details):
            rows_equal("CALL_DETAILS", (body.get("CALL_DETAILS") or {}).get("CALL_DETAIL"), details[5:10])

        add(Case(f"BillQuery.QueryBill[{p}]", "BillQuery", "QueryBill",
                 _args("BillQuery", "QueryBill", tid(), ("01", reader.msisdn), caller="ESALE",
                       SERIAL_NUMBER=reader.msisdn, BILL_CYCLE=BILL_CYCLE),
                 sender="HQ-CRM", flow=via, check=bill_items,
                 expect={"SERIAL_NUMBER": reader.msisdn, "BILL_CYCLE": BILL_CYCLE,
                         "CUST_NAME": mask_name(reader.cust_name), "TOTAL_FEE": -reader.balance,
                         "PAID_FEE": 0, "UNPAID_FEE": -reader.balance}))
        add(Case(f"BillQuery.QueryCallDetails[{p}]", "BillQuery", "QueryCallDetails",
                 _args("BillQuery", "QueryCallDetails", tid(), ("01", reader.msisdn), caller="ESALE",
                       SERIAL_NUMBER=reader.msisdn, BILL_CYCLE=BILL_CYCLE, DETAIL_TYPE="1", PAGE_NO=2,
                       PAGE_SIZE=5),
                 sender="HQ-CRM", flow=via, check=page_two,
                 expect={"SERIAL_NUMBER": reader.msisdn, "BILL_CYCLE": BILL_CYCLE, "TOTAL_COUNT": len(details)}))
        add(Case(f"BillQuery.QueryBalance[{p}]", "BillQuery", "QueryBalance",
                 _args("BillQuery", "QueryBalance", tid(), ("01", reader.msisdn), caller="ESALE",
                       SERIAL_NUMBER=reader.msisdn),
                 sender="HQ-CRM", flow=via,
                 expect={"SERIAL_NUMBER": reader.msisdn, "USER_STATE": reader.user_state,
                         "BALANCE": reader.balance, "ARREARS_FEE": -reader.balance}))

    # -- ReverseSync: a province VAC -> its CRM, which syncs a 3G user on to its billing and HQ CRM
    #    (the VAC's change and the CRM's sync are both stored and forwarded)
    for p in PROVINCES:
        own = users[p].own
        seq = f"{tag}VAC{p}"

        def synced_to_hq(bus, own=own, p=p, seq=seq):
            with bus.sandbox.engine.connect() as conn:
                v, t = store.vac_changes.c, store.three_accounts.c
                vac = conn.execute(select(v.peer, v.is_3g, v.synced).where(v.vac_seq == seq)).all()
                holders = conn.execute(select(t.peer).where(t.user_id == f"U{own.msisdn}")).scalars().all()
            assert [tuple(r) for r in vac] == [(f"CRM-{p}", 1, 1)], vac
            assert {BILLING[p], "HQ-CRM"} <= set(holders), holders

        add(Case(f"ReverseSync.SyncVacChange[{p}]", "ReverseSync", "SyncVacChange",
                 _args("ReverseSync", "SyncVacChange", tid(), ("00", p), caller="VAC", VAC_SEQ=seq,
                       SERIAL_NUMBER=own.msisdn, PROVINCE_CODE=p, EFFECT_TIME=now),
                 sender="BUS", accepted=True, delivered_to=(f"CRM-{p}",),
                 flow=direct("VAC", f"CRM-{p}") + [
                     ("in", "PCRM", BILLING[p]), ("out", "BUS", BILLING[p]), ("out", "BUS", "HQ-CRM")],
                 expect={"SERIAL_NUMBER": own.msisdn, "VAC_SEQ": seq, "IS_3G": "1", "SYNCED": "1"},
                 after=synced_to_hq))
    gsm, seq = users[PHASE2].gsm, f"{tag}VACGSM"
    add(Case(f"ReverseSync.SyncVacChange[{PHASE2}-GSM]", "ReverseSync", "SyncVacChange",
             _args("ReverseSync", "SyncVacChange", tid(), ("00", PHASE2), caller="VAC", VAC_SEQ=seq,
                   SERIAL_NUMBER=gsm.msisdn, PROVINCE_CODE=PHASE2, EFFECT_TIME=now),
             sender="BUS", accepted=True, delivered_to=(f"CRM-{PHASE2}",), peer_rsp_code="2101",
             flow=direct("VAC", f"CRM-{PHASE2}"),
             expect={"SERIAL_NUMBER": gsm.msisdn, "VAC_SEQ": seq, "IS_3G": "0", "SYNCED": "0"}))

    # -- InfoQuery: e-sales -> HQ CRM ----------------------------------------------------------
    query = example("InfoQuery", "QueryProducts")["UNI_BSS_BODY"]
    catalogue = products(query["NET_TYPE_CODE"], query["PRODUCT_TYPE"])
    query = example("InfoQuery", "QueryNumbers")["UNI_BSS_BODY"]
    numbers = free_numbers(PHASE2, query["PREFIX"], query["MAX_COUNT"])
    assert catalogue and numbers, "the InfoQuery examples find nothing in the sandbox"
    add(Case("InfoQuery.QueryProducts", "InfoQuery", "QueryProducts",
             _args("InfoQuery", "QueryProducts", tid(), ("00", PHASE2), caller="ESALE", PROVINCE_CODE=PHASE2),
             sender="HQ-CRM", flow=direct("ESALE", "HQ-CRM"),
             check=lambda body: rows_equal("PRODUCTS", (body.get("PRODUCTS") or {}).get("PRODUCT"), catalogue)))
    add(Case("InfoQuery.QueryNumbers", "InfoQuery", "QueryNumbers",
             _args("InfoQuery", "QueryNumbers", tid(), ("00", PHASE2), caller="ESALE", PROVINCE_CODE=PHASE2),
             sender="HQ-CRM", flow=direct("ESALE", "HQ-CRM"),
             check=lambda body: rows_equal("NUMBERS", (body.get("NUMBERS") or {}).get("NUMBER_INFO"), numbers)))
    add(Case("InfoQuery.QueryChannels", "InfoQuery", "QueryChannels",
             _args("InfoQuery", "QueryChannels", tid(), ("00", PHASE2), caller="ESALE", PROVINCE_CODE=PHASE2),
             sender="HQ-CRM", flow=direct("ESALE", "HQ-CRM"),
             check=lambda body: rows_equal("CHANNELS", (body.get("CHANNELS") or {}).get("CHANNEL"),
                                           channels(PHASE2))))
    return cases


def _three_account_args(trans_ido: str, user, user_id: str, caller: str) -> dict:
    """The SyncThreeAccount example, moved to ``user`` (its province, network type, number)."""
    args = _args("AccountSync", "SyncThreeAccount", trans_ido, ("01", user.msisdn), caller=caller)
    body = args["UNI_BSS_BODY"]
    body["USER"].update(USER_ID=user_id, SERIAL_NUMBER=user.msisdn, PROVINCE_CODE=user.province,
                        NET_TYPE_CODE=user.net_type, EPARCHY_CODE=EPARCHY[user.province])
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


def verify(case: Case, result: dict, bus=None) -> None:
    """Assert the answer of ``case``: its RSP_CODE, the peer named, the body's fields; with
    ``bus`` (the EmbeddedBus called) also the journal: the request reached the bus as a SOAP 1.1
    envelope, and the message took ``case.flow``. An accepted one-way message is followed to its
    delivery: each recipient's answer (as the journal keeps it) must hold ``expect``/``check``."""
    result = normalize(result)
    head = result.get("UNI_BSS_HEAD") or {}
    response = head.get("RESPONSE") or {}
    assert response.get("RSP_CODE") == case.rsp_code, f"{case.id}: RESPONSE {response!r}, expected RSP_CODE " \
                                                      f"{case.rsp_code}"
    assert head.get("MSG_SENDER") == case.sender, (
        f"{case.id}: answered by {head.get('MSG_SENDER')!r}, expected {case.sender!r}")
    assert head.get("TRANS_IDO") == case.trans_ido, f"{case.id}: TRANS_IDO not echoed: {head!r}"
    body = result.get("UNI_BSS_BODY")
    if case.accepted:
        assert not body, f"{case.id}: an accepted answer has no UNI_BSS_BODY: {result!r}"
        want = f"Accepted: the bus delivers it to {', '.join(case.delivered_to)}."
        assert response.get("RSP_DESC") == want, f"{case.id}: RSP_DESC {response.get('RSP_DESC')!r}, expected {want!r}"
        if bus is not None:
            for peer, hop in delivered(bus, case.trans_ido, *case.delivered_to).items():
                answer = normalize(peer_answer(hop))
                peer_head = answer.get("UNI_BSS_HEAD") or {}
                got = (peer_head.get("MSG_SENDER"), (peer_head.get("RESPONSE") or {}).get("RSP_CODE"))
                assert got == (peer, case.peer_rsp_code), f"{case.id}: {peer} answered {peer_head!r}"
                check_body(case, answer.get("UNI_BSS_BODY") or {}, f"{case.id}, the answer of {peer}")
            verify_journal(case, bus)
        return
    assert body, f"{case.id}: no UNI_BSS_BODY in {result!r}"
    check_body(case, body, case.id)
    if bus is not None:
        verify_journal(case, bus)


def check_body(case: Case, body: dict, what: str) -> None:
    wrong = {k: (body.get(k), str(v)) for k, v in case.expect.items() if body.get(k) != str(v)}
    assert not wrong, f"{what}: body fields (got, expected): {wrong!r}; body {body!r}"
    if case.check is not None:
        case.check(body)


def verify_journal(case: Case, bus) -> None:
    """The hops the bus journalled for the case's TRANS_IDO (= its PROC_ID): the first is the
    toolkit's request, a SOAP 1.1 envelope; all of them are ``case.flow`` when it is given (once
    the Forwarder delivered what was accepted), ``case.settled`` in any order once every
    asynchronous hop is done; then ``case.after`` holds."""
    def journalled():
        return [(h["direction"], h["source"], h["target"]) for h in bus.bus.journal.hops(case.trans_ido)]

    def matches(got):
        if case.flow is not None and (got[:len(case.flow)] if case.flow_continues else got) != case.flow:
            return False
        return case.settled is None or Counter(got) == Counter(case.settled)

    try:
        wait_for(lambda: matches(journalled()), timeout=20)   # asynchronous hops come a moment later
    except AssertionError:
        pass   # the assertions below say what differs
    hops = bus.bus.journal.hops(case.trans_ido)
    assert hops, f"{case.id}: the bus journalled nothing for {case.trans_ido}"
    first = hops[0]
    assert (first["direction"], first["trans_ido"]) == ("in", case.trans_ido), f"{case.id}: first hop {first!r}"
    envelope = etree.QName(etree.fromstring(first["request"])).namespace
    assert envelope == SOAP11_ENV, f"{case.id}: the request was not a SOAP 1.1 envelope but {envelope}"
    got = journalled()
    if case.flow is not None:
        assert (got[:len(case.flow)] if case.flow_continues else got) == case.flow, \
            f"{case.id}: the journal holds the hops {got!r}, expected {case.flow!r}"
    if case.settled is not None:
        assert Counter(got) == Counter(case.settled), \
            f"{case.id}: the journal holds the hops {got!r}, expected (in any order) {case.settled!r}"
    if case.after is not None:
        case.after(bus)


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
