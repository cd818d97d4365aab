"""`bssbus demo`: the seed's business flows end to end, for a phase-2 and a phase-3 province.

Each step is a real SOAP call through the bus (zeep client, real HTTP); after it, the hops
the journal recorded for that step are printed: who called, where the bus sent it, the
result and the time. A one-way message (a store-and-forward route) is answered "accepted" by
the bus itself; the demo then waits until its Forwarder delivered it to every recipient named
in that answer (and whatever those deliveries set off), so the hops show each peer's answer.
It walks the closed loop (pre-sale query, order, provisioning, completion, card activation,
top-up, payment, reversal, bill query, three-account sync, VAC) for a phase-2, a phase-3 and a
legacy province, and ends with a summary a person can check in ten seconds.
"""
from __future__ import annotations

import copy
import json
import re
import time
import uuid
from dataclasses import dataclass, field

from bus.cli import consumer_login, format_hop, open_phase_store
from bus.security import login_for
from config.settings import Settings
from services.client import BusClient, CallResult
from services.models.common import WSDL_DIR

EXAMPLES = WSDL_DIR / "examples"


def example(service: str, operation: str) -> dict:
    with open(EXAMPLES / f"{service}.{operation}.json", encoding="utf-8") as fh:
        return json.load(fh)


def request(service: str, operation: str, caller: str, route: tuple[str, str], body: dict,
            proc_id: str) -> dict:
    """An example request with a fresh TRANS_IDO, the given caller, routing, PROC_ID and body fields."""
    args = copy.deepcopy(example(service, operation))
    head = args["UNI_BSS_HEAD"]
    head.update(ORIG_DOMAIN=caller, PROC_ID=proc_id, TRANS_IDO=f"{caller}{uuid.uuid4().hex[:20]}",
                PROCESS_TIME=time.strftime("%Y%m%d%H%M%S"),
                ROUTING={"ROUTE_TYPE": route[0], "ROUTE_VALUE": route[1]})
    args["UNI_BSS_BODY"].update(body)
    return args


@dataclass
class Step:
    province: str
    phase: int
    title: str
    result: CallResult
    hops: list
    ok: bool = False
    delivered_to: list = field(default_factory=list)   # peers the Forwarder delivered a one-way message to


@dataclass
class Flow:
    """One call of the demo; ``until`` repeats it (up to 10 s) until the answer satisfies it,
    and ``trace`` names the PROC_ID whose hops are shown (default: the call's own)."""

    title: str
    service: str
    operation: str
    args: dict
    until: object = None
    trace: str | None = None
    delivered_code: str = "0000"   # what the peer answers the Forwarder for a one-way message


