"""RELIABILITY PROOF (crash and outage): runs ``python -m bench.reliability --quick``.

The script SIGKILLs the bus's process group under a steady load of store-and-forward
messages and takes one province's Billing down for a while (see bench/reliability.py); it
must exit 0 and print "lost 0" and "duplicates 0" for both runs. With BSSBUS_TEST_PG_URL set
it runs again with the bus's database on a fresh PostgreSQL schema.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL, pg_schema_url

ROOT = Path(__file__).resolve().parents[2]


def run_quick(*extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "bench.reliability", "--quick", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert lines.count("lost 0") == 2 and lines.count("duplicates 0") == 2, out
    return out


def test_quick_reliability_proof_on_sqlite():
    run_quick()


@pytest.mark.skipif(not PG_URL, reason="BSSBUS_TEST_PG_URL is not set")
def test_quick_reliability_proof_on_postgresql():
    with pg_schema_url() as url:
        run_quick("--db-url", url)
