"""The `bssbus` command.

Sub-commands: serve, sandbox (and sandbox make-bank-file, make-cdr-file), call, demo, routes,
phase, journal, stats, dlq, hash-password, reconcile, cdr, soapui-project, check-config. Each takes
--help and --config FILE, and exits non-zero with a one-line reason on bad input.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from config.settings import SERVER_THREADS, ConfigError, Settings, load_settings

log = logging.getLogger("bssbus")


class CliError(Exception):
    """A bad input on the command line: printed as one line, exit status 2."""


class InvalidConfig(Exception):
    """A configuration with problems (bus/config_check.py): each printed on a line, exit status 2."""

    def __init__(self, report):
        super().__init__(report.summary())
        self.report = report


# -- helpers ------------------------------------------------------------------------------
def _settings(args, check: bool = False, sandbox: bool = True) -> Settings:
    """The configuration of ``args``. ``check``: checked whole (every problem, InvalidConfig if
    any) rather than up to its first problem; ``sandbox``: the sandbox peers will be running."""
    from bus import privacy
    settings = load_settings(args.config, validate=not check)
    if getattr(args, "db_url", None):
        settings.raw.setdefault("database", {})["url"] = args.db_url
    if check:
        from bus.config_check import check_settings
        report = check_settings(settings, sandbox=sandbox)
        if not report.ok:
            raise InvalidConfig(report)
    privacy.configure(settings)   # this config's personal data is masked in this process's logs
    return settings


def _print_json(data) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise CliError(f"the process serving {url} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise CliError(f"{url} did not answer within {timeout:g} s")


# -- serve / sandbox ------------------------------------------------------------------------
def start_sandbox_process(settings: Settings, host: str, bus_url: str | None,
                          config: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start `bssbus sandbox` in its own process on a free loopback port; returns (proc, url)."""
    from bus.server import free_port
    port = int(settings.section("sandbox").get("port") or 0) or free_port(host)
    cmd = [sys.executable, "-m", "bus.cli", "sandbox", "--host", host, "--port", str(port),
           "--db-url", settings.sandbox_db_url]
    if bus_url:
        cmd += ["--bus-url", bus_url]
    if config:
        cmd += ["--config", config]
    proc = subprocess.Popen(cmd, cwd=os.getcwd())
    url = f"http://{host}:{port}"
    wait_http(f"{url}/healthz", proc=proc)
    return proc, url


def cmd_serve(args) -> int:
    from bus.core import Bus
    from bus.logs import configure as configure_logs
    from bus.metrics import use_multiprocess
    from bus.reconcile import ReconConfig
    from bus.server import run_gunicorn
    from dao.db import open_database
    from dao.journal import cipher as journal_cipher
    from dao.phases import PhaseStore
    from services.app import BusApplication

    settings = _settings(args, check=True, sandbox=not args.no_sandbox)   # every problem, before anything starts
    if args.threads:   # each peer's max_in_flight defaults to a share of the threads there are
        settings.raw.setdefault("server", {})["threads"] = args.threads
    host, port = args.host or settings.host, args.port or settings.port
    tls, origins = check_transport(settings)
    ReconConfig.from_settings(settings)   # a wrong files.reconciliation: one line, before anything starts
    scheme = "https" if tls else "http"
    sandbox = None
    if not args.no_sandbox:
        sandbox, url = start_sandbox_process(settings, settings.section("sandbox").get("host", "127.0.0.1"),
                                             f"{scheme}://{host}:{port}", args.config)
        settings.set_sandbox_url(url)
        _sandbox_address_file(settings).parent.mkdir(parents=True, exist_ok=True)
        _sandbox_address_file(settings).write_text(url + "\n", encoding="ascii")
        print(f"sandbox peers at {url}/peers/", flush=True)
    settings.peers  # fail now, in one line, if a peer address cannot be built (the sandbox's is known now)
    journal_cipher()  # and if $BSSBUS_JOURNAL_KEY is unusable
    configure_logs(settings)   # text or JSON lines (logging.format), in the master and the workers it forks
    # each worker counts in files of its own there; /metrics adds them up (bus/metrics.py)
    use_multiprocess(settings.data_dir / "metrics")
    engine = open_database(settings.db_url)   # migrate and seed the cut-over table once, before the workers fork
    PhaseStore(engine).seed(settings.phases)
    engine.dispose()

    # the console's sessions are signed with one secret that every worker (forked below) shares
    from services.console import SECRET_ENV
    os.environ.setdefault(SECRET_ENV, secrets.token_urlsafe(32))

    def factory():
        return BusApplication(Bus(settings).start())

    def stop_sandbox():
        if sandbox is not None and sandbox.poll() is None:
            sandbox.terminate()
            sandbox.wait(10)
            _sandbox_address_file(settings).unlink(missing_ok=True)

    client_certs = f", client certificates {tls.client_certs}" if tls and tls.client_certs != "none" else ""
    print(f"bssbus serving {scheme}://{host}:{port}/ (journal: {settings.db_url}{client_certs})", flush=True)
    try:
        run_gunicorn(factory, host, port, workers=args.workers or settings.server_option("workers", 2),
                     threads=args.threads or settings.server_option("threads", SERVER_THREADS),
                     timeout=settings.server_option("timeout", 60), name="bssbus", on_exit=stop_sandbox,
                     tls=tls, forwarded_allow_ips=origins.trusted)
    finally:
        stop_sandbox()
    return 0


def _sandbox_address_file(settings: Settings):
    """Where `bssbus serve` leaves the address of the sandbox it started, for the commands
    that call peers themselves (`bssbus reconcile`)."""
    return settings.data_dir / "sandbox.url"


def _peers_reachable(settings: Settings, sandbox_url: str | None) -> None:
    """Give peers that live in the sandbox its address: --sandbox-url, else the running
    `bssbus serve`'s; a one-line error when neither is known."""
    uses_sandbox = any("{sandbox}" in str(spec.get("url", "")) for spec in settings.section("peers").values()
                       if isinstance(spec, dict))
    if not uses_sandbox or settings.sandbox_url:
        return
    address = _sandbox_address_file(settings)
    url = sandbox_url or (address.read_text(encoding="ascii").strip() if address.exists() else None)
    if not url:
        raise CliError("the peers are the sandbox's, and no sandbox is running: start `bssbus serve` (or give "
                       "--sandbox-url URL)")
    settings.set_sandbox_url(url)


def check_transport(settings: Settings):
    """(TlsConfig or None, Origins) of the configuration, checked before anything starts: a
    missing or unreadable certificate, key or CA file, a bad network or a consumer that cannot
    be used is one line on stderr, not a worker failing to boot. A consumer that needs a client
    certificate the bus is never given is warned about."""
    from bus.security import Gatekeeper
    from bus.transport import Origins, TlsConfig
    tls, origins = TlsConfig.from_settings(settings), Origins.from_settings(settings)
    gatekeeper = Gatekeeper.from_settings(settings)
    needs_cert = sorted(c.id for c in gatekeeper.consumers.values() if c.client_cert is not None)
    limited = sorted(c.id for c in gatekeeper.consumers.values() if c.allow_from or c.client_cert)
    if gatekeeper.mode == "off" and limited:
        print(f"bssbus serve: warning: allow_from and client_cert of {', '.join(limited)} are not checked while "
              "security.authentication is off", file=sys.stderr)
    elif needs_cert and (tls is None or tls.client_certs == "none") and not origins.trusted:
        print(f"bssbus serve: warning: {', '.join(needs_cert)} must present a client certificate, and the bus "
              "asks for none (server.tls.client_certs is none, no security.trusted_proxies): their calls are "
              "refused", file=sys.stderr)
    return tls, origins


