"""`make bench`, the HTTP layer: what the HTTP servers and the outbound HTTP clients cost.

Inbound: each candidate server serves, on loopback, first a minimal WSGI app that reads the
1 KiB request and answers a fixed 1 KiB SOAP envelope (bench/wsgi_apps.py ``minimal``: the
server's own cost), then the bus itself (``bus``: the fast path, ``BankPayment.QueryArrears``
routed to the sandbox's province billing peer, ``bssbus sandbox`` in its own process), and the
bus again with that peer answering after 1 s and 500 callers (at least 15 s: who is served when
each call in flight waits a second):

- gunicorn gthread, 2 workers x 32 threads (what ``bssbus serve`` runs, bus/server.py)
- gunicorn with gevent workers, 2 workers
- granian's WSGI interface, 2 workers x 32 blocking threads
- uWSGI, 2 processes x 32 threads, its own HTTP/1.1 parser (``--http11-socket``)

wrk drives each with 16 keep-alive connections for a fixed time (a fresh TRANS_IDO a request);
the figures are requests a second, p50/p99, and the CPU time a request of the server's whole
process tree (user + system from /proc, as bench.run counts it), with the largest worker's
resident memory at rest and at its peak.

Outbound: one thread POSTs the 1 KiB request over a kept-alive connection to a loopback peer
that answers a fixed 1 KiB body (nginx's ``return 200``; the minimal app under gunicorn when
nginx is missing), with http.client (one HTTPConnection), urllib3 (a PoolManager, used as
adapters/base.py ``Adapter.forward`` uses it), requests (a Session, as zeep's transport on the
typed path) and pycurl (one reused Curl handle): the CPU time a call of this process
(time.process_time over N calls after a warm-up, the median of three rounds).

The candidate packages (gevent, granian, uwsgi, pycurl) are not among the bus's dependencies:
the bench installs a missing one into the running venv with pip, and a candidate that cannot
be installed or does not start is reported as such. Prints a table and writes JSON to
``bench/results/http-layer-<UTC timestamp>.json``.

    .venv/bin/python -m bench.http_layer [--quick] [--duration S] [--only NAME,...]
"""
from __future__ import annotations

import argparse
import http.client
import importlib.util
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from bench.loadgen import HEADERS, PLACEHOLDER, ensure_tool, ensure_wrk
from bench.run import (PROVINCE, RESULTS, ROOT, STALLED_CALLERS, STALLED_PEER_MS, Server, _f, control, drive,
                       machine, query_arrears_envelope)
from bench.wsgi_apps import ANSWER
from bus.server import free_port
from sandbox.store import seed_users

BIN = Path(sys.executable).parent
WORKERS, THREADS = 2, 32   # bssbus serve's defaults (config/bus.yaml server.workers, server.threads)

#: pip name -> the module that shows it is installed
PACKAGES = {"gevent": "gevent", "granian": "granian", "uwsgi": "uwsgidecorators", "pycurl": "pycurl"}


# -- the candidates ---------------------------------------------------------------------------
def _gunicorn(worker: str, *extra: str):
    def command(app: str, port: int) -> list[str]:
        return [str(BIN / "gunicorn"), "-k", worker, "-w", str(WORKERS), *extra, "-b", f"127.0.0.1:{port}",
                "--keep-alive", "30", "--timeout", "60", "--graceful-timeout", "10", "--log-level", "warning",
                f"bench.wsgi_apps:{app}"]
    return command


def _granian(app: str, port: int) -> list[str]:
    return [str(BIN / "granian"), "--interface", "wsgi", "--http", "1", "--no-ws", "--workers", str(WORKERS),
            "--blocking-threads", str(THREADS), "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning", f"bench.wsgi_apps:{app}"]


def _uwsgi(app: str, port: int) -> list[str]:
    return [str(BIN / "uwsgi"), "--master", "--processes", str(WORKERS), "--threads", str(THREADS),
            "--http11-socket", f"127.0.0.1:{port}", "--wsgi", f"bench.wsgi_apps:{app}", "--pythonpath", str(ROOT),
            "--home", sys.prefix, "--lazy-apps", "--need-app", "--die-on-term", "--disable-logging",
            "--thunder-lock", "--listen", "1024"]


