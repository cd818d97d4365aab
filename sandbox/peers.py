"""Simulated peers: what HQ CRM, HQ Billing, the province CRMs and Billings and the top-up
card system answer. Each answer's header names the peer in ``MSG_SENDER``.

Result codes used by the simulated billings (RESPONSE/RSP_CODE):

======  ===============================================================
0000    success
1544    payment refused: invalid amount or number (field code)
1545    reversal refused: the original payment is unknown
1546    reversal refused: the original payment was already reversed
1547    reversal refused: not the original payment's accounting day
1548    reversal refused: amount or number differs from the original
2099    no such number (USER_STATE 99)
21001   top-up card not activated; 21003 card already used; 21004 card expired
3001    no such order
======  ===============================================================
"""
from __future__ import annotations

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
    return {"hq_billing": "HQ-BILLING", "hq_crm": "HQ-CRM", "topup": "TOPUP",
            "province_billing": f"BILLING-{province}", "province_crm": f"CRM-{province}"}[kind]


class Peers:
    """All simulated peers over one sandbox database. ``handle`` is the single entry."""

    def __init__(self, engine: Engine, bus_url: str | None = None):
        self.engine = engine
        self.bus_url = bus_url
        self._client = None
        self._lock = threading.Lock()

    # -- entry -----------------------------------------------------------------------------
    def handle(self, kind: str, province: str | None, service: str, operation: str,
               head: dict, body: dict) -> tuple[dict, dict | None]:
        sender = peer_name(kind, province)
        with self.engine.begin() as conn:
            conn.execute(insert(store.received).values(peer=sender, service=service,
                                                       operation=operation,
                                                       trans_ido=head.get("TRANS_IDO")))
        method = getattr(self, f"{kind.split('_')[-1]}_{operation}", None)
        if method is None:
            return answer(head, sender, "8888", f"{sender} does not offer {service}.{operation}"), None
        code, desc, rsp = method(sender, head, body)
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
                        amount=amount, acct_date=today(), balance_after=balance,
                        trans_ido=head.get("TRANS_IDO")))
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
                if original["acct_date"] != today():
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
                    msisdn=msisdn, amount=amount, acct_date=today(), balance_after=balance,
                    trans_ido=head.get("TRANS_IDO")))
                done = self._payment(conn, sender, bank, serial)
        return "0000", "success", {"BANK_SERIAL": serial, "ORIG_BANK_SERIAL": orig, "SERIAL_NUMBER": msisdn,
                                   "AMOUNT": amount, "BALANCE": done["balance_after"]}

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
                conn.execute(update(store.orders).where(
                    store.orders.c.peer == sender, store.orders.c.order_id == body["ORDER_ID"])
                    .values(state=state, state_desc=desc, province_order_id=province_order_id,
                            update_time=now14()))

    def crm_SyncOrder(self, sender, head, body):
        if sender == "HQ-CRM":
            return self._hq_crm_order(sender, head, body)
        province_order_id = f"{sender[-2:]}{int(time.time() * 1000) % 10**10:010d}"
        self._save_order(sender, body, "20", "provisioning", province_order_id)
        return "0000", "accepted for provisioning", {"ORDER_ID": body["ORDER_ID"],
                                                     "PROVINCE_ORDER_ID": province_order_id,
                                                     "ORDER_STATE": "20"}

    def _hq_crm_order(self, sender, head, body):
        """HQ CRM takes the order, then sends it on to the province CRM through the bus."""
        self._save_order(sender, body, "00", "received")
        if not self.bus_url:
            return "0000", "received (no bus configured to reach the province)", {
                "ORDER_ID": body["ORDER_ID"], "ORDER_STATE": "00"}
        forward_head = dict(head, ORIG_DOMAIN="UCRM", TRANS_IDO=f"HQ{uuid.uuid4().hex[:20]}",
                            ROUTING={"ROUTE_TYPE": "00", "ROUTE_VALUE": body["PROVINCE_CODE"]},
                            PROCESS_TIME=now14())
        for key in ("MSG_SENDER", "MSG_RECEIVER", "RESPONSE", "TRANS_IDH"):
            forward_head.pop(key, None)
        result = self.client().call("OrderSync", "SyncOrder", {"UNI_BSS_HEAD": forward_head, "UNI_BSS_BODY": body})
        if result.fault_code or not result.ok:
            why = result.fault_string or (result.head or {}).get("RESPONSE", {}).get("RSP_DESC")
            self._save_order(sender, body, "00", f"province not reached yet: {why}"[:200])
            return "0000", f"received; province not reached yet: {why}", {
                "ORDER_ID": body["ORDER_ID"], "ORDER_STATE": "00"}
        province_order_id = result.body.get("PROVINCE_ORDER_ID")
        self._save_order(sender, body, "10", f"sent to {result.sender}", province_order_id)
        return "0000", f"sent to {result.sender}", {"ORDER_ID": body["ORDER_ID"],
                                                    "PROVINCE_ORDER_ID": province_order_id,
                                                    "ORDER_STATE": "10"}

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
                self._client = BusClient(self.bus_url)
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
