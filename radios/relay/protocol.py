"""The medium's control protocol: every op as a typed request and a typed reply.

The relay and its clients share this one module, so an op's name, its fields and what
it answers are written down once. A request travels as one JSON line
(``{"op": "move", "name": "n2", "position": [3.0, 4.0, 0.0]}``); its reply is one JSON
line too: ``{"ok": true, ...the reply's fields}``, or ``{"ok": false, "kind": "SpecError",
"error": "..."}`` where ``kind`` names a class of ``pytest_cirque.core.errors`` that the
client raises again.

Requests are checked field by field when they are made and when they are decoded: a
missing, unknown or mistyped field is a one-line SpecError naming the op and the field.

Stdlib only: this module runs inside the medium container too.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, TypeVar, Union

from pytest_cirque.core import errors
from pytest_cirque.core.errors import CirqueError, NodeError, SpecError

#: The medium kind every WiFi node of a home shares, and the interface it gives them.
WIFI_MEDIUM: Final = "wifi"
WIFI_INTERFACE: Final = "wlan0"
#: Where a station's wpa_supplicant control sockets are (one per interface), in its node.
WPA_CTRL_DIR: Final = "/var/run/wpa_supplicant"
WIFI_CONTROL_SOCKET: Final = f"{WPA_CTRL_DIR}/{WIFI_INTERFACE}"
#: The home's radio volume: the WiFi medium's stations socket and the relay program every
#: station node runs to serve its control socket. The medium mounts it read-write, each
#: station node read-only (its logical name is STATIONS_VOLUME).
STATIONS_VOLUME: Final = "radio"
STATIONS_DIR: Final = "/run/cirque-radio"
STATIONS_SOCKET: Final = f"{STATIONS_DIR}/stations.sock"
WPA_CTRL_PROGRAM: Final = f"{STATIONS_DIR}/bin/cirque-wpa-ctrl"
#: The medium kind every Thread node of a home shares; the interface that carries a node's
#: simulated radio (its ot-rcp's UDP datagrams, nothing else) and the one ot-daemon makes.
THREAD_MEDIUM: Final = "thread"
THREAD_RADIO_INTERFACE: Final = "ot-radio0"
THREAD_INTERFACE: Final = "wpan0"
THREAD_CONTROL_SOCKET: Final = f"/run/openthread-{THREAD_INTERFACE}.sock"
#: The home's Thread volume: OpenThread's binaries, copied in by the Thread medium (which
#: mounts it read-write at THREAD_DIR), read-only in every Thread node at THREAD_NODE_DIR.
THREAD_VOLUME: Final = "thread"
THREAD_DIR: Final = "/run/cirque-thread"
THREAD_NODE_DIR: Final = "/opt/cirque-thread"
THREAD_BIN_DIR: Final = f"{THREAD_NODE_DIR}/bin"
#: Node ids of the simulated radio (ot-rcp's argument): 1..THREAD_MAX_NODES per medium.
THREAD_MAX_NODES: Final = 128


class Keep:
    """The value of a request field that leaves the setting as it is (never sent)."""

    _instance: ClassVar[Keep | None] = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __bool__(self) -> bool:
        return False


KEEP: Final = Keep()


# --- checking fields -------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if hint is Keep:
        return "omitted"
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    if origin is list:
        return f"a list ({_type_name(typing.get_args(hint)[0])} each)"
    if origin is dict:
        return f"an object ({_type_name(typing.get_args(hint)[1])} each)"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"an object ({hint.__name__})"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(
        hint, str(hint)
    )


class _Mismatch(Exception):
    """A value does not fit its field's type (internal: turned into a SpecError)."""


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as the field type ``hint`` wants it (an int where a float goes becomes
    a float, a tuple a list, an object a reply dataclass), or _Mismatch."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _convert(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is type(None) or hint is Keep:
        if value is (None if hint is type(None) else KEEP):
            return value
        raise _Mismatch
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        (item,) = typing.get_args(hint)
        return [_convert(v, item) for v in value]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        _key, item = typing.get_args(hint)
        return {k: _convert(v, item) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise _Mismatch
        try:
            return _build(hint, value, "")
        except SpecError:
            raise _Mismatch from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    raise TypeError(f"protocol: field type {hint!r} is not supported")


def _hints(cls: type) -> dict[str, Any]:
    cached = cls.__dict__.get("_field_hints")
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
        cls._field_hints = cached  # type: ignore[attr-defined]
    return cached


def _check(instance: Any, where: str) -> None:
    """Check and normalise every field of a (frozen) dataclass instance in place."""
    for name, hint in _hints(type(instance)).items():
        value = getattr(instance, name)
        try:
            converted = _convert(value, hint)
        except _Mismatch:
            raise SpecError(
                f"{where}: field {name!r} must be {_type_name(hint)}, not {value!r}"
            ) from None
        if converted is not value:
            object.__setattr__(instance, name, converted)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """An instance of the dataclass ``cls`` from decoded JSON fields, checked."""
    where = where or cls.__name__
    known = _hints(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpecError(
            f"{where}: unknown field {unknown[0]!r}; known: {', '.join(known) or 'none'}"
        )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r}")
    return cls(**data)


def _plain(instance: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON-able data, without the ones left at KEEP."""
    return {
        f.name: _plain_value(getattr(instance, f.name))
        for f in dataclasses.fields(instance)
        if getattr(instance, f.name) is not KEEP
    }


def _plain_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(value)
    if isinstance(value, dict):
        return {k: _plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


# --- replies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the relay answers to a request that succeeded."""

    def __post_init__(self) -> None:
        _check(self, f"reply {type(self).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Done(Reply):
    """The request was carried out; there is nothing to report."""


@dataclass(frozen=True)
class Endpoints(Reply):
    endpoints: list[str]


@dataclass(frozen=True)
class CaptureStopped(Reply):
    #: Frames the capture holds, and its path inside the medium (None: there was none).
    frames: int
    path: str | None


@dataclass(frozen=True)
class EndpointStatus(Reply):
    carrier: bool
    macs: list[str]
    counters: dict[str, int]
    #: The other end of a wired pair.
    peer: str | None


@dataclass(frozen=True)
class MediumStatus(Reply):
    #: The link model's snapshot: phy, airtime, queue_ms, nodes, links, rssi_dbm.
    model: dict[str, Any]
    endpoints: dict[str, EndpointStatus]
    drops: dict[str, int]
    #: Frames waiting for their delivery time.
    pending: int
    #: The running capture's path inside the medium, if any.
    capture: str | None


@dataclass(frozen=True)
class ApStatus(Reply):
    """An access point of the WiFi medium, as the relay reports it."""

    bssid: str
    ssid: str
    security: str
    channel: int
    hidden: bool
    #: State of each station by MAC: authenticated, associated, authorized.
    clients: dict[str, str]
    mic_failures: int

    def summary(self) -> str:
        """One line for a home's topology."""
        return f"{self.ssid!r} {self.security} channel {self.channel} bssid {self.bssid}"


@dataclass(frozen=True)
class StationStatus(Reply):
    """A WiFi station of the medium, as the relay reports it."""

    mac: str
    wpa_state: str
    bssid: str | None
    ssid: str | None
    ip_address: str | None
    networks: int
    #: The node's relay is connected (its token accepted): the node's socket is served.
    control_socket: bool

    def summary(self) -> str:
        """One line for a home's topology: its state, where it joined, its address."""
        joined = f" to {self.ssid!r} ({self.bssid})" if self.bssid else ""
        address = f" {self.ip_address}" if self.ip_address else ""
        return f"{self.wpa_state}{joined}{address}"


@dataclass(frozen=True)
class WifiStatus(Reply):
    """Every access point and station of a WiFi medium, by endpoint name."""

    aps: dict[str, ApStatus] = field(default_factory=dict)
    stations: dict[str, StationStatus] = field(default_factory=dict)


@dataclass(frozen=True)
class ApStarted(Reply):
    bssid: str


@dataclass(frozen=True)
class CtrlReply(Reply):
    #: The control interface's answer, as wpa_cli would print it.
    reply: str


@dataclass(frozen=True)
class LogLines(Reply):
    lines: list[str]


@dataclass(frozen=True)
class ThreadNodeId(Reply):
    #: The node's simulated radio id (1..THREAD_MAX_NODES), the same for a name every time.
    node_id: int


@dataclass(frozen=True)
class ThreadDataset(Reply):
    """A Thread network's operational dataset (hex fields without 0x, as ot-ctl prints)."""

    network_name: str
    channel: int
    panid: int
    extended_panid: str
    network_key: str
    mesh_local_prefix: str
    pskc: str


@dataclass(frozen=True)
class ThreadRadio(Reply):
    """One Thread radio on the medium: its id and the channel it last sent on."""

    node_id: int
    channel: int | None
    frames: int


@dataclass(frozen=True)
class ThreadStatus(Reply):
    radios: dict[str, ThreadRadio] = field(default_factory=dict)


# --- requests --------------------------------------------------------------------------

R = TypeVar("R", bound=Reply)

#: Every request class by its op name.
REQUESTS: dict[str, type[Request[Any]]] = {}


@dataclass(frozen=True)
class Request(Generic[R]):
    """One control request; ``OP`` is its name on the wire, ``REPLY`` what it answers."""

    OP: ClassVar[str] = ""
    REPLY: ClassVar[type[Reply]] = Done

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is Request:
                (cls.REPLY,) = typing.get_args(base)
        if cls.OP:
            if cls.OP in REQUESTS:
                raise TypeError(f"protocol: op {cls.OP!r} is defined twice")
            REQUESTS[cls.OP] = cls

    def __post_init__(self) -> None:
        _check(self, f"medium: op {self.OP!r}")

    def encode(self) -> str:
        """The request as one JSON line (without the newline)."""
        return json.dumps({"op": self.OP, **_plain(self)})

    def decode_reply(self, data: dict[str, Any]) -> R:
        """The typed reply to this request, or the error it carries raised again."""
        if not data.get("ok", False):
            raise error_of(data, f"medium: {self.OP} refused")
        fields = {k: v for k, v in data.items() if k != "ok"}
        try:
            reply: R = _build(self.REPLY, fields, f"medium: reply to op {self.OP!r}")
            return reply
        except SpecError as exc:
            raise NodeError(f"{exc}; the relay and its client disagree") from None


def decode_request(line: str) -> Request[Any]:
    """The request one JSON line carries; SpecError for anything else."""
    try:
        data = json.loads(line)
        op = data.pop("op")
    except (ValueError, KeyError, AttributeError, TypeError):
        raise SpecError(f"medium: bad control request {line.strip()[:200]!r}") from None
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise SpecError(f"medium: unknown op {op!r}; known: {', '.join(sorted(REQUESTS))}")
    return make_request(cls, data)


def make_request(cls: type[Request[R]], fields: dict[str, Any]) -> Request[R]:
    """A request of ``cls`` from named fields, with the same checks as on the wire."""
    request: Request[R] = _build(cls, fields, f"medium: op {cls.OP!r}")
    return request


def ok_reply(reply: Reply) -> dict[str, Any]:
    """A reply in its wire form."""
    return {"ok": True, **reply.to_dict()}


def error_reply(kind: str, message: str) -> dict[str, Any]:
    """A refusal in its wire form: the error class's name and its one-line message."""
    return {"ok": False, "kind": kind, "error": message}


def error_of(data: dict[str, Any], fallback: str) -> CirqueError:
    """The error a refusal names, as its class of pytest_cirque.core.errors (NodeError
    when it names none)."""
    kind = getattr(errors, str(data.get("kind")), NodeError)
    if not (isinstance(kind, type) and issubclass(kind, CirqueError)):
        kind = NodeError
    return kind(str(data.get("error") or fallback))


# --- the ops of every medium -----------------------------------------------------------


@dataclass(frozen=True)
class Ping(Request[Endpoints]):
    """Whether the relay answers; the endpoints it holds."""

    OP = "ping"


@dataclass(frozen=True)
class Reset(Request[Done]):
    """Back to the medium as attached: default model, attach positions and carriers, no
    capture."""

    OP = "reset"


@dataclass(frozen=True)
class Stop(Request[Done]):
    """Stop relaying after the reply; every endpoint's interface disappears."""

    OP = "stop"


@dataclass(frozen=True)
class Attach(Request[Done]):
    """Attach the TAP that comes along (SCM_RIGHTS); with ``peer``, a wired pair: the TAP
    and then a packet socket on the node's real LAN interface, attached as ``peer``."""

    OP = "attach"
    name: str
    position: list[float] | None = None
    carrier: bool = True
    peer: str | None = None


@dataclass(frozen=True)
class Detach(Request[Done]):
    OP = "detach"
    name: str


@dataclass(frozen=True)
class Move(Request[Done]):
    OP = "move"
    name: str
    #: Metres: [x, y] or [x, y, z].
    position: list[float]


@dataclass(frozen=True)
class SetNode(Request[Done]):
    """Change what one endpoint sends: loss (0..1), latency_ms, jitter_ms, rate_kbit
    (None: unlimited). Fields left at KEEP stay as they are."""

    OP = "node"
    name: str
    loss: float | Keep = KEEP
    latency_ms: float | Keep = KEEP
    jitter_ms: float | Keep = KEEP
    rate_kbit: float | Keep | None = KEEP

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in _plain(self).items() if k != "name"}


@dataclass(frozen=True)
class SetLink(Request[Done]):
    """Cut or restore the link a-b (``cut``), or change its impairments; both directions
    unless ``symmetric`` is false."""

    OP = "link"
    a: str
    b: str
    cut: bool | None = None
    symmetric: bool = True
    loss: float | Keep = KEEP
    latency_ms: float | Keep = KEEP
    jitter_ms: float | Keep = KEEP
    rate_kbit: float | Keep | None = KEEP

    def changes(self) -> dict[str, Any]:
        return {k: v for k, v in _plain(self).items() if k not in ("a", "b", "cut", "symmetric")}


@dataclass(frozen=True)
class SetMedium(Request[Done]):
    """Switch the airtime budget, change the queue limit, or change the PHY: by preset
    name (``phy``) or field by field (the fields of link_model.Phy)."""

    OP = "medium"
    airtime: bool | Keep = KEEP
    queue_ms: float | Keep = KEEP
    phy: str | Keep = KEEP
    frequency_mhz: float | Keep = KEEP
    tx_power_dbm: float | Keep = KEEP
    path_loss_exponent: float | Keep = KEEP
    sensitivity_dbm: float | Keep = KEEP
    loss_slope_db: float | Keep = KEEP
    data_rate_mbps: float | Keep = KEEP
    basic_rate_mbps: float | Keep = KEEP
    frame_overhead_us: float | Keep = KEEP
    air_header_bytes: int | Keep = KEEP
    out_of_range_margin_db: float | Keep = KEEP
    max_frame_bytes: int | Keep = KEEP
    channel_access_ms: float | Keep | None = KEEP

    def changes(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Carrier(Request[Done]):
    """Switch an endpoint's carrier: off, its node sees NO-CARRIER."""

    OP = "carrier"
    name: str
    on: bool


@dataclass(frozen=True)
class CaptureStart(Request[Done]):
    """Write every frame on the air to a pcap file at ``path`` inside the medium."""

    OP = "capture_start"
    path: str


@dataclass(frozen=True)
class CaptureStop(Request[CaptureStopped]):
    OP = "capture_stop"


@dataclass(frozen=True)
class Status(Request[MediumStatus]):
    OP = "status"


# --- the ops of a WiFi medium ----------------------------------------------------------


@dataclass(frozen=True)
class StartAccessPoint(Request[ApStarted]):
    """Make an attached endpoint an access point with BSSID ``mac``."""

    OP = "wifi_ap"
    name: str
    mac: str
    ssid: str
    psk: str | None = None
    channel: int = 6
    hidden: bool = False


@dataclass(frozen=True)
class StartStation(Request[Done]):
    """Make an attached endpoint a station. Its control socket is served in its node by
    the node's relay (cirque-wpa-ctrl), which connects to the medium's stations socket and
    must present ``token``: a secret only that node holds, so no other node can drive it."""

    OP = "wifi_station"
    name: str
    mac: str
    token: str
    ifname: str = WIFI_INTERFACE


@dataclass(frozen=True)
class GetWifiStatus(Request[WifiStatus]):
    OP = "wifi_status"


@dataclass(frozen=True)
class StationCtrl(Request[CtrlReply]):
    """One control-interface command, as the node's wpa_cli would send it."""

    OP = "wifi_ctrl"
    name: str
    command: str


@dataclass(frozen=True)
class StationLog(Request[LogLines]):
    """The station's control-interface history: commands, replies and events."""

    OP = "wifi_log"
    name: str


# --- the ops of a Thread medium --------------------------------------------------------


@dataclass(frozen=True)
class GetThreadNodeId(Request[ThreadNodeId]):
    """The simulated radio id of the node named ``name`` (given once, kept for the name)."""

    OP = "thread_node_id"
    name: str


@dataclass(frozen=True)
class GetThreadDataset(Request[ThreadDataset]):
    """The home's Thread dataset: chosen at random once, by the medium."""

    OP = "thread_dataset"


@dataclass(frozen=True)
class GetThreadStatus(Request[ThreadStatus]):
    OP = "thread_status"
