"""Routing: the Route table and the ContentBasedRouter (EIP Content-Based Router).

A :class:`Route` matches a message by service, operation and caller (ORIG_DOMAIN) and names
a target peer, or a map phase -> peer. The router finds the province of a message from its
UNI_BSS_HEAD ROUTING (ROUTE_TYPE 00: the province code itself; 01: the phone number's home
province through the number-segment table) and picks the peer for that province's phase.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from bus.faults import UnknownNumber, UnknownProvince, UnknownRoute
from bus.message import Message
from bus.segments import SegmentDirectory
from config.settings import ConfigError, PeerConfig, Settings, did_you_mean

ROUTE_BY_PROVINCE = "00"
ROUTE_BY_NUMBER = "01"
HQ_PROVINCE = "99"   # HQ's own code: a valid routing value for routes that do not follow a phase


@dataclass(frozen=True)
class Route:
    """One line of the route table."""

    name: str
    service: str
    target: str | dict[int, str]
    operations: frozenset[str] = frozenset()
    caller: str | None = None

    def matches(self, service: str, operation: str, caller: str | None) -> bool:
        return (self.service == service
                and (not self.operations or operation in self.operations)
                and (self.caller is None or self.caller == caller))

    def target_for(self, phase: int) -> str:
        if isinstance(self.target, dict):
            return self.target[phase]
        return self.target

    @property
    def follows_phase(self) -> bool:
        return isinstance(self.target, dict)

    def describe_target(self) -> str:
        if isinstance(self.target, dict):
            return ", ".join(f"phase {p}: {t}" for p, t in sorted(self.target.items()))
        return self.target

    @classmethod
    def from_config(cls, spec: dict) -> "Route":
        target = spec["target"]
        if isinstance(target, dict):
            target = {int(p): str(t) for p, t in target.items()}
        ops = spec.get("operations") or ([spec["operation"]] if spec.get("operation") else [])
        return cls(name=str(spec.get("name") or spec["service"]), service=str(spec["service"]),
                   target=target, operations=frozenset(ops), caller=spec.get("caller"))


@dataclass(frozen=True)
class Decision:
    """Where the router sent a message, and why (for the journal and for people)."""

    route: Route
    peer: PeerConfig
    province: str | None
    phase: int | None
    segment_city: str = ""

    @property
    def peer_name(self) -> str:
        return self.peer.name_for(self.province)

    @property
    def url(self) -> str:
        return self.peer.url_for(self.province)

    def describe(self) -> str:
        where = f"province {self.province}" if self.province else "no province"
        phase = f", phase {self.phase}" if self.phase else ""
        return f"route {self.route.name} ({where}{phase}) -> {self.peer_name}"


@dataclass
class ContentBasedRouter:
    """Resolves a Message to a Decision from the route table, the phases and the segments."""

    routes: list[Route]
    peers: dict[str, PeerConfig]
    phases: dict[str, int]
    segments: SegmentDirectory
    phase_table: object | None = None   # dao.phases.PhaseTable: the live cut-over table, if any
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def current_phases(self) -> dict[str, int]:
        """The phases to route by now: the live cut-over table, else the configured ones."""
        return self.phase_table.current() if self.phase_table is not None else self.phases

    @classmethod
    def from_settings(cls, settings: Settings, segments: SegmentDirectory | None = None) -> "ContentBasedRouter":
        segments = segments or SegmentDirectory(settings.segments_file, settings.overrides_file)
        router = cls(routes=[Route.from_config(r) for r in settings.routes], peers=settings.peers,
                     phases=settings.phases, segments=segments)
        for route in router.routes:
            for peer in (route.target.values() if isinstance(route.target, dict) else [route.target]):
                if peer not in router.peers:
                    raise ConfigError(f"route {route.name}: peer {peer!r} is not configured"
                                      f"{did_you_mean(peer, router.peers)}")
        return router

    def find_route(self, service: str, operation: str, caller: str | None,
                   trans_ido: str | None = None) -> Route:
        for route in self.routes:
            if route.matches(service, operation, caller):
                return route
        callers = sorted({r.caller for r in self.routes if r.service == service and r.caller})
        hint = f"; routes for {service} accept ORIG_DOMAIN {', '.join(callers)}" if callers else ""
        raise UnknownRoute(f"No route for {service}.{operation} from ORIG_DOMAIN {caller!r}{hint}.", trans_ido)

    def province_of(self, message: Message, phases: dict[str, int]) -> tuple[str, str]:
        """(province code, city) for the message's ROUTING, or a Client fault saying what is unknown."""
        kind, value = message.route_type, (message.route_value or "").strip()
        if kind == ROUTE_BY_PROVINCE:
            if value not in phases and value != HQ_PROVINCE:
                raise UnknownProvince(
                    f"Province code {value!r} in ROUTING/ROUTE_VALUE is not in the bus's province "
                    f"table{did_you_mean(value, phases)}.", message.trans_ido)
            return value, ""
        if kind == ROUTE_BY_NUMBER:
            segment = self.segments.lookup(value)
            if segment is None:
                raise UnknownNumber(
                    f"Phone number {value!r} in ROUTING/ROUTE_VALUE is not in any number segment "
                    "of the bus; check the number or add its segment.", message.trans_ido)
            if segment.province_code not in phases:
                raise UnknownProvince(f"Phone number {value} belongs to province "
                                      f"{segment.province_code}, which has no phase configured.",
                                      message.trans_ido)
            return segment.province_code, segment.city
        raise UnknownRoute(f"ROUTING/ROUTE_TYPE {kind!r} is not 00 (by province) or 01 (by number).",
                           message.trans_ido)

    def resolve(self, message: Message) -> Decision:
        route = self.find_route(message.service, message.operation, message.caller, message.trans_ido)
        phases = self.current_phases()   # one snapshot for the whole decision
        province, city = self.province_of(message, phases)
        phase = phases.get(province)
        if route.follows_phase and phase is None:
            raise UnknownProvince(f"Route {route.name} follows the province's phase, and {province!r} "
                                  "(HQ) has none; route by the user's province or number.",
                                  message.trans_ido)
        peer_key = route.target_for(phase) if route.follows_phase else route.target
        return Decision(route=route, peer=self.peers[peer_key].for_province(province),
                        province=province, phase=phase,
                        segment_city=city)

    def set_phase(self, province: str, phase: int) -> None:
        """Move a province to another phase; new messages follow at once."""
        with self._lock:
            phases = dict(self.phases)
            phases[province] = phase
            self.phases = phases
