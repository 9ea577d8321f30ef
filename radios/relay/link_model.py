"""Link model of a radio medium: what happens to each frame between two endpoints.

Pure: no Docker, no sockets, no clock of its own (the caller passes ``now``), so the
relay and the unit tests drive it the same way. Everything here can change while the
medium runs: move a node, cut a link, change loss, latency, jitter or rate.

A frame from ``src`` crosses the medium in two steps:

1. ``transmit(src, size, now)``: the sender waits for its own egress rate (when set) and
   for airtime on the shared channel (one transmission, heard by every receiver).
   Returns the wait in seconds, or a ``Decision`` that drops the frame (queue full, or
   channel busy for a radio that gives up deferring, as CSMA-CA does).
2. ``receive(src, dst, size, now, waited)``: for each receiver, path loss gives RSSI and
   a loss probability; the sender's and the link's own loss, latency, jitter and rate
   apply on top. Returns a ``Decision`` (deliver or drop, and after how long).

Node impairments act on what the node sends (as a qdisc on its interface would); link
impairments act on one direction (``set_link`` sets both unless ``symmetric=False``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pytest_cirque.core.errors import SpecError

Position = tuple[float, float, float]


@dataclass(frozen=True)
class Phy:
    """Radio parameters of a medium: propagation, receiver sensitivity and airtime."""

    name: str
    frequency_mhz: float
    tx_power_dbm: float
    #: Log-distance path loss exponent (2 is free space, about 3 indoors).
    path_loss_exponent: float
    #: RSSI at which half the frames are lost.
    sensitivity_dbm: float
    #: Width in dB of the transition from "always received" to "never received".
    loss_slope_db: float
    #: Rate of unicast data frames on the air.
    data_rate_mbps: float
    #: Rate of broadcast and multicast frames (sent at a basic rate, without ACK).
    basic_rate_mbps: float
    #: Per-frame channel cost besides the payload: DIFS, mean backoff, preamble, SIFS, ACK.
    frame_overhead_us: float
    #: Bytes a frame gains on the air over its Ethernet form (MAC header, LLC/SNAP, FCS).
    air_header_bytes: int
    #: How far below the sensitivity a receiver stops hearing anything at all.
    out_of_range_margin_db: float = 10.0
    #: The longest frame the PHY carries, in the sizes ``airtime_s`` takes.
    max_frame_bytes: int = 1500
    #: Longest a radio defers to a busy channel before it gives up on a frame, as CSMA-CA
    #: does, in ms; None: frames wait for the air up to the medium's ``queue_ms``.
    channel_access_ms: float | None = None


#: 802.11g at 54 Mbit/s on channel 6 indoors: about 31 Mbit/s of 1500-byte payload at
#: full airtime, and a range of about 100 m.
PHY_80211G = Phy(
    name="802.11g",
    frequency_mhz=2437.0,
    tx_power_dbm=20.0,
    path_loss_exponent=3.0,
    sensitivity_dbm=-82.0,
    loss_slope_db=1.5,
    data_rate_mbps=54.0,
    basic_rate_mbps=6.0,
    frame_overhead_us=154.0,
    air_header_bytes=22,
)

#: IEEE 802.15.4 at 2.4 GHz (Thread): 250 kbit/s on every channel. Two radios up to 50 m
#: apart hear each other without loss; the loss rises from about 60 m, and beyond 78 m
#: (under 80 m) nothing is heard at all. Sizes are PSDUs; a frame gains its 6-byte
#: preamble, start delimiter and length (SHR, PHR), and costs a CCA and a turnaround.
#:
#: A frame that cannot get on the air within 8 ms is dropped ("channel busy"). Its sender
#: waits 16 ms for the ACK from the moment it sent (OpenThread's kAckTimeout); a frame
#: held longer would be answered after that, and sent again while it still takes air.
#: That is what made a busy channel collapse. The other 8 ms are for both radios and the
#: relay to turn the ACK around.
PHY_802154 = Phy(
    name="802.15.4",
    frequency_mhz=2440.0,
    tx_power_dbm=0.0,
    path_loss_exponent=3.0,
    sensitivity_dbm=-96.0,
    loss_slope_db=0.25,
    data_rate_mbps=0.25,
    basic_rate_mbps=0.25,
    frame_overhead_us=320.0,
    air_header_bytes=6,
    out_of_range_margin_db=1.0,
    max_frame_bytes=127,
    channel_access_ms=8.0,
)

#: A switched wired LAN: no range, no shared airtime (run it with ``airtime=False``), so
#: only the impairments set on nodes and links apply (TrafficControl without netem).
PHY_WIRED = Phy(
    name="wired",
    frequency_mhz=1.0,
    tx_power_dbm=0.0,
    path_loss_exponent=0.0,
    sensitivity_dbm=-1000.0,
    loss_slope_db=1.0,
    data_rate_mbps=1000.0,
    basic_rate_mbps=1000.0,
    frame_overhead_us=0.0,
    air_header_bytes=0,
)

PHYS = {phy.name: phy for phy in (PHY_80211G, PHY_802154, PHY_WIRED)}

#: The least airtime a free channel holds in reserve, in seconds (a short burst of frames
#: goes out at once, as after a radio's backoff).
CHANNEL_BURST_S = 0.002
#: Loss probabilities below this count as zero, so nearby nodes are exactly lossless.
NEGLIGIBLE_LOSS = 1e-6
#: How far below the sensitivity a receiver stops hearing anything at all (the default
#: of Phy.out_of_range_margin_db).
OUT_OF_RANGE_MARGIN_DB = 10.0


@dataclass
class Impairment:
    """Loss, latency, jitter and rate of a node's egress or of one link direction."""

    loss: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    #: None means unlimited (only the medium's airtime limits it).
    rate_kbit: float | None = None

    @classmethod
    def checked(cls, base: Impairment, where: str, **changes: object) -> Impairment:
        """``base`` with ``changes`` applied, or SpecError naming the bad field."""
        known = {f.name for f in fields(cls)}
        for key in changes:
            if key not in known:
                raise SpecError(f"{where}: unknown field {key!r}; known: {', '.join(known)}")
        try:
            numbers: dict[str, Any] = {
                key: None if key == "rate_kbit" and value is None else float(value)  # type: ignore[arg-type]
                for key, value in changes.items()
            }
        except (TypeError, ValueError):
            raise SpecError(f"{where}: {', '.join(changes)} must be numbers") from None
        result = replace(base, **numbers)
        if not 0.0 <= result.loss <= 1.0:
            raise SpecError(f"{where}: loss must be between 0 and 1 (got {result.loss})")
        if result.latency_ms < 0 or result.jitter_ms < 0:
            raise SpecError(f"{where}: latency_ms and jitter_ms must be >= 0")
        if result.rate_kbit is not None and result.rate_kbit <= 0:
            raise SpecError(f"{where}: rate_kbit must be > 0, or None for unlimited")
        return result


