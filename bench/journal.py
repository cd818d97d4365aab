"""`make bench`, journal search: each kind of `bssbus journal search` and `journal trace` on a
journal of a million hops, on SQLite and on PostgreSQL, against the target of one second.

The journal is filled quickly (its indexes dropped, the rows bulk-inserted: sqlite3
``executemany`` in one transaction, PostgreSQL ``COPY``, then the indexes built again) with
realistic hops: 30 days of traffic, an inbound hop and its outbound call per message (a stored
message's failed attempts, dead letters and replays among them), a few hundred thousand
numbers, bank payments with their serials, orders with their ids, faults at about 2 %, raw
request and response bytes of a SOAP message's size. A few known flows are planted among them
(a customer's payment, an order, a store-and-forward message that failed, became a dead letter
and was replayed) and searched for.

Each search runs through ``Journal.search`` (``Journal.trace`` and the outbox rows for the
trace), as the command line runs it; its time is the median of ``--runs`` runs. The query plan
of each is read (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN``): a search that scans the
whole journal, rather than an index, is reported as such. PostgreSQL is analysed after the fill
(autovacuum does the same on a live database); SQLite is not (the bus never runs ANALYZE), so
its planner chooses with no statistics, as in production.

PostgreSQL: ``BSSBUS_BENCH_PG_URL`` (default the local ``test`` database), a schema of its own,
dropped afterwards; skipped when it cannot be reached.

    .venv/bin/python -m bench.journal [--rows N] [--quick] [--runs N] [--db sqlite|postgresql|both]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.schema import CreateIndex

from bench.outbox import PG_URL, pg_schema
from bench.run import RESULTS, ROOT, machine
from bus.trace import timeline
from dao.db import open_database
from dao.journal import Journal
from dao.models import JournalEntry, OutboxEntry
from dao.outbox import OutboxStore

TARGET_S = 1.0
T = JournalEntry.__table__
COLUMNS = [c.name for c in T.columns if c.name != "id"]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
DAYS = 30
PROVINCES = ["11", "13", "17", "18", "19", "30", "31", "34", "36", "38", "50", "51", "59", "70", "71", "74",
             "75", "76", "79", "81", "83", "84", "85", "86", "87", "88", "89", "90", "91", "97", "10"]
# (service, operation, caller, target kind, share, stored and forwarded)
TRAFFIC = [
    ("BankPayment", "QueryArrears", "BANK", "billing", 30, False),
    ("BankPayment", "Pay", "BANK", "billing", 14, False),
    ("BankPayment", "Reverse", "BANK", "billing", 1, False),
    ("BankPayment", "QueryPayment", "BANK", "billing", 2, False),
    ("BillQuery", "QueryBill", "UCRM", "billing", 12, False),
    ("BillQuery", "QueryBalance", "UCRM", "billing", 8, False),
    ("TopUp", "TopUp", "YKC", "billing", 6, False),
    ("InfoQuery", "QueryProducts", "ESALE", "hq", 5, False),
    ("OrderSync", "SyncOrder", "ESALE", "hq", 4, False),
    ("OrderSync", "SyncOrder", "UCRM", "crm", 4, True),
    ("Provisioning", "SubmitWorkOrder", "UCRM", "crm", 4, True),
    ("Provisioning", "ReportWorkOrderResult", "PCRM", "hq", 4, True),
    ("OrderSync", "NotifyOrderStatus", "UCRM", "esale", 3, True),
    ("AccountSync", "SyncThreeAccount", "PCRM", "billing", 3, True),
]
REQUEST = (b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
           b'soap/envelope/"><soapenv:Body>' + b"<X>" + b"x" * 1000 + b"</X></soapenv:Body></soapenv:Envelope>")
RESPONSE = REQUEST[:800]

# the planted flows, searched for by their keys
NEEDLE_MSISDN = "18603011234"
NEEDLE_SERIAL = "ICBCBENCH0000000000000007"
NEEDLE_ORDER = "ESBENCH000000001234"
NEEDLE_PROC = "PBENCHDEADLETTERREPLAYED0001"
NEEDLE_TRANS = "TBENCHPAY00000000000000001"


def target_of(kind: str, province: str) -> str:
    return {"billing": f"BILLING-{province}", "crm": f"CRM-{province}", "hq": "HQ-CRM",
            "esale": "ESALE"}[kind]


def generate(rows: int, seed: int = 7):
    """About ``rows`` journal rows (tuples in COLUMNS order), oldest first, and the planted flows."""
    rng = random.Random(seed)
    weights = [t[4] for t in TRAFFIC]
    numbers = [f"1{rng.choice('3568')}{rng.randrange(10**9):09d}" for _ in range(max(1000, rows // 5))]
    span = DAYS * 86400
    messages = rows // 2
    step = span / messages
    n = 0
    emitted = 0
    planted_at = {int(messages * f) for f in (0.2, 0.55, 0.9, 0.97)}
    while emitted < rows:
        at = NOW - timedelta(seconds=span - n * step)
        if n in planted_at:
            for hop in planted(at, n, full=n == max(planted_at)):
                emitted += 1
                yield hop
            n += 1
            continue
        service, operation, caller, kind, _, stored = rng.choices(TRAFFIC, weights)[0]
        province = rng.choice(PROVINCES)
        msisdn = rng.choice(numbers) if rng.random() > 0.00002 else NEEDLE_MSISDN
        trans = f"T{n:026d}"
        proc = f"P{n // 3:026d}"
        serial = f"{caller}{n:020d}" if operation in ("Pay", "Reverse", "QueryPayment", "TopUp") else None
        amount = rng.choice((1000, 2000, 5000, 10000, 12345, 30000)) if operation in ("Pay", "Reverse", "TopUp") else None
        work_state = rng.choice("3333332") if operation == "ReportWorkOrderResult" else None
        order = f"ES{n // 4:016d}" if service in ("OrderSync", "Provisioning") else None
        target = target_of(kind, province)
        fault = rng.random() < 0.02
        msg = f"{n:032x}"
        base = dict(msg_id=msg, service=service, operation=operation, trans_ido=trans, proc_id=proc, msisdn=msisdn,
                    serial=serial, order_id=order, amount=amount, work_state=work_state, province=province,
                    target=target)
        route = f"route {service.lower()}-{operation.lower()} (province {province}, phase 2) -> {target}"
        status = "accepted" if stored else ("fault" if fault else "ok")
        yield row(base, at, direction="in", source=caller, route=route, status=status,
                  rsp_code="9003" if status == "fault" else "0000",
                  fault_code="Server.PeerFault" if status == "fault" else None,
                  error="the peer answered a fault" if status == "fault" else None, elapsed_ms=rng.uniform(3, 40),
                  request=REQUEST, response=RESPONSE)
        yield row(base, at + timedelta(milliseconds=2), direction="out", source="BUS", route=route,
                  status="fault" if fault else "ok", rsp_code="9003" if fault else "0000",
                  fault_code="Server.PeerFault" if fault else None, elapsed_ms=rng.uniform(2, 30),
                  request=REQUEST, response=RESPONSE)
        emitted += 2
        n += 1


def planted(at: datetime, n: int, full: bool):
    """The flows the searches look for: payments of one customer (the ``full`` one by its serial
    and TRANS_IDO); with ``full``, a work order of an order (by order id) that failed three
    times, became a dead letter and was replayed (by PROC_ID)."""
    pay = dict(msg_id=f"needle-pay-{n}"[:32], service="BankPayment", operation="Pay",
               trans_ido=NEEDLE_TRANS if full else f"TBENCHPAY{n}", proc_id=f"PBENCHPAY{n}", msisdn=NEEDLE_MSISDN,
               serial=NEEDLE_SERIAL if full else f"ICBCBENCH{n}", order_id=None, province="51", target="BILLING-51")
    route = "route bank-pay (province 51, phase 2) -> BILLING-51"
    yield row(pay, at, direction="in", source="BANK", route=route, status="ok", rsp_code="0000", elapsed_ms=21.0,
              request=REQUEST, response=RESPONSE)
    yield row(pay, at + timedelta(milliseconds=3), direction="out", source="BUS", route=route, status="ok",
              rsp_code="0000", elapsed_ms=15.0, request=REQUEST, response=RESPONSE)
    if not full:
        return
    order = dict(pay, msg_id=f"needle-order-{n}"[:32], service="Provisioning", operation="SubmitWorkOrder",
                 trans_ido=f"TBENCHWO{n}", proc_id=NEEDLE_PROC, serial=None, order_id=NEEDLE_ORDER,
                 target="CRM-51")
    route = "route work-order (province 51, phase 2) -> CRM-51"
    yield row(order, at, direction="in", source="UCRM", route=route, status="accepted", rsp_code="0000",
              elapsed_ms=4.0, request=REQUEST, response=RESPONSE)
    for k in range(3):
        yield row(order, at + timedelta(seconds=k + 1), direction="out", source="BUS", route=route, status="fault",
                  rsp_code="9001", fault_code="Server.PeerUnavailable", error="CRM-51 refused the connection",
                  elapsed_ms=2.0, request=REQUEST)
    yield row(order, at + timedelta(seconds=3.1), direction="adm", source="BUS", status="dead", rsp_code="9001",
              route="outbox 1: a dead letter after 3 attempt(s)", error="CRM-51 refused the connection")
    yield row(order, at + timedelta(hours=1), direction="adm", source="ops", status="replayed",
              route="dead letter 1 replayed by ops")
    yield row(order, at + timedelta(hours=1, seconds=1), direction="out", source="BUS", route=route, status="ok",
              rsp_code="0000", elapsed_ms=12.0, request=REQUEST, response=RESPONSE)


def row(base: dict, at: datetime, **values) -> tuple:
    values = dict(base, started_at=at, finished_at=at + timedelta(milliseconds=values.get("elapsed_ms") or 0),
                  **values)
    return tuple(values.get(c) for c in COLUMNS)


# -- filling ------------------------------------------------------------------------------------
def journal_indexes():
    return list(T.indexes)


def fill(engine, rows: int) -> dict:
    """The journal filled with ``rows`` hops (indexes dropped, bulk insert, indexes rebuilt)."""
    t0 = time.monotonic()
    with engine.begin() as conn:
        for index in journal_indexes():
            conn.execute(text(f"DROP INDEX {index.name}"))
    dialect = engine.dialect.name
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if dialect == "sqlite":
            fmt = "%Y-%m-%d %H:%M:%S.%f"   # SQLAlchemy's SQLite DATETIME storage
            started = COLUMNS.index("started_at"), COLUMNS.index("finished_at")
            sql = f"INSERT INTO journal ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
            batch = []
            for values in generate(rows):
                values = list(values)
                for i in started:
                    values[i] = values[i].strftime(fmt) if values[i] else None
                batch.append(values)
                if len(batch) == 50_000:
                    cur.executemany(sql, batch)
                    batch = []
            if batch:
                cur.executemany(sql, batch)
        else:
            with cur.copy(f"COPY journal ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for values in generate(rows):
                    copy.write_row(values)
        raw.commit()
    finally:
        raw.close()
    loaded = time.monotonic() - t0
    with engine.begin() as conn:
        for index in journal_indexes():
            conn.execute(CreateIndex(index))
        outbox = OutboxEntry.__table__
        needle = conn.execute(text("SELECT msg_id, trans_ido, started_at FROM journal WHERE proc_id = :p "
                                   "AND direction = 'in'"), {"p": NEEDLE_PROC}).first()
        conn.execute(outbox.insert(), [dict(msg_id=needle.msg_id, service="Provisioning", operation="SubmitWorkOrder",
                                            trans_ido=needle.trans_ido, peer_key="province_crm", peer_name="CRM-51",
                                            province="51", order_key=NEEDLE_MSISDN, message="{}", status="delivered",
                                            attempts=1, next_attempt_at=NOW, created_at=NOW, delivered_at=NOW,
                                            rsp_code="0000")])
    if dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE journal"))
            conn.execute(text("ANALYZE outbox"))
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM journal")).scalar_one()
    return {"rows": count, "load_s": round(loaded, 1), "fill_s": round(time.monotonic() - t0, 1)}


# -- the searches -------------------------------------------------------------------------------
def searches() -> list[tuple[str, dict]]:
    """(label, Journal.search keywords): each kind of search an operator makes."""
    day, hour = timedelta(days=1), timedelta(hours=1)
    return [
        ("number (--msisdn)", dict(msisdn=NEEDLE_MSISDN)),
        ("TRANS_IDO", dict(trans_ido=NEEDLE_TRANS)),
        ("PROC_ID", dict(proc_id=NEEDLE_PROC)),
        ("bank serial (--serial)", dict(serial=NEEDLE_SERIAL)),
        ("order id (--order-id)", dict(order_id=NEEDLE_ORDER)),
        ("service and operation", dict(service="BankPayment", operation="Pay")),
        ("operation alone", dict(operation="Reverse")),
        ("peer (--peer BILLING-51)", dict(peer="BILLING-51")),
        ("status fault", dict(status="fault")),
        ("status replayed (rare)", dict(status="replayed")),
        ("time range (2h..1h ago)", dict(since=NOW - 2 * hour, until=NOW - hour)),
        ("peer + status + last 24 h", dict(peer="BILLING-51", status="fault", since=NOW - day)),
        ("number + last 7 days", dict(msisdn=NEEDLE_MSISDN, since=NOW - 7 * day)),
        ("service + a day 10 days ago", dict(service="OrderSync", since=NOW - 10 * day, until=NOW - 9 * day)),
        ("peer + rare status (dead)", dict(peer="CRM-51", status="dead")),
        ("direction adm (rare)", dict(direction="adm")),
    ]


def plan(engine, query) -> tuple[str, bool]:
    """The query plan as text, and whether it reads the journal through an index only (no full scan)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            lines = [r[3] for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql))]
            # SCAN (of the table, or of a whole index for the ORDER BY) walks every row; SEARCH uses a key
            full = any(line.startswith("SCAN journal") for line in lines)
            return " | ".join(lines), not full
        compiled = query.compile(engine, compile_kwargs={"render_postcompile": True})
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
        lines = [r[0].strip() for r in rows]
        full = any("Seq Scan on journal" in line for line in lines)
        return " | ".join(lines), not full


