"""`make bench`: what the bus costs on top of the peer it routes to.

Starts the sandbox peers and the bus under gunicorn on loopback (the bus's peers pointing at
the sandbox, each with its own SQLite file in a temporary folder), then runs four rounds
(``--rounds``, default all):

- **saturation**: ``BankPayment.QueryArrears`` at a fixed concurrency for a fixed time (closed
  loop, wrk or Python), first through nginx as a plain proxy, then straight at the sandbox's
  province billing peer, then through the bus at ``/ws/BankPayment`` on its fast path (lxml
  in, the request forwarded as it came, the answer back as it came), then through a second
  bus with ``bus.fast_path: false`` (spyne in, zeep to the peer, spyne out);
- **half**: paced (open loop, :func:`bench.loadgen.run_paced`) at 50 % of the fast path's
  maximum from the saturation round, at the peer directly and through the fast path, and
  the typed path at 50 % of its own maximum: latency at a load the bus has room for, and the
  bus-added latency (through the bus minus direct);
- **slow**: the saturation round again with the peer answering after 30 ms and 64 callers;
- **stalled**: the peer and the fast path with the peer answering after 1 s and 500 callers.

It prints throughput, latency (p50, p99, p99.9), errors, the CPU time the servers spent per
message (user + system of the gunicorn master and its workers, from /proc; the load
generator's own CPU is not in it) and the largest worker's resident memory at rest and at its
peak, then each target of the speed issue with this run's figure and MET / NOT MET, and writes
the same as JSON to ``bench/results/<UTC timestamp>.json``.

    .venv/bin/python -m bench.run [--quick] [--rounds saturation,half,slow,stalled] [--duration S]
                                  [--connections N] [--generator wrk|python]
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree

from bench.loadgen import (HEADERS, PLACEHOLDER, _percentile, ensure_tool, ensure_wrk, run_paced, run_python, run_wrk,
                           serial)
from bus.cli import CliError, wait_http
from bus.server import free_port
from sandbox.store import seed_users
from services.models import CONTRACTS, to_xml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BSSBUS = Path(sys.executable).with_name("bssbus")
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PROVINCE = "51"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the message ------------------------------------------------------------------------------
def query_arrears_envelope(msisdn: str) -> str:
    """The example QueryArrears request for ``msisdn``, routed by number, with TRANS_IDO left as
    the load generator's placeholder."""
    data = json.loads((ROOT / "wsdl/examples/BankPayment.QueryArrears.json").read_text("utf-8"))
    head = data["UNI_BSS_HEAD"]
    head["ROUTING"] = {"ROUTE_TYPE": "01", "ROUTE_VALUE": msisdn}
    head["TRANS_IDO"] = PLACEHOLDER
    head["PROCESS_TIME"] = time.strftime("%Y%m%d%H%M%S")
    data["UNI_BSS_BODY"]["SERIAL_NUMBER"] = msisdn
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    body.append(to_xml(CONTRACTS["BankPayment"], "QueryArrears", data))
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8").decode()


SLOW_PEER_MS = 30     # a province that answers in 30 ms...
SLOW_CALLERS = 64     # ...with 64 callers at once
STALLED_PEER_MS = 1000   # one that answers in a second...
STALLED_CALLERS = 500    # ...with 500 callers