@dataclass
class Decision:
    """What happens to one frame for one receiver."""

    deliver: bool
    #: Seconds from now until the frame reaches the receiver.
    delay: float = 0.0
    #: Why a frame was dropped ("cut", "out of range", "loss", "queue full", "channel busy").
    reason: str = ""


DROP_QUEUE_FULL = Decision(False, reason="queue full")
DROP_CHANNEL_BUSY = Decision(False, reason="channel busy")


class TokenBucket:
    """Rate limiter with a backlog: a cost that exceeds the tokens waits for them.

    ``reserve`` takes the tokens at once (the balance may go negative, which is the
    queue) and returns how long the frame must wait, or None when that wait would
    exceed ``max_wait`` (the queue is full, the frame is dropped).
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = 0.0

    def reserve(self, cost: float, now: float, max_wait: float) -> float | None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        wait = max(0.0, (cost - self.tokens) / self.rate)
        if wait > max_wait:
            return None
        self.tokens -= cost
        return wait


@dataclass
class _Node:
    position: Position
    egress: Impairment = field(default_factory=Impairment)
    bucket: TokenBucket | None = None


@dataclass
class _Link:
    cut: bool = False
    impairment: Impairment = field(default_factory=Impairment)
    bucket: TokenBucket | None = None


def _bucket_for(impairment: Impairment) -> TokenBucket | None:
    """A byte bucket for a rate limit, with a burst of a few full frames."""
    if impairment.rate_kbit is None:
        return None
    return TokenBucket(rate=impairment.rate_kbit * 1000 / 8, burst=3 * 1514)


class LinkModel:
    """Positions, impairments and the airtime budget of one medium."""

    def __init__(
        self,
        phy: Phy = PHY_80211G,
        *,
        airtime: bool = True,
        queue_ms: float = 100.0,
        rng: random.Random | None = None,
    ) -> None:
        self.phy = phy
        #: Whether frames share the channel's airtime (False: only per-node/link rates apply).
        self.airtime = airtime
        #: Longest a frame may wait for rate or airtime before it is dropped.
        self.queue_ms = queue_ms
        self.rng = rng or random.Random()
        self._nodes: dict[str, _Node] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        #: When the last frame on each direction arrives; later frames never overtake it.
        self._last_arrival: dict[tuple[str, str], float] = {}
        self._channel = self._new_channel()
        #: The airtime of each radio channel, when frames name theirs (802.15.4 channels).
        self._channels: dict[int, TokenBucket] = {}

    # --- topology -------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return list(self._nodes)

    def add_node(self, name: str, position: Iterable[float] = (0.0, 0.0, 0.0)) -> None:
        if name in self._nodes:
            raise SpecError(f"node {name!r} is already on the medium")
        self._nodes[name] = _Node(position=_position(position, name))

    def remove_node(self, name: str) -> None:
        self._node(name)
        del self._nodes[name]
        for table in (self._links, self._last_arrival):
            for key in [key for key in table if name in key]:
                del table[key]

    def move(self, name: str, position: Iterable[float]) -> None:
        self._node(name).position = _position(position, name)

    def position(self, name: str) -> Position:
        return self._node(name).position

    # --- parameters -----------------------------------------------------------------

    def set_node(self, name: str, **changes: object) -> None:
        """Change a node's egress loss, latency_ms, jitter_ms or rate_kbit."""
        node = self._node(name)
        node.egress = Impairment.checked(node.egress, f"node {name!r}", **changes)
        if "rate_kbit" in changes:
            node.bucket = _bucket_for(node.egress)

    def set_link(
        self, a: str, b: str, *, cut: bool | None = None, symmetric: bool = True, **changes: object
    ) -> None:
        """Cut or restore a link, or change its loss, latency_ms, jitter_ms or rate_kbit."""
        self._node(a)
        self._node(b)
        if a == b:
            raise SpecError(f"link {a!r}-{b!r}: a link joins two different nodes")
        for key in [(a, b), (b, a)] if symmetric else [(a, b)]:
            link = self._links.setdefault(key, _Link())
            link.impairment = Impairment.checked(
                link.impairment, f"link {key[0]!r}->{key[1]!r}", **changes
            )
            if "rate_kbit" in changes:
                link.bucket = _bucket_for(link.impairment)
            if cut is not None:
                link.cut = cut

    def set_medium(
        self,
        *,
        airtime: bool | None = None,
        queue_ms: float | None = None,
        phy: str | Phy | None = None,
        **phy_changes: object,
    ) -> None:
        """Switch the airtime budget, change the queue limit, or change the PHY (by preset
        name, or field by field, e.g. ``data_rate_mbps=11``)."""
        if airtime is not None:
            self.airtime = bool(airtime)
        if queue_ms is not None:
            if queue_ms < 0:
                raise SpecError("medium: queue_ms must be >= 0")
            self.queue_ms = float(queue_ms)
        if phy is not None:
            if isinstance(phy, str):
                if phy not in PHYS:
                    raise SpecError(f"medium: unknown phy {phy!r}; known: {', '.join(PHYS)}")
                phy = PHYS[phy]
            self.phy = phy
        if phy_changes:
            known = {f.name for f in fields(Phy)}
            unknown = sorted(set(phy_changes) - known)
            if unknown:
                raise SpecError(f"medium: unknown field(s) {', '.join(unknown)}")
            self.phy = replace(self.phy, **phy_changes)  # type: ignore[arg-type]

    # --- radio ----------------------------------------------------------------------

    def distance_m(self, a: str, b: str) -> float:
        return math.dist(self._node(a).position, self._node(b).position)

    def path_loss_db(self, a: str, b: str) -> float:
        """Log-distance path loss, free-space loss at the 1 m reference distance."""
        distance = max(self.distance_m(a, b), 1.0)
        reference = 20 * math.log10(self.phy.frequency_mhz) - 27.55  # FSPL at 1 m, in dB
        return reference + 10 * self.phy.path_loss_exponent * math.log10(distance)

    def rssi_dbm(self, a: str, b: str) -> float:
        return self.phy.tx_power_dbm - self.path_loss_db(a, b)

    def radio_loss(self, a: str, b: str) -> float:
        """Probability that a frame from a is lost at b because of the signal alone."""
        margin = self.rssi_dbm(a, b) - self.phy.sensitivity_dbm
        if margin < -self.phy.out_of_range_margin_db:
            return 1.0
        exponent = margin / self.phy.loss_slope_db
        if exponent > 50:  # far above the sensitivity (and math.exp would overflow)
            return 0.0
        loss = 1.0 / (1.0 + math.exp(exponent))
        return 0.0 if loss < NEGLIGIBLE_LOSS else loss

    def in_range(self, a: str, b: str) -> bool:
        return self.radio_loss(a, b) < 1.0

    def loss_probability(self, src: str, dst: str) -> float:
        """All causes together: signal, the sender's egress loss and the link's loss."""
        link = self._links.get((src, dst))
        if link is not None and link.cut:
            return 1.0
        survive = 1.0 - self.radio_loss(src, dst)
        survive *= 1.0 - self._node(src).egress.loss
        if link is not None:
            survive *= 1.0 - link.impairment.loss
        return 1.0 - survive

    def _new_channel(self) -> TokenBucket:
        """A channel's airtime, in seconds of air per second. A free channel takes any one
        frame at once (its burst holds the longest frame, and at least CHANNEL_BURST_S), so
        an idle channel adds no delay; frames sent faster than the air carries them wait."""
        burst = max(CHANNEL_BURST_S, self.airtime_s(self.phy.max_frame_bytes))
        return TokenBucket(rate=1.0, burst=burst)

    def airtime_s(self, size: int, broadcast: bool = False) -> float:
        """Channel time one frame of ``size`` Ethernet bytes takes."""
        phy = self.phy
        rate = phy.basic_rate_mbps if broadcast else phy.data_rate_mbps
        return (phy.frame_overhead_us + (size + phy.air_header_bytes) * 8 / rate) / 1e6

    # --- frames ---------------------------------------------------------------------

    def transmit(
        self, src: str, size: int, now: float, broadcast: bool = False, channel: int | None = None
    ) -> float | Decision:
        """Wait before ``src`` gets the frame on the air, or a drop Decision. A frame that
        names its radio ``channel`` spends that channel's airtime only: radios on other
        channels transmit at the same time."""
        node = self._node(src)
        max_wait = self.queue_ms / 1000
        wait = 0.0
        if node.bucket is not None:
            node_wait = node.bucket.reserve(size, now, max_wait)
            if node_wait is None:
                return DROP_QUEUE_FULL
            wait = node_wait
        if self.airtime:
            air = self._channel
            if channel is not None:
                air = self._channels.get(channel) or self._channels.setdefault(
                    channel, self._new_channel()
                )
            longest, drop = max_wait - wait, DROP_QUEUE_FULL
            access_ms = self.phy.channel_access_ms
            if access_ms is not None and access_ms / 1000 < longest:
                longest, drop = access_ms / 1000, DROP_CHANNEL_BUSY
            air_wait = air.reserve(self.airtime_s(size, broadcast), now + wait, longest)
            if air_wait is None:
                return drop
            wait += air_wait
        return wait

    def receive(self, src: str, dst: str, size: int, now: float, waited: float = 0.0) -> Decision:
        """Whether and when the frame ``src`` transmitted reaches ``dst``."""
        link = self._links.get((src, dst))
        if link is not None and link.cut:
            return Decision(False, reason="cut")
        radio_loss = self.radio_loss(src, dst)
        if radio_loss >= 1.0:
            return Decision(False, reason="out of range")
        egress = self._node(src).egress
        impairments = [egress] if link is None else [egress, link.impairment]
        survive = 1.0 - radio_loss
        for impairment in impairments:
            survive *= 1.0 - impairment.loss
        if survive < 1.0 and self.rng.random() >= survive:
            return Decision(False, reason="loss")
        delay = waited
        if link is not None and link.bucket is not None:
            link_wait = link.bucket.reserve(size, now + waited, self.queue_ms / 1000 - waited)
            if link_wait is None:
                return DROP_QUEUE_FULL
            delay += link_wait
        for impairment in impairments:
            delay += impairment.latency_ms / 1000
            if impairment.jitter_ms:
                delay += self.rng.gauss(0.0, impairment.jitter_ms / 1000)
        delay = max(0.0, delay)
        # Radios do not reorder frames: a frame never arrives before its predecessor.
        arrival = max(now + delay, self._last_arrival.get((src, dst), 0.0))
        self._last_arrival[(src, dst)] = arrival
        return Decision(True, delay=arrival - now)

    # --- inspection -----------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Everything a test or a log may want to see, as plain JSON-able data."""
        names = list(self._nodes)
        return {
            "phy": asdict(self.phy),
            "airtime": self.airtime,
            "queue_ms": self.queue_ms,
            "nodes": {
                name: {"position": list(node.position), "egress": asdict(node.egress)}
                for name, node in self._nodes.items()
            },
            "links": {
                f"{a}->{b}": {"cut": link.cut, **asdict(link.impairment)}
                for (a, b), link in self._links.items()
            },
            "rssi_dbm": {
                f"{a}->{b}": round(self.rssi_dbm(a, b), 1) for a in names for b in names if a != b
            },
        }

    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            known = ", ".join(self._nodes) or "none"
            raise SpecError(f"no node {name!r} on the medium (nodes: {known})") from None


def _position(value: Iterable[float], name: str) -> Position:
    try:
        coordinates = tuple(float(c) for c in value)
    except (TypeError, ValueError):
        raise SpecError(f"node {name!r}: position must be 2 or 3 numbers (metres)") from None
    if len(coordinates) == 2:
        coordinates = (*coordinates, 0.0)
    if len(coordinates) != 3:
        raise SpecError(f"node {name!r}: position must be 2 or 3 numbers (metres)")
    return coordinates