def cmd_sandbox(args) -> int:
    from bus.logs import configure as configure_logs
    from bus.server import run_gunicorn
    from sandbox.app import SandboxApplication
    from sandbox.auth import gate_for

    settings = _settings(args, check=True)
    configure_logs(settings)
    host = args.host or settings.section("sandbox").get("host", "127.0.0.1")
    port = args.port or int(settings.section("sandbox").get("port") or 8090)
    db_url = args.db_url or settings.sandbox_db_url
    SandboxApplication(db_url, provinces=settings.phases)  # create and seed before forking
    print(f"bssbus sandbox peers at http://{host}:{port}/peers/ (state: {db_url})", flush=True)
    credentials = gate_for(settings, settings.phases)   # what the peers demand (sandbox.require_auth)

    def factory():
        app = SandboxApplication(db_url, args.bus_url, provinces=settings.phases, credentials=credentials)
        app.peers.login = consumer_login(settings)   # the simulated systems call the bus as its consumers
        return app

    run_gunicorn(factory, host, port, workers=1, threads=args.threads, name="bssbus-sandbox")  # many peers, one process
    return 0


def consumer_login(settings):
    """How the sandbox's systems, `bssbus call` and the demo authenticate to the bus: as the
    consumer a request speaks for (its ORIG_DOMAIN, a bank's BANK_CODE), with the credentials
    of the environment or the secrets file (none known: the call goes anonymous)."""
    import os

    from bus.security import load_consumers, login_for, read_secrets
    section = settings.section("security")
    secrets = read_secrets(os.environ.get("BSSBUS_SECRETS_FILE") or section.get("secrets_file"))
    return login_for(load_consumers(settings.section("consumers"), secrets, os.environ))


def cmd_hash_password(args) -> int:
    import os

    from bus.security import hash_password
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise CliError(f"${args.password_env} is not set")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise CliError("no password given (standard input was empty)")
    print(f"password_hash: {hash_password(password)}")
    return 0


# -- call ---------------------------------------------------------------------------------
def cmd_call(args) -> int:
    from services.client import BusClient
    from services.models import CONTRACTS

    if args.service not in CONTRACTS:
        raise CliError(f"unknown service {args.service!r}; known: {', '.join(CONTRACTS)}")
    if args.operation not in CONTRACTS[args.service].operations:
        raise CliError(f"{args.service} has no operation {args.operation!r}; it has "
                       f"{', '.join(CONTRACTS[args.service].operations)}")
    try:
        with open(args.args, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CliError(f"argument file {args.args} does not exist") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"argument file {args.args} is not JSON: {exc}") from None
    except RecursionError:
        raise CliError(f"argument file {args.args} nests too deeply to be a request") from None
    if not isinstance(data, dict) or set(data) - {"UNI_BSS_HEAD", "UNI_BSS_BODY"}:
        raise CliError("the argument file must be an object with UNI_BSS_HEAD and UNI_BSS_BODY")
    try:
        result = BusClient(args.url, login=consumer_login(_settings(args))).call(args.service, args.operation, data)
    except (TypeError, ValueError) as exc:  # zeep refuses arguments that do not fit the contract
        raise CliError(f"the arguments do not fit {args.service}.{args.operation}: {exc}") from None
    except OSError as exc:
        raise CliError(f"cannot reach the bus at {args.url}: {exc}") from None
    if args.json:
        _print_json({"fault": {"code": result.fault_code, "string": result.fault_string}
                     if result.fault_code else None,
                     "UNI_BSS_HEAD": result.head, "UNI_BSS_BODY": result.body,
                     "elapsed_ms": round(result.elapsed_ms, 1)})
    elif result.fault_code:
        print(f"FAULT {result.fault_code}: {result.fault_string}")
    else:
        rsp = (result.head or {}).get("RESPONSE") or {}
        print(f"{rsp.get('RSP_CODE')} {rsp.get('RSP_DESC', '')} - answered by {result.sender} "
              f"in {result.elapsed_ms:.0f} ms")
        _print_json(result.body)
    return 1 if result.fault_code else 0


# -- routes -------------------------------------------------------------------------------
def effective_routes(settings: Settings, phases: dict[str, int]) -> dict:
    """The route table as data: each route's target per phase, and each province's phase
    (``phases``: the live cut-over table; where it differs from the config, both are shown)."""
    from bus.router import Route
    routes = [Route.from_config(r) for r in settings.routes]
    peers = settings.raw.get("peers") or {}
    out = {"routes": [], "provinces": []}
    for r in routes:
        out["routes"].append({"name": r.name, "service": r.service,
                              "operations": sorted(r.operations) or "all",
                              "caller": r.caller or "any", "target": r.describe_target(),
                              "delivery": r.delivery})
    configured = settings.phases
    for code, phase in sorted(phases.items()):
        targets = {}
        for r in routes:
            peer = r.target_for(phase)
            targets[r.name] = str(peers.get(peer, {}).get("name", peer)).format(province=code)
        out["provinces"].append({"province": code, "phase": phase, "config_phase": configured.get(code),
                                 "targets": targets})
    return out


def routes_markdown(settings: Settings) -> str:
    """The routes document (docs/ROUTES.md): every service and operation, with its caller and
    its target in each phase, generated from the configuration."""
    from bus.router import Route
    from services.models import CONTRACTS

    routes = [Route.from_config(r) for r in settings.routes]
    peers = settings.raw.get("peers") or {}

    def name(key):
        return str(peers.get(key, {}).get("name", key)).replace("{province}", "<prov>")

    def targets(route, phase):
        out = [name(route.target_for(phase))]
        for r in route.also:
            key = r.target.get(phase) if isinstance(r.target, dict) else r.target
            if key:
                out.append(f"{name(key)}" + (f" (if {r.when})" if r.when else ""))
        return " + ".join(out)

    lines = ["# Routes", "",
             "Generated from config/bus.yaml by `bssbus routes --markdown`; a test keeps it current.",
             "Phase 2: the province's own systems; phase 3: HQ systems. `<prov>` is the province the",
             "message is routed to (its ROUTE_VALUE, or the home province of its phone number).",
             "Delivery `sync`: the bus calls the target while the caller waits and returns its answer.",
             "Delivery `store-and-forward`: the bus stores the message and answers at once: RSP_CODE 0000,",
             "RSP_DESC \"Accepted: the bus delivers it to <peers>.\", MSG_SENDER BUS and no UNI_BSS_BODY;",
             "its Forwarder then delivers it to each target with retries (one user's messages in order).", "",
             "| service | operation | caller (ORIG_DOMAIN) | phase 2 target | phase 3 target | delivery | route |",
             "|---|---|---|---|---|---|---|"]
    for service, contract in CONTRACTS.items():
        for operation in contract.operations:
            matching = [r for r in routes if r.service == service
                        and (not r.operations or operation in r.operations)]
            if not matching:
                lines.append(f"| {service} | {operation} | - | no route | no route | - | - |")
            for r in matching:
                lines.append(f"| {service} | {operation} | {r.caller or 'any'} | {targets(r, 2)} | "
                             f"{targets(r, 3)} | {r.delivery} | {r.name} |")
    return "\n".join(lines) + "\n"


def open_phase_store(settings: Settings):
    """The cut-over table of the configured database, seeded from the config."""
    from dao.db import open_database
    from dao.phases import PhaseStore
    store = PhaseStore(open_database(settings.db_url))
    store.seed(settings.phases)
    return store


