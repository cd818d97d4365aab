"""HTTP load generators for the benchmark.

Closed loop (saturation): ``wrk`` (preferred) or Python keep ``connections`` keep-alive
connections busy for ``duration`` seconds. Open loop (a given load): :func:`run_paced` sends at
a fixed rate whatever the answers, from a schedule fixed in advance, and measures each latency
from the request's scheduled time, so a request that waited for a busy connection counts its
wait (no coordinated omission). All POST a SOAP body in which ``@@TRANS_IDO@@`` (each
occurrence) becomes a fresh serial on every request (so an idempotent consumer never answers
from its cache; a run needs a prefix of its own), and count as an error every answer that is
not HTTP 200 with ``RSP_CODE 0000`` and every socket error or timeout.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

PLACEHOLDER = "@@TRANS_IDO@@"
OK_MARK = b"RSP_CODE>0000<"  # matches <RSP_CODE> with or without a namespace prefix
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
TIMEOUT_S = 10.0   # a call not answered in 10 s is an error (wrk's --timeout below)


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


def _percentile(sorted_seconds: list[float], p: float) -> float:
    """The ``p``th percentile of sorted latencies in seconds, in ms (0.0 when there are none)."""
    if not sorted_seconds:
        return 0.0
    return sorted_seconds[min(len(sorted_seconds) - 1, int(p / 100 * len(sorted_seconds)))] * 1000


def _merge(kinds: dict, more: dict) -> None:
    for name, v in more.items():
        kinds[name] = kinds.get(name, 0) + v


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
def _worker(args) -> tuple[list[float], dict, float]:
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
            conn, answered = _exchange(conn, parts, data, bad, 10)
            if answered:
                mine.append(time.perf_counter() - started)
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
    return latencies, kinds, time.monotonic()


def _pool(procs: int):
    """Generator processes (forked) that a SIGTERM ends at once. A forked child inherits its
    parent's handlers, and the bench's own (exit through ``finally``) would make a worker
    that the pool terminates while it holds the pool's queue lock leave it held, and the
    next worker, and the bench, wait for ever."""
    return multiprocessing.get_context("fork").Pool(procs, initializer=signal.signal,
                                                     initargs=(signal.SIGTERM, signal.SIG_DFL))


def _exchange(conn, parts, data: bytes, bad: dict, timeout: float):
    """One POST of ``data`` on a kept connection (opened when None): (the connection to keep,
    whether an answer came). An answer that is not HTTP 200 with RSP_CODE 0000, and a socket
    error or timeout (the connection then closed), count in ``bad`` by kind."""
    try:
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        conn.request("POST", parts.path, data, HEADERS)
        rsp = conn.getresponse()
        answer = rsp.read()
    except (OSError, http.client.HTTPException) as exc:
        bad[type(exc).__name__] = bad.get(type(exc).__name__, 0) + 1
        return (conn.close() if conn else None), False
    if rsp.status != 200:
        bad["bad_status"] = bad.get("bad_status", 0) + 1
    elif OK_MARK not in answer:
        bad["bad_code"] = bad.get("bad_code", 0) + 1
    return conn, True


def run_python(url: str, body: str, prefix: str, connections: int, duration: float) -> LoadResult:
    """Keep-alive ``http.client`` connections, spread over one process per core."""
    procs = max(1, min(os.cpu_count() or 1, connections))
    shares = [connections // procs + (i < connections % procs) for i in range(procs)]
    jobs = [(url, body, prefix, sum(shares[:i]), shares[i], duration) for i in range(procs)]
    cpu, start = _children_cpu(), time.monotonic()
    with _pool(procs) as pool:
        parts = pool.map(_worker, jobs)
    cpu = _children_cpu() - cpu
    latencies = sorted(x for lat, _, _ in parts for x in lat)
    kinds: dict = {}
    for _, k, _ in parts:
        _merge(kinds, k)
    # the calls in flight at the deadline are waited for (answered or timed out) and counted,
    # so the time runs to the last answer
    seconds = max(float(duration), max(end for _, _, end in parts) - start)
    return LoadResult(requests=len(latencies), errors=sum(kinds.values()), seconds=seconds,
                      p50_ms=_percentile(latencies, 50), p99_ms=_percentile(latencies, 99), generator_cpu_s=cpu,
                      error_kinds=kinds, p999_ms=_percentile(latencies, 99.9))


# -- paced (open loop) ----------------------------------------------------------------------------
@dataclass
class PacedResult(LoadResult):
    """A :class:`LoadResult` of :func:`run_paced`; latencies count from each scheduled send."""
    rate: float = 0.0            # requests a second asked for
    scheduled: int = 0           # requests in the schedule (rate x duration)
    send_lag_p99_ms: float = 0.0  # how late the 99th percentile request left (a busy connection)


def _paced_worker(args) -> tuple[list[float], list[float], dict, float]:
    """One process's share of the schedule: requests ``share``, ``share + procs``, ... of the
    run, due at ``start + i / rate``, sent by ``connections`` threads with keep-alive."""
    url, body, prefix, share, procs, total, rate, start, connections, give_up = args
    parts = urlsplit(url)
    lock, latencies, lags, kinds = threading.Lock(), [], [], {}
    mine = iter(range(share, total, procs))

    def loop() -> None:
        conn, lat, lag, bad = None, [], [], {}
        while True:
            with lock:
                i = next(mine, None)
            if i is None:
                break
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif time.monotonic() > give_up:   # the target stopped answering: do not send the rest
                bad["not_sent"] = bad.get("not_sent", 0) + 1
                continue
            sent = time.monotonic()
            data = body.replace(PLACEHOLDER, serial(prefix, share, i // procs)).encode()
            conn, answered = _exchange(conn, parts, data, bad, TIMEOUT_S)
            if answered:
                lat.append(time.monotonic() - due)
                lag.append(max(0.0, sent - due))
        if conn:
            conn.close()
        with lock:
            latencies.extend(lat)
            lags.extend(lag)
            _merge(kinds, bad)

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, lags, kinds, time.monotonic()


def run_paced(url: str, body: str, prefix: str, rate: float, duration: float,
              connections: int = 32) -> PacedResult:
    """Send ``rate`` requests a second for ``duration`` seconds whatever the answers (open loop).

    The schedule is fixed before the first request: request *i* is due at ``start + i / rate``,
    ``round(rate * duration)`` requests in all. ``connections`` keep-alive ``http.client``
    connections (threads, spread over one process per core) take the requests in order; a
    request that finds them all busy leaves late, and its latency still counts from when it
    was due, so a target that falls behind shows it in the percentiles. Requests still unsent
    ``TIMEOUT_S`` after the end of the schedule are errors (``not_sent``) and are not sent.
    ``seconds`` runs from the first due time to the last answer (at least ``duration``), so
    ``rps`` is the rate asked for when the target keeps up and what it managed when it did not.
    """
    if rate <= 0 or duration <= 0 or connections < 1:
        raise ValueError("run_paced: rate, duration and connections must be positive")
    total = max(1, round(rate * duration))
    procs = max(1, min(os.cpu_count() or 1, connections, total))
    shares = [connections // procs + (i < connections % procs) for i in range(procs)]
    start = time.monotonic() + 0.2     # CLOCK_MONOTONIC is the same in every process: one schedule
    give_up = start + duration + TIMEOUT_S
    jobs = [(url, body, prefix, i, procs, total, rate, start, shares[i], give_up) for i in range(procs)]
    cpu = _children_cpu()
    with _pool(procs) as pool:
        parts = pool.map(_paced_worker, jobs)
    cpu = _children_cpu() - cpu
    latencies = sorted(x for lat, _, _, _ in parts for x in lat)
    lags = sorted(x for _, lag, _, _ in parts for x in lag)
    kinds: dict = {}
    for _, _, k, _ in parts:
        _merge(kinds, k)
    seconds = max(float(duration), max(end for _, _, _, end in parts) - start)
    return PacedResult(requests=len(latencies), errors=sum(kinds.values()), seconds=seconds,
                       p50_ms=_percentile(latencies, 50), p99_ms=_percentile(latencies, 99),
                       p999_ms=_percentile(latencies, 99.9), generator_cpu_s=cpu, error_kinds=kinds,
                       rate=rate, scheduled=total, send_lag_p99_ms=_percentile(lags, 99))
