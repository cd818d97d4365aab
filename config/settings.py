"""The settings loader: config/bus.yaml, merged with --config FILE and BSSBUS_* variables.

Order of precedence (last wins): the default ``config/bus.yaml`` beside this file, the file
given with ``--config`` (or ``BSSBUS_CONFIG``), then the environment:

==========================  =============================================
``BSSBUS_CONFIG``           a YAML file merged over the defaults
``BSSBUS_DB_URL``           the journal database URL
``BSSBUS_DATA_DIR``         folder for SQLite files and run-time state
``BSSBUS_SANDBOX_URL``      base URL of the sandbox peers (``{sandbox}`` in peer URLs)
``BSSBUS_SEGMENTS_FILE``    the number-segment CSV
``BSSBUS_LOG_FORMAT``       ``text`` or ``json`` (``logging.format``)
``BSSBUS_PEER_<KEY>_PASSWORD``  the password the bus sends peer ``<KEY>`` (see :class:`PeerAuth`)
==========================  =============================================

Secrets are never read from a configuration file: a peer's password comes from the
environment or from a file outside the checkout (``peers.<key>.auth``, :class:`PeerAuth`).
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "bus.yaml"

ENV_OVERRIDES = {
    "BSSBUS_DB_URL": ("database", "url"),
    "BSSBUS_DATA_DIR": ("bus", "data_dir"),
    "BSSBUS_SANDBOX_URL": ("sandbox", "url"),
    "BSSBUS_SEGMENTS_FILE": ("segments", "file"),
    "BSSBUS_LOG_FORMAT": ("logging", "format"),
}

PHASES = (2, 3)

_OFFSET = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", re.I)


def parse_utc_offset(value, where: str = "stats.timezone"):
    """A fixed time zone (a ``datetime.timezone``) from ``+08:00``, ``+0800``, ``UTC+8``, ``UTC``,
    ``Z`` or an IANA name whose offset does not change over the year (``Asia/Shanghai``; a zone
    with daylight saving time is refused: a day of statistics must be 24 hours long)."""
    from datetime import datetime, timedelta, timezone
    text = str(value if value is not None else "").strip()
    if text.upper() in ("UTC", "GMT", "Z", "+00:00", "00:00"):
        return timezone.utc
    match = _OFFSET.fullmatch(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise ConfigError(f"{where}: {text!r} is not a UTC offset between -14:00 and +14:00")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
        return timezone(offset, f"UTC{sign}{hours:02d}:{minutes:02d}") if offset else timezone.utc
    try:
        from zoneinfo import ZoneInfo
        zone = ZoneInfo(text)
    except (ValueError, KeyError, OSError, ImportError):
        zone = None
    if zone is None or not text:
        raise ConfigError(f"{where}: {text!r} is not a time zone: give a UTC offset such as +08:00 "
                          "(the operator's, Beijing time) or a name such as Asia/Shanghai")
    year = datetime.now().year
    offsets = {zone.utcoffset(datetime(year, month, 1)) for month in (1, 4, 7, 10)}
    if len(offsets) != 1:
        raise ConfigError(f"{where}: {text} changes its offset during the year (daylight saving time); "
                          "give a fixed UTC offset such as +01:00")
    offset = offsets.pop()
    return timezone(offset, text) if offset else timezone.utc


def parse_phase(value, where: str) -> int:
    """A phase of the configuration (2 or 3; "2" is taken too); ConfigError saying where if not."""
    try:
        phase = int(value)
    except (TypeError, ValueError):
        phase = None
    if isinstance(value, bool) or phase not in PHASES or (isinstance(value, float) and value != phase):
        raise ConfigError(f"{where}: phase {value!r} is not one of {', '.join(map(str, PHASES))} "
                          "(2: the province's own systems, 3: HQ's)")
    return phase
PROJECT_DIR = CONFIG_DIR.parent

#: The parser limits of every SOAP endpoint (services.inbound.Limits), ``bus.<name>`` in
#: bus.yaml: body bytes, nesting depth, elements, attributes per element, namespace declarations
#: per element, characters of one text node, of one attribute value, of one element or attribute
#: name. (gSOAP clients declare every namespace they know on the Envelope: 33 for these contracts.)
LIMIT_DEFAULTS = {"max_body_bytes": 1 << 20, "max_depth": 64, "max_elements": 10_000,
                  "max_attributes": 32, "max_namespaces": 256, "max_text_chars": 16_384,
                  "max_attribute_chars": 4_096, "max_name_chars": 256}
#: libxml2 refuses documents deeper than this without ``huge_tree`` (which the bus never sets).
LIBXML2_MAX_DEPTH = 256
#: The largest answer the bus reads from a peer (``bus.max_peer_answer_bytes``, or per peer
#: ``peers.<key>.max_answer_bytes``).
MAX_PEER_ANSWER_BYTES = 16 << 20

#: What a configuration file may be: its size in bytes, and its nodes once YAML aliases are
#: expanded (a "billion laughs" of anchors and aliases is refused, not walked), and its nesting.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 200_000
MAX_CONFIG_DEPTH = 50


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


def did_you_mean(name: str, choices) -> str:
    """' (did you mean "x"?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path, what: str = "configuration file") -> dict:
    """A YAML mapping from ``path``, read safely: at most MAX_CONFIG_BYTES, UTF-8, plain data only
    (PyYAML's SafeLoader: no Python objects), and refused when its anchors and aliases would
    expand to more than MAX_CONFIG_NODES nodes or it nests deeper than MAX_CONFIG_DEPTH.
    Anything else is a ConfigError saying which file and why."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_CONFIG_BYTES} bytes; a configuration "
                          "is a few kilobytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 (byte {exc.start} cannot be decoded)") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_size(node, path, what)
        result = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests deeper than YAML can be read "
                          f"(at most {MAX_CONFIG_DEPTH} levels)") from None
    finally:
        loader.dispose()
    result = result or {}
    if not isinstance(result, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level")
    return result


def _check_size(root: yaml.Node, path, what: str) -> None:
    """Walk the composed YAML graph as the loaded data would repeat it (an alias counts every
    time it is used), stopping at the first limit: so an alias bomb costs MAX_CONFIG_NODES steps."""
    seen, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_NODES:
            raise ConfigError(f"{what} {path} expands to more than {MAX_CONFIG_NODES} values (anchors and "
                              "aliases repeating each other?); refused")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{what} {path} nests deeper than {MAX_CONFIG_DEPTH} levels (or an alias "
                              "refers to itself); refused")
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)


@dataclass(frozen=True)
class BreakerConfig:
    """The thresholds of a CircuitBreaker (bus/breaker.py): ``breaker:`` in bus.yaml holds the
    defaults, ``peers.<key>.breaker`` overrides some of them for every endpoint of that peer.

    Opens after ``failures`` consecutive failures, or when more than ``failure_rate`` of the
    last ``window`` calls failed (once at least ``min_calls`` are in the window; 1 turns the
    rate off); lets one probe call through after ``cooldown_seconds``. ``enabled: false``
    calls the peer whatever happens.
    """

    enabled: bool = True
    failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    cooldown_seconds: float = 10.0

    @classmethod
    def parse(cls, spec, where: str = "breaker", base: "BreakerConfig | None" = None) -> "BreakerConfig":
        """``base`` (the defaults) with the values of the mapping ``spec``; ConfigError if unusable."""
        base = base or cls()
        if spec is None:
            return base
        names = [f.name for f in fields(cls)]
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping of {', '.join(names)}")
        values, kinds = asdict(base), {k: type(v) for k, v in asdict(cls()).items()}
        for key, value in spec.items():
            if key not in values:
                raise ConfigError(f"{where}.{key}: unknown setting{did_you_mean(key, names)}; "
                                  f"a breaker takes {', '.join(names)}")
            kind = kinds[key]
            if kind is bool:
                ok, wanted = isinstance(value, bool), "true or false"
            elif kind is int:
                ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
            else:
                ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
            if not ok:
                raise ConfigError(f"{where}.{key}: {value!r} is not {wanted}")
            values[key] = kind(value)
        config = cls(**values)
        for key, bad, rule in (
                ("failures", config.failures < 1, "at least 1"),
                ("window", config.window < 1, "at least 1"),
                ("min_calls", not 1 <= config.min_calls <= config.window,
                 f"between 1 and the window ({config.window})"),
                ("failure_rate", not 0 < config.failure_rate <= 1, "above 0 and at most 1"),
                ("cooldown_seconds", not config.cooldown_seconds > 0, "above 0")):
            if bad:
                raise ConfigError(f"{where}.{key}: {getattr(config, key)!r} must be {rule}")
        return config


AUTH_SCHEMES = ("username_token", "username_token_digest", "basic")
AUTH_KEYS = ("scheme", "username", "password_env", "password_file")


def password_variable(key: str, province: str | None = None) -> str:
    """The environment variable holding the password of peer ``key`` (of one province's override):
    ``BSSBUS_PEER_PROVINCE_BILLING_PASSWORD``, ``BSSBUS_PEER_PROVINCE_BILLING_34_PASSWORD``."""
    name = key if province is None else f"{key}_{province}"
    return "BSSBUS_PEER_" + re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_PASSWORD"


@dataclass(frozen=True)
class PeerAuth:
    """The credentials the bus sends one peer (``peers.<key>.auth``, or a province's own
    ``peers.<key>.provinces.<code>.auth``):

    ``scheme``
        ``username_token`` (WS-Security UsernameToken, PasswordText), ``username_token_digest``
        (PasswordDigest: Base64(SHA-1(nonce + created + password)), with Nonce and Created) or
        ``basic`` (HTTP basic authentication).
    ``username``
        may hold ``{province}`` on a peer that exists once per province.
    ``password_env`` / ``password_file``
        where the password is: an environment variable (by default
        ``BSSBUS_PEER_<KEY>_PASSWORD``, ``BSSBUS_PEER_<KEY>_<PROVINCE>_PASSWORD`` for a province's
        own ``auth``) or a file outside the checkout holding only the password. A ``password:``
        in the configuration is refused: the configuration lives in the repository.

    The password is resolved when the configuration is loaded; it never appears in ``repr``.
    """

    scheme: str
    username: str
    password: str = field(repr=False)
    where: str = ""       # the configuration path, for messages: peers.hq_billing.auth
    source: str = ""      # where the password came from (a variable's or a file's name), for messages

    @property
    def digest(self) -> bool:
        return self.scheme == "username_token_digest"

    def username_for(self, province: str | None) -> str:
        return self.username.format(province=province or "")

    @classmethod
    def parse(cls, spec, where: str, *, variable: str, env, per_province: bool) -> "PeerAuth | None":
        """The credentials ``spec`` describes (None for ``false``/absent); ConfigError if unusable.
        ``variable`` is the default environment variable of the password."""
        if spec is None or spec is False:
            return None
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping: {{scheme: {' | '.join(AUTH_SCHEMES)}, "
                              f"username: NAME}}, the password in ${variable}")
        if "password" in spec:
            raise ConfigError(f"{where}.password: a password does not belong in the configuration "
                              f"files (they are versioned and shared); set the environment variable {variable}, "
                              f"or name a file outside the checkout in {where}.password_file")
        for key in spec:
            if key not in AUTH_KEYS:
                raise ConfigError(f"{where}.{key}: unknown setting{did_you_mean(key, AUTH_KEYS)}; "
                                  f"auth takes {', '.join(AUTH_KEYS)}")
        scheme = spec.get("scheme")
        if scheme not in AUTH_SCHEMES:
            raise ConfigError(f"{where}.scheme: {scheme!r} is not a scheme the bus can send"
                              f"{did_you_mean(scheme, AUTH_SCHEMES)}; use one of {', '.join(AUTH_SCHEMES)}")
        username = spec.get("username")
        if not isinstance(username, str) or not username.strip():
            raise ConfigError(f"{where}.username: the user name the peer knows the bus by is missing")
        try:
            username.format(province="00")
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"{where}.username: {username!r} may contain {{province}} and no other "
                              "{...} field") from None
        if "{province}" in username and not per_province:
            raise ConfigError(f"{where}.username: {{province}} is only known on a peer whose url has "
                              "{province}")
        if scheme == "basic" and ":" in username:
            raise ConfigError(f"{where}.username: HTTP basic authentication allows no ':' in a user name")
        if "password_env" in spec and "password_file" in spec:
            raise ConfigError(f"{where}: give password_env or password_file, not both")
        if "password_file" in spec:
            password, source = cls._read_file(spec["password_file"], where)
        else:
            name = spec.get("password_env") or variable
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"{where}.password_env: {name!r} is not an environment variable name")
            password, source = env.get(name) or "", f"${name}"
            if not password:
                hint = "" if "password_env" in spec else f" (or name a file in {where}.password_file)"
                raise ConfigError(f"{where}: the password is not set: set the environment variable {name}{hint}")
        return cls(scheme=scheme, username=username, password=password, where=where, source=source)

    @staticmethod
    def _read_file(value, where: str) -> tuple[str, str]:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.password_file: name the file that holds the password")
        path = Path(value).expanduser().resolve()
        if path == PROJECT_DIR or PROJECT_DIR in path.parents:
            raise ConfigError(f"{where}.password_file: {path} is inside the bus's checkout; keep secrets "
                              "outside the repository")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}.password_file: {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}.password_file: {path} cannot be read: {exc}") from None
        password = text.rstrip("\r\n")
        if not password:
            raise ConfigError(f"{where}.password_file: {path} is empty")
        return password, str(path)


#: The settings of ``peers.<key>`` and of a province's override ``peers.<key>.provinces."NN"``.
PEER_KEYS = ("adapter", "name", "url", "timeout", "provinces", "auth", "breaker", "max_answer_bytes",
             "max_in_flight")
PEER_PROVINCE_KEYS = ("adapter", "name", "url", "timeout", "auth", "services")

#: Threads of a bus worker (``server.threads``): each call in flight holds one (README "Performance").
SERVER_THREADS = 512


@dataclass(frozen=True)
class PeerConfig:
    """One peer the bus calls: the adapter kind, a display name and an address.

    ``url`` and ``name`` may contain ``{province}``: such a peer exists once per province.
    ``provinces`` overrides adapter, url, name, timeout or auth for single provinces (a province
    whose system speaks its own contract gets its own adapter). ``auth`` is the credentials the
    bus sends the peer (:class:`PeerAuth`; None: none); a province without its own ``auth``
    gets the peer's.
    """

    key: str
    adapter: str
    name: str
    url: str
    timeout: float = 10.0
    provinces: tuple = ()   # ((province, {"adapter": ..., "url": ...}), ...)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)   # one breaker per endpoint (name)
    auth: PeerAuth | None = None
    max_answer_bytes: int = MAX_PEER_ANSWER_BYTES   # a longer answer is refused (Server.PeerFault)
    max_in_flight: int = SERVER_THREADS * 3 // 4   # calls to one endpoint at once in a process; more: Server.Busy

    def for_province(self, province: str | None, service: str | None = None) -> "PeerConfig":
        """This peer as it is for ``province`` (and ``service``): its override applied, if it has
        one that covers the service (an override may list the ``services`` it covers)."""
        for code, over in self.provinces:
            if code == province and (service is None or service in over.get("services", [service])):
                return PeerConfig(key=f"{self.key}[{code}]", adapter=over.get("adapter", self.adapter),
                                  name=over.get("name", self.name), url=over.get("url", self.url),
                                  timeout=float(over.get("timeout", self.timeout)), breaker=self.breaker,
                                  auth=over.get("auth", self.auth), max_answer_bytes=self.max_answer_bytes,
                                  max_in_flight=self.max_in_flight)
        return self

    @property
    def auth_where(self) -> str:
        """Where this peer's credentials are configured: ``peers.<key>.auth`` (or the province's)."""
        if self.auth is not None:
            return self.auth.where
        key, _, code = self.key.partition("[")
        return f'peers.{key}.provinces."{code[:-1]}".auth' if code else f"peers.{key}.auth"

    @property
    def per_province(self) -> bool:
        return "{province}" in self.url

    def url_for(self, province: str | None) -> str:
        return self.url.format(province=province or "")

    def name_for(self, province: str | None) -> str:
        return self.name.format(province=province or "")


@dataclass(frozen=True)
class CdrFilesConfig:
    """CDR distribution (``files.cdr`` in bus.yaml; bus/cdr.py): where HQ collection drops CDR
    files (``inbound``), where the bus writes one folder per target (``outbound``), how often the
    scheduled job scans, how long a file whose ``.chk`` does not match is left for the next run
    before it is refused, and how long the job's lease in the database lasts (renewed while a
    file is being split)."""

    enabled: bool
    inbound: Path
    outbound: Path
    every_seconds: float = 30.0
    mismatch_grace_seconds: float = 300.0
    lease_seconds: float = 120.0


@dataclass
class Settings:
    """The effective configuration, as plain data; built by :func:`load_settings`."""

    raw: dict
    source: list[str] = field(default_factory=list)
    env: Any = field(default=None, repr=False)   # where peers' passwords are read (os.environ if None)

    # -- sections ---------------------------------------------------------------------
    def section(self, name: str) -> dict:
        return self.raw.get(name) or {}

    @property
    def data_dir(self) -> Path:
        return Path(self.section("bus").get("data_dir", "var"))

    def _expand(self, value: str) -> str:
        return value.replace("{data_dir}", str(self.data_dir))

    def folder(self, value: str) -> Path:
        """A folder of the configuration (``{data_dir}`` expanded)."""
        return Path(self._expand(str(value)))

    @property
    def db_url(self) -> str:
        return self._expand(self.section("database").get("url", "sqlite:///{data_dir}/bssbus.db"))

    @property
    def sandbox_db_url(self) -> str:
        return self._expand(self.section("sandbox").get("db_url", "sqlite:///{data_dir}/sandbox.db"))

    @property
    def sandbox_url(self) -> str | None:
        return self.section("sandbox").get("url")

    def set_sandbox_url(self, url: str) -> None:
        self.raw.setdefault("sandbox", {})["url"] = url.rstrip("/")

    @property
    def host(self) -> str:
        return self.section("bus").get("host", "127.0.0.1")

    @property
    def port(self) -> int:
        return int(self.section("bus").get("port", 8080))

    @property
    def limits(self) -> dict[str, int]:
        """The parser limits of the bus's SOAP endpoints (``bus.max_*``; see LIMIT_DEFAULTS)."""
        bus = self.section("bus")
        out = {}
        for name, default in LIMIT_DEFAULTS.items():
            value = bus.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"bus.{name}: {value!r} is not a whole number of at least 1")
            out[name] = value
        if out["max_depth"] > LIBXML2_MAX_DEPTH:
            raise ConfigError(f"bus.max_depth: {out['max_depth']} is above {LIBXML2_MAX_DEPTH}, the depth "
                              "libxml2 parses at most")
        return out

    @property
    def max_body_bytes(self) -> int:
        return self.limits["max_body_bytes"]

    @property
    def max_depth(self) -> int:
        return self.limits["max_depth"]

    @property
    def max_peer_answer_bytes(self) -> int:
        value = self.section("bus").get("max_peer_answer_bytes", MAX_PEER_ANSWER_BYTES)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"bus.max_peer_answer_bytes: {value!r} is not a whole number of at least 1")
        return value

    def _config_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else CONFIG_DIR / path

    @property
    def segments_file(self) -> Path:
        return self._config_path(self.section("segments").get("file", "segments.csv"))

    @property
    def overrides_file(self) -> Path | None:
        value = self.section("segments").get("overrides")
        return self._config_path(value) if value else None

    @property
    def cdr_files(self) -> CdrFilesConfig:
        """``files.cdr``: the CDR distribution's folders and timings, ``{data_dir}`` expanded."""
        files = self.section("files")
        if not isinstance(files, dict):
            raise ConfigError("files must be a mapping of file interfaces (cdr, ...)")
        spec = files.get("cdr") or {}
        if not isinstance(spec, dict):
            raise ConfigError("files.cdr must be a mapping (enabled, inbound, outbound, every_seconds, ...)")
        names = [f.name for f in fields(CdrFilesConfig)]
        for key in spec:
            if key not in names:
                raise ConfigError(f"files.cdr.{key}: unknown setting{did_you_mean(key, names)}")
        numbers = {}
        for key in ("every_seconds", "mismatch_grace_seconds", "lease_seconds"):
            value = spec.get(key, getattr(CdrFilesConfig, key))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"files.cdr.{key}: {value!r} is not a number above 0")
            numbers[key] = float(value)
        enabled = spec.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"files.cdr.enabled: {enabled!r} is not true or false")
        folders = {}
        for key, default in (("inbound", "{data_dir}/cdr/in"), ("outbound", "{data_dir}/cdr/out")):
            value = spec.get(key, default)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"files.cdr.{key}: name a folder")
            folders[key] = Path(self._expand(value))
        return CdrFilesConfig(enabled=enabled, **folders, **numbers)

    @property
    def phases(self) -> dict[str, int]:
        return {str(code): parse_phase(phase, f"provinces.{code}")
                for code, phase in (self.raw.get("provinces") or {}).items()}

    @property
    def phase_refresh_seconds(self) -> float:
        """How often each bus process re-reads the cut-over table from the database."""
        return float(self.section("bus").get("phase_refresh_seconds", 2))

    @property
    def idempotency_ttl_hours(self) -> float:
        """How long the first answer to a message is kept for its repeats."""
        return float(self.section("bus").get("idempotency_ttl_hours", 72))

    @property
    def stats_timezone(self):
        """The time zone whose days `bssbus stats` counts by (``stats.timezone``, +08:00 by default)."""
        return parse_utc_offset(self.section("stats").get("timezone", "+08:00"), "stats.timezone")

    JOURNAL_READS = ("deferred", "sync", "off")

    @property
    def journal_reads(self) -> str:
        """How a read's journal row is written (``bus.journal_reads``): ``deferred`` (the
        default) hands it to the group-commit writer after the answer, ``sync`` writes it before
        the peer is called and again after, as for any other message, ``off`` not at all."""
        value = str(self.section("bus").get("journal_reads", "deferred"))
        if value not in self.JOURNAL_READS:
            raise ConfigError(f"bus.journal_reads: {value!r} is not one of {', '.join(self.JOURNAL_READS)}")
        return value

    @property
    def breaker(self) -> BreakerConfig:
        """The CircuitBreaker defaults (``breaker:``); a peer may override them."""
        return BreakerConfig.parse(self.raw.get("breaker"), "breaker")

    def peer_breaker(self, key: str) -> BreakerConfig:
        """The CircuitBreaker settings of peer ``key``: the defaults and its ``breaker:``."""
        spec = ((self.raw.get("peers") or {}).get(key) or {}).get("breaker")
        return BreakerConfig.parse(spec, f"peers.{key}.breaker", base=self.breaker)

    def peer_auth(self, key: str, province: str | None = None) -> PeerAuth | None:
        """The credentials the bus sends peer ``key`` (of ``province``: its own ``auth`` if its
        override has one, else the peer's), with the password read; ConfigError if unusable."""
        spec = (self.raw.get("peers") or {}).get(key) or {}
        per_province = "{province}" in str(spec.get("url", ""))
        env = os.environ if self.env is None else self.env
        over = next((o or {} for code, o in (spec.get("provinces") or {}).items() if str(code) == province), {})
        if province is not None and "auth" in over:
            return PeerAuth.parse(over["auth"], f'peers.{key}.provinces."{province}".auth',
                                  variable=password_variable(key, province), env=env, per_province=True)
        return PeerAuth.parse(spec.get("auth"), f"peers.{key}.auth", variable=password_variable(key),
                              env=env, per_province=per_province)

    @property
    def routes(self) -> list[dict]:
        return list(self.raw.get("routes") or [])

    @property
    def peers(self) -> dict[str, PeerConfig]:
        sandbox = self.sandbox_url
        out = {}
        for key, spec in (self.raw.get("peers") or {}).items():
            url = str(spec.get("url", ""))
            if "{sandbox}" in url:
                if not sandbox:
                    raise ConfigError(
                        f"peers.{key}.url uses {{sandbox}} but no sandbox is running; "
                        "start `bssbus serve` without --no-sandbox or set BSSBUS_SANDBOX_URL")
                url = url.replace("{sandbox}", sandbox)
            overrides = []
            for code, over in (spec.get("provinces") or {}).items():
                over = dict(over or {})
                if "auth" in over:
                    over["auth"] = self.peer_auth(key, str(code))
                if "{sandbox}" in str(over.get("url", "")):
                    if not sandbox:
                        raise ConfigError(f"peers.{key}.provinces.{code}.url uses {{sandbox}} but no sandbox "
                                          "is running; start `bssbus serve` without --no-sandbox or set "
                                          "BSSBUS_SANDBOX_URL")
                    over["url"] = over["url"].replace("{sandbox}", sandbox)
                overrides.append((str(code), over))
            overrides = tuple(overrides)
            answer = spec.get("max_answer_bytes", self.max_peer_answer_bytes)
            if isinstance(answer, bool) or not isinstance(answer, int) or answer < 1:
                raise ConfigError(f"peers.{key}.max_answer_bytes: {answer!r} is not a whole number of at least 1")
            in_flight = spec.get("max_in_flight", self.default_peer_in_flight)
            if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 1:
                raise ConfigError(f"peers.{key}.max_in_flight: {in_flight!r} is not a whole number of at least 1")
            out[key] = PeerConfig(key=key, adapter=str(spec.get("adapter", key)),
                                  name=str(spec.get("name", key.upper())), url=url,
                                  timeout=float(spec.get("timeout", 10)), provinces=overrides,
                                  breaker=self.peer_breaker(key), auth=self.peer_auth(key),
                                  max_answer_bytes=answer, max_in_flight=in_flight)
        return out

    def server_option(self, name: str, default):
        return self.section("server").get(name, default)

    @property
    def default_peer_in_flight(self) -> int:
        """A peer endpoint's calls at once in one bus process, unless ``peers.<key>.max_in_flight``
        says otherwise: three quarters of a worker's threads, so that a province answering
        slowly leaves a quarter of them to everyone else."""
        return max(1, int(self.server_option("threads", SERVER_THREADS)) * 3 // 4)

    def copy(self) -> "Settings":
        return Settings(copy.deepcopy(self.raw), list(self.source), self.env)

    # -- checks -----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError on the first thing that makes the configuration unusable."""
        self.limits  # noqa: B018 - each one checked
        self.max_peer_answer_bytes  # noqa: B018
        self.cdr_files  # noqa: B018
        self.stats_timezone  # noqa: B018
        self.phases  # noqa: B018 - each phase 2 or 3
        peers = self.raw.get("peers") or {}
        for key, spec in peers.items():
            self.peer_breaker(key)
            self.peer_auth(key)
            for code in (spec or {}).get("provinces") or {}:
                self.peer_auth(key, str(code))
        for i, route in enumerate(self.routes):
            where = f"routes[{i}] ({route.get('name', 'unnamed')})"
            if "service" not in route or "target" not in route:
                raise ConfigError(f"{where}: a route needs a service and a target")
            targets = []
            for target in [route["target"]] + [a.get("target") if isinstance(a, dict) else a
                                               for a in route.get("also") or ()]:
                targets += list(target.values()) if isinstance(target, dict) else [target]
                for phase in target if isinstance(target, dict) else ():
                    parse_phase(phase, f"{where}.target")
            for peer in targets:
                if peer not in peers:
                    raise ConfigError(f"{where}: target peer {peer!r} is not configured"
                                      f"{did_you_mean(peer, peers)}")


def load_settings(path: str | os.PathLike | None = None, env: dict | None = None,
                  validate: bool = True) -> Settings:
    """Load the default config, merge ``path`` (or $BSSBUS_CONFIG) over it, apply BSSBUS_*; then
    :meth:`Settings.validate` it, unless ``validate`` is false (bus/config_check.py checks it whole)."""
    env = os.environ if env is None else env
    raw = read_yaml(DEFAULT_CONFIG)
    source = [str(DEFAULT_CONFIG)]
    path = path or env.get("BSSBUS_CONFIG")
    if path:
        raw = _merge(raw, read_yaml(Path(path)))
        source.append(str(path))
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            raw.setdefault(section, {})[key] = env[var]
            source.append(var)
    settings = Settings(raw, source, env)
    if validate:
        settings.validate()
    return settings