def cmd_routes(args) -> int:
    settings = _settings(args)
    if args.markdown:
        sys.stdout.write(routes_markdown(settings))
        return 0
    data = effective_routes(settings, open_phase_store(settings).load())
    if args.json:
        _print_json(data)
        return 0
    print("Routes (first match wins):")
    for r in data["routes"]:
        ops = r["operations"] if isinstance(r["operations"], str) else ",".join(r["operations"])
        saf = " (store and forward)" if r["delivery"] != "sync" else ""
        print(f"  {r['name']:<28} {r['service'] + '.' + ops:<44} caller={r['caller']:<6} -> {r['target']}{saf}")
    by_phase = [r["name"] for r in data["routes"] if "phase" in r["target"]]
    print("\nProvinces (phase 2: province systems, phase 3: HQ systems), and where the routes that "
          "follow the phase send their traffic:")
    for p in data["provinces"]:
        moved = "*" if p["config_phase"] != p["phase"] else " "
        peers = sorted({p["targets"][n] for n in by_phase})
        print(f"  {p['province']:<4} phase {p['phase']}{moved} -> {', '.join(peers)}")
    if any(p["config_phase"] != p["phase"] for p in data["provinces"]):
        print("  * changed at run time (bssbus phase history); config/bus.yaml says otherwise")
    return 0


def cmd_phase(args) -> int:
    settings = _settings(args)
    store = open_phase_store(settings)
    if args.action == "set":
        if args.phase not in (2, 3):
            raise CliError(f"phase must be 2 (province Billing) or 3 (HQ Billing), not {args.phase}")
        old = store.set(args.province, args.phase, args.by, args.reason)
        print(f"province {args.province}: phase {old} -> {args.phase} (by {args.by}); every bus process "
              f"follows within {settings.phase_refresh_seconds:g} s")
        return 0
    rows = store.history(args.province, args.limit)
    if args.json:
        _print_json(rows)
    for r in rows if not args.json else []:
        print(f"{r['changed_at']:%Y-%m-%d %H:%M:%S} province {r['province']}: phase {r['old_phase']} -> "
              f"{r['new_phase']} by {r['changed_by']}" + (f" ({r['reason']})" if r["reason"] else ""))
    return 0


# -- journal ------------------------------------------------------------------------------
def format_hop(row: dict, indent: str = "", masked: bool = True) -> str:
    """One journal hop as a line: time, caller -> BUS or BUS => peer, operation, result, duration
    (and its reason, personal data masked unless ``masked`` is false)."""
    when = row["started_at"].strftime("%H:%M:%S.%f")[:-3] if row.get("started_at") else ""
    if row["direction"] == "in":
        who = f"{row.get('source') or '?'} -> BUS"
    else:
        who = f"BUS => {row.get('target') or '?'}"
    result = row.get("fault_code") or (row["status"] if row["status"] in ("accepted", "duplicate") else None) \
        or row.get("rsp_code") or row["status"]
    ms = f"{row['elapsed_ms']:.0f} ms" if row.get("elapsed_ms") is not None else ""
    op = f"{row.get('service')}.{row.get('operation')}"
    line = f"{indent}{when} {who:<20} {op:<30} {result:<8} {ms:>7}  TRANS_IDO={row.get('trans_ido')}"
    if row.get("error"):
        from bus.privacy import policy
        reason = policy().mask_text(row["error"]) if masked else row["error"]
        line += f"\n{indent}{'':13}reason: {reason}"
    return line


def _unmasked_viewer(args, settings: Settings) -> str:
    """The operator asking for unmasked output, if their roles allow it; else a CliError."""
    from bus.operators import RAW_READER, AccessDenied, Operators, named_operator
    try:
        return Operators.from_settings(settings).authorize(named_operator(args.operator), RAW_READER).name
    except AccessDenied as exc:
        raise CliError(f"unmasked output refused: {exc}") from None


def cmd_journal(args) -> int:
    """Hops as lines or JSON, personal data masked (bus/privacy.py); ``show --raw`` adds the
    raw XML, masked too, and ``--unmasked`` shows it as it was to an operator allowed to see it."""
    from bus.operators import audit_unmasked
    from bus.privacy import decode_xml, policy
    from dao.db import open_database
    from dao.journal import Journal, JournalCipher

    if args.action == "keygen":
        print(JournalCipher.new_key())
        return 0
    settings = _settings(args)
    raw, unmasked = getattr(args, "raw", False), getattr(args, "unmasked", False)
    if unmasked and not raw:
        raise CliError("--unmasked shows the raw messages: give --raw with it")
    operator = _unmasked_viewer(args, settings) if unmasked else None
    if args.action == "search":
        since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
        if args.limit < 1:
            raise CliError("--limit must be at least 1")
        if since and until and since >= until:
            raise CliError("--since must be before --until")
    engine = open_database(settings.db_url)
    journal = Journal(engine)   # an unreadable row: JournalKeyError, one line
    if args.action == "trace":
        return _trace(args, journal, engine)
    if args.action == "show":
        rows = journal.hops(args.key)
        if not rows:
            raise CliError(f"no message with TRANS_IDO, PROC_ID or id {args.key!r} in the journal")
    else:
        rows = journal.search(since=since, until=until, limit=args.limit,
                              **{key: getattr(args, key) for key in journal.SEARCH_KEYS})
    if operator:
        audit_unmasked(journal, operator, rows, f"journal of {args.key}")
        rows = [dict(r, **{k: decode_xml(r[k]) for k in ("request", "response") if r.get(k) is not None})
                for r in rows]
    else:
        masking = policy()
        rows = [masking.mask_hop(r) for r in rows]
    if args.json:
        _print_json([{k: v for k, v in r.items() if raw or k not in ("request", "response")} for r in rows])
    elif args.action == "search":
        for line in search_table(rows):
            print(line)
        if not rows:
            print("no hop matches (`bssbus journal search --help` lists the keys)")
    else:
        for row in rows:
            print(format_hop(row, masked=False))   # masked above, unless asked otherwise
            for key in ("request", "response") if raw else ():
                if row.get(key):
                    print(f"    {key}: {row[key]}")
    return 0


SEARCH_COLUMNS = (("time (UTC)", 23), ("dir", 3), ("service.operation", 30), ("from", 6), ("to", 10),
                  ("result", 16), ("ms", 6), ("TRANS_IDO", 28), ("keys", 0))


def search_table(rows: list[dict]) -> list[str]:
    """Hops as a table: one line each, newest first (as found), personal data masked already."""
    def cells(row):
        when = row["started_at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if row.get("started_at") else ""
        result = " ".join(str(v) for v in (row["status"], row.get("fault_code") or row.get("rsp_code")) if v)
        ms = f"{row['elapsed_ms']:.0f}" if row.get("elapsed_ms") is not None else ""
        keys = " ".join(f"{label}={row[k]}" for label, k in (("number", "msisdn"), ("serial", "serial"),
                                                              ("order", "order_id"), ("PROC_ID", "proc_id"))
                        if row.get(k))
        return (when, row["direction"], f"{row.get('service')}.{row.get('operation')}", row.get("source") or "",
                row.get("target") or "", result, ms, row.get("trans_ido") or "", keys)

    def line(values):
        return "  ".join(str(v).rjust(w) if name == "ms" else str(v).ljust(w)
                         for (name, w), v in zip(SEARCH_COLUMNS, values)).rstrip()
    if not rows:
        return []
    return [line(name for name, _ in SEARCH_COLUMNS)] + [line(cells(r)) for r in rows]


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _moment(text: str | None, flag: str):
    """A --since/--until value: ISO 8601 (a date, or a date and time; UTC unless it carries an
    offset) or an age back from now: 90s, 15m, 2h, 3d, 1w."""
    from dao.db import as_utc
    from datetime import datetime, timedelta, timezone
    if not text:
        return None
    text = text.strip()
    try:
        if text[:-1].isdigit() and text[-1:].lower() in _UNITS:
            return datetime.now(timezone.utc) - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1].lower()])
        moment = datetime.fromisoformat(text)
        return as_utc(moment)
    except OverflowError:
        raise CliError(f"{flag} {text!r} is out of range: give a time after the year 1 and before 9999") from None
    except ValueError:
        raise CliError(f"{flag} {text!r}: give an ISO time (2026-11-27, 2026-11-27T10:30, "
                       "2026-11-27T18:30+08:00) or an age such as 30m, 2h, 3d") from None