def control(sandbox_url: str, spec: dict) -> None:
    """Make a sandbox peer slow (sandbox/app.py ``POST /control``)."""
    req = urllib.request.Request(f"{sandbox_url}/control", data=json.dumps(spec).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


# -- the servers ------------------------------------------------------------------------------
class Server:
    """One `bssbus` command under gunicorn, in its own process group."""

    def __init__(self, name: str, args: list[str], port: int, workdir: Path, env: dict | None = None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(BSSBUS), *args, "--host", "127.0.0.1", "--port", str(port)],
                                         cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        try:
            wait_http(f"{self.url}/healthz", timeout=60, proc=self.proc)
        except CliError as exc:
            tail = self.log.read_text("utf-8", "replace").strip().splitlines()[-15:]
            raise SystemExit(f"bench: the {self.name} did not start: {exc}\n" + "\n".join(tail)) from None

    def cpu_seconds(self) -> float:
        """user + system time of the gunicorn master and every process below it."""
        return sum(_stat(pid)[1] for pid in _tree(self.proc.pid))

    def worker_memory_mb(self, field: str = "VmRSS") -> float:
        """The largest ``field`` (VmRSS now, VmHWM its peak) among the gunicorn workers, in MB."""
        workers = _tree(self.proc.pid)[1:] or [self.proc.pid]
        return round(max(_status_kib(pid, field) for pid in workers) / 1024, 1)

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if self.proc.poll() is not None:
                return
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


class Nginx(Server):
    """Debian's nginx as a plain keep-alive reverse proxy to ``upstream``: the floor a proxy in C
    costs on this machine (``worker_processes`` 2, like the bus's workers)."""

    CONFIG = """worker_processes 2;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  upstream peer {{ server {upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://peer; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""

    def __init__(self, nginx: str, upstream: str, port: int, workdir: Path):
        self.name, self.port = "nginx", port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "nginx.log"
        config = workdir / "nginx.conf"
        config.write_text(self.CONFIG.format(work=workdir, upstream=upstream.split("//", 1)[1], port=port),
                          encoding="utf-8")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([nginx, "-c", str(config), "-p", str(workdir)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of ``pid`` from /proc/<pid>/stat; (0, 0.0) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0, 0.0
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK  # ppid, utime + stime


def _status_kib(pid: int | str, field: str) -> int:
    """A ``field`` (VmRSS, VmHWM...) of /proc/PID/status, in KiB; 0 once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith(field + ":")), 0)


def _tree(root: int) -> list[int]:
    parents = {int(p): _stat(int(p))[0] for p in os.listdir("/proc") if p.isdigit()}
    found, todo = [root], [root]
    while todo:
        parent = todo.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        todo += kids
    return found


# -- one scenario ----------------------------------------------------------------------------
def settle(url: str, body: str, prefix: str, peer_ms: int, limit: float = 90.0) -> float:
    """Wait until ``url`` answers one call within the peer's delay and half a second: a load
    generator stops at its deadline, but the calls it left queued in the servers (hundreds,
    with a peer that answers in 1 s) are still served after it, and would fall into the next
    measurement. Returns the seconds waited."""
    parts, t0 = urlsplit(url), time.monotonic()
    for n in range(1_000_000):
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            conn.request("POST", parts.path, body.replace(PLACEHOLDER, serial(prefix, 0, n)).encode(), HEADERS)
            conn.getresponse().read()
            conn.close()
        except (OSError, http.client.HTTPException):
            time.sleep(0.5)
        else:
            if time.monotonic() - started < peer_ms / 1000 + 0.5:
                break
        if time.monotonic() - t0 > limit:
            print(f"    {url} still slow after {limit:g} s; measuring anyway", flush=True)
            break
    return time.monotonic() - t0


def drive(label: str, url: str, body: str, prefix: str, args, measured: Server, servers: dict,
          connections: int | None = None, rate: float | None = None, peer_ms: int = 0,
          python: bool = False) -> dict:
    """One target: a warm-up, then the measured load, closed loop at ``connections`` (wrk or
    Python) or, with ``rate``, paced at ``rate`` requests a second (Python, open loop). The
    warm-up's serials have a prefix of their own: repeated TRANS_IDOs would be answered from
    the bus's idempotency store and make the measured messages look cheaper. Before the
    measurement and after it, the target's queue is let drain (:func:`settle`). ``python``:
    the Python closed-loop generator even when wrk is there: it waits for the calls in flight
    at the deadline (an answer, or an error after 10 s), where wrk leaves them uncounted."""
    connections = connections or args.connections

    def load(seconds: float, tag: str):
        if rate:
            return run_paced(url, body, tag, rate, seconds, args.paced_connections)
        if args.wrk and not python:
            return run_wrk(args.wrk, url, body, tag, connections, seconds)
        return run_python(url, body, tag, connections, seconds)

    how = f"{rate:.1f} req/s paced" if rate else f"{connections} connections" + (", Python" if python else "")
    print(f"  {label}: {url}, {how} ({args.warmup:g} s warm-up, {args.duration:g} s measured)", flush=True)
    rest_mb = measured.worker_memory_mb()
    if args.warmup:
        load(args.warmup, prefix + "W")
        settle(url, body, prefix + "P", peer_ms)
    before = {name: s.cpu_seconds() for name, s in servers.items()}
    result = load(args.duration, prefix + "M")
    cpu = {name: s.cpu_seconds() - before[name] for name, s in servers.items()}
    waited = settle(url, body, prefix + "Q", peer_ms)   # the next target starts on idle servers
    if waited > 2:
        print(f"    the calls left in flight took {waited:.0f} s to drain", flush=True)
    per_msg = {name: (round(v / result.requests * 1e6, 1) if result.requests else None) for name, v in cpu.items()}
    return {"target": label, "url": url, **result.as_dict(), "connections": args.paced_connections if rate else connections,
            "worker_rss_rest_mb": rest_mb, "worker_rss_peak_mb": measured.worker_memory_mb("VmHWM"),
            "server_cpu_us_per_msg": per_msg[measured.name],
            "cpu_us_per_msg": per_msg,
            "generator_cpu_us_per_msg": round(result.generator_cpu_s / result.requests * 1e6, 1) if result.requests else None}