#: name -> (pip packages it needs, command(app, port))
INBOUND = {
    "gunicorn gthread": ((), _gunicorn("gthread", "--threads", str(THREADS))),
    "gunicorn gevent": (("gevent",), _gunicorn("gevent", "--worker-connections", "1000")),
    "granian": (("granian",), _granian),
    "uwsgi": (("uwsgi",), _uwsgi),
}
STALLED_APP = "bus, 1 s peer"
OUTBOUND = ("http.client", "urllib3", "requests", "pycurl")


def ensure_package(name: str) -> str | None:
    """None when ``name`` imports in this venv (pip-installing it when missing); else why not."""
    if importlib.util.find_spec(PACKAGES.get(name, name)) is not None:
        return None
    print(f"{name} is missing: pip install {name} ...", flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", name], capture_output=True,
                          text=True, timeout=600, check=False)
    importlib.invalidate_caches()
    if done.returncode == 0 and importlib.util.find_spec(PACKAGES.get(name, name)) is not None:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
    return f"pip install {name} failed: " + next((x for x in reversed(lines) if x.startswith("ERROR")), lines[-1])[-300:]


class Process(Server):
    """Any server command, in its own process group (bench.run's Server: CPU of its tree, RSS)."""

    def __init__(self, name: str, command: list[str], port: int, workdir: Path, env: dict | None = None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{name.replace(' ', '-')}-{port}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)


def migrate(db_url: str) -> None:
    """Migrate the bus's database and seed its cut-over table once, before the workers start
    (as ``bssbus serve`` does)."""
    from config.settings import load_settings
    from dao.db import open_database
    from dao.phases import PhaseStore
    settings = load_settings(None, env={"BSSBUS_DB_URL": db_url})
    engine = open_database(settings.db_url)
    PhaseStore(engine).seed(settings.phases)
    engine.dispose()


# -- inbound ----------------------------------------------------------------------------------
def inbound(args, body: str, sandbox: Server, tmp: Path) -> list[dict]:
    rows = []
    for n, (name, (needs, command)) in enumerate(INBOUND.items()):
        if args.only and name not in args.only:
            continue
        why = next((w for w in map(ensure_package, needs) if w), None)
        for app in ("minimal", "bus"):
            row = {"server": name, "app": app}
            rows.append(row)
            if why:
                row["failed"] = why
                print(f"  {name}, {app}: not measured ({why})", flush=True)
                continue
            env = {}
            if app == "bus":
                db_url = f"sqlite:///{tmp}/bus-{n}.db"
                migrate(db_url)
                env = {"BSSBUS_DB_URL": db_url, "BSSBUS_SANDBOX_URL": sandbox.url}
            port = free_port()
            try:
                server = Process("server", command(app, port), port, tmp, env)
            except OSError as exc:
                row["failed"] = f"did not start: {exc}"
                print(f"  {name}, {app}: {row['failed']}", flush=True)
                continue
            try:
                try:
                    server.wait_ready()
                except SystemExit as exc:
                    row["failed"] = f"did not start: {str(exc).splitlines()[0]}"
                    print(f"  {name}, {app}: {row['failed']}", flush=True)
                    continue
                path = "/ws/BankPayment" if app == "bus" else "/"
                servers = {"server": server, **({"sandbox": sandbox} if app == "bus" else {})}
                tag = f"H{n}{'B' if app == 'bus' else 'M'}"
                result = drive(f"{name}, {app}", server.url + path, body, tag, args, server, servers)
                row.update(result)
                row["sandbox_cpu_us_per_msg"] = result["cpu_us_per_msg"].get("sandbox")
                if app == "bus" and args.stalled:
                    # the peer answers in 1 s and 500 callers wait: does each get an answer?
                    row = {"server": name, "app": STALLED_APP}
                    rows.append(row)
                    control(sandbox.url, {"peer": f"BILLING-{PROVINCE}", "delay_ms": STALLED_PEER_MS})
                    try:
                        stalled = argparse.Namespace(**{**vars(args), "duration": max(args.duration, 15.0)})
                        result = drive(f"{name}, {STALLED_APP}", server.url + path, body, tag + "S", stalled,
                                       server, servers, STALLED_CALLERS)
                    finally:
                        control(sandbox.url, {"peer": f"BILLING-{PROVINCE}", "delay_ms": 0})
                    row.update(result)
                    row["sandbox_cpu_us_per_msg"] = result["cpu_us_per_msg"].get("sandbox")
            finally:
                server.stop()
    return rows


