"""`bssbus cdr` and `bssbus sandbox make-cdr-file` as a user runs them: a real process each."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bssbus(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "bus.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})})


def test_help_of_the_cdr_commands_and_the_sandbox_is_unbroken():
    for args in (("cdr",), ("sandbox", "make-cdr-file")):
        out = bssbus(*args, "--help")
        assert out.returncode == 0 and "--config" in out.stdout, args
    cdr = bssbus("cdr", "--help").stdout
    assert "--dry-run" in cdr and "--out" in cdr
    sandbox = bssbus("sandbox", "--help").stdout
    assert "--port" in sandbox and "--bus-url" in sandbox and "make-cdr-file" in sandbox
    assert "cdr" in bssbus("--help").stdout


def test_make_a_file_then_distribute_it_by_hand(tmp_path):
    made = bssbus("sandbox", "make-cdr-file", "--records", "3000", "--out", str(tmp_path / "in"),
                  "--unknown", "4", "--malformed", "6", "--seed", "8", "--name", "HQ77.cdr")
    assert made.returncode == 0, made.stderr
    path = tmp_path / "in/HQ77.cdr"
    assert "3000 records (4 unknown numbers, 6 malformed lines)" in made.stdout
    assert (tmp_path / "in/HQ77.cdr.chk").read_text().split()[0] == hashlib.md5(path.read_bytes()).hexdigest()
    again = bssbus("sandbox", "make-cdr-file", "--records", "3000", "--out", str(tmp_path / "again"),
                   "--unknown", "4", "--malformed", "6", "--seed", "8", "--name", "HQ77.cdr")
    assert (tmp_path / "again/HQ77.cdr").read_bytes() == path.read_bytes(), "same seed, same file"

    db = f"sqlite:///{tmp_path}/bus.db"
    dry = bssbus("cdr", str(path), "--dry-run", "--db-url", db, "--out", str(tmp_path / "out"))
    assert dry.returncode == 0, dry.stderr
    assert "dry-run: 3000 records = 2990 to 27 targets + 10 rejected" in dry.stdout
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"
    assert "HQ-BILLING" in dry.stdout and "number in no segment" not in dry.stdout and "unknown number" in dry.stdout

    run = bssbus("cdr", str(path), "--db-url", db, "--out", str(tmp_path / "out"), "--json")
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    assert outcome["result"] == "distributed" and outcome["records"] == 3000 and outcome["rejects"] == 10
    counts = {t: v["count"] for t, v in outcome["targets"].items()}
    for target, count in counts.items():
        head = (tmp_path / "out" / target / "HQ77.cdr").read_text().split("\n", 1)[0]
        assert head == f"H|HQ77.cdr|{target}|{count}|{outcome['targets'][target]['sum']}"
    assert sum(counts.values()) + 10 == 3000
    assert path.exists(), "bssbus cdr leaves the file where it is"

    twice = bssbus("cdr", str(path), "--db-url", db, "--out", str(tmp_path / "out"))
    assert twice.returncode == 2 and len(twice.stderr.strip().splitlines()) == 1
    assert "already distributed" in twice.stderr


@pytest.mark.parametrize("args, words", [
    (("cdr", "/no/such.cdr"), "does not exist"),
    (("cdr", "README.md"), "is not a CDR file name"),
    (("cdr", "bus"), "is not a file"),
    (("sandbox", "make-cdr-file", "--records", "-1", "--out", "x"), "--records cannot be negative"),
    (("sandbox", "make-cdr-file", "--records", "5", "--unknown", "6", "--out", "{tmp}"), "do not fit"),
    (("sandbox", "make-cdr-file", "--records", "5", "--out", "{tmp}", "--name", "x.txt"), "not a CDR file name"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    out = bssbus(*(a.replace("{tmp}", str(tmp_path)) for a in args), "--db-url" if args[0] == "cdr" else "--config",
                 f"sqlite:///{tmp_path}/b.db" if args[0] == "cdr" else str(ROOT / "config/bus.yaml"))
    assert out.returncode == 2, out.stdout
    assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_bad_chk_is_a_one_line_error_and_nothing_is_written(tmp_path):
    path = tmp_path / "B.cdr"
    path.write_bytes(b"18600000000|20240315103012|1|01|10\n")
    (tmp_path / "B.cdr.chk").write_text("0" * 32)
    out = bssbus("cdr", str(path), "--out", str(tmp_path / "out"), "--db-url", f"sqlite:///{tmp_path}/b.db")
    assert out.returncode == 2 and "checksum mismatch" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
