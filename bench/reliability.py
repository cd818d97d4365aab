"""Crash and outage proof of store and forward: nothing accepted is lost, nothing is applied twice.

Starts the sandbox peers and the bus (gunicorn, 2 workers) in their own process groups, with
the routes of config/bus.yaml (``three-account-from-province`` is store-and-forward there, and
the run insists on it), then:

* **crash run**: a load thread sends one-way ``AccountSync.SyncThreeAccount`` messages
  (caller PCRM, the GSM users of a few provinces: the billing is the only recipient) at a
  steady rate while the bus's whole process group is killed with SIGKILL at random moments
  and restarted. A message is *accepted* (RSP_CODE 0000) or *refused* (a fault, a
  connection failure); a refused one is retried once, with the same TRANS_IDO, after the bus
  is back, as a caller would. Then the outbox must drain.
* **outage run**: one province's Billing fails (sandbox ``/control``) for a while under load;
  the other provinces' messages must be delivered meanwhile, and after the reset everything
  must drain, each user's messages in the order they were sent.

For each run it prints sent, accepted, refused, delivered (distinct TRANS_IDO the peers
applied), duplicates (TRANS_IDO applied more than once), redeliveries (a message sent again
because the bus died between the peer's answer and recording it: delivery is at least once,
and the peer, an idempotent receiver keyed by TRANS_IDO, answers it from memory), lost
(accepted, never delivered) and delivered-but-refused, and exits 1 when anything is lost or
applied twice, a refused message was delivered without having been retried, or (outage run)
the order or isolation failed.

    .venv/bin/python -m bench.reliability [--quick] [--db-url URL] [--seed N]

Timing note: a row the killed process had claimed stays locked for its lease (a step longer
for each row of the batch it claimed), so the drain after a crash may wait for that lock to
expire. The config written here lowers the peers' timeouts to 1 s (lease 7 s)
and the breaker cool-down to 2 s to keep the run short.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import create_engine, text

from bench.run import BSSBUS, ROOT, Server
from bus.server import free_port
from config.settings import load_settings
from sandbox.store import seed_users
from services.client import BusClient
from services.models.common import WSDL_DIR

ROUTE = "three-account-from-province"
PEER_TIMEOUT = 1.0
LEASE = 2 * PEER_TIMEOUT + 5          # bus/outbox.py Forwarder.lease with these timeouts
BATCH = 10                            # Forwarder's default batch (SQLite locks lease * batch)
CRASH_PROVINCES = ("51", "59", "74", "17", "71")
OUTAGE_DOWN = "87"
OUTAGE_OTHERS = ("88", "18", "19")
EXAMPLE = json.loads((WSDL_DIR / "examples" / "AccountSync.SyncThreeAccount.json").read_text("utf-8"))


# -- config -----------------------------------------------------------------------------------
def write_config(path: Path) -> None:
    """Routes copied from config/bus.yaml with ROUTE stored and forwarded (YAML lists replace)."""
    raw = load_settings(env={}).raw
    routes = [dict(r, delivery="store-and-forward") if r["name"] == ROUTE else r for r in raw["routes"]]
    assert any(r["name"] == ROUTE for r in routes), f"no route {ROUTE} in config/bus.yaml"
    config = {
        "routes": routes,
        "redelivery": {"initial_seconds": 0.2, "cap_seconds": 1, "poll_seconds": 0.2},
        "breaker": {"cooldown_seconds": 2},
        "peers": {key: {"timeout": PEER_TIMEOUT} for key in raw["peers"]},
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")


# -- messages ---------------------------------------------------------------------------------
def gsm_user(province: str):
    return next(u for u in seed_users(province) if u.net_type == "10")


def sync_args(user, seq: int) -> dict:
    args = copy.deepcopy(EXAMPLE)
    head = args["UNI_BSS_HEAD"]
    head.update(TRANS_IDO="R" + uuid.uuid4().hex[:26], PROC_ID="P" + uuid.uuid4().hex[:26],
                PROCESS_TIME=time.strftime("%Y%m%d%H%M%S"), ORIG_DOMAIN="PCRM",
                ROUTING={"ROUTE_TYPE": "01", "ROUTE_VALUE": user.msisdn})
    body = args["UNI_BSS_BODY"]
    body["SYNC_SEQ"] = seq
    body["USER"].update(SERIAL_NUMBER=user.msisdn, PROVINCE_CODE=user.province,
                        NET_TYPE_CODE=user.net_type, USER_ID=f"U{user.msisdn}")
    return args


@dataclass
class Sent:
    trans_ido: str
    user: object
    args: dict
    sent_at: float
    outcome: str = ""          # accepted | refused
    why: str = ""
    retried: bool = False
    retry_outcome: str = ""    # accepted | refused (after the one retry)
    retry_why: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted" or self.retry_outcome == "accepted"


def send(client: BusClient, args: dict) -> tuple[str, str]:
    try:
        result = client.call("AccountSync", "SyncThreeAccount", args)
    except Exception as exc:   # connection refused/reset, timeout, an HTML 502...
        return "refused", f"{type(exc).__name__}: {str(exc)[:120]}"
    if result.fault_code:
        return "refused", f"{result.fault_code}: {(result.fault_string or '')[:120]}"
    if result.rsp_code != "0000":
        return "refused", f"RSP_CODE {result.rsp_code}"
    return "accepted", ""


class Load(threading.Thread):
    """Sends at ``rate`` per second, round robin over ``users``, SYNC_SEQ increasing per user."""

    def __init__(self, client: BusClient, users: list, rate: float, log: list[Sent], lock: threading.Lock):
        super().__init__(daemon=True)
        self.client, self.users, self.rate, self.log, self.lock = client, users, rate, log, lock
        self.stop = threading.Event()
        self.seq = defaultdict(int)

    def run(self) -> None:
        n, start = 0, time.monotonic()
        while not self.stop.is_set():
            user = self.users[n % len(self.users)]
            self.seq[user.msisdn] += 1
            args = sync_args(user, self.seq[user.msisdn])
            item = Sent(args["UNI_BSS_HEAD"]["TRANS_IDO"], user, args, time.monotonic())
            with self.lock:
                self.log.append(item)
            item.outcome, item.why = send(self.client, args)
            n += 1
            pause = start + n / self.rate - time.monotonic()
            if pause > 0:
                self.stop.wait(pause)


# -- databases --------------------------------------------------------------------------------
class Dbs:
    def __init__(self, bus_url: str, sandbox_url: str):
        self.bus = create_engine(bus_url)
        self.sandbox = create_engine(sandbox_url)

    def received(self, trans_idos, applied_only: bool = True) -> list[tuple[int, str, str]]:
        """(id, peer, trans_ido) of the sandbox's received rows for these TRANS_IDOs, by id: the
        ones the peer applied, or also the repeats it answered from memory."""
        wanted = set(trans_idos)
        with self.sandbox.connect() as conn:
            rows = conn.execute(text("SELECT id, peer, trans_ido, repeat FROM sb_received "
                                     "WHERE operation = 'SyncThreeAccount' ORDER BY id")).all()
        return [tuple(r[:3]) for r in rows if r[2] in wanted and (not applied_only or not r[3])]

    def outbox(self, trans_idos) -> list[dict]:
        wanted = set(trans_idos)
        with self.bus.connect() as conn:
            rows = conn.execute(text("SELECT * FROM outbox ORDER BY id")).mappings().all()
        return [dict(r) for r in rows if r["trans_ido"] in wanted]

    def pending(self, trans_idos) -> int:
        return sum(1 for r in self.outbox(trans_idos) if r["status"] == "pending")

    def dispose(self):
        self.bus.dispose()
        self.sandbox.dispose()


def wait_drained(dbs: Dbs, trans_idos, bound: float) -> float:
    """Seconds until no row of these messages is pending (or the bound passed)."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        try:
            if dbs.pending(trans_idos) == 0:
                return time.monotonic() - started
        except Exception:    # a locked SQLite file: try again
            pass
        time.sleep(0.5)
    return time.monotonic() - started