def timed(fn, runs: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times), result


def measure(url: str, label: str, rows: int, runs: int) -> dict:
    engine = open_database(url)
    try:
        print(f"\n{label}: filling the journal with {rows:,} hops ...", flush=True)
        filled = fill(engine, rows)
        print(f"  {filled['rows']:,} rows: loaded in {filled['load_s']} s, indexed by {filled['fill_s']} s", flush=True)
        journal, outbox = Journal(engine), OutboxStore(engine)
        results = []
        print(f"  {'search':<30} {'median ms':>10} {'max ms':>8} {'hops':>5}  target 1 s  plan")
        for name, keys in searches():
            median, worst, found = timed(lambda: journal.search(limit=50, **keys), runs)
            text_plan, indexed = plan(engine, journal.search_query(limit=50, **keys))
            results.append(dict(search=name, keys={k: str(v) for k, v in keys.items()}, median_ms=round(median * 1000, 2),
                                max_ms=round(worst * 1000, 2), hops=len(found), met=median < TARGET_S,
                                indexed=indexed, plan=text_plan))
            _line(results[-1])

        def trace():
            hops = journal.trace(NEEDLE_PROC)
            return timeline(hops, outbox.of_messages(h["msg_id"] for h in hops))
        median, worst, found = timed(trace, runs)
        text_plan, indexed = plan(engine, journal.trace_query(NEEDLE_PROC))
        results.append(dict(search="trace PROC_ID (with outbox)", keys={"key": NEEDLE_PROC},
                            median_ms=round(median * 1000, 2), max_ms=round(worst * 1000, 2),
                            hops=len(found["events"]), met=median < TARGET_S, indexed=indexed, plan=text_plan))
        _line(results[-1])
        results += measure_stats(engine, runs)
        assert [e["kind"] for e in found["events"]] == ["inbound", "route", "answer", "attempt", "attempt", "attempt",
                                                        "dead letter", "replay", "attempt"], found["events"]
        return dict(filled, searches=results)
    finally:
        engine.dispose()