def time_in_bus(db_file: Path, prefix: str) -> dict | None:
    """What each message whose TRANS_IDO starts with ``prefix`` spent in the bus, from its
    journal: the inbound hop's time (from the moment the bus began to read the request to its
    answer) minus its call to the peer (the outbound hop's time). Unlike "through the bus minus
    direct", two runs each with their own share of the machine's hiccups, this is one
    message's own figure. Percentiles in ms; None when the journal has none."""
    import sqlite3
    for _ in range(50):   # a read's row is written just after its answer
        with contextlib.closing(sqlite3.connect(db_file)) as con:
            spent = sorted(v / 1000 for (v,) in con.execute(
                "SELECT i.elapsed_ms - o.elapsed_ms FROM journal i JOIN journal o ON o.msg_id = i.msg_id "
                "AND o.direction = 'out' WHERE i.direction = 'in' AND i.status = 'ok' AND i.trans_ido LIKE ?",
                (prefix + "%",)))
        if spent:
            break
        time.sleep(0.1)
    if not spent:
        return None
    return {"messages": len(spent), **{f"p{k}_ms": round(_percentile(spent, p), 3)
                                       for k, p in (("50", 50), ("99", 99), ("999", 99.9))}}


def row(rows: list[dict], label: str) -> dict | None:
    """The result of target ``label`` among ``rows`` (None when it was not run)."""
    return next((r for r in rows if r["target"] == label), None)


# -- report -----------------------------------------------------------------------------------
def high_water_kib(pid: int | str = "self") -> int:
    """A process's peak resident memory (VmHWM), in KiB; 0 once it is gone. Unlike ru_maxrss
    it is the high-water mark of the process's own memory since its exec: a child's
    ru_maxrss also counts the memory of the parent that forked it."""
    return _status_kib(pid, "VmHWM")


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release()}


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(a: dict | None, b: dict | None) -> float | None:
    return round(a["rps"] / b["rps"], 3) if a and b and b["rps"] else None


def _minus(a: dict | None, b: dict | None, key: str) -> float | None:
    return round(a[key] - b[key], 3) if a and b and a["requests"] and b["requests"] else None


