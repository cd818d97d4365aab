"""Configuration checks: every problem of a configuration at once, each with where it is.

``bssbus check-config`` prints them; ``bssbus serve`` and ``bssbus sandbox`` refuse to start
while there is one. :meth:`Settings.validate` stops at the first problem; this checker goes on
and reports them all: unknown sections and settings, unknown peers, services and operations
named by routes and consumers, provinces used without a phase, phases that are not 2 or 3, bad
or overlapping number segments, credentials the bus cannot read, and every value a parser of
the bus refuses. It reuses those parsers (config/settings.py, bus/router.py, bus/segments.py,
bus/security.py, ...) and wraps their ConfigError, so a rule lives in one place.

A *problem* stops the bus; a *warning* is legal but probably not meant (a route that an earlier
one always wins over, a caller no consumer speaks as, a province with a phase and no segment).
Passwords are never read into a message: a missing one is named by its variable or file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import (
    DEFAULT_CONFIG, PEER_KEYS, PEER_PROVINCE_KEYS, PROJECT_DIR, ConfigError, Settings, did_you_mean,
    load_settings, parse_phase, read_yaml)

#: Settings a section may hold beyond those config/bus.yaml shows (which are all known).
EXTRA_KEYS = {"sandbox": {"url"}, "security": {"rate_limit"}}
#: Sections whose keys are fixed (checked here against config/bus.yaml); the others are maps of
#: names (peers, consumers, provinces, operators) or have a parser that knows its keys.
FIXED_SECTIONS = ("bus", "database", "server", "sandbox", "segments", "security", "housekeeping",
                  "redelivery", "files", "files.reconciliation", "privacy", "logging", "console", "stats")
#: A path at the start of a parser's message ("peers.hq_crm.breaker.failures: ..."): where it is.
_PATH = re.compile(r'((?:[A-Za-z_][\w-]*|"[^"]*")(?:\.(?:[\w-]+|"[^"]*")|\[\d+\])+): (.+)', re.S)
_SANDBOX_PLACEHOLDER = "http://sandbox.invalid"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration: where (a YAML path, or FILE:LINE) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class ConfigReport:
    """What :func:`check_settings` found: problems (the bus does not start), warnings, counts."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    source: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        warned = (f", {len(self.warnings)} warning" + ("s" if len(self.warnings) != 1 else "")
                  if self.warnings else "")
        if self.ok:
            return "configuration OK: " + ", ".join(f"{n} {what[:-1] if n == 1 else what}"
                                                    for what, n in self.counts.items()) + warned
        n = len(self.errors)
        return (f"{n} problem{'s' if n != 1 else ''}{warned} in the configuration "
                f"({' + '.join(self.source) or 'config/bus.yaml'}): the bus does not start with it")