# -- the report -------------------------------------------------------------------------------
def tally(name: str, log: list[Sent], dbs: Dbs, db_url: str) -> tuple[dict, list[str]]:
    idos = [s.trans_ido for s in log]
    got = Counter(t for _, _, t in dbs.received(idos))                   # applied by the peer
    redelivered = len(dbs.received(idos, applied_only=False)) - sum(got.values())
    accepted = [s for s in log if s.accepted]
    refused = [s for s in log if s.outcome == "refused"]
    refused_final = [s for s in log if not s.accepted]
    lost = [s for s in accepted if got[s.trans_ido] == 0]
    dups = [t for t, n in got.items() if n > 1]
    delivered_refused = [s for s in refused_final if got[s.trans_ido]]
    unretried = [s for s in delivered_refused if not s.retried]
    stats = {"sent": len(log), "accepted": len(accepted),
             "refused": f"{len(refused)} (retried {sum(s.retried for s in refused)}, "
                        f"accepted on retry {sum(s.retry_outcome == 'accepted' for s in refused)}, "
                        f"refused again {len(refused_final)})",
             "delivered": len(got), "duplicates": len(dups),
             "redelivered after a crash (answered from the peer's memory, not applied)": redelivered,
             "lost": len(lost),
             "delivered-but-refused": f"{len(delivered_refused)} (never retried {len(unretried)})"}
    print(f"\n== {name} ==")
    for key, value in stats.items():
        print(f"{key} {value}")
    problems = []
    outbox = {r["trans_ido"]: r for r in dbs.outbox(idos)}
    by_ido = {s.trans_ido: s for s in log}
    for label, items in (("LOST", [s.trans_ido for s in lost]), ("DUPLICATE", dups),
                         ("DELIVERED BUT REFUSED, NOT RETRIED", [s.trans_ido for s in unretried])):
        for t in items[:10]:
            s = by_ido[t]
            row = outbox.get(t)
            row_text = ({k: row[k] for k in ("id", "status", "attempts", "peer_name", "last_error", "locked_until")}
                        if row else None)
            problems.append(f"{name}: {label} {t} (first try {s.outcome} {s.why!r}; retry "
                            f"{s.retry_outcome or '-'} {s.retry_why!r}; received {got[t]}x; outbox {row_text}); "
                            f"see: {BSSBUS} journal show {t} --db-url '{db_url}'")
    for s in refused_final:
        print(f"  refused after retry: {s.trans_ido}: {s.why} / {s.retry_why}")
    dead = [r for r in outbox.values() if r["status"] == "dead"]
    if dead:
        print(f"  dead letters: {len(dead)}, e.g. {dead[0]['trans_ido']}: {dead[0]['last_error']}")
    return stats, problems


