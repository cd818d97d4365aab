"""`make bench`, bank reconciliation: lines per second and peak memory, by file size.

For each size (100,000 and 1,000,000 lines; ``--quick``: 10,000 and 100,000) the sandbox
makes a bank day with 1 % discrepancies of every kind (``bssbus sandbox make-bank-file``'s
generator: the file, and the billings' record of the day in the sandbox database), then
``bssbus reconcile FILE`` runs in a fresh process against the sandbox peers (served by
``bssbus sandbox`` in a process of its own). Printed per size:

- **parse and compare**: the file read, checked and loaded, plus the comparison, in lines/s;
- **billing list**: the billings' ListPayments pages over SOAP (transactions/s);
- **posting**: the corrections handed to the outbox (stored and forwarded), per second;
- **peak RSS** of the reconciling process (its VmHWM): flat when it does not grow with the file.

    .venv/bin/python -m bench.reconcile [--quick] [--sizes 100000,1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.run import RESULTS, ROOT, Server, high_water_kib, machine
from bus.server import free_port
from config.settings import load_settings
from sandbox.bankfiles import listable, make_bank_day, spread
from sandbox.store import open_store

RATE = 0.01


def reconcile_in_child(cfg: Path, path: Path, sandbox_url: str, tmp: Path) -> tuple[dict, float, int]:
    """(the run's JSON report, wall seconds, peak RSS in KiB) of `bssbus reconcile` in a fresh
    process. The peak is the process's own high-water mark (VmHWM of /proc/PID/status, read
    until it exits): ru_maxrss would also count the memory of the process that forked it."""
    started = time.perf_counter()
    out, err = tmp / "reconcile.out", tmp / "reconcile.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "bus.cli", "reconcile", str(path), "--json", "--config",
                                 str(cfg), "--sandbox-url", sandbox_url], cwd=ROOT, stdout=stdout, stderr=stderr)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, high_water_kib(proc.pid))
            time.sleep(0.05)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bssbus reconcile exited {proc.returncode}: {err.read_text()[-2000:]}")
    return json.loads(out.read_text()), wall, peak


def run(args) -> dict:
    settings = load_settings(env={})
    phases = settings.phases
    results = {"machine": machine(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="bssbus-bench-recon-") as tmp:
        tmp = Path(tmp)
        sandbox_db = f"sqlite:///{tmp}/sandbox.db"
        engine = open_store(sandbox_db, phases)
        sandbox = Server("sandbox", ["sandbox", "--db-url", sandbox_db], free_port(), tmp)
        try:
            sandbox.wait_ready()
            for n, size in enumerate(args.sizes):
                bank, day = "ICBC", f"202610{n + 1:02d}"
                folder = tmp / "files"
                print(f"  {size:,} lines: making the bank file and the billings' day ...", flush=True)
                t0 = time.perf_counter()
                made = make_bank_day(engine, tmp / "drop", bank, day, size, phases, spread(round(size * RATE)),
                                     seed=n, listable=listable(settings, phases))
                made_s = time.perf_counter() - t0
                cfg = tmp / f"bus-{n}.yaml"
                cfg.write_text(yaml.safe_dump({
                    "bus": {"data_dir": str(tmp)}, "database": {"url": f"sqlite:///{tmp}/bus-{n}.db"},
                    "housekeeping": {"enabled": False},
                    "files": {"reconciliation": {"folder": str(folder)}}}), encoding="utf-8")
                print(f"  {size:,} lines: bssbus reconcile ...", flush=True)
                sandbox_cpu0 = sandbox.cpu_seconds()
                report, wall, rss = reconcile_in_child(cfg, made.path, sandbox.url, tmp)
                timings = report["timings"]
                parse_compare = timings.get("read", 0) + timings.get("compare", 0)
                listed = made.billing_rows
                posted = report["posted"]
                results["sizes"].append({
                    "lines": made.lines, "file_mb": round(made.path.stat().st_size / 2**20, 1),
                    "generated_s": round(made_s, 1), "state": report["state"], "timings": timings,
                    "parse_compare_lines_per_s": round(made.lines / parse_compare) if parse_compare else None,
                    "read_lines_per_s": round(made.lines / timings["read"]) if timings.get("read") else None,
                    "billing_txn_per_s": round(listed / timings["billing"]) if timings.get("billing") else None,
                    "billing_txn": listed, "sandbox_cpu_s": round(sandbox.cpu_seconds() - sandbox_cpu0, 1),
                    "posted": posted, "held": report["held"],
                    "posted_per_s": round(posted / timings["post"]) if timings.get("post") else None,
                    "wall_s": round(wall, 1), "peak_rss_mb": round(rss / 1024, 1),
                    "counts": report["counts"]})
        finally:
            sandbox.stop()
            engine.dispose()
    return results


def report(data: dict) -> None:
    m = data["machine"]
    print(f"\nBank reconciliation ({m['cpu_model']}, {m['nproc']} cores, Python {m['python']})")
    print(f"{'lines':>10} {'parse+compare':>16} {'read only':>12} {'billing list':>15} {'posting':>10} "
          f"{'total':>8} {'peak RSS':>9}")
    for s in data["sizes"]:
        print(f"{s['lines']:>10,} {s['parse_compare_lines_per_s']:>10,} l/s {s['read_lines_per_s']:>8,} l/s "
              f"{s['billing_txn_per_s']:>9,} txn/s {s['posted_per_s'] or 0:>6,}/s {s['wall_s']:>7}s "
              f"{s['peak_rss_mb']:>6} MB")
    for s in data["sizes"]:
        counts = ", ".join(f"{k} {v[0]:,}" for k, v in s["counts"].items())
        print(f"  {s['lines']:,} lines: {s['state']}; {counts}; {s['posted']:,} posted, {s['held']:,} held; "
              f"steps {s['timings']}")
    if len(data["sizes"]) >= 2:
        a, b = data["sizes"][0], data["sizes"][-1]
        print(f"  memory: {b['peak_rss_mb']} MB for {b['lines']:,} lines vs {a['peak_rss_mb']} MB for {a['lines']:,} "
              f"({b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x for {b['lines'] / a['lines']:.0f}x the lines)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 lines")
    parser.add_argument("--sizes", help="comma-separated line counts (default 100000,1000000)")
    args = parser.parse_args(argv)
    args.sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes else
                  [10_000, 100_000] if args.quick else [100_000, 1_000_000])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data = run(args)
    report(data)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reconcile.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