def province_flows(province: str):
    """Every flow of the closed loop for one province, in business order."""
    from sandbox.store import seed_cards, seed_users

    users = [u for u in seed_users(province) if u.user_state == "00"]
    user = next(u for u in users if u.balance < 0 and u.net_type == "50")
    gsm = next((u for u in users if u.net_type == "10"), None)
    number, stamp = user.msisdn, time.strftime("%H%M%S")
    order_id = f"ES{province}{stamp}{uuid.uuid4().hex[:4]}"
    cards = seed_cards(province)
    new_card = next(c for c in cards if c["state"] == "0")["card_no"]
    active_card = [c for c in cards if c["state"] == "1"][-1]["card_no"]
    serial = f"ICBC{province}{stamp}{uuid.uuid4().hex[:6]}"
    by_number, by_province = ("01", number), ("00", province)
    order_pid = f"DEMO{province}{uuid.uuid4().hex[:16]}"

    def pid():
        return f"DEMO{province}{uuid.uuid4().hex[:16]}"

    yield Flow("pre-sale: products at HQ CRM", "InfoQuery", "QueryProducts",
               request("InfoQuery", "QueryProducts", "ESALE", by_province, {"PROVINCE_CODE": province}, pid()))
    yield Flow("pre-sale: free numbers at HQ CRM", "InfoQuery", "QueryNumbers",
               request("InfoQuery", "QueryNumbers", "ESALE", by_province,
                       {"PROVINCE_CODE": province, "MAX_COUNT": 3}, pid()))
    yield Flow("order: e-sales -> HQ CRM -> province CRM, and its work order", "OrderSync", "SyncOrder",
               request("OrderSync", "SyncOrder", "ESALE", by_number,
                       {"ORDER_ID": order_id, "SERIAL_NUMBER": number, "PROVINCE_CODE": province}, order_pid))
    yield Flow("completion: the province reports, HQ CRM tells e-sales", "OrderSync", "QueryOrderStatus",
               request("OrderSync", "QueryOrderStatus", "ESALE", by_number, {"ORDER_ID": order_id}, pid()),
               until=lambda r: (r.body or {}).get("ORDER_STATE") == "30", trace=order_pid)
    yield Flow("card activation (one-way: accepted, then delivered)", "CardActivation", "ActivateCards",
               request("CardActivation", "ActivateCards", "UCRM", by_province,
                       {"PROVINCE_CODE": province, "CARDS": {"CARD_NO": [new_card]}}, pid()))
    yield Flow("card status: the card is active", "CardActivation", "QueryCardStatus",
               request("CardActivation", "QueryCardStatus", "UCRM", by_province, {"CARD_NO": new_card}, pid()),
               until=lambda r: (r.body or {}).get("CARD_STATE") == "1")
    yield Flow("top-up with an active card", "TopUp", "TopUp",
               request("TopUp", "TopUp", "TOPUP", by_number,
                       {"TOPUP_SERIAL": f"TU{serial}", "CARD_NO": active_card, "SERIAL_NUMBER": number}, pid()))
    yield Flow("arrears query by a bank", "BankPayment", "QueryArrears",
               request("BankPayment", "QueryArrears", "BANK", by_number,
                       {"SERIAL_NUMBER": number, "BANK_CODE": "ICBC"}, pid()))
    amount = 5000
    pay_time = time.strftime("%Y%m%d%H%M%S")
    yield Flow(f"payment of {amount / 100:.2f} yuan", "BankPayment", "Pay",
               request("BankPayment", "Pay", "BANK", by_number,
                       {"BANK_CODE": "ICBC", "BANK_SERIAL": serial, "SERIAL_NUMBER": number,
                        "AMOUNT": amount, "TRADE_TIME": pay_time}, pid()))
    yield Flow("reversal of that payment", "BankPayment", "Reverse",
               request("BankPayment", "Reverse", "BANK", by_number,
                       {"BANK_CODE": "ICBC", "BANK_SERIAL": serial + "R", "ORIG_BANK_SERIAL": serial,
                        "SERIAL_NUMBER": number, "AMOUNT": amount, "TRADE_TIME": pay_time}, pid()))
    yield Flow("bill query: e-sales -> HQ CRM -> the user's billing", "BillQuery", "QueryBill",
               request("BillQuery", "QueryBill", "ESALE", by_number,
                       {"SERIAL_NUMBER": number, "BILL_CYCLE": "202610"}, pid()))
    sync = request("AccountSync", "SyncThreeAccount", "PCRM", by_number, {"SYNC_SEQ": int(time.time())}, pid())
    sync["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=number, PROVINCE_CODE=province, NET_TYPE_CODE="50",
                                        USER_ID=f"U{number}")
    yield Flow("three-account sync of a 3G user: billing and HQ CRM (one-way)", "AccountSync", "SyncThreeAccount",
               sync)
    yield Flow("VAC change of a 3G user: province CRM syncs it to HQ (one-way)", "ReverseSync", "SyncVacChange",
               request("ReverseSync", "SyncVacChange", "VAC", by_province,
                       {"SERIAL_NUMBER": number, "PROVINCE_CODE": province}, pid()))
    if gsm is not None:
        yield Flow("VAC change of a GSM user: stays in the province (CRM answers 2101)", "ReverseSync",
                   "SyncVacChange", request("ReverseSync", "SyncVacChange", "VAC", by_province,
                                            {"SERIAL_NUMBER": gsm.msisdn, "PROVINCE_CODE": province}, pid()),
                   delivered_code="2101")


def pick_provinces(settings: Settings, phases: dict[str, int]) -> list[tuple[str, int, str]]:
    """(province, phase, why): Guangdong (51) in phase 2, Beijing (11) in phase 3 and a province
    whose Billing speaks a legacy contract, or the first provinces that fit."""
    out = []
    for phase, preferred in ((2, "51"), (3, "11")):
        code = preferred if phases.get(preferred) == phase else next(
            (c for c, p in sorted(phases.items()) if p == phase), None)
        if code:
            out.append((code, phase, "province Billing answers billing traffic" if phase == 2
                        else "HQ Billing answers billing traffic"))
    legacy = [code for peer in settings.peers.values() for code, _ in peer.provinces]
    if legacy and phases.get(legacy[0]) == 2:
        out.append((legacy[0], 2, "its Billing speaks a legacy contract (GBK, yuan)"))
    return out


ACCEPTED = re.compile(r"Accepted: the bus delivers it to (.+)\.")
RSP_DESC = re.compile(rb"RSP_DESC>([^<]*)<")


def recipients(hop: dict) -> list[str]:
    """The peers an 'accepted' inbound hop named in its answer (the bus's RSP_DESC)."""
    found = RSP_DESC.search(hop.get("response") or b"")
    match = ACCEPTED.match(found.group(1).decode("utf-8", "replace")) if found else None
    return match.group(1).split(", ") if match else [hop.get("target") or "?"]


def settled(hops: list[dict]) -> bool:
    """Every one-way message of the trace (an inbound hop 'accepted') reached each of its recipients."""
    done = {(h["msg_id"], h["target"]) for h in hops if h["direction"] == "out" and h["status"] == "ok"}
    return all((h["msg_id"], peer) in done for h in hops if h["direction"] == "in" and h["status"] == "accepted"
               for peer in recipients(h))


