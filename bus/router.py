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
THREE_G_NET_TYPES = frozenset({"50"})   # NET_TYPE_CODE of a WCDMA (3G) user


def is_3g_user(message: Message) -> bool:
    user = (message.body or {}).get("USER") or {}
    return user.get("NET_TYPE_CODE") in THREE_G_NET_TYPES


DELIVERIES = ("sync", "store-and-forward")
#: The settings of a route, and of one of its further recipients (``also:``).
ROUTE_KEYS = ("name", "service", "operations", "operation", "caller", "delivery", "target", "also")
RECIPIENT_KEYS = ("target", "when")

# Conditions a recipient can be given with ``when:`` in the route table, by name.
CONDITIONS = {"3g_user": is_3g_user}


def _target(value) -> str | dict[int, str]:
    if isinstance(value, dict):
        return {int(p): str(t) for p, t in value.items()}
    return str(value)


@dataclass(frozen=True)
class Recipient:
    """A further recipient of a route (EIP Recipient List): a peer, or a phase -> peer map
    (a phase it does not name gets no copy), sent only ``when`` its condition holds."""

    target: str | dict[int, str]
    when: str | None = None

    def peer_for(self, phase: int | None, message: Message) -> str | None:
        if self.when and not CONDITIONS[self.when](message):
            return None
        if isinstance(self.target, dict):
            return self.target.get(phase)
        return self.target

    @classmethod
    def from_config(cls, spec) -> "Recipient":
        spec = spec if isinstance(spec, dict) and "target" in spec else {"target": spec}
        when = spec.get("when")
        if when is not None and when not in CONDITIONS:
            raise ConfigError(f"unknown condition {when!r}{did_you_mean(when, CONDITIONS)}; "
                              f"known: {', '.join(CONDITIONS)}")
        return cls(target=_target(spec["target"]), when=when)


@dataclass(frozen=True)
class Route:
    """One line of the route table: a target, and optionally further recipients (``also``)."""

    name: str
    service: str
    target: str | dict[int, str]
    operations: frozenset[str] = frozenset()
    caller: str | None = None
    also: tuple[Recipient, ...] = ()
    delivery: str = "sync"   # or "store-and-forward": accepted now, delivered by the Forwarder

    def peers(self) -> list[str]:
        """Every peer this route can send to."""
        out = []
        for target in [self.target] + [r.target for r in self.also]:
            out += list(target.values()) if isinstance(target, dict) else [target]
        return out

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
        def one(target):
            if isinstance(target, dict):
                return ", ".join(f"phase {p}: {t}" for p, t in sorted(target.items()))
            return target
        text = one(self.target)
        for r in self.also:
            text += f"; also {one(r.target)}" + (f" when {r.when}" if r.when else "")
        return text

    @classmethod
    def from_config(cls, spec: dict) -> "Route":
        ops = spec.get("operations") or ([spec["operation"]] if spec.get("operation") else [])
        delivery = str(spec.get("delivery", "sync"))
        if delivery not in DELIVERIES:
            raise ConfigError(f"route {spec.get('name')}: delivery {delivery!r} is not one of "
                              f"{', '.join(DELIVERIES)}{did_you_mean(delivery, DELIVERIES)}")
        return cls(name=str(spec.get("name") or spec["service"]), service=str(spec["service"]),
                   target=_target(spec["target"]), operations=frozenset(ops), caller=spec.get("caller"),
                   also=tuple(Recipient.from_config(r) for r in spec.get("also") or ()), delivery=delivery)


@dataclass(frozen=True)
class Decision:
    """Where the router sent a message, and why (for the journal and for people)."""

    route: Route
    peer: PeerConfig
    province: str | None
    phase: int | None
    segment_city: str = ""
    also: tuple["Decision", ...] = ()   # further recipients of the same message

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
            for peer in route.peers():
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
        service = message.service
        also = tuple(Decision(route=route, peer=self.peers[key].for_province(province, service), province=province,
                              phase=phase, segment_city=city)
                     for key in (r.peer_for(phase, message) for r in route.also) if key is not None)
        return Decision(route=route, peer=self.peers[peer_key].for_province(province, service),
                        province=province, phase=phase, segment_city=city, also=also)

    def decide_for_phase(self, decision: Decision, phase: int, service: str) -> Decision:
        """``decision`` as it would be if its province were in ``phase`` (reconciliation asks the
        billing of a province's former phase too)."""
        peer_key = decision.route.target_for(phase) if decision.route.follows_phase else decision.route.target
        return Decision(route=decision.route, peer=self.peers[peer_key].for_province(decision.province, service),
                        province=decision.province, phase=phase, segment_city=decision.segment_city)

    def set_phase(self, province: str, phase: int) -> None:
        """Move a province to another phase; new messages follow at once."""
        with self._lock:
            phases = dict(self.phases)
            phases[province] = phase
            self.phases = phases