def comparison(data: dict) -> dict:
    sat, half = data["results"], data["results_half_load"]
    slow, stalled = data["results_slow_peer"], data["results_stalled_peer"]
    direct, fast, typed = row(sat, "direct sandbox"), row(sat, "bus, fast path"), row(sat, "bus, typed path")
    h_direct, h_fast, h_typed = row(half, "direct sandbox"), row(half, "bus, fast path"), row(half, "bus, typed path")
    nginx = row(sat, "nginx proxy")
    return {
        "throughput_ratio": _ratio(fast, direct),
        "typed_throughput_ratio": _ratio(typed, direct),
        "added_p50_ms": _minus(fast, direct, "p50_ms"),   # closed loop at saturation: queueing, not the bus
        "bus_cpu_us_per_msg": fast["cpu_us_per_msg"]["bus"] if fast else None,
        "typed_bus_cpu_us_per_msg": typed["cpu_us_per_msg"]["bus-typed"] if typed else None,
        "nginx_cpu_us_per_msg": nginx["server_cpu_us_per_msg"] if nginx else None,
        "half_load_rate": h_fast["rate"] if h_fast else None,
        "typed_half_load_rate": h_typed["rate"] if h_typed else None,
        "half_added_p50_ms": _minus(h_fast, h_direct, "p50_ms"),
        "half_added_p99_ms": _minus(h_fast, h_direct, "p99_ms"),
        "half_added_p999_ms": _minus(h_fast, h_direct, "p999_ms"),
        **{f"half_in_bus_p{k}_ms": (data["half_load_time_in_bus"] or {}).get(f"p{k}_ms") for k in ("50", "99", "999")},
        "half_bus_cpu_us_per_msg": h_fast["cpu_us_per_msg"]["bus"] if h_fast else None,
        "half_typed_bus_cpu_us_per_msg": h_typed["cpu_us_per_msg"]["bus-typed"] if h_typed else None,
        "slow_peer_throughput_ratio": _ratio(row(slow, "bus, fast path"), row(slow, "direct sandbox")),
        "slow_peer_typed_throughput_ratio": _ratio(row(slow, "bus, typed path"), row(slow, "direct sandbox")),
        "stalled_peer_throughput_ratio": _ratio(row(stalled, "bus, fast path"), row(stalled, "direct sandbox")),
        **{f"journal_{mode}_bus_cpu_us_per_msg": (r["server_cpu_us_per_msg"] if (r := row(sat, f"bus, journal {mode}"))
                                                  else None) for mode in ("sync", "off")},
    }


TARGET_RSS_MB = 150   # the speed issue: at most 150 MB resident a worker under load


def targets(data: dict) -> list[dict]:
    """Each target of the speed issue with the figure this run measured and whether it is met
    (None: the round that measures it was not run, or is another bench's)."""
    c = data["comparison"]
    bus_rows = [r for key in ("results", "results_half_load", "results_slow_peer", "results_stalled_peer")
                for r in data[key] if r["target"].startswith("bus")]
    stalled = row(data["results_stalled_peer"], "bus, fast path")

    def at_most(value, limit):
        return None if value is None else value <= limit

    def both(a, b):
        return None if a is None or b is None else a and b

    p50, p99 = c["half_in_bus_p50_ms"], c["half_in_bus_p99_ms"]
    out = [
        {"target": "fast path (validation, journal commit): bus CPU a message at saturation",
         "goal": "<= 700 us (stretch 400)",
         "measured": _us(c["bus_cpu_us_per_msg"]) + f" (at 50% load {_us(c['half_bus_cpu_us_per_msg'])})",
         "met": at_most(c["bus_cpu_us_per_msg"], 700), "stretch_met": at_most(c["bus_cpu_us_per_msg"], 400)},
        {"target": "journal does not dominate: fast path CPU a message, a read's row deferred (default) / "
                   "sync / off",
         "goal": "deferred - off < half of deferred",
         "measured": " / ".join(_us(c[k]) for k in ("bus_cpu_us_per_msg", "journal_sync_bus_cpu_us_per_msg",
                                                     "journal_off_bus_cpu_us_per_msg")),
         "met": (None if c["bus_cpu_us_per_msg"] is None or c["journal_off_bus_cpu_us_per_msg"] is None else
                 c["bus_cpu_us_per_msg"] - c["journal_off_bus_cpu_us_per_msg"] < c["bus_cpu_us_per_msg"] / 2),
         "stretch_met": None},
        {"target": "bus-added latency at 50% load (fast path), p50 / p99: each message's time in the bus "
                   "(journal)",
         "goal": "<= 2 / 10 ms (stretch 1 / 5)",
         "measured": f"{_f(p50, '.2f')} / {_f(p99, '.2f')} ms (through minus direct: "
                     f"{_f(c['half_added_p50_ms'], '+.2f')} / {_f(c['half_added_p99_ms'], '+.2f')} ms)",
         "met": both(at_most(p50, 2), at_most(p99, 10)), "stretch_met": both(at_most(p50, 1), at_most(p99, 5))},
        {"target": "typed path: bus CPU a message at saturation",
         "goal": "<= 1,500 us",
         "measured": _us(c["typed_bus_cpu_us_per_msg"]) + f" (at 50% load {_us(c['half_typed_bus_cpu_us_per_msg'])})",
         "met": at_most(c["typed_bus_cpu_us_per_msg"], 1500), "stretch_met": None},
        {"target": f"{SLOW_PEER_MS} ms peer, {SLOW_CALLERS} callers: throughput bus/direct (fast path)",
         "goal": ">= 0.60", "measured": f"{_f(c['slow_peer_throughput_ratio'], '.2f')} "
                                        f"(typed path {_f(c['slow_peer_typed_throughput_ratio'], '.2f')})",
         "met": None if c["slow_peer_throughput_ratio"] is None else c["slow_peer_throughput_ratio"] >= 0.6,
         "stretch_met": None},
        {"target": f"{STALLED_PEER_MS / 1000:g} s peer, {STALLED_CALLERS} callers: all served, memory bounded",
         "goal": f"0 errors, worker <= {TARGET_RSS_MB} MB",
         "measured": (f"{stalled['errors']:,} errors, {stalled['requests']:,} answered (bus/direct "
                      f"{_f(c['stalled_peer_throughput_ratio'], '.2f')}), worker {stalled['worker_rss_peak_mb']} MB")
         if stalled else "-",
         "met": (not stalled["errors"] and stalled["requests"] > 0 and stalled["worker_rss_peak_mb"] <= TARGET_RSS_MB)
         if stalled else None, "stretch_met": None},
        {"target": "resident memory a bus worker under load (largest peak)",
         "goal": f"<= {TARGET_RSS_MB} MB",
         "measured": _f(max((r["worker_rss_peak_mb"] for r in bus_rows), default=None), ".1f") + " MB",
         "met": at_most(max((r["worker_rss_peak_mb"] for r in bus_rows), default=None), TARGET_RSS_MB),
         "stretch_met": None},
        {"target": "durable one-way accept, SQLite and PostgreSQL",
         "goal": ">= 1,000 /s", "measured": "python -m bench.outbox prints its verdict", "met": None,
         "stretch_met": None},
    ]
    return out


