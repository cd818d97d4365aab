"""Simulated peers: what HQ CRM, HQ Billing, the province CRMs and Billings and the top-up
card system answer. Each answer's header names the peer in ``MSG_SENDER``. Like the real
systems, every peer is an idempotent receiver: a repeated TRANS_IDO gets the first answer
and changes nothing (``sb_received.repeat`` counts such repeats).

Result codes used by the simulated billings (RESPONSE/RSP_CODE):

======  ===============================================================
0000    success
1544    payment refused: invalid amount or number (field code)
1545    reversal refused: the original payment is unknown
1546    reversal refused: the original payment was already reversed
1547    reversal refused: not the original payment's accounting day
1548    reversal refused: amount or number differs from the original
1549    no transaction with this bank serial (QueryPayment)
2099    no such number (USER_STATE 99)
2101    VAC change of a user who is not a 3G user: not synced to HQ
21001   top-up card not activated; 21002 card unknown; 21003 card already used;
        21004 card expired; 01030 top-up serial already used for another top-up; 01031 no such top-up
3001    no such order
8888    other failure (the description says which)
======  ===============================================================
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from sandbox import store

log = logging.getLogger("bssbus.sandbox")


def now14() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S")


def today() -> str:
    return datetime.now().strftime("%Y%m%d")


def answer(head: dict, sender: str, code: str = "0000", desc: str = "success") -> dict:
    """The response header: the request's keys echoed, the peer named, the result set."""
    out = {k: head.get(k) for k in ("ORIG_DOMAIN", "SERVICE_NAME", "OPERATE_NAME", "ROUTING",
                                     "PROC_ID", "TRANS_IDO", "COM_BUS_INFO", "TEST_FLAG")}
    out.update(ACTION_CODE="1", TRANS_IDH=uuid.uuid4().hex[:24], PROCESS_TIME=now14(),
               MSG_SENDER=sender, MSG_RECEIVER=head.get("ORIG_DOMAIN"),
               RESPONSE={"RSP_TYPE": "0" if code == "0000" else "1", "RSP_CODE": code, "RSP_DESC": desc})
    return {k: v for k, v in out.items() if v is not None}


def peer_name(kind: str, province: str | None) -> str:
    """The name a simulated peer signs its answers with (MSG_SENDER)."""
    return {"hq_billing": "HQ-BILLING", "hq_crm": "HQ-CRM", "topup": "TOPUP", "esales": "ESALES",
            "province_billing": f"BILLING-{province}", "province_crm": f"CRM-{province}"}[kind]


#: Reads whose answers are not kept for a repeated TRANS_IDO (a page of a payment list is large).
UNREMEMBERED = {"ListPayments"}


