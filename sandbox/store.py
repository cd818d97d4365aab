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

from sqlalchemy import (BigInteger, Column, Integer, MetaData, String, Table, UniqueConstraint, func,
                        insert, select)
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
    UniqueConstraint("peer", "bank_code", "bank_serial", name="uq_sb_payment_serial"),
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

received = Table(
    "sb_received", metadata,
    Column("id", Integer, primary_key=True),
    Column("peer", String(20), nullable=False),
    Column("service", String(40), nullable=False),
    Column("operation", String(40), nullable=False),
    Column("trans_ido", String(32), index=True),
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
USERS_PER_PROVINCE = 12
CARDS_PER_PROVINCE = 40


@dataclass(frozen=True)
class SeedUser:
    msisdn: str
    province: str
    cust_name: str
    user_state: str
    balance: int


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
        users.append(SeedUser(str(number), province, name, state, balance))
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


def open_store(url: str, provinces) -> Engine:
    """An engine on the sandbox database, created and seeded on first use."""
    engine = make_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(accounts)).scalar():
            return engine
        for province in sorted(provinces):
            users = seed_users(province) + example_users(province)
            rows = [dict(peer=peer, msisdn=u.msisdn, province=province, cust_name=u.cust_name,
                         user_state=u.user_state, balance=u.balance)
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

