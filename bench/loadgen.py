"""Closed-loop HTTP load generators for the benchmark: ``wrk`` (preferred) or Python.

Both keep ``connections`` keep-alive connections busy for ``duration`` seconds, POSTing a SOAP
body in which ``@@TRANS_IDO@@`` (each occurrence) becomes a fresh serial on every request (so an idempotent
consumer never answers from its cache), and count as an error every answer that is not
HTTP 200 with ``RSP_CODE 0000`` and every socket error or timeout.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

PLACEHOLDER = "@@TRANS_IDO@@"
OK_MARK = b"RSP_CODE>0000<"  # matches <RSP_CODE> with or without a namespace prefix
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator_cpu_s: float
    error_kinds: dict
    p999_ms: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        out = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
        return {**out, "rps": round(self.rps, 1)}


def serial(prefix: str, worker: int, n: int) -> str:
    return f"{prefix}{worker:03d}{n:010d}"  # TransIdoType allows 28 characters


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# -- wrk --------------------------------------------------------------------------------------
def ensure_tool(command: str, package: str) -> str | None:
    """Path of ``command``; installs its Debian ``package`` when missing and running as root."""
    path = shutil.which(command)
    if path or os.geteuid() != 0 or not shutil.which("apt-get"):
        return path
    print(f"{command} is missing: apt-get install -y {package} ...", flush=True)
    done = subprocess.run(["apt-get", "install", "-y", "-q", package], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=300, check=False,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which(command) if done.returncode == 0 else None


def ensure_wrk() -> str | None:
    """Path of ``wrk`` (installed with apt-get when missing and running as root)."""
    return ensure_tool("wrk", "wrk")


_LUA = r"""
local template, prefix = [==[%(body)s]==], "%(prefix)s"
local threads, next_id = {}, 0
tid, n, bad_status, bad_code = 0, 0, 0, 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "%(ctype)s"
  wrk.headers["SOAPAction"] = '""'
end

function request()
  n = n + 1
  local serial = string.format("%%s%%03d%%010d", prefix, tid, n)
  return wrk.format(nil, nil, nil, (string.gsub(template, "@@TRANS_IDO@@", serial)))
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
  elseif not string.find(body, "RSP_CODE>0000<", 1, true) then
    bad_code = bad_code + 1
  end
end

function done(summary, latency, requests)
  local bs, bc = 0, 0
  for _, t in ipairs(threads) do
    bs = bs + t:get("bad_status")
    bc = bc + t:get("bad_code")
  end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%.0f, ' ..
    '"p99_us": %%.0f, "p999_us": %%.0f, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, ' ..
    '"bad_status": %%d, "bad_code": %%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), e.connect, e.read, e.write,
    e.timeout, bs, bc))
end
"""


def run_wrk(wrk: str, url: str, body: str, prefix: str, connections: int, duration: float) -> LoadResult:
    threads = max(1, min(os.cpu_count() or 1, connections))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_LUA % dict(body=body, prefix=prefix, ctype=HEADERS["Content-Type"]))
    try:
        cpu = _children_cpu()
        out = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
                              "--timeout", "10s", "-s", fh.name, url],
                             capture_output=True, text=True, timeout=duration + 60, check=False)
        cpu = _children_cpu() - cpu
    finally:
        os.unlink(fh.name)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed (status {out.returncode}): {(out.stderr or out.stdout).strip()[-500:]}")
    r = json.loads(line[len("BENCH_JSON "):])
    kinds = {k: r[k] for k in ("connect", "read", "write", "timeout", "bad_status", "bad_code") if r[k]}
    return LoadResult(requests=r["requests"], errors=sum(kinds.values()), seconds=r["duration_us"] / 1e6,
                      p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000, generator_cpu_s=cpu,
                      error_kinds=kinds, p999_ms=r["p999_us"] / 1000)


# -- Python fallback --------------------------------------------------------------------------
def _worker(args) -> tuple[list[float], dict]:
    url, body, prefix, first, count, duration = args
    parts = urlsplit(url)
    lock, latencies, kinds = threading.Lock(), [], {}
    deadline = time.monotonic() + duration

    def loop(worker: int) -> None:
        conn, n, mine, bad = None, 0, [], {}
        while time.monotonic() < deadline:
            n += 1
            data = body.replace(PLACEHOLDER, serial(prefix, worker, n)).encode()
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                conn.request("POST", parts.path, data, HEADERS)
                rsp = conn.getresponse()
                answer = rsp.read()
            except (OSError, http.client.HTTPException) as exc:
                bad[type(exc).__name__] = bad.get(type(exc).__name__, 0) + 1
                conn = conn.close() if conn else None
                continue
            mine.append(time.perf_counter() - started)
            if rsp.status != 200:
                bad["bad_status"] = bad.get("bad_status", 0) + 1
            elif OK_MARK not in answer:
                bad["bad_code"] = bad.get("bad_code", 0) + 1
        if conn:
            conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in bad.items():
                kinds[k] = kinds.get(k, 0) + v

    threads = [threading.Thread(target=loop, args=(first + i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, kinds


def run_python(url: str, body: str, prefix: str, connections: int, duration: float) -> LoadResult:
    """Keep-alive ``http.client`` connections, spread over one process per core."""
    procs = max(1, min(os.cpu_count() or 1, connections))
    shares = [connections // procs + (i < connections % procs) for i in range(procs)]
    jobs = [(url, body, prefix, sum(shares[:i]), shares[i], duration) for i in range(procs)]
    cpu = _children_cpu()
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_worker, jobs)
    cpu = _children_cpu() - cpu
    latencies = sorted(x for lat, _ in parts for x in lat)
    kinds: dict = {}
    for _, k in parts:
        for name, v in k.items():
            kinds[name] = kinds.get(name, 0) + v

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else 0.0

    return LoadResult(requests=len(latencies), errors=sum(kinds.values()), seconds=duration,
                      p50_ms=pct(50), p99_ms=pct(99), generator_cpu_s=cpu, error_kinds=kinds, p999_ms=pct(99.9))