class Peers:
    """All simulated peers over one sandbox database. ``handle`` is the single entry."""

    def __init__(self, engine: Engine, bus_url: str | None = None, provisioning_delay: float = 0.3):
        self.engine = engine
        self.bus_url = bus_url
        self.login = None   # credentials for calls through the bus (bus.security.login_for)
        self.provisioning_delay = provisioning_delay   # seconds a province takes to "activate"
        self._client = None
        self._lock = threading.Lock()

    # -- entry -----------------------------------------------------------------------------
    def handle(self, kind: str, province: str | None, service: str, operation: str,
               head: dict, body: dict) -> tuple[dict, dict | None]:
        sender, trans_ido = peer_name(kind, province), head.get("TRANS_IDO")
        a = store.answers.c
        with self.engine.begin() as conn:
            first = conn.execute(select(a.answer).where(a.peer == sender, a.trans_ido == trans_ido,
                                                        a.operation == operation)).scalar()
            conn.execute(insert(store.received).values(peer=sender, service=service, operation=operation,
                                                       trans_ido=trans_ido, repeat=int(first is not None)))
        if first is not None:   # an idempotent receiver: a repeated TRANS_IDO gets the first answer
            code, desc, rsp = json.loads(first)
            return answer(head, sender, code, desc), rsp
        method = getattr(self, f"{kind.split('_')[-1]}_{operation}", None)
        if method is None:
            return answer(head, sender, "8888", f"{sender} does not offer {service}.{operation}"), None
        code, desc, rsp = method(sender, head, body)
        if operation in UNREMEMBERED:
            return answer(head, sender, code, desc), rsp
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(store.answers).values(peer=sender, trans_ido=trans_ido, operation=operation,
                                                          answer=json.dumps([code, desc, rsp], ensure_ascii=False)))
        except IntegrityError:   # the same TRANS_IDO handled twice at once: the first answer stands
            pass
        return answer(head, sender, code, desc), rsp

    # -- billing (province Billing and HQ Billing) ----------------------------------------
    def _account(self, conn, sender, msisdn):
        return conn.execute(select(store.accounts).where(store.accounts.c.peer == sender,
                                                         store.accounts.c.msisdn == msisdn)).mappings().first()

    def billing_QueryArrears(self, sender, head, body):
        with self.engine.connect() as conn:
            acct = self._account(conn, sender, body["SERIAL_NUMBER"])
            if acct is None:
                return "2099", "no such number", None
            arrears = max(0, -acct["balance"])
            items = []
            if arrears:
                items = [{"BILL_CYCLE": r.bill_cycle, "ITEM_NAME": r.item_name, "FEE": r.fee}
                         for r in conn.execute(select(store.bill_items).where(
                             store.bill_items.c.msisdn == acct["msisdn"]))]
        rsp = {"SERIAL_NUMBER": acct["msisdn"], "CUST_NAME": store.mask_name(acct["cust_name"]),
               "USER_STATE": acct["user_state"], "ARREARS_FEE": arrears, "BALANCE": acct["balance"]}
        if items:
            rsp["BILL_ITEMS"] = {"BILL_ITEM": items}
        return "0000", "success", rsp

    def billing_QueryBalance(self, sender, head, body):
        with self.engine.connect() as conn:
            acct = self._account(conn, sender, body["SERIAL_NUMBER"])
        if acct is None:
            return "2099", "no such number", None
        return "0000", "success", {"SERIAL_NUMBER": acct["msisdn"], "USER_STATE": acct["user_state"],
                                   "BALANCE": acct["balance"], "ARREARS_FEE": max(0, -acct["balance"])}

    def _payment(self, conn, sender, bank_code, serial):
        p = store.payments.c
        return conn.execute(select(store.payments).where(p.peer == sender, p.bank_code == bank_code,
                                                         p.bank_serial == serial)).mappings().first()

    def billing_Pay(self, sender, head, body):
        bank, serial, msisdn, amount = body["BANK_CODE"], body["BANK_SERIAL"], body["SERIAL_NUMBER"], body["AMOUNT"]
        try:
            with self.engine.begin() as conn:
                first = self._payment(conn, sender, bank, serial)
                if first is None:
                    acct = self._account(conn, sender, msisdn)
                    if acct is None:
                        return "1544", f"number {msisdn} is not a user of {sender}", None
                    if amount <= 0:
                        return "1544", "amount must be positive", None
                    conn.execute(update(store.accounts).where(
                        store.accounts.c.peer == sender, store.accounts.c.msisdn == msisdn)
                        .values(balance=store.accounts.c.balance + amount))
                    balance = self._account(conn, sender, msisdn)["balance"]
                    conn.execute(insert(store.payments).values(
                        peer=sender, bank_code=bank, bank_serial=serial, kind="pay", msisdn=msisdn,
                        amount=amount, acct_date=body.get("RECON_DATE") or today(), balance_after=balance,
                        trans_ido=head.get("TRANS_IDO"), trade_time=body.get("TRADE_TIME"),
                        province=acct["province"]))
                    first = self._payment(conn, sender, bank, serial)
        except IntegrityError:  # the same serial posted concurrently: the first one stands
            with self.engine.connect() as conn:
                first = self._payment(conn, sender, bank, serial)
        if first["kind"] != "pay" or first["msisdn"] != msisdn or first["amount"] != amount:
            return "1544", f"bank serial {serial} was already used for another transaction", None
        return "0000", "success", {
            "BANK_SERIAL": serial, "BILL_SERIAL": f"{sender[:2]}{first['id']:012d}", "SERIAL_NUMBER": msisdn,
            "AMOUNT": amount, "BALANCE": first["balance_after"], "ACCT_DATE": first["acct_date"]}

    def billing_Reverse(self, sender, head, body):
        bank, serial, orig = body["BANK_CODE"], body["BANK_SERIAL"], body["ORIG_BANK_SERIAL"]
        msisdn, amount = body["SERIAL_NUMBER"], body["AMOUNT"]
        with self.engine.begin() as conn:
            done = self._payment(conn, sender, bank, serial)
            if done is not None:
                if done["kind"] != "reverse" or done["orig_serial"] != orig:
                    return "1544", f"bank serial {serial} was already used for another transaction", None
            else:
                original = self._payment(conn, sender, bank, orig)
                if original is None or original["kind"] != "pay":
                    return "1545", f"original payment {orig} is unknown", None
                if original["reversed"]:
                    return "1546", f"original payment {orig} was already reversed", None
                # the bus's reconciliation may reverse a payment of the day its bank file is for
                day = body.get("RECON_DATE") or today()
                if original["acct_date"] != day:
                    return "1547", f"payment {orig} is of accounting day {original['acct_date']}", None
                if original["msisdn"] != msisdn or original["amount"] != amount:
                    return "1548", "number or amount differs from the original payment", None
                conn.execute(update(store.accounts).where(
                    store.accounts.c.peer == sender, store.accounts.c.msisdn == msisdn)
                    .values(balance=store.accounts.c.balance - amount))
                conn.execute(update(store.payments).where(store.payments.c.id == original["id"])
                             .values(reversed=1))
                balance = self._account(conn, sender, msisdn)["balance"]
                conn.execute(insert(store.payments).values(
                    peer=sender, bank_code=bank, bank_serial=serial, kind="reverse", orig_serial=orig,
                    msisdn=msisdn, amount=amount, acct_date=day, balance_after=balance,
                    trans_ido=head.get("TRANS_IDO"), trade_time=body.get("TRADE_TIME"),
                    province=original["province"]))
                done = self._payment(conn, sender, bank, serial)
        return "0000", "success", {"BANK_SERIAL": serial, "ORIG_BANK_SERIAL": orig, "SERIAL_NUMBER": msisdn,
                                   "AMOUNT": amount, "BALANCE": done["balance_after"]}

    def billing_QueryPayment(self, sender, head, body):
        """The outcome of one bank serial: the bus asks it when a payment's answer was lost."""
        with self.engine.connect() as conn:
            row = self._payment(conn, sender, body["BANK_CODE"], body["BANK_SERIAL"])
        if row is None:
            return "1549", f"no transaction with bank serial {body['BANK_SERIAL']}", None
        rsp = {"BANK_SERIAL": row["bank_serial"], "TXN_TYPE": "0" if row["kind"] == "pay" else "1",
               "SERIAL_NUMBER": row["msisdn"], "AMOUNT": row["amount"], "BALANCE": row["balance_after"],
               "BILL_SERIAL": f"{sender[:2]}{row['id']:012d}", "ACCT_DATE": row["acct_date"],
               "TXN_STATE": "1" if row["reversed"] else "0"}
        if row["orig_serial"]:
            rsp["ORIG_BANK_SERIAL"] = row["orig_serial"]
        return "0000", "success", rsp

    def billing_ListPayments(self, sender, head, body):
        """One page of a bank's transactions of one accounting day, in bank serial order."""
        p = store.payments.c
        size = int(body.get("PAGE_SIZE") or 1000)
        query = (select(p.bank_serial, p.trade_time, p.msisdn, p.amount, p.kind, p.orig_serial, p.reversed)
                 .where(p.peer == sender, p.bank_code == body["BANK_CODE"], p.acct_date == body["ACCT_DATE"])
                 .order_by(p.bank_serial).limit(size + 1))
        if body.get("PROVINCE_CODE"):
            query = query.where(p.province == body["PROVINCE_CODE"])
        if body.get("AFTER_SERIAL"):
            query = query.where(p.bank_serial > body["AFTER_SERIAL"])
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        page = rows[:size]
        rsp = {"BANK_CODE": body["BANK_CODE"], "ACCT_DATE": body["ACCT_DATE"], "MORE": "1" if len(rows) > size else "0"}
        if page:
            rsp["LAST_SERIAL"] = page[-1].bank_serial
            rsp["TXNS"] = {"TXN": [
                f"{r.bank_serial}|{r.trade_time or '00000000000000'}|{r.msisdn}|{r.amount}|"
                f"{0 if r.kind == 'pay' else 1}|{r.orig_serial or ''}|{r.reversed}" for r in page]}
        return "0000", "success", rsp

    def billing_SyncThreeAccount(self, sender, head, body):
        user = body["USER"]
        seq = body["SYNC_SEQ"]
        t = store.three_accounts.c
        with self.engine.begin() as conn:
            row = conn.execute(select(store.three_accounts).where(
                t.peer == sender, t.user_id == user["USER_ID"])).mappings().first()
            if row is not None and row["sync_seq"] >= seq:
                return "0000", f"ignored: sequence {seq} is not newer than {row['sync_seq']}", {
                    "USER_ID": user["USER_ID"], "SYNC_SEQ": seq, "APPLIED": "1"}
            values = dict(msisdn=user["SERIAL_NUMBER"], sync_seq=seq, trans_ido=head.get("TRANS_IDO"))
            if row is None:
                conn.execute(insert(store.three_accounts).values(peer=sender, user_id=user["USER_ID"], **values))
            else:
                conn.execute(update(store.three_accounts).where(
                    t.peer == sender, t.user_id == user["USER_ID"]).values(**values))
        return "0000", "applied", {"USER_ID": user["USER_ID"], "SYNC_SEQ": seq, "APPLIED": "0"}

    def billing_QueryBill(self, sender, head, body):
        with self.engine.connect() as conn:
            acct = self._account(conn, sender, body["SERIAL_NUMBER"])
            if acct is None:
                return "2099", "no such number", None
            items = [{"ITEM_CODE": f"{i + 1:04d}", "ITEM_NAME": r.item_name, "FEE": r.fee}
                     for i, r in enumerate(conn.execute(select(store.bill_items).where(
                         store.bill_items.c.msisdn == acct["msisdn"],
                         store.bill_items.c.bill_cycle == body["BILL_CYCLE"])))]
        total = sum(i["FEE"] for i in items)
        unpaid = min(total, max(0, -acct["balance"]))
        rsp = {"SERIAL_NUMBER": acct["msisdn"], "BILL_CYCLE": body["BILL_CYCLE"],
               "CUST_NAME": store.mask_name(acct["cust_name"]), "TOTAL_FEE": total,
               "PAID_FEE": total - unpaid, "UNPAID_FEE": unpaid}
        if items:
            rsp["BILL_ITEMS"] = {"BILL_ITEM": items}
        return "0000", "success", rsp

    def billing_QueryCallDetails(self, sender, head, body):
        with self.engine.connect() as conn:
            acct = self._account(conn, sender, body["SERIAL_NUMBER"])
        if acct is None:
            return "2099", "no such number", None
        records = store.call_details(acct["msisdn"], body["BILL_CYCLE"], body["DETAIL_TYPE"])
        size, page = body.get("PAGE_SIZE") or 50, body.get("PAGE_NO") or 1
        shown = records[(page - 1) * size: page * size]
        rsp = {"SERIAL_NUMBER": acct["msisdn"], "BILL_CYCLE": body["BILL_CYCLE"], "TOTAL_COUNT": len(records)}
        if shown:
            rsp["CALL_DETAILS"] = {"CALL_DETAIL": shown}
        return "0000", "success", rsp

    def billing_TopUp(self, sender, head, body):
        """Top up a number with a card: the card's state gives the field's result codes. A
        serial is posted at most once: repeated for the same top-up it gets the first result."""
        serial, msisdn, card_no = body["TOPUP_SERIAL"], body["SERIAL_NUMBER"], body["CARD_NO"]
        t = store.topups.c
        first_of = select(store.topups).where(t.peer == sender, t.topup_serial == serial)
        try:
            with self.engine.begin() as conn:
                first = conn.execute(first_of).mappings().first()
                if first is None:
                    card = conn.execute(select(store.cards).where(store.cards.c.card_no == card_no)
                                        ).mappings().first()
                    refused = (("21002", f"unknown card {card_no}") if card is None else
                               {"0": ("21001", "card not activated"), "2": ("21003", "card already used"),
                                "3": ("21004", "card expired")}.get(card["state"]))
                    if refused:
                        return refused[0], refused[1], None
                    if self._account(conn, sender, msisdn) is None:
                        return "2099", f"number {msisdn} is not a user of {sender}", None
                    conn.execute(update(store.cards).where(store.cards.c.card_no == card_no).values(state="2"))
                    conn.execute(update(store.accounts).where(
                        store.accounts.c.peer == sender, store.accounts.c.msisdn == msisdn)
                        .values(balance=store.accounts.c.balance + card["face_value"]))
                    balance = self._account(conn, sender, msisdn)["balance"]
                    conn.execute(insert(store.topups).values(
                        peer=sender, topup_serial=serial, msisdn=msisdn, card_no=card_no,
                        amount=card["face_value"], balance_after=balance, acct_date=today(),
                        trade_time=body["TRADE_TIME"]))
                    first = conn.execute(first_of).mappings().first()
        except IntegrityError:  # the same serial posted concurrently: the first one stands
            with self.engine.connect() as conn:
                first = conn.execute(first_of).mappings().first()
        if (first["msisdn"], first["card_no"]) != (msisdn, card_no):
            return "01030", f"top-up serial {serial} was already used for another top-up", None
        return "0000", "success", self._top_up_answer(first)

    @staticmethod
    def _top_up_answer(row) -> dict:
        return {"TOPUP_SERIAL": row["topup_serial"], "SERIAL_NUMBER": row["msisdn"], "CARD_NO": row["card_no"],
                "AMOUNT": row["amount"], "BALANCE": row["balance_after"], "BILL_SERIAL": f"TU{row['id']:012d}",
                "ACCT_DATE": row["acct_date"]}

    def billing_QueryTopUp(self, sender, head, body):
        """One top-up and what TopUp answered for it: the bus asks it when a top-up's answer was lost."""
        t = store.topups.c
        with self.engine.connect() as conn:
            row = conn.execute(select(store.topups).where(
                t.peer == sender, t.topup_serial == body["TOPUP_SERIAL"])).mappings().first()
        if row is None:
            return "01031", f"no top-up with serial {body['TOPUP_SERIAL']}", None
        return "0000", "success", dict(self._top_up_answer(row), TOPUP_STATE="0", TRADE_TIME=row["trade_time"])

    # -- CRMs --------------------------------------------------------------------------------
    def _order(self, conn, sender, order_id):
        o = store.orders.c
        return conn.execute(select(store.orders).where(o.peer == sender, o.order_id == order_id)).mappings().first()

    def _save_order(self, sender, body, state, desc, province_order_id=None):
        with self.engine.begin() as conn:
            if self._order(conn, sender, body["ORDER_ID"]) is None:
                conn.execute(insert(store.orders).values(
                    peer=sender, order_id=body["ORDER_ID"], province=body.get("PROVINCE_CODE"),
                    msisdn=body.get("SERIAL_NUMBER"), state=state, state_desc=desc,
                    province_order_id=province_order_id, update_time=now14()))
            else:
                values = dict(state=state, state_desc=desc, update_time=now14())
                if province_order_id:
                    values["province_order_id"] = province_order_id
                conn.execute(update(store.orders).where(
                    store.orders.c.peer == sender, store.orders.c.order_id == body["ORDER_ID"])
                    .values(**values))

    def crm_SyncOrder(self, sender, head, body):
        if sender == "HQ-CRM":
            return self._hq_crm_order(sender, head, body)
        province_order_id = f"{sender[-2:]}{int(time.time() * 1000) % 10**10:010d}"
        self._save_order(sender, body, "20", "provisioning", province_order_id)
        return "0000", "accepted for provisioning", {"ORDER_ID": body["ORDER_ID"],
                                                     "PROVINCE_ORDER_ID": province_order_id,
                                                     "ORDER_STATE": "20"}

    def via_bus(self, head: dict, caller: str, route: tuple[str, str], service: str, operation: str,
                body: dict):
        """Call on through the bus as ``caller`` (a peer's own outbound call), same PROC_ID."""
        forward = {k: v for k, v in head.items()
                   if k not in ("MSG_SENDER", "MSG_RECEIVER", "RESPONSE", "TRANS_IDH")}
        forward.update(ORIG_DOMAIN=caller, SERVICE_NAME=service, OPERATE_NAME=operation, ACTION_CODE="0",
                       TRANS_IDO=f"{caller[:2]}{uuid.uuid4().hex[:24]}", PROCESS_TIME=now14(),
                       ROUTING={"ROUTE_TYPE": route[0], "ROUTE_VALUE": route[1]})
        result = self.client().call(service, operation, {"UNI_BSS_HEAD": forward, "UNI_BSS_BODY": body})
        why = result.fault_string or ((result.head or {}).get("RESPONSE") or {}).get("RSP_DESC")
        return result, why

    def _hq_crm_order(self, sender, head, body):
        """HQ CRM takes the order, sends it on to the province CRM through the bus, then sends
        the province CRM the provisioning work order. Both are one-way: the bus accepts them
        (stores them; MSG_SENDER BUS, no body) and delivers them later, in the order it accepted
        them (their order key is the user's number), so the province has the order before its
        work order. HQ CRM therefore answers "sent to province" (10) without the province's
        order id; it learns that id when the province reports the work order
        (:meth:`crm_ReportWorkOrderResult` asks the province)."""
        self._save_order(sender, body, "00", "received")
        if not self.bus_url:
            return "0000", "received (no bus configured to reach the province)", {
                "ORDER_ID": body["ORDER_ID"], "ORDER_STATE": "00"}
        province = ("00", body["PROVINCE_CODE"])
        result, why = self.via_bus(head, "UCRM", province, "OrderSync", "SyncOrder", body)
        if not result.ok:
            self._save_order(sender, body, "00", f"province not reached yet: {why}"[:200])
            return "0000", f"received; province not reached yet: {why}"[:200], {
                "ORDER_ID": body["ORDER_ID"], "ORDER_STATE": "00"}
        work = {"TRADE_ID": f"WO{body['ORDER_ID'][-20:]}", "ORDER_ID": body["ORDER_ID"],
                "USER_ID": f"U{body['SERIAL_NUMBER']}", "SERIAL_NUMBER": body["SERIAL_NUMBER"],
                "PROVINCE_CODE": body["PROVINCE_CODE"], "PRODUCT_ID": body["PRODUCT_ID"],
                "COMMANDS": {"COMMAND": [{"CMD_CODE": "OPEN_ACCOUNT"}, {"CMD_CODE": "OPEN_3G_DATA"}]}}
        submitted, more = self.via_bus(head, "UCRM", province, "Provisioning", "SubmitWorkOrder", work)
        desc = (f"sent to the province with work order {work['TRADE_ID']}: {more}" if submitted.ok
                else f"sent to the province ({why}); work order not submitted yet: {more}")
        self._save_order(sender, body, "10", desc[:200])
        return "0000", desc[:200], {"ORDER_ID": body["ORDER_ID"], "ORDER_STATE": "10"}

    def crm_SubmitWorkOrder(self, sender, head, body):
        """A province CRM takes a work order, 'activates the network' and reports back to HQ
        CRM through the bus a moment later, as a real provisioning system would."""
        w = store.work_orders.c
        with self.engine.begin() as conn:
            known = conn.execute(select(store.work_orders).where(
                w.peer == sender, w.trade_id == body["TRADE_ID"])).mappings().first()
            if known is None:
                conn.execute(insert(store.work_orders).values(
                    peer=sender, trade_id=body["TRADE_ID"], order_id=body["ORDER_ID"],
                    msisdn=body["SERIAL_NUMBER"], province=body["PROVINCE_CODE"], state="1",
                    update_time=now14()))
        if known is None and self.bus_url:
            timer = threading.Timer(self.provisioning_delay, self._report_work_order, (sender, head, body))
            timer.daemon = True
            timer.start()
        return "0000", "work order accepted", {"TRADE_ID": body["TRADE_ID"],
                                               "WORK_STATE": known["state"] if known else "1"}

    def _report_work_order(self, sender, head, body):
        with self.engine.begin() as conn:
            conn.execute(update(store.work_orders).where(
                store.work_orders.c.peer == sender, store.work_orders.c.trade_id == body["TRADE_ID"])
                .values(state="3", update_time=now14()))
        self._save_order(sender, body, "30", "network activated")
        report = {"TRADE_ID": body["TRADE_ID"], "ORDER_ID": body["ORDER_ID"],
                  "SERIAL_NUMBER": body["SERIAL_NUMBER"], "PROVINCE_CODE": body["PROVINCE_CODE"],
                  "WORK_STATE": "3", "RESULT_DESC": "network activated", "FINISH_TIME": now14()}
        try:
            result, why = self.via_bus(head, "PCRM", ("00", body["PROVINCE_CODE"]), "Provisioning",
                                       "ReportWorkOrderResult", report)
            if not result.ok:
                log.warning("%s could not report work order %s: %s", sender, body["TRADE_ID"], why)
        except Exception:  # a simulator's background report: logged, never raised into a thread
            log.exception("%s could not report work order %s", sender, body["TRADE_ID"])

    def crm_ReportWorkOrderResult(self, sender, head, body):
        """HQ CRM learns the work order's outcome, updates the order and tells e-sales. An order
        HQ CRM sent to the province whose province order id it does not know yet (the order went
        one-way, so no answer carried it) is asked of the province first, synchronously through
        the bus (QueryOrderStatus), so that the notice carries PROVINCE_ORDER_ID."""
        state, desc = {"3": ("30", "completed"), "2": ("40", "provisioning failed")}.get(
            body["WORK_STATE"], ("20", "provisioning"))
        desc = body.get("RESULT_DESC") or desc
        with self.engine.connect() as conn:
            order = self._order(conn, sender, body["ORDER_ID"])
        province_order_id = order["province_order_id"] if order is not None else None
        if order is not None and not province_order_id and self.bus_url:
            province_order_id = self._province_order_id(head, body)
        self._save_order(sender, body, state, desc, province_order_id)
        if self.bus_url and state in ("30", "40"):
            notice = {"ORDER_ID": body["ORDER_ID"], "ORDER_STATE": state, "STATE_DESC": desc,
                      "UPDATE_TIME": now14()}
            if province_order_id:
                notice["PROVINCE_ORDER_ID"] = province_order_id
            result, why = self.via_bus(head, "UCRM", ("00", body["PROVINCE_CODE"]), "OrderSync",
                                       "NotifyOrderStatus", notice)
            if not result.ok:
                log.warning("HQ CRM could not notify e-sales of order %s: %s", body["ORDER_ID"], why)
        return "0000", "order updated", {"TRADE_ID": body["TRADE_ID"], "ORDER_ID": body["ORDER_ID"],
                                         "ORDER_STATE": state}

    def _province_order_id(self, head, body) -> str | None:
        """HQ CRM asks the province CRM for its id of an order (QueryOrderStatus through the bus)."""
        result, why = self.via_bus(head, "UCRM", ("00", body["PROVINCE_CODE"]), "OrderSync", "QueryOrderStatus",
                                   {"ORDER_ID": body["ORDER_ID"]})
        if not result.ok:
            log.warning("HQ CRM could not ask the province about order %s: %s", body["ORDER_ID"], why)
            return None
        return (result.body or {}).get("PROVINCE_ORDER_ID")

    def esales_NotifyOrderStatus(self, sender, head, body):
        with self.engine.begin() as conn:
            conn.execute(insert(store.notifications).values(
                peer=sender, order_id=body["ORDER_ID"], order_state=body["ORDER_STATE"],
                province_order_id=body.get("PROVINCE_ORDER_ID"), state_desc=body.get("STATE_DESC"),
                trans_ido=head.get("TRANS_IDO")))
        return "0000", "notice received", {"ORDER_ID": body["ORDER_ID"]}

    # -- HQ CRM's billing look-ups go through the bus; a province CRM answers from its Billing --
    def _billing_lookup(self, operation, sender, head, body):
        if sender == "HQ-CRM":
            if not self.bus_url:
                return "8888", "HQ CRM has no bus to reach the billing", None
            result, why = self.via_bus(head, "UCRM", ("01", body["SERIAL_NUMBER"]), "BillQuery", operation, body)
            if result.fault_code:
                return "8888", f"billing not reached: {why}"[:200], None
            return result.rsp_code, f"from {result.sender}: {why}"[:200], result.body
        return getattr(self, f"billing_{operation}")(f"BILLING-{sender[-2:]}", head, body)

    def crm_QueryBill(self, sender, head, body):
        return self._billing_lookup("QueryBill", sender, head, body)

    def crm_QueryCallDetails(self, sender, head, body):
        return self._billing_lookup("QueryCallDetails", sender, head, body)

    def crm_QueryBalance(self, sender, head, body):
        return self._billing_lookup("QueryBalance", sender, head, body)

    def crm_SyncThreeAccount(self, sender, head, body):
        return self.billing_SyncThreeAccount(sender, head, body)

    def crm_ActivateCards(self, sender, head, body):
        return self.topup_ActivateCards(sender, head, body)

    def crm_QueryCardStatus(self, sender, head, body):
        return self.topup_QueryCardStatus(sender, head, body)

    def crm_SyncVacChange(self, sender, head, body):
        """A province CRM decides whether the VAC change concerns a 3G user; if so it syncs the
        user to HQ through the bus (three-account sync), else it says so with 2101. The sync is
        one-way: the bus accepts it and delivers it later to the billing and HQ CRM, so the
        CRM says "queued for HQ" (SYNCED 1: passed on), not that HQ has it."""
        msisdn, seq = body["SERIAL_NUMBER"], body["VAC_SEQ"]
        with self.engine.connect() as conn:
            acct = self._account(conn, f"BILLING-{sender[-2:]}", msisdn)
        if acct is None:
            return "2099", f"no such number {msisdn} in province {sender[-2:]}", None
        is_3g = acct["net_type"] == "50"
        synced, code, desc = False, "2101", "not a 3G user: the change stays in the province"
        if is_3g:
            user = {"USER_ID": f"U{msisdn}", "SERIAL_NUMBER": msisdn, "CUST_ID": f"C{msisdn}",
                    "PRODUCT_ID": "99002401", "NET_TYPE_CODE": "50", "PREPAY_TAG": "0",
                    "SERVICE_STATE": acct["user_state"], "PROVINCE_CODE": acct["province"],
                    "EPARCHY_CODE": "0000", "UPDATE_TIME": now14()}
            result, why = self.via_bus(head, "PCRM", ("01", msisdn), "AccountSync", "SyncThreeAccount",
                                       {"SYNC_SEQ": int(time.time() * 1000), "USER": user})
            synced = result.ok
            if not synced:
                code, desc = "8888", f"sync to HQ failed: {why}"[:200]
            elif result.sender == "BUS":   # accepted: stored by the bus, delivered by its Forwarder
                code, desc = "0000", f"queued for HQ: {why}"[:200]
            else:
                code, desc = "0000", f"synced to HQ: {why}"[:200]
        with self.engine.begin() as conn:
            conn.execute(insert(store.vac_changes).values(peer=sender, vac_seq=str(seq), msisdn=msisdn,
                                                          is_3g=int(is_3g), synced=int(synced)))
        return code, desc, {"SERIAL_NUMBER": msisdn, "VAC_SEQ": seq, "IS_3G": "1" if is_3g else "0",
                            "SYNCED": "1" if synced else "0"}

    # -- information queries at HQ CRM ----------------------------------------------------------
    def crm_QueryProducts(self, sender, head, body):
        found = store.products(body.get("NET_TYPE_CODE"), body.get("PRODUCT_TYPE"))
        return "0000", f"{len(found)} products", {"PRODUCTS": {"PRODUCT": found}} if found else {}

    def crm_QueryNumbers(self, sender, head, body):
        found = store.free_numbers(body["PROVINCE_CODE"], body.get("PREFIX"), body.get("MAX_COUNT") or 10)
        return "0000", f"{len(found)} numbers", {"NUMBERS": {"NUMBER_INFO": found}} if found else {}

    def crm_QueryChannels(self, sender, head, body):
        found = store.channels(body["PROVINCE_CODE"])
        return "0000", f"{len(found)} channels", {"CHANNELS": {"CHANNEL": found}}

    def crm_QueryOrderStatus(self, sender, head, body):
        with self.engine.connect() as conn:
            order = self._order(conn, sender, body["ORDER_ID"])
        if order is None:
            return "3001", f"no order {body['ORDER_ID']}", None
        rsp = {"ORDER_ID": order["order_id"], "ORDER_STATE": order["state"],
               "STATE_DESC": order["state_desc"], "UPDATE_TIME": order["update_time"]}
        if order["province_order_id"]:
            rsp["PROVINCE_ORDER_ID"] = order["province_order_id"]
        return "0000", "success", rsp

    def client(self):
        with self._lock:
            if self._client is None:
                from services.client import BusClient
                self._client = BusClient(self.bus_url, login=self.login)
            return self._client

    # -- top-up card system -------------------------------------------------------------------
    def topup_ActivateCards(self, sender, head, body):
        if bool(body.get("CARDS")) == bool(body.get("CARD_RANGE")):
            return "8888", "give exactly one of CARDS and CARD_RANGE", None
        if body.get("CARDS"):
            numbers = list(body["CARDS"]["CARD_NO"])
        else:
            begin, end = int(body["CARD_RANGE"]["BEGIN_CARD_NO"]), int(body["CARD_RANGE"]["END_CARD_NO"])
            if end < begin or end - begin >= 1000:
                return "8888", "a card range holds 1 to 1000 cards, begin <= end", None
            numbers = [f"{n:015d}" for n in range(begin, end + 1)]
        results = []
        with self.engine.begin() as conn:
            for card_no in numbers:
                card = conn.execute(select(store.cards).where(store.cards.c.card_no == card_no)).mappings().first()
                if card is None:
                    results.append({"CARD_NO": card_no, "RESULT": "2", "RESULT_DESC": "unknown card"})
                elif card["state"] != "0":
                    results.append({"CARD_NO": card_no, "RESULT": "1", "RESULT_DESC": "already active"})
                else:
                    conn.execute(update(store.cards).where(store.cards.c.card_no == card_no).values(state="1"))
                    results.append({"CARD_NO": card_no, "RESULT": "0", "RESULT_DESC": "activated"})
        return "0000", "success", {"RESULTS": {"CARD_RESULT": results}}

    def topup_QueryCardStatus(self, sender, head, body):
        with self.engine.connect() as conn:
            card = conn.execute(select(store.cards).where(store.cards.c.card_no == body["CARD_NO"])).mappings().first()
        if card is None:
            return "21002", f"unknown card {body['CARD_NO']}", None
        return "0000", "success", {"CARD_NO": card["card_no"], "CARD_STATE": card["state"],
                                   "FACE_VALUE": card["face_value"], "PROVINCE_CODE": card["province"],
                                   "EXPIRE_DATE": card["expire_date"]}