# -- outbound ---------------------------------------------------------------------------------
def _client(name: str, url: str, data: bytes):
    """(call, close): ``call()`` POSTs ``data`` to ``url`` and returns (status, answer bytes)."""
    headers = dict(HEADERS, SOAPAction='"QueryArrears"')
    if name == "http.client":
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

        def call():
            conn.request("POST", parts.path, data, headers)
            rsp = conn.getresponse()
            return rsp.status, rsp.read()
        return call, conn.close
    if name == "urllib3":   # as adapters/base.py Adapter.forward calls it
        import urllib3
        from adapters.base import POOL_SIZE, _read_capped
        pool = urllib3.PoolManager(num_pools=64, maxsize=POOL_SIZE, retries=False, block=False)
        timeout = urllib3.Timeout(connect=10, read=10)

        def call():
            rsp = pool.request("POST", url, body=data, preload_content=False, redirect=False,
                               headers={**headers, "Accept-Encoding": "identity"}, timeout=timeout)
            try:
                return rsp.status, _read_capped(rsp, 1 << 24, 10)
            finally:
                rsp.release_conn()
        return call, pool.clear
    if name == "requests":   # zeep's transport (the typed path)
        import requests
        session = requests.Session()

        def call():
            rsp = session.post(url, data=data, headers=headers, timeout=10)
            return rsp.status_code, rsp.content
        return call, session.close
    if name == "pycurl":
        import pycurl
        curl, buf = pycurl.Curl(), io.BytesIO()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()] + ["Expect:"])
        curl.setopt(pycurl.TIMEOUT_MS, 10_000)
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.WRITEDATA, buf)

        def call():
            buf.seek(0)
            buf.truncate()
            curl.setopt(pycurl.POSTFIELDS, data)
            curl.perform()
            return curl.getinfo(pycurl.RESPONSE_CODE), buf.getvalue()
        return call, curl.close
    raise ValueError(name)


