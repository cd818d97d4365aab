"""`bssbus demo`: the seed's business flows end to end, for a phase-2 and a phase-3 province.

Each step is a real SOAP call through the bus (zeep client, real HTTP); after it, the hops
the journal recorded for that step are printed: who called, where the bus sent it, the
result and the time. The run ends with a summary a person can check in ten seconds.
"""
from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass

from bus.cli import format_hop
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


def province_flows(client: BusClient, province: str, phase: int):
    """Yield (title, service, operation, args) for every flow of one province, in business order."""
    from sandbox.store import seed_cards, seed_users

    user = next(u for u in seed_users(province) if u.balance < 0 and u.user_state == "00")
    number, stamp = user.msisdn, time.strftime("%H%M%S")
    order_id = f"ES{province}{stamp}{uuid.uuid4().hex[:4]}"
    card = next(c for c in seed_cards(province) if c["state"] == "0")["card_no"]
    serial = f"ICBC{province}{stamp}{uuid.uuid4().hex[:6]}"
    by_number, by_province = ("01", number), ("00", province)

    def pid():
        return f"DEMO{province}{uuid.uuid4().hex[:16]}"

    yield ("order: e-sales -> HQ CRM -> province CRM", "OrderSync", "SyncOrder",
           request("OrderSync", "SyncOrder", "ESALE", by_number,
                   {"ORDER_ID": order_id, "SERIAL_NUMBER": number, "PROVINCE_CODE": province}, pid()))
    yield ("order status at HQ CRM", "OrderSync", "QueryOrderStatus",
           request("OrderSync", "QueryOrderStatus", "ESALE", by_number, {"ORDER_ID": order_id}, pid()))
    yield ("card activation at the top-up system", "CardActivation", "ActivateCards",
           request("CardActivation", "ActivateCards", "UCRM", by_province,
                   {"PROVINCE_CODE": province, "CARDS": {"CARD_NO": [card]}}, pid()))
    yield ("arrears query by a bank", "BankPayment", "QueryArrears",
           request("BankPayment", "QueryArrears", "BANK", by_number,
                   {"SERIAL_NUMBER": number, "BANK_CODE": "ICBC"}, pid()))
    amount = -user.balance
    pay_time = time.strftime("%Y%m%d%H%M%S")
    yield (f"payment of {amount / 100:.2f} yuan", "BankPayment", "Pay",
           request("BankPayment", "Pay", "BANK", by_number,
                   {"BANK_CODE": "ICBC", "BANK_SERIAL": serial, "SERIAL_NUMBER": number,
                    "AMOUNT": amount, "TRADE_TIME": pay_time}, pid()))
    yield ("balance after the payment", "BankPayment", "QueryBalance",
           request("BankPayment", "QueryBalance", "BANK", by_number,
                   {"SERIAL_NUMBER": number, "BANK_CODE": "ICBC"}, pid()))
    yield ("reversal of that payment", "BankPayment", "Reverse",
           request("BankPayment", "Reverse", "BANK", by_number,
                   {"BANK_CODE": "ICBC", "BANK_SERIAL": serial + "R", "ORIG_BANK_SERIAL": serial,
                    "SERIAL_NUMBER": number, "AMOUNT": amount, "TRADE_TIME": pay_time}, pid()))
    sync = request("AccountSync", "SyncThreeAccount", "PCRM", by_province, {"SYNC_SEQ": int(time.time())}, pid())
    sync["UNI_BSS_BODY"]["USER"].update(SERIAL_NUMBER=number, PROVINCE_CODE=province)
    yield ("three-account sync from the province CRM", "AccountSync", "SyncThreeAccount", sync)


def pick_provinces(settings: Settings) -> list[tuple[str, int]]:
    """Guangdong (51) and Beijing (11) when they have the phases the demo needs, else the first ones."""
    phases = settings.phases
    out = []
    for phase, preferred in ((2, "51"), (3, "11")):
        code = preferred if phases.get(preferred) == phase else next(
            (c for c, p in sorted(phases.items()) if p == phase), None)
        if code:
            out.append((code, phase))
    return out


def run_flows(client: BusClient, journal, settings: Settings, out=print) -> list[Step]:
    steps = []
    for province, phase in pick_provinces(settings):
        out(f"\n== province {province}, phase {phase} "
            f"({'province Billing' if phase == 2 else 'HQ Billing'} answers billing traffic) ==")
        for title, service, operation, args in province_flows(client, province, phase):
            result = client.call(service, operation, args)
            hops = journal.hops(args["UNI_BSS_HEAD"]["PROC_ID"])
            if result.fault_code:
                status = f"FAULT {result.fault_code}: {result.fault_string}"
            else:
                rsp = (result.head or {}).get("RESPONSE") or {}
                status = f"{rsp.get('RSP_CODE')} {rsp.get('RSP_DESC', '')}, answered by {result.sender}"
            out(f"  {title}: {status}")
            for row in hops:
                out(format_hop(row, indent="      "))
            steps.append(Step(province, phase, title, result, hops))
    return steps


def summary(steps: list[Step], out=print) -> bool:
    out("\n== summary ==")
    ok_all = True
    for province in dict.fromkeys(s.province for s in steps):
        mine = [s for s in steps if s.province == province]
        ok = sum(1 for s in mine if s.result.ok)
        senders = sorted({s.result.sender for s in mine if s.result.sender})
        ok_all &= ok == len(mine)
        out(f"  province {province} (phase {mine[0].phase}): {ok}/{len(mine)} flows succeeded; "
            f"answered by {', '.join(senders)}")
    out(f"  {'every flow succeeded' if ok_all else 'SOME FLOWS FAILED: see above'}")
    return ok_all


def run_demo(settings: Settings, url: str | None = None, as_json: bool = False) -> int:
    from bus.embedded import EmbeddedBus
    from dao.db import open_database
    from dao.journal import Journal

    lines: list[str] = []
    out = lines.append if as_json else (lambda s: print(s, flush=True))
    if url:
        steps = run_flows(BusClient(url), Journal(open_database(settings.db_url)), settings, out)
    else:
        with EmbeddedBus(settings) as embedded:
            out(f"bus at {embedded.url}, sandbox peers at {embedded.sandbox_url}")
            steps = run_flows(BusClient(embedded.url), embedded.bus.journal, settings, out)
    ok = summary(steps, out)
    if as_json:
        print(json.dumps([{"province": s.province, "phase": s.phase, "flow": s.title, "ok": s.result.ok,
                           "rsp_code": s.result.rsp_code, "fault": s.result.fault_code,
                           "answered_by": s.result.sender, "hops": len(s.hops)} for s in steps],
                         ensure_ascii=False, indent=2))
    return 0 if ok else 1
