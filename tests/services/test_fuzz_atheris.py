"""The atheris harness (bench/fuzz_inbound.py) runs a short coverage-guided session clean.

Optional: skipped when atheris is not installed (pip install atheris, or the ``fuzz`` extra)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is optional: pip install atheris (or -e '.[fuzz]')")

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_atheris_session_finds_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.fuzz_inbound", "-runs=600", "-seed=7",
                           f"-artifact_prefix={tmp_path}/"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "401 inputs answered by the rule; a normal request succeeds" in out, out[-4000:]
    assert "Done 600 runs" in out, out[-2000:]
