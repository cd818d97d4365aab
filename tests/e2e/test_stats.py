"""`bssbus stats` over real traffic: payments, a reversal, a top-up, an order (with its work
order, which the province CRM reports done), a repeated payment, a refused reversal and a peer
that fails, all through a bus over HTTP; then the statistics and their CSV show exactly those
counts and sums, per province, on SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from bus.cli import main
from bus.stats import daily_stats
from sandbox.store import seed_cards, seed_users
from services.client import BusClient
from tests.e2e.conftest import _bus_params, control, embedded_on, make_args, wait_for

BEIJING = timezone(timedelta(hours=8))
PHASE2, PHASE3, FAILING = "51", "11", "74"


def a_user(province, *, arrears=None):
    return next(u for u in seed_users(province) if u.user_state == "00" and u.net_type == "50"
                and (arrears is None or (u.balance < 0) == arrears))


def serial(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:20]}"


@pytest.fixture(scope="module", params=_bus_params())
def traffic(request, tmp_path_factory):
    """A fresh bus and the traffic the statistics must show (and what it should add up to)."""
    with embedded_on(request.param, tmp_path_factory.mktemp(f"stats-{request.param}")) as embedded:
        client = BusClient(embedded.url)
        first_day = datetime.now(BEIJING).date()

        def pay(u, amount, bank_serial):
            return client.call("BankPayment", "Pay", make_args(
                "BankPayment", "Pay", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
                AMOUNT=amount, BANK_SERIAL=bank_serial))

        def reverse(u, amount, original):
            return client.call("BankPayment", "Reverse", make_args(
                "BankPayment", "Reverse", caller="BANK", route=("01", u.msisdn), SERIAL_NUMBER=u.msisdn,
                AMOUNT=amount, BANK_SERIAL=serial("REV"), ORIG_BANK_SERIAL=original))

        gd, bj = a_user(PHASE2, arrears=True), a_user(PHASE3, arrears=True)
        s1, s2, s3 = serial("ICBC"), serial("ICBC"), serial("ICBC")
        assert pay(gd, 12345, s1).rsp_code == "0000"
        assert pay(gd, 20000, s2).rsp_code == "0000"
        assert pay(gd, 12345, s1).rsp_code == "0000"          # the same bank serial: answered from memory
        assert pay(bj, 5050, s3).rsp_code == "0000"
        assert reverse(gd, 20000, s2).rsp_code == "0000"
        assert reverse(gd, 20000, s2).rsp_code == "1546"      # only once: refused, not a reversal

        card = [c for c in seed_cards(PHASE2) if c["state"] == "1"][-1]
        topped = client.call("TopUp", "TopUp", make_args(
            "TopUp", "TopUp", caller="TOPUP", route=("01", gd.msisdn), TOPUP_SERIAL=serial("TU"),
            CARD_NO=card["card_no"], SERIAL_NUMBER=gd.msisdn))
        assert (topped.rsp_code, topped.body["AMOUNT"]) == ("0000", card["face_value"])

        order_id = f"ORD{PHASE2}{int(time.time() * 1000)}"
        ordered = client.call("OrderSync", "SyncOrder", make_args(
            "OrderSync", "SyncOrder", caller="ESALE", route=("01", gd.msisdn), ORDER_ID=order_id,
            SERIAL_NUMBER=gd.msisdn, PROVINCE_CODE=PHASE2))
        assert ordered.rsp_code == "0000", ordered.head

        hn = a_user(FAILING)
        control(embedded.sandbox_url, peer=f"BILLING-{FAILING}", fault="billing database is down")
        try:
            failed = client.call("BankPayment", "QueryBalance", make_args(
                "BankPayment", "QueryBalance", caller="BANK", route=("01", hn.msisdn), SERIAL_NUMBER=hn.msisdn))
        finally:
            control(embedded.sandbox_url, peer=f"BILLING-{FAILING}")
        assert failed.fault_code == "Server.PeerFault"

        def settled():   # the province CRM reports the work order done, through the bus, a moment later
            report = daily_stats(embedded.bus.engine, first_day - timedelta(days=1), first_day + timedelta(days=1))
            return report if report.totals().work_orders_completed == 1 else None

        report = wait_for(settled, 30)
        days = {first_day, datetime.now(BEIJING).date()}
        yield dict(embedded=embedded, report=report, days=days, card_value=card["face_value"])


def by_province(rows) -> dict:
    """The figures of each province, over the days of the run (one day unless it crossed midnight)."""
    out: dict[str, dict] = {}
    for row in rows:
        figures = out.setdefault(row["province"], {})
        for key, value in row.items():
            if key in ("day", "province"):
                continue
            if key == "faults_by_peer":
                for peer, n in value.items():
                    figures.setdefault(key, {})
                    figures[key][peer] = figures[key].get(peer, 0) + n
            elif not key.endswith("_yuan"):
                figures[key] = figures.get(key, 0) + value
    return out


def expected(card_value: int) -> dict:
    zero = dict(orders=0, work_orders_completed=0, payments=0, payments_fen=0, reversals=0, reversals_fen=0,
                topups=0, topups_fen=0, faults=0)
    return {
        PHASE2: dict(zero, orders=1, work_orders_completed=1, payments=2, payments_fen=32345, reversals=1,
                     reversals_fen=20000, topups=1, topups_fen=card_value),
        PHASE3: dict(zero, payments=1, payments_fen=5050),
        FAILING: dict(zero, faults=1, faults_by_peer={f"BILLING-{FAILING}": 1}),
    }


def test_the_statistics_count_and_sum_exactly_the_traffic_per_province(traffic):
    report = traffic["report"]
    assert {row.day for row in report.rows} <= {d.isoformat() for d in traffic["days"]}
    assert by_province(r.as_dict() for r in report.rows) == expected(traffic["card_value"])
    assert report.unpriced == 0
    totals = report.totals()
    assert (totals.payments, totals.payments_fen, totals.reversals, totals.topups) == (3, 37395, 1, 1)


def test_the_command_line_prints_the_same_as_json_a_table_and_csv(traffic, capsys, tmp_path):
    db = ["--db-url", traffic["embedded"].db_url]
    days = sorted(traffic["days"])
    span = ["--since", (days[0] - timedelta(days=1)).isoformat(), "--until", (days[-1] + timedelta(days=1)).isoformat()]
    capsys.readouterr()
    assert main(["stats", *span, "--json", *db]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["timezone"] == "UTC+08:00" and data["unpriced"] == 0
    assert by_province(data["rows"]) == expected(traffic["card_value"])
    gd = [r for r in data["rows"] if r["province"] == PHASE2]
    assert sum(r["payments_fen"] for r in gd) == 32345
    if len(gd) == 1:   # (the run did not cross midnight in Beijing)
        assert gd[0]["payments_yuan"] == "323.45"

    out = tmp_path / "stats.csv"
    assert main(["stats", *span, "--csv", str(out), *db]) == 0
    table = capsys.readouterr().out
    assert f"written to {out}" in table and "faults by peer" in table and f"BILLING-{FAILING} 1" in table
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data["rows"])
    for row, as_json in zip(rows, data["rows"]):
        assert (row["day"], row["province"]) == (as_json["day"], as_json["province"])
        for name in ("payments", "reversals", "topups"):
            assert int(row[name]) == as_json[name] and int(row[f"{name}_fen"]) == as_json[f"{name}_fen"]
            assert row[f"{name}_yuan"] == as_json[f"{name}_yuan"]
        assert int(row["orders"]) == as_json["orders"] and int(row["faults"]) == as_json["faults"]
    failing = [r for r in rows if r["province"] == FAILING]
    assert [r["faults_by_peer"] for r in failing] == [f"BILLING-{FAILING}=1"]

    assert main(["stats", *span, "--province", PHASE3, "--csv", "-", *db]) == 0
    only = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["province"], r["payments"], r["payments_fen"], r["payments_yuan"]) for r in only] == [
        (PHASE3, "1", "5050", "50.50")]
