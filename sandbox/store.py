"""The sandbox peers' state (SQLite by default) and its deterministic seed.

Every province gets the same data on every machine: users whose numbers come from that
province's own number segments, customers with Chinese names, balances and arrears, bill
items, and top-up cards in every state. Each billing peer (each province Billing and HQ
Billing) keeps its own copy of the accounts, so a cut-over shows which billing answered.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (BigInteger, Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        func, insert, select)
from sqlalchemy.engine import Engine

from bus.segments import SegmentTable
from config.settings import load_settings
from dao.db import make_engine
from services.models.common import WSDL_DIR

EXAMPLES_DIR = WSDL_DIR / "examples"

metadata = MetaData()

accounts = Table(
    "sb_account", metadata,
    Column("peer", String(20), primary_key=True),
    Column("msisdn", String(11), primary_key=True),
    Column("province", String(2), nullable=False),
    Column("cust_name", String(40), nullable=False),
    Column("user_state", String(2), nullable=False),
    Column("balance", BigInteger, nullable=False),     # fen; negative = arrears
    Column("net_type", String(2), nullable=False, default="50"),   # 50 WCDMA (3G), 10 GSM
)

bill_items = Table(
    "sb_bill_item", metadata,
    Column("id", Integer, primary_key=True),
    Column("msisdn", String(11), nullable=False, index=True),
    Column("bill_cycle", String(6), nullable=False),
    Column("item_name", String(40), nullable=False),
    Column("fee", BigInteger, nullable=False),
)

payments = Table(
    "sb_payment", metadata,
    Column("id", Integer, primary_key=True),
    Column("peer", String(20), nullable=False),
    Column("bank_code", String(10), nullable=False),
    Column("bank_serial", String(32), nullable=False),
    Column("kind", String(8), nullable=False),          # pay | reverse
    Column("orig_serial", String(32)),
    Column("msisdn", String(11), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("acct_date", String(8), nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("reversed", Integer, nullable=False, default=0),
    Column("trans_ido", String(32)),
    Column("trade_time", String(14)),
    Column("province", String(2)),
    UniqueConstraint("peer", "bank_code", "bank_serial", name="uq_sb_payment_serial"),
    Index("ix_sb_payment_day", "peer", "bank_code", "acct_date", "bank_serial"),
)

orders = Table(
    "sb_order", metadata,
    Column("peer", String(20), primary_key=True),
    Column("order_id", String(40), primary_key=True),
    Column("province_order_id", String(40)),
    Column("province", String(2)),
    Column("msisdn", String(11)),
    Column("state", String(2), nullable=False),
    Column("state_desc", String(200)),
    Column("update_time", String(14), nullable=False),
)

cards = Table(
    "sb_card", metadata,
    Column("card_no", String(15), primary_key=True),
    Column("province", String(2), nullable=False),
    Column("state", String(1), nullable=False),         # 0 not activated, 1 active, 2 used, 3 expired
    Column("face_value", BigInteger, nullable=False),
    Column("expire_date", String(8), nullable=False),
)

three_accounts = Table(
    "sb_three_account", metadata,
    Column("peer", String(20), primary_key=True),
    Column("user_id", String(40), primary_key=True),
    Column("msisdn", String(11)),
    Column("sync_seq", BigInteger, nullable=False),
    Column("trans_ido", String(32)),
)

topups = Table(
    "sb_topup", metadata,
    Column("id", Integer, primary_key=True),
    Column("peer", String(20), nullable=False),
    Column("topup_serial", String(32), nullable=False),
    Column("msisdn", String(11), nullable=False),
    Column("card_no", String(15), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("acct_date", String(8), nullable=False),
    Column("trade_time", String(14), nullable=False),
    UniqueConstraint("peer", "topup_serial", name="uq_sb_topup_serial"),
)

work_orders = Table(
    "sb_work_order", metadata,
    Column("peer", String(20), primary_key=True),
    Column("trade_id", String(40), primary_key=True),
    Column("order_id", String(40), nullable=False),
    Column("msisdn", String(11)),
    Column("province", String(2)),
    Column("state", String(1), nullable=False),
    Column("update_time", String(14), nullable=False),
)

notifications = Table(
    "sb_notification", metadata,
    Column("id", Integer, primary_key=True),
    Column("peer", String(20), nullable=False),
    Column("order_id", String(40), nullable=False, index=True),
    Column("order_state", String(2), nullable=False),
    Column("province_order_id", String(40)),
    Column("state_desc", String(200)),
    Column("trans_ido", String(32)),
)

vac_changes = Table(
    "sb_vac_change", metadata,
    Column("id", Integer, primary_key=True),
    Column("peer", String(20), nullable=False),
    Column("vac_seq", String(40), nullable=False),
    Column("msisdn", String(11), nullable=False),
    Column("is_3g", Integer, nullable=False),
    Column("synced", Integer, nullable=False),
)

meta = Table(
    "sb_meta", metadata,
    Column("key", String(20), primary_key=True),
    Column("value", String(40), nullable=False),
)

received = Table(
    "sb_received", metadata,
    Column("id", Integer, primary_key=True),
    Column("peer", String(20), nullable=False),
    Column("service", String(40), nullable=False),
    Column("operation", String(40), nullable=False),
    Column("trans_ido", String(32), index=True),
    Column("repeat", Integer, nullable=False, default=0),   # 1: answered from memory, not applied
)

answers = Table(
    "sb_answer", metadata,
    Column("peer", String(20), primary_key=True),
    Column("trans_ido", String(32), primary_key=True),
    Column("operation", String(40), nullable=False),
    Column("answer", Text, nullable=False),
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
USERS_PER_PROVINCE = 12
CARDS_PER_PROVINCE = 40


SCHEMA_VERSION = "5"   # a sandbox database of another version is rebuilt and reseeded


@dataclass(frozen=True)
class SeedUser:
    msisdn: str
    province: str
    cust_name: str
    user_state: str
    balance: int
    net_type: str = "50"   # 50: a 3G (WCDMA) user; 10: a GSM user


@lru_cache(maxsize=1)
def _segment_table() -> SegmentTable:
    settings = load_settings(env={})
    return SegmentTable.from_files(settings.segments_file)


def seed_users(province: str) -> list[SeedUser]:
    """The deterministic users of a province: numbers from its own segments."""
    table = _segment_table()
    rng = random.Random(f"users-{province}")
    ranges = table.ranges_of(province)
    picks = sorted(rng.sample(range(len(ranges)), min(USERS_PER_PROVINCE, len(ranges))))
    users = []
    for n, i in enumerate(picks):
        begin, end = ranges[i]
        number = begin + rng.randrange(end - begin + 1)
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        state = "00" if n < USERS_PER_PROVINCE - 2 else ("01" if n == USERS_PER_PROVINCE - 2 else "02")
        balance = -rng.randrange(1000, 30000) if n % 2 == 0 else rng.randrange(0, 20000)
        users.append(SeedUser(str(number), province, name, state, balance, "10" if n == 1 else "50"))
    return users


def _example_values() -> dict[str, set[str]]:
    """Numbers and card numbers named in wsdl/examples/, so the examples work against the sandbox."""
    found = {"msisdn": set(), "card": set()}

    def walk(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, v)
        elif isinstance(value, list):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and value.isdigit():
            if key in ("SERIAL_NUMBER", "ROUTE_VALUE") and len(value) == 11:
                found["msisdn"].add(value)
            elif key in ("CARD_NO", "BEGIN_CARD_NO", "END_CARD_NO") and len(value) == 15:
                found["card"].add(value)

    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        walk(None, json.loads(path.read_text(encoding="utf-8")))
    return found


def example_users(province: str) -> list[SeedUser]:
    """The users of wsdl/examples/ that live in ``province``: each owes 100.00 yuan."""
    table = _segment_table()
    rng = random.Random(f"examples-{province}")
    out = []
    for number in sorted(_example_values()["msisdn"]):
        segment = table.lookup(number)
        if segment is not None and segment.province_code == province:
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            out.append(SeedUser(number, province, name, "00", -10000))
    return out


def example_cards(province: str) -> list[dict]:
    """The cards of wsdl/examples/ whose number says ``province`` (9 + code, or code first)."""
    out = []
    for card_no in sorted(_example_values()["card"]):
        if card_no[:2] == province:
            out.append(dict(card_no=card_no, province=province, state="0", face_value=10000,
                            expire_date="20291231"))
    return out


def seed_cards(province: str) -> list[dict]:
    """Cards ``9<province><12 digits>``: states cycle through not activated, active, used, expired."""
    out = []
    for i in range(CARDS_PER_PROVINCE):
        state = "0" if i < CARDS_PER_PROVINCE // 2 else str(1 + i % 3)
        out.append(dict(card_no=f"9{province}{i + 1:012d}", province=province, state=state,
                        face_value=(5000, 10000, 30000)[i % 3],
                        expire_date="20231231" if state == "3" else "20291231"))
    return out


def mask_name(name: str) -> str:
    """Customer names leave a billing masked: all but the last character become '*'."""
    return "*" * (len(name) - 1) + name[-1:] if name else name


def billing_peers(province: str) -> tuple[str, str]:
    return f"BILLING-{province}", "HQ-BILLING"


def _version(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(select(meta.c.value).where(meta.c.key == "schema")).scalar()
    except Exception:  # no sb_meta table: a database of an older sandbox, or a new one
        return None


def open_store(url: str, provinces) -> Engine:
    """An engine on the sandbox database, created and seeded on first use (and rebuilt when
    it was made by another version of the sandbox: its state is a simulator's, disposable)."""
    engine = make_engine(url)
    if _version(engine) != SCHEMA_VERSION:
        old = MetaData()
        old.reflect(engine)
        old.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(accounts)).scalar():
            return engine
        conn.execute(insert(meta).values(key="schema", value=SCHEMA_VERSION))
        for province in sorted(provinces):
            users = seed_users(province) + example_users(province)
            rows = [dict(peer=peer, msisdn=u.msisdn, province=province, cust_name=u.cust_name,
                         user_state=u.user_state, balance=u.balance, net_type=u.net_type)
                    for u in users for peer in billing_peers(province)]
            conn.execute(insert(accounts), rows)
            items = []
            for u in users:
                if u.balance < 0:
                    half = -u.balance // 2
                    items += [dict(msisdn=u.msisdn, bill_cycle="202610", item_name="月租费", fee=half),
                              dict(msisdn=u.msisdn, bill_cycle="202610", item_name="通话费",
                                   fee=-u.balance - half)]
            if items:
                conn.execute(insert(bill_items), items)
            conn.execute(insert(cards), seed_cards(province) + example_cards(province))
    return engine