def _us(value) -> str:
    return "-" if value is None else f"{value:,.0f} us"


def _verdict(t: dict) -> str:
    if t["met"] is None:
        return "not measured here" if t["measured"].startswith("python") else "not measured (round not run)"
    return ("MET" if t["met"] else "NOT MET") + ("" if t["stretch_met"] is None else
                                                 ", stretch MET" if t["stretch_met"] else ", stretch not met")


def _table(title: str, rows: list[dict], paced: bool = False) -> None:
    if not rows:
        return
    print(f"{title}:")
    print(f"{'target':<17}" + (f"{'asked':>7}" if paced else "") + f"{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'p99.9 ms':>10}{'errors':>7}{'server CPU':>11}{'sandbox CPU':>12}{'worker RSS MB':>16}"
          + (f"{'late p99':>10}" if paced else ""))
    print(f"{'':<17}" + (f"{'req/s':>7}" if paced else "") + f"{'':>8}{'':>9}{'':>9}{'':>10}{'':>7}"
          f"{'us/msg':>11}{'us/msg':>12}{'rest -> peak':>16}" + (f"{'ms':>10}" if paced else ""))
    for r in rows:
        print(f"{r['target']:<17}" + (f"{r['rate']:>7.1f}" if paced else "") +
              f"{r['rps']:>8.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['p999_ms']:>10.2f}"
              f"{r['errors']:>7}{_f(r['server_cpu_us_per_msg'], ',.0f'):>11}"
              f"{_f(r['cpu_us_per_msg']['sandbox'], ',.0f'):>12}"
              f"{r['worker_rss_rest_mb']:>8} -> {r['worker_rss_peak_mb']:<5}" +
              (f"{r['send_lag_p99_ms']:>10.2f}" if paced else ""))
        if r["error_kinds"]:
            print(f"{'':<17}errors: {r['error_kinds']}")
    print()