def retry_refused(client: BusClient, log: list[Sent], lock: threading.Lock) -> None:
    """Retry once, with the same TRANS_IDO, every refused message not retried yet."""
    with lock:
        todo = [s for s in log if s.outcome == "refused" and not s.retried]
    for s in todo:
        s.retried = True

    def again(s: Sent):
        s.retry_outcome, s.retry_why = send(client, s.args)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(again, todo))


# -- the runs ---------------------------------------------------------------------------------
def crash_run(args, bus: "BusProcess", dbs: Dbs, client: BusClient, rng: random.Random) -> list[Sent]:
    users = [gsm_user(p) for p in CRASH_PROVINCES]
    log: list[Sent] = []
    lock = threading.Lock()
    load = Load(client, users, args.rate, log, lock)
    print(f"crash run: {args.rate:g} msg/s for {len(users)} GSM users, {args.kills} SIGKILLs of the bus", flush=True)
    load.start()
    try:
        for k in range(args.kills):
            time.sleep(rng.uniform(*args.kill_gap))
            bus.kill()
            print(f"  kill {k + 1}: bus process group killed at message {len(log)}", flush=True)
            time.sleep(rng.uniform(0.2, 1.0))
            bus.start()
            retry_refused(client, log, lock)
        time.sleep(args.tail)
    finally:
        load.stop.set()
        load.join(40)
    retry_refused(client, log, lock)
    return log