def default_provinces() -> list[str]:
    return sorted(load_settings(env={}).phases)



# -- catalogue data the simulated HQ CRM and billings answer with (deterministic) -----------
PRODUCTS = [
    # PRODUCT_ID, PRODUCT_NAME, PRODUCT_TYPE, NET_TYPE_CODE, MONTHLY_FEE (fen)
    ("99002401", "沃3G 96元基本套餐", "A", "50", 9600),
    ("99002402", "沃3G 126元基本套餐", "A", "50", 12600),
    ("99002403", "沃3G 156元商务套餐", "A", "50", 15600),
    ("99003001", "3G上网卡 50元包月", "B", "50", 5000),
    ("99001001", "如意通 GSM 基本套餐", "A", "10", 1800),
]
CHANNEL_KINDS = [("01", "自有营业厅"), ("02", "合作营业厅"), ("03", "电子渠道")]


def products(net_type: str | None = None, product_type: str | None = None) -> list[dict]:
    return [{"PRODUCT_ID": pid, "PRODUCT_NAME": name, "PRODUCT_TYPE": ptype, "NET_TYPE_CODE": net,
             "MONTHLY_FEE": fee}
            for pid, name, ptype, net, fee in PRODUCTS
            if (net_type is None or net == net_type) and (product_type is None or ptype == product_type)]