def report(data: dict) -> None:
    m, s, c = data["machine"], data["settings"], data["comparison"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}")
    print(f"load: {s['operation']} ({s['message_bytes']} B), {s['duration_s']:g} s per target, closed loop "
          f"{s['generator']}, paced Python ({s['paced_connections']} connections); rounds {','.join(s['rounds'])}\n")
    _table(f"saturation, peer answers at once, {s['connections']} connections", data["results"])
    _table("50% load, peer answers at once, paced (open loop; latency from each scheduled send)",
           data["results_half_load"], paced=True)
    _table(f"peer answers after {SLOW_PEER_MS} ms, {SLOW_CALLERS} connections", data["results_slow_peer"])
    _table(f"peer answers after {STALLED_PEER_MS} ms, {STALLED_CALLERS} connections, Python generator (a call "
           "not answered in 10 s is an error)", data["results_stalled_peer"])
    print("(server CPU = user + system of the target's gunicorn processes, from /proc: the sandbox when direct, "
          "the bus through it;\n worker RSS: the largest worker's resident memory at rest -> its peak; late p99: "
          "how late the generator's sends left)")
    if data["results"]:
        print(f"saturation: throughput bus/direct fast path {_f(c['throughput_ratio'], '.2f')}, typed path "
              f"{_f(c['typed_throughput_ratio'], '.2f')}; bus CPU a message fast path "
              f"{_f(c['bus_cpu_us_per_msg'], ',.0f')} us, typed path {_f(c['typed_bus_cpu_us_per_msg'], ',.0f')} us; "
              f"nginx as a plain proxy (the floor) {_f(c['nginx_cpu_us_per_msg'], ',.0f')} us")
    if data["results_half_load"]:
        print(f"50% load ({_f(c['half_load_rate'], '.1f')} req/s; typed path at {_f(c['typed_half_load_rate'], '.1f')}):"
              f" bus-added latency (fast path minus direct) p50 {_f(c['half_added_p50_ms'], '+.2f')} ms, p99 "
              f"{_f(c['half_added_p99_ms'], '+.2f')} ms, p99.9 {_f(c['half_added_p999_ms'], '+.2f')} ms; each "
              f"message's time in the bus (journal) p50 {_f(c['half_in_bus_p50_ms'], '.2f')} ms, p99 "
              f"{_f(c['half_in_bus_p99_ms'], '.2f')} ms, p99.9 {_f(c['half_in_bus_p999_ms'], '.2f')} ms; bus CPU a "
              f"message fast path {_f(c['half_bus_cpu_us_per_msg'], ',.0f')} us, typed path "
              f"{_f(c['half_typed_bus_cpu_us_per_msg'], ',.0f')} us")
    if data["results_slow_peer"]:
        print(f"{SLOW_PEER_MS} ms peer, {SLOW_CALLERS} callers: throughput bus/direct fast path "
              f"{_f(c['slow_peer_throughput_ratio'], '.2f')}, typed path "
              f"{_f(c['slow_peer_typed_throughput_ratio'], '.2f')}")
    print("\ntargets (the speed issue):")
    cells = [("target", "goal", "measured", "verdict")] + [
        (t["target"], t["goal"], t["measured"], _verdict(t)) for t in data["targets"]]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    for c in cells:
        print("  " + "  ".join(f"{x:<{w}}" for x, w in zip(c, widths)) + "  " + c[3])