def display_path(path) -> str:
    """A file as people read it: relative to the checkout when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


def check_config(path=None, env=None, sandbox: bool = True) -> ConfigReport:
    """Load the configuration (defaults, ``path`` or $BSSBUS_CONFIG, BSSBUS_*) and check it whole.
    A file that cannot be read at all is the one problem reported."""
    try:
        settings = load_settings(path, env=env, validate=False)
    except ConfigError as exc:
        report = ConfigReport(source=[display_path(path)] if path else [])
        _Checker(None, report).error_from(exc, display_path(path or DEFAULT_CONFIG))
        return report
    return check_settings(settings, sandbox=sandbox)


def check_settings(settings: Settings, sandbox: bool = True) -> ConfigReport:
    """Every problem of ``settings``. ``sandbox``: the sandbox peers will run (so ``{sandbox}`` in a
    peer's url will have an address), as under ``bssbus serve`` without --no-sandbox."""
    report = ConfigReport(source=[display_path(s) if os.sep in s else s for s in settings.source])
    _Checker(settings, report, sandbox).run()
    return report


class _Checker:
    def __init__(self, settings: Settings | None, report: ConfigReport, sandbox: bool = True):
        self.settings, self.report, self.sandbox = settings, report, sandbox
        self.env = os.environ if settings is None or settings.env is None else settings.env

    # -- reporting ----------------------------------------------------------------------------
    def error(self, where: str, what: str) -> None:
        problem = Problem(where, what)
        if problem not in self.report.errors:
            self.report.errors.append(problem)

    def warn(self, where: str, what: str) -> None:
        self.report.warnings.append(Problem(where, what))

    def error_from(self, exc: Exception, where: str) -> None:
        """A parser's refusal as a problem: its own path when its message starts with one."""
        text = str(exc)
        match = _PATH.fullmatch(text)
        if match and match.group(1).split(".")[0].split("[")[0] == where.split(".")[0].split("[")[0]:
            self.error(match.group(1), match.group(2))
        elif text.startswith(f"{where}: "):
            self.error(where, text[len(where) + 2:])
        else:
            self.error(where, text)

    def parsed(self, where: str, parse, *args, **kwargs):
        """``parse(*args)``; a ConfigError (or a value error of a conversion) becomes a problem."""
        try:
            return parse(*args, **kwargs)
        except ConfigError as exc:
            self.error_from(exc, where)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            if str(exc).startswith(where.split(".")[0]):   # a parser's own sentence
                self.error_from(exc, where)
            else:
                self.error(where, f"not a usable value ({exc})")
        return None

    def unknown_keys(self, where: str, spec: dict, known, what: str) -> None:
        for key in spec:
            if key not in known:
                self.error(f"{where}.{key}", f"unknown setting{did_you_mean(key, known)}; {what} takes "
                           f"{', '.join(known)}")

    def mapping(self, where: str, value, what: str) -> dict | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(where, f"must be a mapping ({what}), not {type(value).__name__}")
            return None
        return value

    # -- the whole ----------------------------------------------------------------------------
    def run(self) -> None:
        from services.models import CONTRACTS
        self.contracts = {name: tuple(c.operations) for name, c in CONTRACTS.items()}
        self.settings = self.settings.copy()   # a section of the wrong type is reported, then read as empty
        raw = self.settings.raw
        self.sections(raw)
        self.values()
        self.phases = self.provinces(raw.get("provinces"))
        self.peers = self.check_peers(raw.get("peers"))
        self.check_routes(raw.get("routes"))
        consumers = self.check_consumers(raw.get("consumers"))
        ranges, overrides = self.check_segments()
        self.report.counts = {"routes": len(raw.get("routes") or []) if isinstance(raw.get("routes"), list) else 0,
                              "peers": len(self.peers), "provinces": len(self.phases),
                              "consumers": consumers, "number segments": ranges, "number overrides": overrides}

    def sections(self, raw: dict) -> None:
        defaults = read_yaml(DEFAULT_CONFIG)
        for name in raw:
            if name not in defaults:
                self.error(str(name), f"unknown section{did_you_mean(name, defaults)}; the configuration has "
                           f"{', '.join(defaults)}")
        for name, kind in (("routes", list), ("peers", dict), ("provinces", dict), ("consumers", dict),
                           ("operators", dict), ("breaker", dict)):
            if raw.get(name) is not None and not isinstance(raw[name], kind):
                self.error(name, f"must be a {'list' if kind is list else 'mapping'} (see config/bus.yaml), "
                           f"not {type(raw[name]).__name__}")
                raw[name] = kind()
        for path in FIXED_SECTIONS:
            *parents, last = path.split(".")
            holder, default = raw, defaults
            for part in parents:
                holder, default = holder.get(part) or {}, (default or {}).get(part)
            spec = self.mapping(path, holder.get(last), "see config/bus.yaml")
            if spec is None:
                holder[last] = {}
            elif spec:
                known = list((default or {}).get(last) or {}) + sorted(EXTRA_KEYS.get(path, ()))
                self.unknown_keys(path, spec, known, path)

    def values(self) -> None:
        """Each setting a property or parser of the bus reads, as it reads it."""
        from bus.logs import log_format
        from bus.operators import Operators
        from bus.outbox import RedeliveryPolicy
        from bus.privacy import Privacy
        from bus.reconcile import ReconConfig
        from bus.security import RateLimiter
        from bus.transport import Origins, TlsConfig
        s = self.settings
        for name in ("limits", "max_peer_answer_bytes", "journal_reads", "phase_refresh_seconds",
                     "idempotency_ttl_hours", "breaker", "port"):
            self.parsed("bus" if name != "breaker" else "breaker", getattr, s, name)
        self.parsed("files.cdr", lambda: s.cdr_files)
        self.parsed("stats", lambda: s.stats_timezone)
        self.parsed("files.reconciliation", ReconConfig.from_settings, s)
        self.parsed("redelivery", RedeliveryPolicy.from_config, s.section("redelivery"))
        self.parsed("privacy", Privacy.from_settings, s)
        self.parsed("logging", log_format, s)
        self.parsed("operators", Operators.from_settings, s, env=self.env)
        self.parsed("server.tls", TlsConfig.from_settings, s, env=self.env)
        self.parsed("security.trusted_proxies", Origins.from_settings, s)
        self.parsed("security.rate_limit", RateLimiter.from_settings, s)
        for name in ("workers", "threads", "timeout"):
            value = s.section("server").get(name, 1)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                self.error(f"server.{name}", f"{value!r} is not a number above 0")

    # -- provinces and peers --------------------------------------------------------------------
    def provinces(self, spec) -> dict[str, int | None]:
        spec = self.mapping("provinces", spec, 'province code -> phase, "51": 2')
        out = {}
        for code, phase in (spec or {}).items():
            out[str(code)] = self.parsed(f"provinces.{code}", parse_phase, phase, f"provinces.{code}")
        return out

    def no_phase(self, where: str, code: str, what: str = "") -> None:
        self.error(where, f"province {code}{what} has no phase in provinces{did_you_mean(code, self.phases)}; "
                   f'add provinces."{code}": 2 (its own systems) or 3 (HQ\'s)')

    def check_peers(self, spec) -> dict:
        from adapters import ADAPTERS
        spec = self.mapping("peers", spec, "key -> {adapter, name, url, ...}") or {}
        on_sandbox = []
        for key, peer in spec.items():
            where = f"peers.{key}"
            peer = self.mapping(where, peer, "adapter, name, url, timeout, ...")
            if peer is None:
                continue
            self.unknown_keys(where, peer, PEER_KEYS, "a peer")
            adapter = str(peer.get("adapter", key))
            if adapter not in ADAPTERS:
                self.error(f"{where}.adapter", f"no adapter {adapter!r}{did_you_mean(adapter, ADAPTERS)}; "
                           f"the adapters are {', '.join(ADAPTERS)}")
            if not str(peer.get("url") or "").strip():
                self.error(f"{where}.url", "the peer's address is missing")
            if "{sandbox}" in str(peer.get("url", "")):
                on_sandbox.append(key)
            self.parsed(f"{where}.breaker", self.settings.peer_breaker, key)
            self.parsed(f"{where}.auth", self.settings.peer_auth, key)
            overrides = self.mapping(f"{where}.provinces", peer.get("provinces"), 'code -> {adapter, url, ...}')
            for code, over in (overrides or {}).items():
                at = f'{where}.provinces."{code}"'
                over = self.mapping(at, over, "adapter, url, name, timeout, auth, services")
                if over is None:
                    continue
                if str(code) not in self.phases:
                    self.no_phase(at, str(code))
                self.unknown_keys(at, over, PEER_PROVINCE_KEYS, "a province's override")
                if "adapter" in over and over["adapter"] not in ADAPTERS:
                    self.error(f"{at}.adapter", f"no adapter {over['adapter']!r}"
                               f"{did_you_mean(over['adapter'], ADAPTERS)}; the adapters are {', '.join(ADAPTERS)}")
                services = over.get("services", [])
                for service in services if isinstance(services, list) else [services]:
                    if service not in self.contracts:
                        self.error(f"{at}.services", f"no service {service!r}{did_you_mean(service, self.contracts)}")
                if "auth" in over:
                    self.parsed(f"{at}.auth", self.settings.peer_auth, key, str(code))
            self.peer_values(key, peer)
        if on_sandbox and not self.sandbox and not self.settings.sandbox_url:
            self.error("peers", f"{', '.join(on_sandbox)} use {{sandbox}} in their url, and no sandbox is running: "
                       "start `bssbus serve` without --no-sandbox or set BSSBUS_SANDBOX_URL")
        return spec

    def peer_values(self, key: str, peer: dict) -> None:
        """timeout, max_answer_bytes, max_in_flight, as Settings.peers reads them (credentials and
        breaker are checked apart, so each problem is told once)."""
        alone = {k: v for k, v in peer.items() if k not in ("auth", "breaker", "provinces")}
        alone["provinces"] = {code: {k: v for k, v in over.items() if k != "auth"}
                              for code, over in (peer.get("provinces") or {}).items() if isinstance(over, dict)}
        one = self.settings.copy()
        one.raw["peers"] = {key: alone}
        one.raw.pop("breaker", None)
        one.set_sandbox_url(self.settings.sandbox_url or _SANDBOX_PLACEHOLDER)
        self.parsed(f"peers.{key}", lambda: one.peers)

    # -- routes ---------------------------------------------------------------------------------
    def check_routes(self, routes) -> None:
        from bus.router import RECIPIENT_KEYS, ROUTE_KEYS, Route
        if routes is None:
            routes = []
        if not isinstance(routes, list):
            self.error("routes", "must be a list of routes (- name: ..., service: ..., target: ...)")
            return
        domains = {str(c.get("domain")) for c in (self.settings.section("consumers") or {}).values()
                   if isinstance(c, dict)} | {"RECON"}
        parsed = []
        for i, route in enumerate(routes):
            where = f"routes[{i}]"
            if not isinstance(route, dict):
                self.error(where, "must be a mapping (name, service, operations, caller, delivery, target, also)")
                continue
            where = f"routes[{i}] ({route.get('name', 'unnamed')})"
            errors = len(self.report.errors)
            self.unknown_keys(where, route, ROUTE_KEYS, "a route")
            service = route.get("service")
            if service is None:
                self.error(f"{where}.service", f"a route needs a service: one of {', '.join(self.contracts)}")
            elif service not in self.contracts:
                self.error(f"{where}.service", f"no service {service!r}{did_you_mean(service, self.contracts)}; "
                           f"the services are {', '.join(self.contracts)}")
            ops = route.get("operations") or ([route["operation"]] if route.get("operation") else [])
            key = "operations" if route.get("operations") else "operation"
            if not isinstance(ops, list):
                self.error(f"{where}.{key}", "must be a list of operations")
                ops = []
            for op in ops if service in self.contracts else ():
                if op not in self.contracts[service]:
                    self.error(f"{where}.{key}", f"{service} has no operation {op!r}"
                               f"{did_you_mean(op, self.contracts[service])}; it has {', '.join(self.contracts[service])}")
            if route.get("target") is None:
                self.error(f"{where}.target", "a route needs a target: a peer, or a phase map "
                           "{2: PEER, 3: PEER}")
            else:
                self.target(f"{where}.target", route["target"], every_phase=True)
            also = route.get("also") or []
            if not isinstance(also, list):
                self.error(f"{where}.also", "must be a list of recipients ({target: PEER, when: CONDITION})")
                also = []
            for j, recipient in enumerate(also):
                at = f"{where}.also[{j}]"
                if isinstance(recipient, dict) and "target" in recipient:
                    self.unknown_keys(at, recipient, RECIPIENT_KEYS, "a recipient")
                    self.target(f"{at}.target", recipient["target"], every_phase=False)
                else:
                    self.target(at, recipient, every_phase=False)
            caller = route.get("caller")
            if caller is not None and self.settings.section("consumers") and str(caller) not in domains:
                self.warn(f"{where}.caller", f"no consumer speaks as ORIG_DOMAIN {caller!r}"
                          f"{did_you_mean(caller, domains)}: only an anonymous caller can use this route")
            if len(self.report.errors) == errors:   # what the router itself refuses (delivery, when)
                route_ = self.parsed(where, Route.from_config, route)
                if route_ is not None:
                    parsed.append((i, route_))
        self.shadowed(parsed)

    def target(self, where: str, target, every_phase: bool) -> None:
        if isinstance(target, dict):
            phases = set()
            for phase, peer in target.items():
                value = self.parsed(f"{where}.{phase}", parse_phase, phase, f"{where}.{phase}")
                phases.add(value)
                self.peer_named(f"{where}.{phase}", peer)
            missing = [p for p in (2, 3) if p not in phases]
            if every_phase and missing and None not in phases:
                self.error(where, f"names no peer for phase {missing[0]}: a province in phase {missing[0]} would "
                           f"have no target; add {missing[0]}: PEER")
        else:
            self.peer_named(where, target)

    def peer_named(self, where: str, peer) -> None:
        if not isinstance(peer, str) or not peer:
            self.error(where, f"{peer!r} is not a peer: name one of {', '.join(self.peers)}")
        elif peer not in self.peers:
            self.error(where, f"peer {peer!r} is not configured{did_you_mean(peer, self.peers)}; "
                       f"the peers are {', '.join(self.peers)}")

    def shadowed(self, routes) -> None:
        for n, (j, later) in enumerate(routes):
            for i, earlier in routes[:n]:
                if (earlier.service == later.service and earlier.caller in (None, later.caller)
                        and (not earlier.operations or (later.operations and later.operations <= earlier.operations))):
                    self.warn(f"routes[{j}] ({later.name})", f"never used: routes[{i}] ({earlier.name}) comes first "
                              "and matches every message this one would")
                    break

    # -- consumers --------------------------------------------------------------------------------
    def check_consumers(self, spec) -> int:
        from bus.security import ALL, MODES, Gatekeeper, consumer_password_variable, load_consumers, read_secrets
        spec = self.mapping("consumers", spec, "id -> {domain, services, ...}") or {}
        security = self.settings.section("security") if isinstance(self.settings.section("security"), dict) else {}
        secrets = self.parsed("security.secrets_file", read_secrets,
                              self.env.get("BSSBUS_SECRETS_FILE") or security.get("secrets_file"))
        errors, loaded = len(self.report.errors), {}
        for cid, item in spec.items():
            where = f"consumers.{cid}"
            loaded.update(self.parsed(where, load_consumers, {cid: item}, secrets or {}, self.env) or {})
            if not isinstance(item, dict):
                continue
            services = item.get("services") or {}
            if not isinstance(services, dict):
                self.error(f"{where}.services", "must map each service to all or a list of operations")
                continue
            for service, ops in services.items():
                if service in (ALL,):
                    continue
                if service not in self.contracts:
                    self.error(f"{where}.services.{service}", f"no service {service!r}"
                               f"{did_you_mean(service, self.contracts)}; the services are {', '.join(self.contracts)}")
                    continue
                for op in ops if isinstance(ops, list) else ():
                    if op not in self.contracts[service]:
                        self.error(f"{where}.services.{service}", f"{service} has no operation {op!r}"
                                   f"{did_you_mean(op, self.contracts[service])}")
            provinces = item.get("provinces") or []
            for code in provinces if isinstance(provinces, list) else [provinces]:
                if str(code) not in self.phases:
                    self.no_phase(f"{where}.provinces", str(code))
        mode = str(security.get("authentication", "auto"))
        if mode not in MODES:
            self.error("security.authentication", f"{mode!r} is not one of {', '.join(MODES)}{did_you_mean(mode, MODES)}")
        elif len(self.report.errors) == errors and secrets is not None:   # credentials, when they are needed
            try:
                Gatekeeper.from_settings(self.settings, env=self.env)
            except ConfigError as exc:
                missing = [c for c in loaded.values() if c.password is None and c.password_hash is None]
                if not str(exc).startswith("no credentials") or not missing:
                    self.error_from(exc, "security")
                for consumer in missing:
                    self.error(f"consumers.{consumer.id}", "no credentials, and security.authentication requires "
                               f"them (a peer is a real system): set {consumer_password_variable(consumer.id)} "
                               "or put them in the secrets file (security.secrets_file / BSSBUS_SECRETS_FILE)")
        return len(spec)

    # -- number segments ----------------------------------------------------------------------------
    def check_segments(self) -> tuple[int, int]:
        from bus.segments import read_overrides, read_ranges
        segments = self.settings.section("segments")
        if not isinstance(segments, dict):
            return 0, 0

        def report_in(path):
            shown = display_path(path)
            return lambda where, what: self.error(where.replace(str(path), shown, 1), what)
        path = self.settings.segments_file
        ranges = read_ranges(path, report_in(path))
        first, counts = {}, {}
        for _begin, _end, info, lineno in ranges:
            first.setdefault(info[0], (lineno, info[1]))
            counts[info[0]] = counts.get(info[0], 0) + 1
        for code, (lineno, name) in first.items():
            if code not in self.phases:
                self.no_phase(f"{display_path(path)}:{lineno}", code,
                              f" ({name}, {counts[code]} range{'s' if counts[code] != 1 else ''})" if name
                              else f" ({counts[code]} range{'s' if counts[code] != 1 else ''})")
        if ranges:
            for code in self.phases:
                if code not in first:
                    self.warn(f"provinces.{code}", f"no number segment belongs to province {code}: a message "
                              f"routed by phone number never reaches it ({display_path(path)})")
        overrides = []
        if self.settings.overrides_file is not None:
            path = self.settings.overrides_file
            overrides = read_overrides(path, report_in(path))
            seen = {}
            for lineno, number, code in overrides:
                if code not in self.phases:
                    self.no_phase(f"{display_path(path)}:{lineno}", code, f" (of {number})")
                if number in seen:
                    self.warn(f"{display_path(path)}:{lineno}", f"{number} is overridden again (line "
                              f"{seen[number]}); this line wins")
                seen[number] = lineno
        return len(ranges), len(overrides)
