"""`make bench`, CDR distribution: records a second and memory, 100,000 and 1,000,000 records.

Generates realistic CDR files (``sandbox/cdrfiles.py``: numbers of all 31 provinces from the
segment table, 0.1 % unknown numbers and 0.1 % malformed lines), then distributes each in a
fresh process, as ``bssbus cdr`` does: the ``.chk`` checked, the split into 27 targets and the
rejects, every output assembled with its control records and fsynced, published by renames,
the key and states in SQLite. The child times that and reports its own peak RSS (VmHWM:
ru_maxrss would count the parent that forked it too), so the two sizes side by side show
whether memory stays flat. Target: at least
200,000 records a second, and the same peak RSS for both sizes (the file is streamed).

    .venv/bin/python -m bench.cdr [--quick] [--sizes 100000,1000000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.run import RESULTS, ROOT, high_water_kib, machine

TARGET_PER_S = 200_000


def child(path: str, out: str, db_url: str) -> int:
    """Distribute one file (in its own process) and print what it measured as JSON."""
    from bus.bankfile import md5_of
    from bus.cdr import CdrJob, read_chk
    from config.settings import load_settings
    from dao.db import open_database

    settings = load_settings(env={})
    engine = open_database(db_url)
    job = CdrJob(settings, engine, "bench")
    job.router()   # the segment table loaded, as in a running bus
    before_kb = high_water_kib()
    assert job.acquire()
    t0, cpu0 = time.perf_counter(), time.process_time()
    md5 = read_chk(Path(path + ".chk"))
    if md5_of(Path(path)) != md5:
        raise SystemExit("checksum mismatch")
    outcome = job.distributor().distribute(Path(path), Path(out), md5)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    job.release("bench")
    placed = sum(t["count"] for t in outcome.targets.values())
    print(json.dumps({"records": outcome.records, "placed": placed, "rejects": outcome.rejects,
                      "targets": len(outcome.targets), "seconds": round(elapsed, 3), "cpu_s": round(cpu, 3),
                      "rss_before_kb": before_kb, "peak_rss_kb": high_water_kib()}))
    return 0 if placed + outcome.rejects == outcome.records else 1


def measure(path: Path, work: Path) -> dict:
    out, db = work / f"out-{path.stem}", work / f"{path.stem}.db"
    proc = subprocess.Popen([sys.executable, "-m", "bench.cdr", "--child", str(path), str(out), f"sqlite:///{db}"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"the distribution of {path.name} failed (exit {proc.returncode}): {stdout}")
    data = json.loads(stdout)
    data.update(peak_rss_mb=round(data.pop("peak_rss_kb") / 1024, 1), rss_before_mb=round(data.pop("rss_before_kb") / 1024, 1),
                file_mb=round(path.stat().st_size / 2**20, 1), per_s=round(data["records"] / data["seconds"]))
    shutil.rmtree(out, ignore_errors=True)
    return data


def run(sizes: list[int], work: Path) -> dict:
    from bus.segments import SegmentTable
    from config.settings import load_settings
    from sandbox.cdrfiles import make_cdr_file

    settings = load_settings(env={})
    table = SegmentTable.from_files(settings.segments_file, settings.overrides_file)
    results = []
    for size in sizes:
        t0 = time.monotonic()
        info = make_cdr_file(work / "in", size, table=table, unknown=size // 1000, malformed=size // 1000,
                             seed=size % 9973, name=f"BENCH{size}.cdr")
        print(f"  generated {size:,} records in {time.monotonic() - t0:.1f} s", flush=True)
        results.append({"size": size, **measure(Path(info["file"]), work)})
    return {"machine": machine(), "target_per_s": TARGET_PER_S, "results": results,
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def report(data: dict) -> bool:
    m = data["machine"]
    print(f"\nmachine: {m['nproc']} CPUs, {m['cpu_model']}, Python {m['python']}\n")
    print(f"{'records':>10}{'file MB':>9}{'targets':>9}{'rejects':>9}{'seconds':>9}{'records/s':>11}"
          f"{'CPU s':>7}{'RSS before':>12}{'peak RSS':>10}")
    ok = True
    for r in data["results"]:
        print(f"{r['records']:>10,}{r['file_mb']:>9}{r['targets']:>9}{r['rejects']:>9,}{r['seconds']:>9}"
              f"{r['per_s']:>11,}{r['cpu_s']:>7}{r['rss_before_mb']:>9} MB{r['peak_rss_mb']:>7} MB")
        ok = ok and r["placed"] + r["rejects"] == r["records"]
    first, last = data["results"][0], data["results"][-1]
    if len(data["results"]) > 1:
        print(f"\npeak RSS {last['size']:,} / {first['size']:,} records: "
              f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f} (1.00 = flat; the file is {last['file_mb']} MB)")
    slowest = min(r["per_s"] for r in data["results"])
    print(f"slowest: {slowest:,} records/s, target {data['target_per_s']:,}: "
          f"{'met' if slowest >= data['target_per_s'] else 'NOT met'}")
    print("(seconds: the .chk checked, split, outputs assembled and fsynced, published, states in SQLite;"
          " RSS before: the child with the bus and the segment table loaded, before the file)")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cdr", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10,000 and 100,000 records")
    p.add_argument("--sizes", help="comma-separated record counts (default 100000,1000000)")
    p.add_argument("--keep", metavar="DIR", help="generate into DIR and keep the files")
    p.add_argument("--child", nargs=3, metavar=("FILE", "OUT", "DB_URL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(*args.child)
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "100000,1000000")).split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cdr-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = run(sizes, work)
    ok = report(data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-cdr.json")
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
