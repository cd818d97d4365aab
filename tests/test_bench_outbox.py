"""`python -m bench.outbox` runs end to end (a tiny SQLite run): its figures are only worth
quoting if every accepted message was delivered once and nothing failed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_store_and_forward_bench_delivers_its_whole_backlog_once():
    out = subprocess.run([sys.executable, "-m", "bench.outbox", "--databases", "sqlite", "--seconds", "0.5",
                          "--threads", "4", "--connections", "2", "--backlog", "300", "--generator", "python"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    written = ROOT / out.stdout.strip().splitlines()[-1].removeprefix("written to ")
    try:
        data = json.loads(written.read_text())["sqlite"]
    finally:
        written.unlink()
    assert data["group_commit"]["accepted"] > 0 and data["group_commit"]["failures"] == 0
    assert data["per_message"]["failures"] == 0 and data["http_accept"]["errors"] == 0
    assert data["backlog"] >= 300 and data["left"] == 0
    assert data["arrived"] == data["distinct_trans_ido"] == data["backlog"], "each message delivered once"