def delivered_to(hops: list[dict]) -> list[tuple[str, str]]:
    """(peer, RSP_CODE) of each delivery by the Forwarder of a one-way message of the trace."""
    accepted = {h["msg_id"] for h in hops if h["direction"] == "in" and h["status"] == "accepted"}
    return [(h["target"], h["rsp_code"]) for h in hops
            if h["msg_id"] in accepted and h["direction"] == "out" and h["status"] == "ok"]


def ok(flow: Flow, result: CallResult, hops: list[dict]) -> bool:
    """Answered with 0000 (and ``until``), every one-way message of the trace delivered, each
    delivery answered 0000 (or the flow's expected code for its own message)."""
    if flow.until is not None and not flow.until(result):
        return False
    if result.fault_code is not None or result.rsp_code != "0000" or not settled(hops):
        return False
    own = {h["msg_id"] for h in hops if h["trans_ido"] == flow.args["UNI_BSS_HEAD"]["TRANS_IDO"]}
    return all(h["rsp_code"] == (flow.delivered_code if h["msg_id"] in own else "0000")
               for h in hops if h["direction"] == "out" and h["status"] == "ok")


def run_flows(client: BusClient, journal, settings: Settings, phases: dict[str, int], out=print) -> list[Step]:
    steps = []
    for province, phase, why in pick_provinces(settings, phases):
        out(f"\n== province {province}, phase {phase} ({why}) ==")
        for flow in province_flows(province):
            deadline = time.monotonic() + 10
            while True:
                result = client.call(flow.service, flow.operation, flow.args)
                if flow.until is None or flow.until(result) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
                # a new question each time: the same TRANS_IDO would get the first answer again
                head = flow.args["UNI_BSS_HEAD"]
                head["TRANS_IDO"] = f"{head['ORIG_DOMAIN']}{uuid.uuid4().hex[:20]}"
            trace = flow.trace or flow.args["UNI_BSS_HEAD"]["PROC_ID"]
            hops = journal.hops(trace)
            deadline = time.monotonic() + 10
            while not settled(hops) and time.monotonic() < deadline:   # one-way: wait for the Forwarder
                time.sleep(0.2)
                hops = journal.hops(trace)
            if result.fault_code:
                status = f"FAULT {result.fault_code}: {result.fault_string}"
            else:
                rsp = (result.head or {}).get("RESPONSE") or {}
                status = f"{rsp.get('RSP_CODE')} {rsp.get('RSP_DESC', '')}, answered by {result.sender}"
            out(f"  {flow.title}: {status}")
            for row in hops:
                out(format_hop(row, indent="      "))
            steps.append(Step(province, phase, flow.title, result, hops, ok(flow, result, hops),
                              delivered_to(hops)))
    return steps


def summary(steps: list[Step], out=print) -> bool:
    out("\n== summary ==")
    ok_all = True
    for province in dict.fromkeys(s.province for s in steps):
        mine = [s for s in steps if s.province == province]
        ok = sum(1 for s in mine if s.ok)
        senders = sorted({s.result.sender for s in mine if s.result.sender})
        reached = sorted({peer for s in mine for peer, _ in s.delivered_to})
        ok_all &= ok == len(mine)
        out(f"  province {province} (phase {mine[0].phase}): {ok}/{len(mine)} flows succeeded; "
            f"answered by {', '.join(senders)}; one-way messages delivered to {', '.join(reached) or 'none'}")
    out(f"  {'every flow succeeded' if ok_all else 'SOME FLOWS FAILED: see above'}")
    return ok_all


def run_demo(settings: Settings, url: str | None = None, as_json: bool = False) -> int:
    from bus.embedded import EmbeddedBus
    from dao.journal import Journal

    lines: list[str] = []
    out = lines.append if as_json else (lambda s: print(s, flush=True))
    if url:
        store = open_phase_store(settings)
        client = BusClient(url, login=consumer_login(settings))
        steps = run_flows(client, Journal(store.engine), settings, store.load(), out)
    else:
        with EmbeddedBus(settings) as embedded:
            out(f"bus at {embedded.url}, sandbox peers at {embedded.sandbox_url}")
            client = BusClient(embedded.url, login=login_for(embedded.bus.gatekeeper.consumers))
            steps = run_flows(client, embedded.bus.journal, embedded.settings,
                              embedded.bus.phase_store.load(), out)
    ok = summary(steps, out)
    if as_json:
        print(json.dumps([{"province": s.province, "phase": s.phase, "flow": s.title, "ok": s.ok,
                           "rsp_code": s.result.rsp_code, "fault": s.result.fault_code,
                           "answered_by": s.result.sender, "hops": len(s.hops),
                           "delivered_to": [{"peer": peer, "rsp_code": code} for peer, code in s.delivered_to]}
                          for s in steps],
                         ensure_ascii=False, indent=2))
    return 0 if ok else 1
