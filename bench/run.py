"""`make bench`: what the bus costs on top of the peer it routes to.

Starts the sandbox peers and the bus under gunicorn on loopback (the bus's peers pointing at
the sandbox, each with its own SQLite file in a temporary folder), then drives
``BankPayment.QueryArrears`` at a fixed concurrency for a fixed time, first straight at the
sandbox's province billing peer, then through the bus at ``/ws/BankPayment`` on its fast path
(lxml in, the request forwarded as it came, the answer back as it came), then through a
second bus with ``bus.fast_path: false`` (spyne in, zeep to the peer, spyne out); then the
same three again with the peer answering after 30 ms and 64 callers, and the peer and the fast
path with the peer answering after 1 s and 500 callers. It prints throughput,
latency (p50, p99, p99.9), errors, the CPU time the servers spent per message (user + system
of the gunicorn master and its workers, from /proc) and the largest worker's resident memory
at rest and at its peak, and writes the same figures as JSON to
``bench/results/<UTC timestamp>.json``.

    .venv/bin/python -m bench.run [--quick] [--duration S] [--connections N] [--generator wrk|python]
"""
from __future__ import annotations

import argparse
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

from lxml import etree

from bench.loadgen import PLACEHOLDER, ensure_tool, ensure_wrk, run_python, run_wrk
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
def drive(label: str, url: str, body: str, prefix: str, args, measured: Server, servers: dict,
          connections: int | None = None) -> dict:
    connections = connections or args.connections

    def load(seconds: float):
        if args.wrk:
            return run_wrk(args.wrk, url, body, prefix, connections, seconds)
        return run_python(url, body, prefix, connections, seconds)

    print(f"  {label}: {url} ({args.warmup:g} s warm-up, {args.duration:g} s measured)", flush=True)
    rest_mb = measured.worker_memory_mb()
    load(args.warmup)
    before = {name: s.cpu_seconds() for name, s in servers.items()}
    result = load(args.duration)
    cpu = {name: s.cpu_seconds() - before[name] for name, s in servers.items()}
    per_msg = {name: (round(v / result.requests * 1e6, 1) if result.requests else None) for name, v in cpu.items()}
    return {"target": label, "url": url, **result.as_dict(), "connections": connections,
            "worker_rss_rest_mb": rest_mb, "worker_rss_peak_mb": measured.worker_memory_mb("VmHWM"),
            "server_cpu_us_per_msg": per_msg[measured.name],
            "cpu_us_per_msg": per_msg,
            "generator_cpu_us_per_msg": round(result.generator_cpu_s / result.requests * 1e6, 1) if result.requests else None}


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


def report(data: dict) -> None:
    m, s = data["machine"], data["settings"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}")
    print(f"load: {s['operation']} ({s['message_bytes']} B), {s['connections']} keep-alive connections, "
          f"{s['duration_s']:g} s per target, generator {s['generator']}\n")
    for title, rows in ((f"peer answers at once, {s['connections']} connections", data["results"]),
                        (f"peer answers after {SLOW_PEER_MS} ms, {SLOW_CALLERS} connections",
                         data.get("results_slow_peer", [])),
                        (f"peer answers after {STALLED_PEER_MS} ms, {STALLED_CALLERS} connections (wrk gives up "
                         "on a call after 10 s: an error)", data.get("results_stalled_peer", []))):
        print(f"{title}:")
        print(f"{'target':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'errors':>8}"
              f"{'server CPU us/msg':>19}{'sandbox CPU us/msg':>20}{'worker RSS MB':>15}")
        for r in rows:
            print(f"{r['target']:<18}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['p999_ms']:>10.2f}"
                  f"{r['errors']:>8}{_f(r['server_cpu_us_per_msg'], ',.0f'):>19}"
                  f"{_f(r['cpu_us_per_msg']['sandbox'], ',.0f'):>20}"
                  f"{r['worker_rss_rest_mb']:>7} -> {r['worker_rss_peak_mb']}")
            if r["error_kinds"]:
                print(f"{'':<18}errors: {r['error_kinds']}")
        print()
    c = data["comparison"]
    print(f"\nthroughput bus/direct: fast path {_f(c['throughput_ratio'], '.2f')}, typed path "
          f"{_f(c['typed_throughput_ratio'], '.2f')}   bus-added latency p50 (fast): {c['added_p50_ms']:+.2f} ms")
    print(f"bus CPU per message: fast path {_f(c['bus_cpu_us_per_msg'], ',.0f')} us, typed path "
          f"{_f(c['typed_bus_cpu_us_per_msg'], ',.0f')} us; nginx as a plain proxy (the floor) "
          f"{_f(c.get('nginx_cpu_us_per_msg'), ',.0f')} us")
    print(f"{SLOW_PEER_MS} ms peer, {SLOW_CALLERS} callers, throughput bus/direct: fast path "
          f"{_f(c.get('slow_peer_throughput_ratio'), '.2f')}, typed path "
          f"{_f(c.get('slow_peer_typed_throughput_ratio'), '.2f')} (target: at least 0.60)")
    print("(worker RSS: the largest gunicorn worker's resident memory at rest -> its peak)")
    print("(server CPU = the gunicorn processes of the target: the sandbox when direct, the bus through it)")