def outbound(args, url: str, data: bytes) -> list[dict]:
    rows = []
    for name in OUTBOUND:
        row = {"client": name}
        rows.append(row)
        why = ensure_package("pycurl") if name == "pycurl" else None
        if why:
            row["failed"] = why
            print(f"  {name}: not measured ({why})", flush=True)
            continue
        call, close = _client(name, url, data)
        try:
            for _ in range(args.calls // 5):   # warm-up: connection, caches
                call()
            cpu, wall, bad = [], [], 0
            for _ in range(3):
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(args.calls):
                    status, answer = call()
                    bad += status != 200 or len(answer) != len(ANSWER)
                cpu.append((time.process_time() - c0) / args.calls * 1e6)
                wall.append((time.perf_counter() - w0) / args.calls * 1e6)
        except Exception as exc:   # noqa: BLE001 -- a client that fails is a row, not a crash
            row["failed"] = f"{type(exc).__name__}: {exc}"
            print(f"  {name}: failed ({row['failed']})", flush=True)
            continue
        finally:
            close()
        row.update(calls=args.calls * 3, errors=bad, cpu_us_per_call=round(statistics.median(cpu), 1),
                   cpu_us_rounds=[round(x, 1) for x in cpu], wall_us_per_call=round(statistics.median(wall), 1))
        print(f"  {name}: {row['cpu_us_per_call']:.1f} us CPU a call ({row['wall_us_per_call']:.1f} us wall)",
              flush=True)
    return rows


class FixedPeer(Server):
    """nginx answering every request with the minimal app's fixed body (``return 200``)."""

    CONFIG = """worker_processes 1;
daemon off;
pid {work}/peer-nginx.pid;
error_log {work}/peer-nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/peer-nginx-body;
  proxy_temp_path {work}/peer-nginx-proxy;
  fastcgi_temp_path {work}/peer-nginx-fastcgi;
  uwsgi_temp_path {work}/peer-nginx-uwsgi;
  scgi_temp_path {work}/peer-nginx-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type "text/xml; charset=utf-8"; return 200 '{answer}'; }}
  }}
}}
"""

    def __init__(self, nginx: str, port: int, workdir: Path):
        self.name, self.port = "nginx", port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "peer-nginx.log"
        config = workdir / "peer-nginx.conf"
        config.write_text(self.CONFIG.format(work=workdir, port=port, answer=ANSWER.decode()), encoding="utf-8")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([nginx, "-c", str(config), "-p", str(workdir)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)


# -- report -----------------------------------------------------------------------------------
def compare(data: dict) -> dict:
    base = {r["app"]: r.get("server_cpu_us_per_msg") for r in data["inbound"] if r["server"] == "gunicorn gthread"}
    out = {"inbound_cpu_vs_gthread": {}, "outbound_cpu_vs_urllib3": {}}
    for r in data["inbound"]:
        cpu, ref = r.get("server_cpu_us_per_msg"), base.get(r["app"])
        if cpu and ref:
            out["inbound_cpu_vs_gthread"][f"{r['server']}, {r['app']}"] = round(cpu / ref, 2)
    ref = next((r.get("cpu_us_per_call") for r in data["outbound"] if r["client"] == "urllib3"), None)
    for r in data["outbound"]:
        if r.get("cpu_us_per_call") and ref:
            out["outbound_cpu_vs_urllib3"][r["client"]] = round(r["cpu_us_per_call"] / ref, 2)
    return out


def report_outbound(data: dict) -> None:
    s = data["settings"]
    print(f"\noutbound: one thread, keep-alive, {s['message_bytes']} B POST -> {len(ANSWER)} B answer from "
          f"{s['outbound_peer']}, {s['calls']} calls x 3 rounds (median)\n")
    ratios = data["comparison"]["outbound_cpu_vs_urllib3"]
    print(f"{'client':<14}{'CPU us/call':>12}{'vs urllib3':>12}{'wall us/call':>14}{'errors':>8}")
    for r in data["outbound"]:
        if "failed" in r:
            print(f"{r['client']:<14}  not measured: {r['failed'][:120]}")
            continue
        print(f"{r['client']:<14}{r['cpu_us_per_call']:>12.1f}{_f(ratios.get(r['client']), '.2f'):>12}"
              f"{r['wall_us_per_call']:>14.1f}{r['errors']:>8}")


def report(data: dict) -> None:
    m, s = data["machine"], data["settings"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}")
    print(f"inbound: {s['operation']} ({s['message_bytes']} B) with wrk, {s['connections']} keep-alive "
          f"connections, {s['duration_s']:g} s a target; servers {WORKERS} workers (x {THREADS} threads "
          "where threaded)\n")
    ratios = data["comparison"]["inbound_cpu_vs_gthread"]
    print(f"{'server':<18}{'app':<15}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>9}{'errors':>8}{'CPU us/req':>12}"
          f"{'vs gthread':>12}{'sandbox us':>12}{'worker RSS MB':>16}")
    for r in data["inbound"]:
        if "failed" in r:
            print(f"{r['server']:<18}{r['app']:<15}  not measured: {r['failed'][:120]}")
            continue
        sandbox = r.get("sandbox_cpu_us_per_msg")
        print(f"{r['server']:<18}{r['app']:<15}{r['rps']:>8.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}"
              f"{_f(r['server_cpu_us_per_msg'], ',.0f'):>12}"
              f"{_f(ratios.get(r['server'] + ', ' + r['app']), '.2f'):>12}"
              f"{_f(sandbox, ',.0f'):>12}{r['worker_rss_rest_mb']:>8} -> {r['worker_rss_peak_mb']}")
        if r["error_kinds"]:
            print(f"{'':<33}errors: {r['error_kinds']}")
    if not data["outbound"]:
        print("\n(outbound clients not measured)")
    else:
        report_outbound(data)
    if any(r["app"] == STALLED_APP for r in data["inbound"]):
        print(f"\n({STALLED_APP}: the sandbox's province billing answers after {STALLED_PEER_MS} ms, "
              f"{STALLED_CALLERS} connections, at least 15 s; wrk gives up on a call after 10 s: an error)")
    print("(CPU us/req: user + system of the server's process tree a request, from /proc; the sandbox "
          "peer's is apart)")


# -- main -------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.http_layer", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run (5 s a target, 500 calls a round)")
    p.add_argument("--duration", type=float, help="measured seconds a server and app (default 20, quick 5)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each (default 3, quick 2)")
    p.add_argument("--calls", type=int, help="outbound calls a round, three rounds (default 3000, quick 500)")
    p.add_argument("--only", help="comma-separated inbound servers to measure (default: all): "
                   + ", ".join(INBOUND))
    p.add_argument("--no-stalled", dest="stalled", action="store_false",
                   help="skip the round where the peer answers in 1 s and 500 callers wait")
    p.add_argument("--no-outbound", action="store_true", help="skip the outbound clients")
    args = p.parse_args(argv)
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 3.0)
    args.calls = args.calls or (500 if args.quick else 3000)
    args.connections = 16
    args.only = [x.strip() for x in args.only.split(",")] if args.only else None
    if args.only and not set(args.only) <= set(INBOUND):
        p.error(f"--only: one of {', '.join(INBOUND)}")
    if args.duration <= 0 or args.warmup < 0 or args.calls < 1:
        p.error("--duration and --calls must be positive, --warmup not negative")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    args.wrk = ensure_wrk()
    if not args.wrk:
        raise SystemExit("bench: wrk is not installed (apt-get install wrk) and could not be installed")
    info = machine()
    print(f"bssbus HTTP-layer bench: {info['nproc']} CPUs, {info['cpu_model']}, Python {info['python']}",
          flush=True)
    msisdn = seed_users(PROVINCE)[0].msisdn
    body = query_arrears_envelope(msisdn)
    data_bytes = body.replace(PLACEHOLDER, "BENCHHTTP" + "0" * 12).encode()
    with tempfile.TemporaryDirectory(prefix="bssbus-http-") as tmp:
        tmp = Path(tmp)
        helpers: list[Server] = []
        try:
            sandbox = Server("sandbox", ["sandbox", "--db-url", f"sqlite:///{tmp}/sandbox.db"], free_port(), tmp)
            helpers.append(sandbox)
            sandbox.wait_ready()
            print(f"sandbox at {sandbox.url}; inbound servers:", flush=True)
            inbound_rows = inbound(args, body, sandbox, tmp)
            outbound_rows, peer_label = [], None
            if not args.no_outbound:
                nginx = ensure_tool("nginx", "nginx-light")
                if nginx:
                    peer = FixedPeer(nginx, free_port(), tmp)
                    peer_label = "nginx return 200"
                else:
                    port = free_port()
                    peer = Process("peer", INBOUND["gunicorn gthread"][1]("minimal", port), port, tmp)
                    peer_label = "the minimal app under gunicorn gthread (nginx missing)"
                helpers.append(peer)
                peer.wait_ready()
                print(f"outbound clients, to {peer_label} at {peer.url}:", flush=True)
                outbound_rows = outbound(args, peer.url + "/ws/BankPayment", data_bytes)
        finally:
            for server in reversed(helpers):
                server.stop()

    data = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {"operation": "BankPayment.QueryArrears", "msisdn": msisdn, "message_bytes": len(data_bytes),
                     "answer_bytes_minimal": len(ANSWER), "connections": args.connections,
                     "duration_s": args.duration, "warmup_s": args.warmup, "workers": WORKERS, "threads": THREADS,
                     "calls": args.calls, "outbound_peer": peer_label, "generator": "wrk"},
        "inbound": inbound_rows,
        "outbound": outbound_rows,
    }
    data["comparison"] = compare(data)
    report(data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("http-layer-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    baseline = [r for r in inbound_rows if r["server"] == "gunicorn gthread"]
    # the stalled round may show errors (callers a server could not serve in time): that is its figure
    return 1 if any("failed" in r or r.get("errors") for r in baseline if r["app"] != STALLED_APP) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers are already stopped by main's finally
        sys.exit("bench: interrupted")