def outage_run(args, dbs: Dbs, client: BusClient, sandbox_url: str) -> tuple[list[Sent], list[str]]:
    down_user = gsm_user(OUTAGE_DOWN)
    others = [gsm_user(p) for p in OUTAGE_OTHERS]
    peer = f"BILLING-{OUTAGE_DOWN}"
    log: list[Sent] = []
    lock = threading.Lock()
    load = Load(client, [down_user, *others], args.rate, log, lock)
    problems = []
    print(f"outage run: {peer} down for {args.outage:g} s under {args.rate:g} msg/s", flush=True)
    load.start()
    try:
        time.sleep(1.5)
        control(sandbox_url, peer=peer, fault="down for the reliability proof")
        outage_start = time.monotonic()
        try:
            time.sleep(args.outage)
            # during the outage: the other provinces' messages sent in it (but the last second) arrived
            with lock:
                during = [s for s in log if outage_start < s.sent_at < time.monotonic() - 1.0]
            other_idos = {s.trans_ido for s in during if s.user is not down_user and s.outcome == "accepted"}
            got = {t for _, _, t in dbs.received(other_idos)}
            print(f"  during the outage: {len(got)}/{len(other_idos)} of the other provinces' messages delivered",
                  flush=True)
            if not other_idos or got != other_idos:
                problems.append(f"outage: only {len(got)} of {len(other_idos)} other provinces' messages were "
                                f"delivered during the outage of {peer}")
            down_idos = {s.trans_ido for s in during if s.user is down_user}
            leaked = {t for _, p, t in dbs.received(down_idos) if p == peer}
            if leaked:   # the sandbox faults before it records a message: nothing may arrive
                problems.append(f"outage: {peer} received {len(leaked)} messages while it was down")
        finally:
            control(sandbox_url, peer=peer)
        time.sleep(args.tail)
    finally:
        load.stop.set()
        load.join(40)
    retry_refused(client, log, lock)
    return log, problems


def order_problems(log: list[Sent], dbs: Dbs) -> list[str]:
    """Per user: the order the peer accepted its messages (first success) == the send order."""
    problems = []
    by_user = defaultdict(list)
    for s in log:
        if s.outcome == "accepted":      # accepted at the first try: the send order is the accept order
            by_user[s.user.msisdn].append(s)
    for msisdn, items in by_user.items():
        peer = f"BILLING-{items[0].user.province}"
        last = {}   # a faulted call is not recorded; with a duplicate, its first record counts
        for rid, p, t in dbs.received([s.trans_ido for s in items]):
            if p == peer:
                last.setdefault(t, rid)
        order = sorted(last, key=last.get)
        sent = [s.trans_ido for s in items if s.trans_ido in last]
        if order != sent:
            first = next(i for i, (a, b) in enumerate(zip(order, sent)) if a != b)
            problems.append(f"order: {peer} got user {msisdn}'s messages out of order from position {first}: "
                            f"received {order[first:first + 3]}, sent {sent[first:first + 3]}")
    return problems


def control(sandbox_url: str, **spec) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{sandbox_url}/control", data=json.dumps(spec).encode(),
                                                  method="POST"), timeout=10).read()