def _trace(args, journal, engine) -> int:
    """`journal trace KEY`: the timeline of a flow (bus/trace.py), personal data masked."""
    from bus.privacy import policy
    from bus.trace import render, timeline
    from dao.outbox import OutboxStore
    hops = journal.trace(args.key)
    if not hops:
        raise CliError(f"no message with PROC_ID, TRANS_IDO or id {args.key!r} in the journal "
                       "(`bssbus journal search` finds one by number, serial, order id or time)")
    masking = policy()
    hops = [masking.mask_hop(h) for h in hops]
    trace = timeline(hops, OutboxStore(engine).of_messages(h["msg_id"] for h in hops), mask=masking.mask_text)
    if args.json:
        _print_json(dict(key=args.key, **trace))
    else:
        for line in render(trace, args.key):
            print(line)
    return 0


def cmd_dlq(args) -> int:
    from bus.operators import audit_unmasked
    from bus.outbox import replay_dead_letter
    from bus.privacy import policy
    from dao.db import open_database
    from dao.journal import Journal
    from dao.outbox import DEAD, OutboxStore

    settings = _settings(args)
    operator = _unmasked_viewer(args, settings) if getattr(args, "unmasked", False) else None
    engine = open_database(settings.db_url)
    outbox, journal, masking = OutboxStore(engine), Journal(engine), policy()
    if args.action == "list":
        rows = [dict(r, last_error=masking.mask_text(r["last_error"]))
                for r in outbox.list(args.status, args.peer, args.limit)]
        if args.json:
            _print_json([{k: v for k, v in r.items() if k != "message"} for r in rows])
        for r in rows if not args.json else []:
            answered = f" answered {r['rsp_code']}" if r["rsp_code"] else ""
            print(f"{r['id']:>6} {r['status']:<9} {r['service']}.{r['operation']:<22} -> {r['peer_name']:<12} "
                  f"attempts={r['attempts']}{answered} TRANS_IDO={r['trans_ido']}  {r['last_error'] or ''}")
        if not rows and not args.json:
            print(f"no {args.status or ''} messages".replace("  ", " "))
        return 0
    if args.action == "show":
        row = outbox.get(args.id)
        if row is None:
            raise CliError(f"no outbox message {args.id}")
        message = json.loads(row["message"])
        if operator:
            audit_unmasked(journal, operator, [dict(row, proc_id=message.get("head", {}).get("PROC_ID"))],
                            f"outbox message {row['id']}")
        else:
            known = masking.personal_values(message)
            message = masking.mask_data(message, known)
            row = dict(row, last_error=masking.mask_text(row["last_error"], known))
        _print_json(dict(row, message=message, waiting_behind=outbox.waiting_behind(row)))
        return 0
    if args.action == "discard":
        return _discard(args, outbox, journal)
    # replay
    if args.all:
        rows = outbox.list(DEAD, args.target, limit=100000)
    else:
        if not args.ids:
            raise CliError("name the dead letters to replay (IDs), or --all [--target PEER]")
        rows = [outbox.get(i) for i in args.ids]
        missing = [i for i, r in zip(args.ids, rows) if r is None or r["status"] != DEAD]
        if missing:
            raise CliError(f"not dead letters: {', '.join(map(str, missing))} (see `bssbus dlq list`)")
    for row in rows:
        if args.dry_run:
            print(f"would replay {row['id']}: {row['service']}.{row['operation']} -> {row['peer_name']} "
                  f"(TRANS_IDO {row['trans_ido']})")
            continue
        if replay_dead_letter(outbox, journal, row, args.by):
            print(f"replayed {row['id']}: {row['service']}.{row['operation']} -> {row['peer_name']}")
    if not rows:
        print("no dead letters to replay")
    return 0


def _discard(args, outbox, journal) -> int:
    """Give dead letters up, so that their users' later messages go on; journalled."""
    from bus.outbox import discard_dead_letter
    from dao.outbox import DEAD
    rows = [outbox.get(i) for i in args.ids]
    missing = [i for i, r in zip(args.ids, rows) if r is None or r["status"] != DEAD]
    if missing:
        raise CliError(f"not dead letters: {', '.join(map(str, missing))} (see `bssbus dlq list`)")
    for row in rows:
        behind = outbox.waiting_behind(row)
        what = (f"{row['id']}: {row['service']}.{row['operation']} -> {row['peer_name']} "
                f"(TRANS_IDO {row['trans_ido']}; {behind} later message(s) of its user go on)")
        if args.dry_run:
            print(f"would discard {what}")
            continue
        if discard_dead_letter(outbox, journal, row, args.by, args.reason):
            print(f"discarded {what}")
    return 0


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, name: str, stream=None):
        self.name, self.stream = name, stream or sys.stderr
        self.live = self.stream.isatty()
        self.total = None

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.live:
            return
        if stage == "read" and total:
            self.total = total
        total = total or (self.total if stage == "read" else None)
        if total:
            filled = min(30, 30 * done // max(total, 1))
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,}"
        else:
            bar = f"{done:,}"
        self.stream.write(f"\r{self.name}: {stage:<8} {bar}\033[K")
        self.stream.flush()

    def end(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def cmd_reconcile(args) -> int:
    """Reconcile one bank file by hand, or list batches and their discrepancies."""
    from bus.core import Bus
    from bus.reconcile import LeaseHeld, ReconcileError, Reconciler
    from dao.db import open_database
    from dao.reconcile import ReconStore

    settings = _settings(args)
    if args.abandon is not None:
        try:
            batch = ReconStore(open_database(settings.db_url)).abandon(
                args.abandon, f"given up by hand: {args.reason}" if args.reason else "given up by hand")
        except ValueError as exc:
            raise CliError(str(exc)) from None
        print(f"batch {batch['id']} ({batch['file_name']}) abandoned: its day takes a new file")
        return 0
    if args.batches or args.show is not None:
        store = ReconStore(open_database(settings.db_url))
        if args.show is not None:
            batch = store.get(args.show)
            if batch is None:
                raise CliError(f"no reconciliation batch {args.show}")
            items = store.items(args.show)
            if args.json:
                _print_json({"batch": batch, "items": items})
                return 0
            print(_batch_line(batch))
            for i in items:
                amounts = f"bank {i['bank_amount'] if i['bank_amount'] is not None else '-'} / billing " \
                          f"{i['billing_amount'] if i['billing_amount'] is not None else '-'}"
                print(f"  {i['bank_serial']}  {i['outcome']:<12} {i['action']:<7} {i['state']:<7} {amounts}  "
                      f"{i['detail'] or ''}")
            return 0
        batches = store.batches(args.limit, args.bank)
        if args.json:
            _print_json(batches)
        for batch in batches if not args.json else ():
            print(_batch_line(batch))
        return 0
    if not args.file:
        raise CliError("give a bank file (BANK_YYYYMMDD.txt), or --batches, or --show BATCH")
    if not os.path.isfile(args.file):
        raise CliError(f"{args.file}: no such file")
    _peers_reachable(settings, args.sandbox_url)
    settings.peers   # a peer address that cannot be built: one line, now
    bus = Bus(settings).start(forwarder=False)
    progress, name = Progress(os.path.basename(args.file)), os.path.basename(args.file)
    reconciler = Reconciler(bus)
    try:
        if args.dry_run:   # reads only: no lease needed
            report = reconciler.run(args.file, dry_run=True, by_hand=True, progress=progress)
        else:              # one reconciling process at a time: the scheduled job of a running bus waits
            owner = f"bssbus reconcile:{os.getpid()}"
            with reconciler.leased(owner) as keep:
                report = reconciler.run(args.file, by_hand=True,
                                        progress=lambda *step: (keep(), progress(*step)))
    except LeaseHeld as exc:
        raise CliError(f"{exc}; try again in a minute") from None
    except ReconcileError as exc:
        raise CliError(f"{name}: {exc}; run it again (a correction handed over already is not posted twice)") \
            from None
    except OSError as exc:
        raise CliError(f"{name}: {exc.strerror or exc}: {exc.filename or ''}") from None
    finally:
        progress.end()
        bus.stop()
    if args.json:
        _print_json({k: v for k, v in vars(report).items() if k != "items" or args.dry_run})
    else:
        print(report.summary())
        if args.dry_run:
            for item in report.items:
                print(f"  would {item['action']:<7} {item['bank_serial']}  {item['outcome']:<12} {item['detail']}")
        elif report.state == "done":
            print("the corrections are in the outbox; the running bus delivers them (bssbus dlq list --status "
                  "pending shows those waiting)")
    return 1 if report.state == "rejected" else 0


def _batch_line(batch: dict) -> str:
    counts = ", ".join(f"{name} {batch[f'{name}_count']}" for name in ("balanced", "bank_only", "billing_only",
                                                                       "mismatch") if batch.get(f"{name}_count"))
    when = f"{batch['started_at']:%Y-%m-%d %H:%M}" if batch.get("started_at") else ""
    why = f"  {batch['reason']}" if batch.get("reason") else ""
    return (f"{batch['id']:>6}  {when}  {batch['file_name']}  {batch['state']:<9} {batch['lines'] or 0} lines  "
            f"{counts}{why}")


def cmd_make_bank_file(args) -> int:
    """Write a realistic bank file and store the billing's side of its day in the sandbox."""
    from datetime import datetime

    from bus.bankfile import NAME
    from sandbox.bankfiles import listable, make_bank_day, parse_discrepancies, spread
    from sandbox.store import open_store

    settings = _settings(args)
    if not NAME.fullmatch(f"{args.bank}_{args.date}.txt"):
        raise CliError("--bank is 2..10 of A-Z and 0-9, --date YYYYMMDD")
    try:
        datetime.strptime(args.date, "%Y%m%d")
    except ValueError:
        raise CliError(f"--date {args.date} is not a date (YYYYMMDD)") from None
    if args.lines < 1 or not 0 <= args.rate <= 1:
        raise CliError("--lines is at least 1, --rate between 0 and 1")
    try:
        planted = parse_discrepancies(args.discrepancies) if args.discrepancies else spread(
            round(args.lines * args.rate))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    phases = _live_phases(settings)

    out = args.out or str(settings.folder(settings.section("files").get("reconciliation", {}).get(
        "folder", "{data_dir}/reconciliation")) / args.bank / "inbox")
    os.makedirs(out, exist_ok=True)
    engine = open_store(args.sandbox_db_url or settings.sandbox_db_url, settings.phases)
    try:
        day = make_bank_day(engine, out, args.bank, args.date, args.lines, phases, planted, seed=args.seed,
                            broken=args.broken, listable=listable(settings, phases))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"{day.path}: {day.lines:,} lines, {day.amount:,} fen; billing side: {day.billing_rows:,} transactions")
    for kind, serials in day.planted.items():
        print(f"  {kind}: {len(serials)}" + (f" ({', '.join(serials[:3])}{', ...' if len(serials) > 3 else ''})"
                                              if serials else ""))
    return 0