def measure_stats(engine, runs: int) -> list[dict]:
    """`bssbus stats` (bus.stats.daily_stats: one aggregate a figure, days in UTC+8) over the
    whole 30 days, over the last 7 and over one day, and one province over 30 days; the plan of
    each figure's query."""
    from bus.stats import daily_stats, day_bounds, local_today
    from dao.stats import StatsQueries
    tz = timezone(timedelta(hours=8))
    today = local_today(tz, NOW)
    out = []
    for label, days, province in (("stats: 30 days, every province", DAYS, None),
                                  ("stats: last 7 days", 7, None), ("stats: one day", 1, None),
                                  ("stats: 30 days, province 51", DAYS, "51")):
        since = today - timedelta(days=days - 1)
        median, worst, report = timed(lambda: daily_stats(engine, since, today, tz, province), runs)
        start, end = day_bounds(since, today, tz)
        plans = [plan(engine, q) for q in StatsQueries(engine).queries(start, end, 480, province).values()]
        out.append(dict(search=label, keys={"since": str(since), "until": str(today), "province": province},
                        median_ms=round(median * 1000, 2), max_ms=round(worst * 1000, 2), hops=len(report.rows),
                        met=None, indexed=all(ok for _, ok in plans),   # a report, not a search: no target
                        plan=" || ".join(text_plan for text_plan, _ in plans),
                        payments=report.totals().payments))
        _line(out[-1])
    return out


