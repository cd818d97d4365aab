"""HOSTILE INPUT PROOF: runs ``python -m bench.hostile --quick``.

The script starts the bus under gunicorn with the sandbox and sends its battery of hostile
requests (XXE to a file and to a loopback listener, billion laughs, quadratic blow-up, 10,000
levels, 50 MB bodies, gzip bombs, invalid UTF-8 and GBK, wrong actions and operations,
SQL-looking values in string fields, oversize strings, too many elements and attributes,
forged and replayed credentials against a bus requiring authentication) while normal traffic
flows; it must exit 0: every request refused (or, for the SQL-looking
values, answered) correctly, the listener never contacted, every normal request served, no
table lost, and each bus process under the RSS bound.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_hostile_battery():
    proc = subprocess.run([sys.executable, "-m", "bench.hostile", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert total, out
    sent, refused, answered, wrong = map(int, total.groups())
    assert sent >= 200 and wrong == 0 and refused + answered == sent, out
    assert "contacted: 0 times" in out, out
    assert re.search(r"normal traffic during the run: [1-9]\d* succeeded, 0 failed", out), out
    tokens = re.search(r"^tokens\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+FailedAuthentication", out, re.M)
    assert tokens and int(tokens.group(4)) == 0 and int(tokens.group(2)) >= 50, out   # forged, replayed: refused
    assert "RESULT: OK" in out, out