def _live_phases(settings: Settings) -> dict[str, int]:
    """The cut-over table of the bus's database (bssbus phase set), else the configuration's."""
    from dao.db import open_database
    from dao.phases import PhaseStore
    store = PhaseStore(open_database(settings.db_url))
    store.seed(settings.phases)
    return store.load()


# -- CDR files ----------------------------------------------------------------------------------
def cmd_cdr(args) -> int:
    """Distribute one CDR file by hand (the same state machine and idempotency key as the
    scheduled job, under its lease); print each target's count and sum, and the rejects."""
    import socket
    from pathlib import Path

    from bus.bankfile import md5_of
    from bus.cdr import CHK, SUFFIX, CdrError, CdrJob, read_chk
    from dao.db import open_database
    from dao.leases import LeaseStore

    settings = _settings(args)
    path = Path(args.file)
    if not path.exists():
        raise CliError(f"CDR file {path} does not exist")
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    if not path.name.endswith(SUFFIX) or path.name.startswith("."):
        raise CliError(f"{path.name} is not a CDR file name (<name>{SUFFIX})")
    out = Path(args.out) if args.out else settings.cdr_files.outbound
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is not a folder")
    engine = open_database(settings.db_url)
    job = CdrJob(settings, engine, owner=f"cli:{socket.gethostname()}:{os.getpid()}")
    try:
        if args.dry_run:
            outcome = job.distributor().dry_run(path)
        else:
            chk, md5 = path.with_name(path.name + CHK), None
            if chk.exists():
                md5 = read_chk(chk)
                actual = md5_of(path)
                if actual != md5:
                    raise CliError(f"checksum mismatch: {chk.name} says {md5}, the file's MD5 is {actual}")
            if not job.acquire():
                holder = next((l["owner"] for l in LeaseStore(engine).all() if l["name"] == "cdr"), "?")
                raise CliError(f"the CDR job is running in {holder}; try again when its pass ends")
            outcome, summary = None, "failed"
            try:
                outcome = job.distributor().distribute(path, out, md5)
                summary = outcome.line()
            finally:
                job.release(f"by hand: {summary}")
    except CdrError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    if args.json:
        _print_json(outcome.__dict__ | {"out": str(out.resolve())})
        return 0
    placed = sum(t["count"] for t in outcome.targets.values())
    print(f"{outcome.file} (MD5 {outcome.md5}): {outcome.result}: {outcome.records} records = {placed} to "
          f"{len(outcome.targets)} targets + {outcome.rejects} rejected")
    print(f"  {'target':<14} {'records':>9} {'sum fen':>14}  file")
    where = "" if args.dry_run else f"{out.resolve()}/"
    for target, t in outcome.targets.items():
        print(f"  {target:<14} {t['count']:>9} {t['sum']:>14}  {where + t['file'] if t['file'] else '-'}")
    if outcome.rejected:
        r = outcome.rejected
        print(f"  {'REJECTED':<14} {r['count']:>9} {'-':>14}  {where + r['file'] if r['file'] else '-'}")
        for reason, count in sorted(r["reasons"].items(), key=lambda kv: -kv[1]):
            print(f"    {count:>9}  {reason}")
    return 0


def cmd_make_cdr_file(args) -> int:
    from pathlib import Path

    from bus.segments import SegmentError, SegmentTable
    from sandbox.cdrfiles import make_cdr_file

    settings = _settings(args)
    for flag in ("records", "unknown", "malformed"):
        if getattr(args, flag) < 0:
            raise CliError(f"--{flag} cannot be negative")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is not a folder")
    try:
        table = SegmentTable.from_files(settings.segments_file, settings.overrides_file)
        info = make_cdr_file(out, args.records, table=table, unknown=args.unknown, malformed=args.malformed,
                             seed=args.seed, name=args.name, crlf=args.crlf)
    except SegmentError:
        raise
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(f"{info['file']}: {info['records']} records ({info['unknown']} unknown numbers, "
          f"{info['malformed']} malformed lines), MD5 {info['md5']} in {Path(info['file']).name}.chk")
    return 0


# -- soapui-project -------------------------------------------------------------------------
def default_endpoint(settings: Settings) -> str:
    """Where the configured bus serves: `bssbus serve`'s address (https with server.tls)."""
    tls = (settings.section("server") or {}).get("tls") or os.environ.get("BSSBUS_TLS_CERT")
    return f"{'https' if tls else 'http'}://{settings.host}:{settings.port}"