def _line(r: dict) -> None:
    met = "no target" if r["met"] is None else "met" if r["met"] else "NOT MET"
    how = "index" if r["indexed"] else "FULL SCAN"
    print(f"  {r['search']:<30} {r['median_ms']:>10.1f} {r['max_ms']:>8.1f} {r['hops']:>5}  {met:<10}  {how}",
          flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="journal rows to fill (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows and 3 runs a search")
    parser.add_argument("--runs", type=int, default=5, help="runs of each search (the median is reported)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.runs = min(args.rows, 100_000), min(args.runs, 3)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data = dict(machine=machine(), rows=args.rows, runs=args.runs, target_s=TARGET_S,
                started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    print(f"journal search and trace on {args.rows:,} hops, median of {args.runs} runs, target {TARGET_S:.0f} s")
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
            data["sqlite"] = measure(f"sqlite:///{tmp}/journal.db", "SQLite", args.rows, args.runs)
            data["sqlite"]["file_mb"] = round(Path(tmp, "journal.db").stat().st_size / 2**20, 1)
    if args.db in ("postgresql", "both"):
        with pg_schema() as url:
            if url is not None:
                data["postgresql"] = measure(url, "PostgreSQL", args.rows, args.runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-journal.json")
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    missed = [f"{db}: {r['search']}" for db in ("sqlite", "postgresql") if db in data
              for r in data[db]["searches"] if r["met"] is not None and not (r["met"] and r["indexed"])]
    if missed:
        print("not met or not indexed: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