def channels(province: str) -> list[dict]:
    from services.models.common import PROVINCE_CODES
    name = PROVINCE_CODES.get(province, province)
    return [{"CHANNEL_ID": f"{province}{kind}{i:04d}", "CHANNEL_NAME": f"{name}{label}{i}号",
             "CHANNEL_TYPE": kind}
            for kind, label in CHANNEL_KINDS for i in (1, 2)]


def free_numbers(province: str, prefix: str | None = None, max_count: int = 10) -> list[dict]:
    """Numbers of the province's own segments that no seeded user holds, with a level:
    1 for numbers ending 8888/6666, 2 for a repeated pair at the end, 3 otherwise."""
    taken = {u.msisdn for u in seed_users(province)}
    out = []
    for begin, end in _segment_table().ranges_of(province):
        for number in range(begin, min(end, begin + 2000) + 1, 97):
            text = str(number)
            if text in taken or (prefix and not text.startswith(prefix)):
                continue
            level = "1" if text[-4:] in ("8888", "6666") else ("2" if text[-1] == text[-2] else "3")
            out.append({"SERIAL_NUMBER": text, "NUMBER_LEVEL": level,
                        "PRE_FEE": {"1": 50000, "2": 10000, "3": 0}[level]})
            if len(out) >= max_count:
                return out
    return out


def call_details(msisdn: str, cycle: str, detail_type: str) -> list[dict]:
    """A user's call records of one month: 12 voice calls, 8 messages or 6 data sessions."""
    rng = random.Random(f"cdr-{msisdn}-{cycle}-{detail_type}")
    count = {"1": 12, "2": 8, "3": 6}[detail_type]
    out = []
    for i in range(count):
        day, second = 1 + i * 2, rng.randrange(8 * 3600, 22 * 3600)
        start = f"{cycle}{day:02d}{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}"
        record = {"START_TIME": start, "CALL_TYPE": {"1": "MO", "2": "SMS", "3": "GPRS"}[detail_type]}
        if detail_type == "1":
            duration = rng.randrange(10, 900)
            record.update(OTHER_PARTY=f"1{rng.choice('358')}{rng.randrange(10**9):09d}", DURATION=duration,
                          FEE=((duration + 59) // 60) * 15)
        elif detail_type == "2":
            record.update(OTHER_PARTY=f"1{rng.choice('358')}{rng.randrange(10**9):09d}", DURATION=1, FEE=10)
        else:
            kb = rng.randrange(100, 50000)
            record.update(DURATION=kb, FEE=kb // 10)
        out.append(record)
    return out