def cmd_soapui_project(args) -> int:
    from bus.security import load_consumers
    from services.soapui import soapui_project

    settings = _settings(args)
    endpoint = (args.endpoint or default_endpoint(settings)).rstrip("/")
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", endpoint):
        raise CliError(f"--endpoint {endpoint!r} is not an http:// or https:// URL")
    consumers = load_consumers(settings.section("consumers"), {}, {})   # ids and domains; no secret
    data = soapui_project(endpoint, consumers)
    try:
        with open(args.output, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}: a SoapUI project calling {endpoint}/ws/<Service>; fill in the project "
          "properties <ID>_PASSWORD of the consumers you call as")
    return 0


def cmd_check_config(args) -> int:
    """Every problem of the configuration on a line (``where: what``), then a summary; 0 when
    the bus would start with it, 1 when not."""
    from bus.config_check import check_config
    report = check_config(args.config, sandbox=not args.no_sandbox)
    for problem in report.errors:
        print(problem)
    for problem in report.warnings:
        print(f"warning: {problem}")
    print(report.summary())
    return 0 if report.ok else 1


def cmd_demo(args) -> int:
    from bus.demo import run_demo
    return run_demo(_settings(args), url=args.url, as_json=args.json)


# -- parser -------------------------------------------------------------------------------
def cmd_stats(args) -> int:
    """Daily figures per province from the journal (bus/stats.py): a table, --json or --csv."""
    from datetime import timedelta

    from bus.stats import StatsError, daily_stats, local_today, parse_day
    from config.settings import parse_utc_offset
    from dao.db import open_database

    settings = _settings(args)
    tz = parse_utc_offset(args.tz, "--tz") if args.tz else settings.stats_timezone
    try:
        until = parse_day(args.until, "--until", tz, default=local_today(tz))
        since = parse_day(args.since, "--since", tz, default=until - timedelta(days=6))
        if since > until:
            raise CliError(f"--since {since} is after --until {until}")
        if args.province is not None and not re.fullmatch(r"\d{2}", args.province):
            raise CliError(f"--province {args.province!r}: give a two-digit province code such as 51")
        report = daily_stats(open_database(settings.db_url), since, until, tz, args.province)
    except StatsError as exc:
        raise CliError(str(exc)) from None
    if args.csv == "-":
        report.write_csv(sys.stdout)
        return 0
    if args.csv:
        try:
            with open(args.csv, "w", encoding="utf-8", newline="") as out:
                report.write_csv(out)
        except OSError as exc:
            raise CliError(f"--csv {args.csv}: {exc.strerror or exc}") from None
    if args.json:
        _print_json(report.as_dict())
    else:
        for line in report.table():
            print(line)
        if args.csv:
            print(f"written to {args.csv}: {len(report.rows)} row(s) and a header")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="a YAML file merged over config/bus.yaml (also $BSSBUS_CONFIG)")
    parser = argparse.ArgumentParser(
        prog="bssbus", description="SOAP service bus for the operator's BSS: routes contract-first SOAP "
        "services between e-sales, HQ CRM, HQ Billing, province CRMs and Billings, top-up and banks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the bus (and the sandbox peers) under gunicorn",
                       description="Run the bus on --host/--port (127.0.0.1:8080). Unless --no-sandbox, "
                       "the sandbox peers start too, on a free loopback port, and the peers point at them.")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--no-sandbox", action="store_true", help="do not start the sandbox; peers come from the config")
    p.add_argument("--db-url", help="journal database URL (default: SQLite under var/; also $BSSBUS_DB_URL)")
    p.add_argument("--workers", type=int, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, help="threads per worker")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "check-config", parents=[common], help="check the configuration; list every problem",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check config/bus.yaml merged with --config FILE (or $BSSBUS_CONFIG) and the BSSBUS_* "
        "variables, with the number segments and overrides it names, and print every problem on a line as "
        "'where: what': a YAML path such as routes[3] (bank-payment).target, or FILE:LINE of a CSV file, "
        "with \"did you mean ...\" where a name is close to a known one. It finds unknown sections and "
        "settings, routes naming unknown peers, services or operations, routes without a service or a "
        "target, consumers naming unknown services, provinces used without a phase, phases other than 2 "
        "and 3, bad or overlapping number segments, peer passwords that are not set (named by their "
        "variable or file, never shown) and every value the bus refuses. Warnings (legal, but probably "
        "not meant) follow, as 'warning: where: what'.\n\n"
        "Exit status: 0 when the configuration is valid (it prints 'configuration OK: N routes, ...'), "
        "1 when it is not; `bssbus serve` and `bssbus sandbox` refuse to start on the same problems.")
    p.add_argument("--no-sandbox", action="store_true",
                   help="check as for `bssbus serve --no-sandbox`: peers at {sandbox} need $BSSBUS_SANDBOX_URL")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("sandbox", parents=[common], help="run the simulated peers alone",
                       description="Serve every simulated peer at /peers/<kind>[/<province>]/<Service>: "
                       "hq_crm, hq_billing, topup, province_crm/<code>, province_billing/<code>.")
    p.add_argument("--host")
    p.add_argument("--port", type=int, help="default 8090")
    p.add_argument("--db-url", help="the sandbox's state database (default: SQLite under var/)")
    p.add_argument("--bus-url", help="the bus, for peers that call on through it (HQ CRM -> province CRM)")
    p.add_argument("--threads", type=int, default=128,
                   help="calls the sandbox answers at once (one process; default 128): a peer made slow "
                        "with /control holds one thread per call")
    p.set_defaults(func=cmd_sandbox)
    ssub = p.add_subparsers(dest="action", metavar="ACTION",
                            help="without one: serve the peers; make-bank-file, make-cdr-file: write test files")
    mk = ssub.add_parser("make-cdr-file", parents=[common], help="write a realistic CDR file and its .chk",
                         description="Write <name>.cdr (one call a line: MSISDN|YYYYMMDDHHMMSS|duration|"
                         "type|charge fen) with numbers from the segment table across all 31 provinces, "
                         "--unknown numbers of no segment and --malformed lines planted, then its .chk "
                         "(MD5). The same --seed gives the same file.")
    mk.add_argument("--records", type=int, required=True, help="lines in the file, planted ones included")
    mk.add_argument("--out", required=True, metavar="DIR", help="the folder to write into (an inbound folder is fine)")
    mk.add_argument("--unknown", type=int, default=0, metavar="K", help="numbers in no segment (default 0)")
    mk.add_argument("--malformed", type=int, default=0, metavar="M", help="malformed lines (default 0)")
    mk.add_argument("--seed", type=int, default=1)
    mk.add_argument("--name", help="the file name (default HQCDR<date><seed>.cdr)")
    mk.add_argument("--crlf", action="store_true", help="CRLF line ends")
    mk.set_defaults(func=cmd_make_cdr_file)

    q = ssub.add_parser("make-bank-file", parents=[common], help="write a bank reconciliation file with planted "
                        "discrepancies, and the billing's side of its day",
                        description="Write <BANK>_<DATE>.txt and its .chk (GBK, CRLF; ../shared/DOMAIN.md) into "
                        "--out (default: that bank's reconciliation inbox), and store the same day in the "
                        "sandbox billings (the province Billing in phase 2, HQ Billing in phase 3, by the bus "
                        "database's cut-over table), replacing what they held of that bank's day, with planted "
                        "discrepancies. Kinds: bank_only, billing_only, amount, bank_reversal, billing_reversal.")
    q.add_argument("--bank", required=True, help="bank code, e.g. ICBC")
    q.add_argument("--date", required=True, help="accounting day YYYYMMDD")
    q.add_argument("--lines", type=int, default=1000, help="transaction lines (default %(default)s)")
    q.add_argument("--discrepancies", metavar="KIND=N,...",
                   help="how many of each kind, e.g. bank_only=3,billing_only=2,amount=1")
    q.add_argument("--rate", type=float, default=0.01,
                   help="without --discrepancies: this share of the lines, spread over every kind (default 0.01)")
    q.add_argument("--broken", choices=("trailer-count", "trailer-sum", "header", "checksum", "duplicate-serial",
                                        "bad-line"), help="make a file the bus must refuse whole")
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--out", metavar="DIR", help="where to write the file")
    q.add_argument("--sandbox-db-url", help="the sandbox's state database (default: the config's)")
    q.add_argument("--db-url", help="the bus's database, for its phases (default: the config's)")
    q.set_defaults(func=cmd_make_bank_file)

    p = sub.add_parser("reconcile", parents=[common], help="reconcile a bank file by hand; list batches",
                       description="Reconcile FILE (<BANK>_<YYYYMMDD>.txt with its .chk beside it) as the "
                       "scheduled job does: compare it with the billings' record of that bank's day, hand the "
                       "corrections to the bus's outbox (the running bus delivers them), write the result file "
                       "into the bank's results folder and archive a copy. The file stays where it is. "
                       "--dry-run compares and prints the actions, and changes nothing. The billings are "
                       "called directly: with sandbox peers, `bssbus serve` must be running. "
                       "Exit status 1 when the file is refused.")
    p.add_argument("file", nargs="?", metavar="FILE")
    p.add_argument("--dry-run", action="store_true",
                   help="show the actions; post nothing and record no batch (the billings' lists are journalled)")
    p.add_argument("--abandon", type=int, metavar="BATCH",
                   help="give up a batch that posted nothing (still comparing), so its day takes a new file")
    p.add_argument("--reason", help="with --abandon: why (kept with the batch)")
    p.add_argument("--batches", action="store_true", help="list the latest batches instead")
    p.add_argument("--show", type=int, metavar="BATCH", help="one batch and its discrepancies")
    p.add_argument("--bank", help="with --batches: only this bank's")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--db-url", help="the bus's database (default: the config's)")
    p.add_argument("--sandbox-url", metavar="URL", help="the sandbox peers (default: the running `bssbus serve`'s)")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("cdr", parents=[common], help="distribute one CDR file by hand",
                       description="Split FILE (<name>.cdr; its .chk checked when present) by the billing "
                       "that owns each number: phase 2 the province's Billing, phase 3 HQ Billing. Writes "
                       "<out>/<TARGET>/<name>.cdr + .chk and <out>/REJECTED/<stem>.rej, and prints each "
                       "target's count and sum and the rejects. The file is remembered by name + MD5: "
                       "a file already distributed is refused. The file itself is not moved.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="the outbound folder (default files.cdr.outbound)")
    p.add_argument("--dry-run", action="store_true", help="count and print only: write and remember nothing")
    p.add_argument("--json", action="store_true")
    p.add_argument("--db-url", help="the bus database (default: the config's)")
    p.set_defaults(func=cmd_cdr)

    p = sub.add_parser("call", parents=[common], help="call one operation through the bus",
                       description="Call SERVICE OPERATION with ARGS.json (the request wrapper's children, "
                       "like wsdl/examples/<Service>.<Operation>.json) and print the answer.")
    p.add_argument("service")
    p.add_argument("operation")
    p.add_argument("args", metavar="ARGS.json")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the bus (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("hash-password", parents=[common], help="print a password hash for the secrets file",
                       description="Read a password from standard input (or --password-env VAR) and print "
                       "the password_hash line for a consumer or an operator (the web console) of the secrets file. "
                       "A consumer stored as a "
                       "hash can send PasswordText or HTTP basic, not PasswordDigest (a digest needs the "
                       "clear password on the bus side).")
    p.add_argument("--password-env", metavar="VAR", help="take the password from this environment variable")
    p.set_defaults(func=cmd_hash_password)

    p = sub.add_parser("demo", parents=[common], help="run the business flows end to end and print each hop",
                       description="Run an order, a card activation, an arrears query, a payment, a "
                       "reversal and a three-account sync for a phase-2 and a phase-3 province. Without "
                       "--url it starts its own bus and sandbox on loopback with a temporary database.")
    p.add_argument("--url", help="use a running bus instead (its journal must be this config's database)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "soapui-project", parents=[common], help="write a SoapUI project of every service, for testers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Write a SoapUI 5 project (File > Import Project in SoapUI) holding every service of the bus: one "
            "interface per WSDL binding (SOAP 1.1 and SOAP 1.2), the contract embedded (WSDL and XSDs as the bus "
            "serves them), and per operation one request filled from wsdl/examples/, posted to "
            "<endpoint>/ws/<Service>.\n\n"
            "Credentials: each request carries a WS-Security UsernameToken (PasswordDigest, Nonce, Created) of the "
            "consumer its example speaks for (config consumers:, by ORIG_DOMAIN and BANK_CODE), configured in the "
            "project's WS-Security configurations (one per consumer, named after it). The passwords are project "
            "properties <ID>_PASSWORD (ICBC_PASSWORD, ESALES_PASSWORD, ...), empty in the file: fill them in "
            "(Project > Custom Properties). A bus with security.authentication off (the sandbox default of `make "
            "serve`) takes the requests without them."))
    p.add_argument("--endpoint", metavar="URL",
                   help="the bus's base URL (default: the configured bus, bus.host and bus.port: "
                        "http://127.0.0.1:8080)")
    p.add_argument("--output", "-o", metavar="FILE", default="bssbus-soapui-project.xml",
                   help="where to write the project (default bssbus-soapui-project.xml)")
    p.set_defaults(func=cmd_soapui_project)

    p = sub.add_parser("routes", parents=[common], help="print the effective route table",
                       description="Print every route and, for each province, its phase (from the "
                       "cut-over table in the bus database) and targets.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true",
                   help="print the routes document (docs/ROUTES.md): every operation's caller and targets")
    p.add_argument("--db-url", help="the bus database (default: the config's)")
    p.set_defaults(func=cmd_routes)

    p = sub.add_parser("phase", parents=[common], help="move a province between phase 2 and 3 at run time",
                       description="`phase set PROVINCE PHASE` changes the cut-over table in the database: "
                       "every running bus process routes that province's new messages by the new phase "
                       "within bus.phase_refresh_seconds; messages in flight keep their route. Each change "
                       "is recorded with who made it and when (`phase history`).")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pset = psub.add_parser("set", parents=[common], help="set a province's phase")
    pset.add_argument("province", help="two-digit province code, e.g. 51")
    pset.add_argument("phase", type=int, help="2 (province Billing) or 3 (HQ Billing)")
    pset.add_argument("--by", default=getpass.getuser(), help="who makes the change (default: %(default)s)")
    pset.add_argument("--reason", help="why, for the audit")
    phist = psub.add_parser("history", parents=[common], help="every phase change, newest first")
    phist.add_argument("province", nargs="?")
    phist.add_argument("--limit", type=int, default=50)
    phist.add_argument("--json", action="store_true")
    for q in (pset, phist):
        q.add_argument("--db-url", help="the bus database (default: the config's)")
        q.set_defaults(func=cmd_phase)

    p = sub.add_parser("dlq", parents=[common], help="list, show and replay dead letters",
                       description="Messages of store-and-forward routes whose delivery attempts are spent "
                       "are dead letters. `dlq list` shows them (or --status pending|delivered), `dlq show ID` "
                       "one of them, `dlq replay ID...` or `dlq replay --all [--target PEER]` sends them "
                       "again (attempts from zero; the replay is journalled). Replaying goes through the "
                       "same idempotency as any delivery, so replaying twice does no harm. A dead letter "
                       "holds its user's later messages (they are delivered in order); `dlq discard ID... "
                       "--reason TEXT` gives it up, journalled, and lets them go on.")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    dlist = dsub.add_parser("list", parents=[common], help="dead letters (or other outbox messages)")
    dlist.add_argument("--status", default="dead", help="dead (default), pending, delivered or discarded")
    dlist.add_argument("--peer", help="only those for this peer, e.g. BILLING-51")
    dlist.add_argument("--limit", type=int, default=100)
    dlist.add_argument("--json", action="store_true")
    dshow = dsub.add_parser("show", parents=[common], help="one outbox message, whole (personal data masked)")
    dshow.add_argument("id", type=int)
    _unmasked_options(dshow)
    dreplay = dsub.add_parser("replay", parents=[common], help="send dead letters again")
    dreplay.add_argument("ids", type=int, nargs="*", metavar="ID")
    dreplay.add_argument("--all", action="store_true", help="every dead letter (of --target)")
    dreplay.add_argument("--target", help="with --all: only those for this peer, e.g. BILLING-51")
    dreplay.add_argument("--dry-run", action="store_true", help="say what would be replayed, change nothing")
    dreplay.add_argument("--by", default=getpass.getuser(), help="who replays, for the audit (default: %(default)s)")
    ddiscard = dsub.add_parser("discard", parents=[common],
                               help="give dead letters up, so their users' later messages go on")
    ddiscard.add_argument("ids", type=int, nargs="+", metavar="ID")
    ddiscard.add_argument("--reason", required=True, help="why, for the audit line in the journal")
    ddiscard.add_argument("--dry-run", action="store_true", help="say what would be discarded, change nothing")
    ddiscard.add_argument("--by", default=getpass.getuser(), help="who discards, for the audit (default: %(default)s)")
    for q in (dlist, dshow, dreplay, ddiscard):
        q.add_argument("--db-url", help="the bus database (default: the config's)")
        q.set_defaults(func=cmd_dlq)

    p = sub.add_parser("journal", parents=[common], help="find messages and show their hops",
                       description="`journal show KEY` prints every hop of the message whose TRANS_IDO, "
                       "PROC_ID or id is KEY; `journal search` lists hops by field and time; `journal "
                       "trace PROC_ID` shows a business flow as a timeline. Personal data is "
                       "masked; `journal show KEY --raw --unmasked --operator NAME` shows it to an operator "
                       "with the role raw-reader, and journals that view. An encrypted journal "
                       "($BSSBUS_JOURNAL_KEY) needs its key to be read.")
    jsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    jshow = jsub.add_parser("show", parents=[common], help="the hops of one message")
    jshow.add_argument("key", metavar="TRANS_IDO")
    jshow.add_argument("--raw", action="store_true",
                       help="print the raw XML of each hop (personal data masked unless --unmasked)")
    _unmasked_options(jshow)
    jsearch = jsub.add_parser(
        "search", parents=[common], help="hops by number, serial, order id, peer, status, time...",
        description="Hops matching every key given, newest first. Each key is indexed, so a search "
        "answers quickly on a large journal. Times are UTC.")
    jsearch.add_argument("--msisdn", metavar="NUMBER", help="the phone number the message is about")
    jsearch.add_argument("--trans-ido", metavar="T", help="one message's TRANS_IDO")
    jsearch.add_argument("--proc-id", metavar="P", help="a business flow's PROC_ID")
    jsearch.add_argument("--serial", "--bank-serial", metavar="S",
                         help="a payment's or reversal's BANK_SERIAL, or a top-up's TOPUP_SERIAL")
    jsearch.add_argument("--order-id", metavar="ID", help="ORDER_ID: an order, its work order and notices")
    jsearch.add_argument("--service", help="e.g. BankPayment")
    jsearch.add_argument("--operation", help="e.g. Pay")
    jsearch.add_argument("--peer", metavar="NAME", help="the peer called (or routed to), e.g. BILLING-51")
    jsearch.add_argument("--status", help="ok, fault, error, accepted, duplicate, received; "
                         "dead, replayed, discarded, unmasked (direction adm)")
    jsearch.add_argument("--direction", choices=("in", "out", "adm"),
                         help="in: from a caller; out: to a peer; adm: dead letters, replays, views")
    jsearch.add_argument("--since", metavar="TIME", help="from TIME: ISO (2026-11-27T10:00, UTC unless "
                         "it has an offset) or an age (30m, 2h, 3d)")
    jsearch.add_argument("--until", metavar="TIME", help="before TIME (same forms as --since)")
    jsearch.add_argument("--limit", type=int, default=50, help="at most this many hops (default 50)")
    jtrace = jsub.add_parser(
        "trace", parents=[common], help="one business flow across all its hops, in time order",
        description="Every hop of the messages of a flow (the PROC_ID they share; or one message by its "
        "TRANS_IDO) as a timeline: each inbound request and its answer, the routing decision (the "
        "route that matched and its target), each call or delivery attempt with its outcome and time, "
        "dead letters, replays and discards, and where each stored copy is now (the outbox). "
        "Personal data is masked.")
    jtrace.add_argument("key", metavar="PROC_ID", help="a PROC_ID (or a TRANS_IDO, or a message id)")
    for q in (jshow, jsearch, jtrace):
        q.add_argument("--json", action="store_true")
        q.add_argument("--db-url", help="the journal database (default: the config's)")
        q.set_defaults(func=cmd_journal)
    jkey = jsub.add_parser("keygen", parents=[common], help="print a new key for $BSSBUS_JOURNAL_KEY",
                           description="Print a new random key for encrypting the journal's raw bytes at "
                           "rest. Rotate by putting the new key first in $BSSBUS_JOURNAL_KEY "
                           "(comma-separated) and keeping the old one after it.")
    jkey.set_defaults(func=cmd_journal)

    p = sub.add_parser(
        "stats", parents=[common], help="daily figures per province from the journal (table, JSON, CSV)",
        description="For each day and province: orders, work orders completed, payments, reversals "
        "and top-ups (count and sum; fen and yuan) and the faults of the calls to each peer, counted "
        "from the journal. Days are those of stats.timezone (+08:00 unless configured) or --tz; "
        "--since and --until are days, both included (the last 7 days by default).")
    p.add_argument("--since", metavar="DAY", help="first day: 2026-11-20, 20261120, today, yesterday or "
                   "days back (7d); default 6 days before --until")
    p.add_argument("--until", metavar="DAY", help="last day, included (same forms); default today")
    p.add_argument("--province", metavar="NN", help="only this province (two-digit code, e.g. 51)")
    p.add_argument("--tz", metavar="OFFSET", help="the days' time zone: +08:00, UTC, Asia/Shanghai... "
                   "(default: stats.timezone)")
    p.add_argument("--csv", metavar="FILE", help="also write the figures as CSV to FILE (- for standard "
                   "output, instead of the table): a header, then a row a day and province")
    p.add_argument("--json", action="store_true")
    p.add_argument("--db-url", help="the journal database (default: the config's)")
    p.set_defaults(func=cmd_stats)
    return parser


def _paragraphs(text: str) -> str:
    """``text`` wrapped for a terminal, its paragraphs (split at blank lines) kept apart."""
    import textwrap
    return "\n\n".join(textwrap.fill(p, 88) for p in text.split("\n\n"))


def _unmasked_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unmasked", action="store_true",
                        help="show personal data as it was: needs an operator with the role raw-reader "
                        "(config operators:); the view is journalled")
    parser.add_argument("--operator", metavar="NAME", help="who you are, for --unmasked (also $BSSBUS_OPERATOR)")


def main(argv=None) -> int:
    logging.basicConfig(level=os.environ.get("BSSBUS_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InvalidConfig as exc:
        for problem in exc.report.errors:
            print(f"bssbus {args.command}: error: {problem}", file=sys.stderr)
        if len(exc.report.errors) > 1:
            print(f"bssbus {args.command}: {len(exc.report.errors)} problems in the configuration; nothing started",
                  file=sys.stderr)
        return 2
    except (CliError, ConfigError) as exc:
        print(f"bssbus {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from dao.journal import JournalKeyError
        if not isinstance(exc, JournalKeyError):
            raise
        print(f"bssbus {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bssbus routes | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