class BusProcess:
    """`bssbus serve` (restartable on one port) in its own process group."""

    def __init__(self, tmp: Path, db_url: str, env: dict):
        self.tmp, self.db_url, self.env, self.port = tmp, db_url, env, free_port()
        self.server: Server | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.server = Server(f"bus{self.starts}", ["serve", "--no-sandbox", "--db-url", self.db_url,
                                                   "--workers", "2"], self.port, self.tmp, env=self.env)
        self.server.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        try:
            os.killpg(self.server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.server.proc.wait(10)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


# -- main -------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 kills and a short outage (about a minute)")
    p.add_argument("--db-url", help="the bus database (a fresh PostgreSQL schema; default: SQLite in a temp dir)")
    p.add_argument("--rate", type=float, default=20.0, help="messages a second (20)")
    p.add_argument("--seed", type=int, help="random seed of the kill moments")
    args = p.parse_args(argv)
    args.kills = 3 if args.quick else 5
    args.kill_gap = (1.5, 3.0) if args.quick else (2.0, 5.0)
    args.outage = 4.0 if args.quick else 8.0
    args.tail = 1.5 if args.quick else 3.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run the finally below
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    problems: list[str] = []
    summaries = {}
    with tempfile.TemporaryDirectory(prefix="bssbus-reliability-") as tmp:
        tmp = Path(tmp)
        config = tmp / "reliability.yaml"
        write_config(config)
        db_url = args.db_url or f"sqlite:///{tmp}/bus.db"
        sandbox_db = f"sqlite:///{tmp}/sandbox.db"
        sandbox = bus = dbs = None
        try:
            sandbox = Server("sandbox", ["sandbox", "--db-url", sandbox_db], free_port(), tmp)
            sandbox.wait_ready()
            bus = BusProcess(tmp, db_url, {"BSSBUS_SANDBOX_URL": sandbox.url, "BSSBUS_CONFIG": str(config)})
            bus.start()
            print(f"bssbus reliability: seed {seed}, sandbox {sandbox.url}, bus {bus.url} "
                  f"({'PostgreSQL' if db_url.startswith('postgresql') else 'SQLite'})", flush=True)
            dbs = Dbs(db_url, sandbox_db)
            client = BusClient(bus.url, timeout=30)

            crash_log = crash_run(args, bus, dbs, client, rng)
            # the outage run uses other provinces, so the crash run's leftovers drain meanwhile
            outage_log, outage_problems = outage_run(args, dbs, client, sandbox.url)
            problems += outage_problems

            bound = LEASE * BATCH + 20
            every = [s.trans_ido for s in crash_log + outage_log]
            waited = wait_drained(dbs, every, bound)
            left = dbs.pending(every)
            print(f"\ndrained in {waited:.1f} s after the load" + (f"; {left} still pending after {bound:g} s"
                                                                   if left else ""), flush=True)
            for name, log in (("crash run", crash_log), ("outage run", outage_log)):
                stats, found = tally(name, log, dbs, db_url)
                problems += found
                summaries[name] = stats
            problems += order_problems(outage_log, dbs)
            for problem in problems[:3]:   # the journal of the first few, while the database exists
                ido = next((w for w in problem.split() if w.startswith("R") and len(w) == 27), None)
                if ido:
                    out = subprocess.run([str(BSSBUS), "journal", "show", ido, "--db-url", db_url],
                                         capture_output=True, text=True, timeout=60, cwd=ROOT)
                    print(f"\n$ bssbus journal show {ido}\n{out.stdout}{out.stderr}", flush=True)
        finally:
            if dbs is not None:
                dbs.dispose()
            for server in (bus, sandbox):
                if server is not None:
                    server.stop()
    print(f"\ntook {time.monotonic() - started:.0f} s (seed {seed})")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    bad = any(s["lost"] or s["duplicates"] for s in summaries.values()) or problems
    print("RESULT: " + ("FAIL" if bad else "OK: nothing accepted was lost, nothing was applied twice"))
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:   # the servers are already stopped by main's finally
        sys.exit("reliability: interrupted")