# -- main -------------------------------------------------------------------------------------
ROUNDS = ("saturation", "half", "slow", "stalled")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run (8 s per target)")
    p.add_argument("--duration", type=float, help="measured seconds per target (default 45, quick 8)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each target (default 5, quick 2)")
    p.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (16)")
    p.add_argument("--paced-connections", type=int, default=32,
                   help="connections of the paced generator (32); a request finding them all busy waits, and "
                        "its wait counts in its latency")
    p.add_argument("--rounds", default=",".join(ROUNDS),
                   help="which rounds to run, in this order whatever the order given: saturation (peer at once, "
                        "closed loop), half (paced at 50%% of the bus's maximum; without saturation the fast and "
                        "typed paths are driven to saturation first to find it), slow (30 ms peer), stalled "
                        "(1 s peer); default all")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                   help="closed-loop generator: wrk if present (installed with apt-get when root), else Python; "
                        "the paced rounds always use Python")
    args = p.parse_args(argv)
    args.duration = args.duration or (8.0 if args.quick else 45.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 5.0)
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1 or args.paced_connections < 1:
        p.error("--duration and --connections must be positive, --warmup not negative")
    wanted = {r.strip() for r in args.rounds.split(",") if r.strip()}
    if not wanted or wanted - set(ROUNDS):
        p.error(f"--rounds: some of {','.join(ROUNDS)}, not {','.join(sorted(wanted - set(ROUNDS))) or 'nothing'}")
    args.rounds = [r for r in ROUNDS if r in wanted]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    args.wrk = ensure_wrk() if args.generator != "python" else None
    if args.generator == "wrk" and not args.wrk:
        raise SystemExit("bench: wrk is not installed (apt-get install wrk) and could not be installed")
    generator = "wrk" if args.wrk else "python (multi-process http.client; wrk not available)"
    info = machine()
    print(f"bssbus bench: {info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}; "
          f"generator {generator}; rounds {','.join(args.rounds)}", flush=True)

    msisdn = seed_users(PROVINCE)[0].msisdn
    body = query_arrears_envelope(msisdn)
    results, half, slow_results, stalled, in_bus = [], [], [], [], None
    with tempfile.TemporaryDirectory(prefix="bssbus-bench-") as tmp:
        tmp = Path(tmp)
        servers: dict[str, Server] = {}
        try:
            sandbox = servers["sandbox"] = Server(
                "sandbox", ["sandbox", "--threads", str(STALLED_CALLERS + 100), "--db-url", f"sqlite:///{tmp}/sandbox.db"],
                free_port(), tmp)   # threads: the peer holds every caller of the 1 s round at once
            sandbox.wait_ready()
            bus = servers["bus"] = Server(
                "bus", ["serve", "--no-sandbox", "--db-url", f"sqlite:///{tmp}/bus.db"], free_port(), tmp,
                env={"BSSBUS_SANDBOX_URL": sandbox.url})
            typed_config = tmp / "typed.yaml"
            typed_config.write_text("bus: {fast_path: false}\n", encoding="utf-8")
            typed = servers["bus-typed"] = Server(
                "bus-typed", ["serve", "--no-sandbox", "--db-url", f"sqlite:///{tmp}/bus-typed.db",
                              "--config", str(typed_config)], free_port(), tmp, env={"BSSBUS_SANDBOX_URL": sandbox.url})
            journal_modes = {}   # the fast path again with a read's journal row written before the peer is
            if "saturation" in args.rounds:   # called (sync), and with none (off): what the journal costs
                for mode in ("sync", "off"):
                    config = tmp / f"journal-{mode}.yaml"
                    config.write_text(f"bus: {{journal_reads: '{mode}'}}\n", encoding="utf-8")
                    journal_modes[mode] = servers[f"bus-journal-{mode}"] = Server(
                        f"bus-journal-{mode}", ["serve", "--no-sandbox", "--db-url", f"sqlite:///{tmp}/bus-{mode}.db",
                                                "--config", str(config)], free_port(), tmp,
                        env={"BSSBUS_SANDBOX_URL": sandbox.url})
            for server in (bus, typed, *journal_modes.values()):
                server.wait_ready()
            print(f"sandbox at {sandbox.url}, bus (fast path) at {bus.url}, bus (typed path) at {typed.url}; "
                  f"QueryArrears for {msisdn}", flush=True)
            nginx_path = ensure_tool("nginx", "nginx-light") if {"saturation", "slow"} & set(args.rounds) else None
            if nginx_path:
                proxy = servers["nginx"] = Nginx(nginx_path, sandbox.url, free_port(), tmp)
                proxy.wait_ready()
            elif {"saturation", "slow"} & set(args.rounds):
                print("nginx is not installed (apt-get install nginx-light): its row is left out", flush=True)
            direct_url = f"{sandbox.url}/peers/province_billing/{PROVINCE}/BankPayment"

            def one_round(tag: str, connections: int, paths=("nginx", "direct", "fast", "typed"),
                          peer_ms: int = 0, python: bool = False) -> list[dict]:
                targets_ = {
                    "nginx": ("nginx proxy", f"{servers['nginx'].url}/peers/province_billing/{PROVINCE}/BankPayment",
                              "BN", servers["nginx"]) if nginx_path else None,
                    "direct": ("direct sandbox", direct_url, "BD", sandbox),
                    "fast": ("bus, fast path", f"{bus.url}/ws/BankPayment", "BF", bus),
                    "typed": ("bus, typed path", f"{typed.url}/ws/BankPayment", "BT", typed),
                    **{f"journal-{mode}": (f"bus, journal {mode}", f"{server.url}/ws/BankPayment", f"BJ{mode[1]}",
                                           server) for mode, server in journal_modes.items()}}
                return [drive(label, url, body, f"{p}{tag}", args, server, servers, connections, peer_ms=peer_ms,
                              python=python)
                        for label, url, p, server in (targets_[k] for k in paths if targets_[k])]

            if "saturation" in args.rounds:
                results = one_round("00", args.connections, ("nginx", "direct", "fast", "journal-sync",
                                                              "journal-off", "typed"))
            if "half" in args.rounds:
                if not results:   # the bus's maximum, to pace at half of it
                    print("the fast and typed paths at saturation first, to find their maximum", flush=True)
                    results = one_round("00", args.connections, ("fast", "typed"))
                rate = row(results, "bus, fast path")["rps"] / 2
                typed_rate = row(results, "bus, typed path")["rps"] / 2
                print(f"50% load: {rate:.1f} req/s paced at the peer directly and the fast path, typed path at "
                      f"{typed_rate:.1f} req/s (half of its own maximum)", flush=True)
                half = [drive("direct sandbox", direct_url, body, "BDH", args, sandbox, servers, rate=rate),
                        drive("bus, fast path", f"{bus.url}/ws/BankPayment", body, "BFH", args, bus, servers,
                              rate=rate),
                        drive("bus, typed path", f"{typed.url}/ws/BankPayment", body, "BTH", args, typed, servers,
                              rate=typed_rate)]
                in_bus = time_in_bus(tmp / "bus.db", "BFHM")   # the fast path's measured messages
            if "slow" in args.rounds:
                # a province that answers in 30 ms: does the bus keep up with 64 callers?
                control(sandbox.url, {"peer": f"BILLING-{PROVINCE}", "delay_ms": SLOW_PEER_MS})
                print(f"the sandbox's BILLING-{PROVINCE} now answers after {SLOW_PEER_MS} ms; "
                      f"{SLOW_CALLERS} connections", flush=True)
                slow_results = one_round("30", SLOW_CALLERS, peer_ms=SLOW_PEER_MS)
            if "stalled" in args.rounds:
                # a province that answers in 1 s, and 500 callers: is each one served, and at what memory?
                control(sandbox.url, {"peer": f"BILLING-{PROVINCE}", "delay_ms": STALLED_PEER_MS})
                print(f"the sandbox's BILLING-{PROVINCE} now answers after {STALLED_PEER_MS} ms; "
                      f"{STALLED_CALLERS} connections", flush=True)
                # the Python generator: every call made is counted, answered or given up after 10 s
                stalled = one_round("S1", STALLED_CALLERS, ("direct", "fast"), peer_ms=STALLED_PEER_MS, python=True)
        finally:
            for server in reversed(list(servers.values())):
                server.stop()

    data = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {"operation": "BankPayment.QueryArrears", "msisdn": msisdn,
                     "message_bytes": len(body.replace(PLACEHOLDER, "BENCHBUS" + "0" * 13).encode()),
                     "connections": args.connections, "paced_connections": args.paced_connections,
                     "duration_s": args.duration, "warmup_s": args.warmup,
                     "generator": "wrk" if args.wrk else "python", "rounds": args.rounds,
                     "bus": "config/bus.yaml defaults (fast_path true, XSD validation, journal and idempotency "
                            "key committed in SQLite); the typed bus with bus.fast_path false"},
        "results": results,
        "results_half_load": half,
        "half_load_time_in_bus": in_bus,
        "results_slow_peer": slow_results,
        "results_stalled_peer": stalled,
    }
    data["comparison"] = comparison(data)
    data["targets"] = targets(data)
    report(data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    # the stalled round may show errors (callers the bus could not serve in time): that is its figure
    return 1 if any(r["errors"] or not r["requests"] for r in results + half + slow_results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers are already stopped by main's finally
        sys.exit("bench: interrupted")
