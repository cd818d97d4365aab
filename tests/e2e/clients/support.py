"""Running a generated client: toolkit checks, subprocesses, the plan file and the answers.

Every non-Python client is one program (tests/e2e/clients/src/) that reads a *plan*: one line a
call, ``id<TAB>Service<TAB>Operation<TAB>request file<TAB>response file``, and prints one
JSON line a call: ``{"id", "ok": true, "result": {...}}`` (clients that hand back JSON) or
``{"id", "ok": true, "rsp_code", "sender"}`` with the answer's ``<Op>Result`` written to the
response file (clients that hand back XML), or ``{"id", "ok": false, "error"}``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest
from lxml import etree

from services.models import CONTRACTS
from tests.e2e.clients.cases import Case, request_xml, xml_to_dict

SRC = Path(__file__).parent / "src"
NODE_DIR = Path(__file__).parent / "node"
# Every contract, in registry order. Each toolkit generates a client of each; cases.py calls every
# operation of every one.
SERVICES = tuple(CONTRACTS)
INSTALL_ALL = "bash .ci/install-clients.sh"
IN_CI = os.environ.get("CI") == "true"


class ToolError(Exception):
    """A toolkit is missing under CI, or a generator, compiler or client run failed: the
    message says which command and why."""


def unavailable(what: str, how: str) -> None:
    """Skip because a toolkit is missing (``how`` installs it); under CI=true raise ToolError,
    which ClientRun.attempt turns into a failure of each of the toolkit's tests."""
    msg = f"{what} is not installed; install it with `{how}` (or `{INSTALL_ALL}` for every client toolkit)"
    if IN_CI:
        raise ToolError(f"CI=true, and a missing toolkit is a failure there: {msg}")
    pytest.skip(msg)


def need(*programs: str, how: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            unavailable(f"`{program}`", how)


def need_files(*paths: str | Path, how: str) -> None:
    for path in paths:
        if not Path(path).exists():
            unavailable(str(path), how)


def run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> str:
    """Run a command; its stdout, or ToolError with the command and the tail of its output."""
    full_env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", **(env or {}))
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"`{' '.join(map(str, cmd))}` did not finish in {timeout:.0f} s; "
                        f"output so far:\n{_tail(exc.stdout)}\n{_tail(exc.stderr)}") from None
    if proc.returncode != 0:
        raise ToolError(f"`{' '.join(map(str, cmd))}` exited {proc.returncode} after "
                        f"{time.monotonic() - started:.1f} s:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}")
    return proc.stdout.decode("utf-8", "replace") + _stderr_note(proc.stderr)


def _stderr_note(stderr: bytes) -> str:
    # stderr goes on the end of stdout so a generator's warnings can be looked for in one place
    return "\n" + stderr.decode("utf-8", "replace") if stderr else ""


def _tail(data, limit: int = 6000) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else "...\n" + text[-limit:]


def run_parallel(cmds: Iterable[list[str]], *, cwd: Path, timeout: float = 300) -> None:
    """Run independent commands (e.g. compile units) side by side; ToolError on the first failure."""
    procs = [(cmd, subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)) for cmd in cmds]
    errors = []
    for cmd, proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            errors.append(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s")
            continue
        if proc.returncode != 0:
            errors.append(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{_tail(out)}\n{_tail(err)}")
    if errors:
        raise ToolError("\n\n".join(errors))


def wsdl_url(bus_url: str, service: str) -> str:
    return f"{bus_url}/ws/{service}?wsdl"


# -- plans and answers ----------------------------------------------------------------------

def write_plan(folder: Path, cases: list[Case], request: str) -> Path:
    """Request files (``request`` is "xml": the wrapper element, or "json": the example's
    shape) and the plan that lists them; returns the plan's path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, case in enumerate(cases):
        req = folder / f"{n:02d}.{case.operation}.req.{request}"
        if request == "xml":
            req.write_bytes(request_xml(case))
        else:
            req.write_text(json.dumps(case.args, ensure_ascii=False, indent=1), encoding="utf-8")
        rsp = folder / f"{n:02d}.{case.operation}.rsp.xml"
        lines.append("\t".join([case.id, case.service, case.operation, str(req), str(rsp)]))
    plan = folder / "plan.tsv"
    plan.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return plan


def read_answers(stdout: str, plan: Path) -> dict[str, dict]:
    """The JSON lines of a client's stdout by case id; an XML answer is read into ``result``."""
    responses = {}
    for line in plan.read_text(encoding="utf-8").splitlines():
        case_id, *_, rsp = line.split("\t")
        responses[case_id] = Path(rsp)
    answers = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("ok") and "result" not in record:
            path = responses.get(record["id"])
            if path is None or not path.exists():
                record = dict(record, ok=False, error=f"the client wrote no answer file {path}")
            else:
                record["result"] = xml_to_dict(etree.parse(str(path)).getroot())
        answers[record["id"]] = record
    return answers


@dataclass
class ClientRun:
    """What one toolkit's client did: its answers by case id, its generators' logs, or the
    error that stopped the build or the run before any answer."""

    toolkit: str
    answers: dict[str, dict] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)      # generator -> its output
    error: str | None = None
    seconds: float = 0.0
    folder: Path | None = None                               # where it generated and built

    def built(self) -> "ClientRun":
        """Fail the test when the build did not get through."""
        if self.error is not None:
            pytest.fail(f"the {self.toolkit} client could not be built or run:\n{self.error}", pytrace=False)
        return self

    @classmethod
    def attempt(cls, toolkit: str, body: Callable[["ClientRun"], None], folder: Path | None = None) -> "ClientRun":
        """Run ``body(run)`` (generate, build, call); a ToolError is kept, not raised, so that
        every test of the toolkit fails with it instead of erroring in a fixture."""
        out = cls(toolkit, folder=folder)
        started = time.monotonic()
        try:
            body(out)
        except ToolError as exc:
            out.error = str(exc)
        out.seconds = time.monotonic() - started
        return out

    def answer(self, case: Case) -> dict:
        """The client's answer to ``case`` (its ``result`` dict); fails the test when there is none."""
        self.built()
        record = self.answers.get(case.id)
        if record is None:
            pytest.fail(f"the {self.toolkit} client printed no answer for {case.id}; it printed "
                        f"{sorted(self.answers)}", pytrace=False)
        if not record.get("ok"):
            pytest.fail(f"{case.id} through the {self.toolkit} client: {record.get('error')}", pytrace=False)
        result = record["result"]
        if "rsp_code" in record:   # the XML clients also read these through their generated classes
            head = (result or {}).get("UNI_BSS_HEAD") or {}
            typed = (record["rsp_code"], record["sender"])
            written = (((head.get("RESPONSE") or {}).get("RSP_CODE")), head.get("MSG_SENDER"))
            assert typed == written, f"{case.id}: generated classes hold {typed}, serialized answer {written}"
        return result


def warnings_in(log: str, markers: tuple[str, ...]) -> list[str]:
    """The lines of a generator's output that carry one of ``markers`` (case-insensitive)."""
    return [line for line in log.splitlines() if any(m.lower() in line.lower() for m in markers)]