# -- main -------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~30 s smoke run (8 s per target)")
    p.add_argument("--duration", type=float, help="measured seconds per target (default 45, quick 8)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each target (default 5, quick 2)")
    p.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (16)")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: wrk if present (installed with apt-get when root), else Python")
    args = p.parse_args(argv)
    args.duration = args.duration or (8.0 if args.quick else 45.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 5.0)
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1:
        p.error("--duration and --connections must be positive, --warmup not negative")
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
          f"generator {generator}", flush=True)

    msisdn = seed_users(PROVINCE)[0].msisdn
    body = query_arrears_envelope(msisdn)
    with tempfile.TemporaryDirectory(prefix="bssbus-bench-") as tmp:
        tmp = Path(tmp)
        servers: dict[str, Server] = {}
        try:
            sandbox = servers["sandbox"] = Server(
                "sandbox", ["sandbox", "--db-url", f"sqlite:///{tmp}/sandbox.db"], free_port(), tmp)
            sandbox.wait_ready()
            bus = servers["bus"] = Server(
                "bus", ["serve", "--no-sandbox", "--db-url", f"sqlite:///{tmp}/bus.db"], free_port(), tmp,
                env={"BSSBUS_SANDBOX_URL": sandbox.url})
            typed_config = tmp / "typed.yaml"
            typed_config.write_text("bus: {fast_path: false}\n", encoding="utf-8")
            typed = servers["bus-typed"] = Server(
                "bus-typed", ["serve", "--no-sandbox", "--db-url", f"sqlite:///{tmp}/bus-typed.db",
                              "--config", str(typed_config)], free_port(), tmp, env={"BSSBUS_SANDBOX_URL": sandbox.url})
            bus.wait_ready()
            typed.wait_ready()
            print(f"sandbox at {sandbox.url}, bus (fast path) at {bus.url}, bus (typed path) at {typed.url}; "
                  f"QueryArrears for {msisdn}", flush=True)
            nginx_path = ensure_tool("nginx", "nginx-light")
            if nginx_path:
                proxy = servers["nginx"] = Nginx(nginx_path, sandbox.url, free_port(), tmp)
                proxy.wait_ready()
            else:
                print("nginx is not installed (apt-get install nginx-light): its row is left out", flush=True)

            def one_round(tag: str, connections: int) -> list[dict]:
                floor = [drive("nginx proxy", f"{servers['nginx'].url}/peers/province_billing/{PROVINCE}/BankPayment",
                               body, f"BN{tag}", args, servers["nginx"], servers, connections)] if nginx_path else []
                return floor + [
                    drive("direct sandbox", f"{sandbox.url}/peers/province_billing/{PROVINCE}/BankPayment",
                          body, f"BD{tag}", args, sandbox, servers, connections),
                    drive("bus, fast path", f"{bus.url}/ws/BankPayment", body, f"BF{tag}", args, bus, servers,
                          connections),
                    drive("bus, typed path", f"{typed.url}/ws/BankPayment", body, f"BT{tag}", args, typed, servers,
                          connections),
                ]
            results = one_round("00", args.connections)
            # a province that answers in 30 ms: does the bus keep up with 64 callers?
            control(sandbox.url, {"peer": f"BILLING-{PROVINCE}", "delay_ms": SLOW_PEER_MS})
            print(f"the sandbox's BILLING-{PROVINCE} now answers after {SLOW_PEER_MS} ms; "
                  f"{SLOW_CALLERS} connections", flush=True)
            slow_results = one_round("30", SLOW_CALLERS)
            # a province that answers in 1 s, and 500 callers: is each one served, and at what memory?
            control(sandbox.url, {"peer": f"BILLING-{PROVINCE}", "delay_ms": STALLED_PEER_MS})
            print(f"the sandbox's BILLING-{PROVINCE} now answers after {STALLED_PEER_MS} ms; "
                  f"{STALLED_CALLERS} connections", flush=True)
            stalled = [drive(label, url, body, f"BS{n}", args, server, servers, STALLED_CALLERS)
                       for n, (label, url, server) in enumerate((
                           ("direct sandbox", f"{sandbox.url}/peers/province_billing/{PROVINCE}/BankPayment", sandbox),
                           ("bus, fast path", f"{bus.url}/ws/BankPayment", bus)))]
        finally:
            for server in reversed(list(servers.values())):
                server.stop()

    direct, through, typed_path = results[-3:]
    slow_direct, slow_fast, slow_typed = slow_results[-3:]
    data = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {"operation": "BankPayment.QueryArrears", "msisdn": msisdn,
                     "message_bytes": len(body.replace(PLACEHOLDER, "BENCHBUS" + "0" * 13).encode()),
                     "connections": args.connections, "duration_s": args.duration, "warmup_s": args.warmup,
                     "generator": "wrk" if args.wrk else "python"},
        "results": results,
        "results_slow_peer": slow_results,
        "results_stalled_peer": stalled,
        "comparison": {
            "throughput_ratio": round(through["rps"] / direct["rps"], 3) if direct["rps"] else None,
            "typed_throughput_ratio": round(typed_path["rps"] / direct["rps"], 3) if direct["rps"] else None,
            "added_p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
            "bus_cpu_us_per_msg": through["cpu_us_per_msg"]["bus"],
            "typed_bus_cpu_us_per_msg": typed_path["cpu_us_per_msg"]["bus-typed"],
            "nginx_cpu_us_per_msg": results[0]["server_cpu_us_per_msg"] if len(results) > 3 else None,
            "slow_peer_throughput_ratio": round(slow_fast["rps"] / slow_direct["rps"], 3) if slow_direct["rps"] else None,
            "slow_peer_typed_throughput_ratio": (round(slow_typed["rps"] / slow_direct["rps"], 3)
                                                 if slow_direct["rps"] else None),
        },
    }
    report(data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    # the stalled round may show errors (callers the bus could not serve in time): that is its figure
    return 1 if any(r["errors"] or not r["requests"] for r in results + slow_results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers are already stopped by main's finally
        sys.exit("bench: interrupted")
