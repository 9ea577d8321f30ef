"""TrafficControl: a worse network on the node's LAN interface (loss, latency, jitter, rate).

Parameters (Cirque's ``latencyMs`` and ``loss``, plus ``jitterMs`` and ``rateKbit``):

- ``loss``: percent 0..100 of round trips through the node that are lost. Each frame is
  dropped independently in each direction with probability ``1 - sqrt(1 - loss/100)``, so
  a ping to or from the node loses ``loss`` percent, and a one-way stream loses that
  per-direction share.
- ``latencyMs``: added to every frame the node sends, as netem on its egress would: a
  round trip through the node grows by ``latencyMs`` once, whichever side starts it.
- ``jitterMs``: the added latency varies per frame (normal, this standard deviation,
  never below zero). Frames never overtake each other, unlike netem's jitter, which
  reorders them: a test sees the spread without reordering.
- ``rateKbit``: what the node sends leaves at this rate (Ethernet bytes counted). A node
  ahead of its rate is not read until it falls back (the medium's back-pressure), so its
  frames wait in its own interface's queue and its TCP slows down without loss, as with
  a local shaper such as tbf: about 96% of the rate arrives as payload (measured at 1000
  and 20000 kbit/s, with no frame dropped).

One mechanism on every host: the node's LAN interface runs through the home's userspace
"lan" medium (radios/medium.py), whose link model applies all four. The attach helper
(radios/endpoint.py, ``--wired``) renames Docker's veth ``eth0`` to ``eth0-lan``, gives a
TAP named ``eth0`` its MAC address, MTU, addresses and routes, and hands the relay the
TAP and a packet socket on ``eth0-lan`` as a pair: endpoint ``<node>`` carries what the
node sends (loss, latency, jitter, rate), ``<node>.lan`` what it receives (loss). The
node keeps its interface name, address (``node.ip``), default route and Docker's DNS.

netem is not used even where the kernel has it (many CI kernels lack it): a latency
means the same on every host, and loss, latency and rate come from one place instead of
iptables, netem and tbf with their different queues. The cost is a userspace hop: well
under a millisecond on a round trip, and one relay process for the home's shaped nodes.
A packet a neighbour on the same host sent with segmentation offload arrives whole (up
to 64 KiB) and is handed to the node whole, as a large receive: loss drops all of it.

Docker gives a restarted node a new network namespace: ``restarted`` wires the new one.
``stop`` detaches the pair; the TAP goes, ``eth0-lan`` stays until the container goes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_cirque.capabilities.model.base import Capability, Params, register
from pytest_cirque.radios.relay.endpoint import PEER_SUFFIX

#: Interface the home's LAN appears as in every node.
DEFAULT_INTERFACE = "eth0"
#: The home's medium every TrafficControl node is wired through.
LAN_MEDIUM = "lan"
#: Beyond these a link is no longer a slow network but a broken one (a frame held for
#: over a minute; a rate no relay reaches): refused when the spec is parsed.
MAX_LATENCY_MS = 60_000.0
MAX_RATE_KBIT = 10_000_000.0


def drop_probability(loss_percent: float) -> float:
    """Per-packet, per-direction drop probability giving ``loss_percent`` round-trip loss."""
    return 1.0 - math.sqrt(1.0 - loss_percent / 100.0)


@register
class TrafficControl(Capability):
    """Loss, latency, jitter and rate on the node's LAN, through the home's LAN medium."""

    name = "TrafficControl"

    def __init__(
        self,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        rate_kbit: float | None = None,
        interface: str = DEFAULT_INTERFACE,
    ) -> None:
        params: dict[str, Any] = {"latencyMs": latency_ms, "jitterMs": jitter_ms, "loss": loss}
        if rate_kbit is not None:
            params["rateKbit"] = rate_kbit
        params["interface"] = interface
        super().__init__(**params)
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.loss = loss
        self.rate_kbit = rate_kbit
        self.interface = interface

    @classmethod
    def params_from_cirque(cls, node_config: Mapping[str, Any]) -> dict[str, Any]:
        settings = node_config.get("traffic_control")
        return dict(settings) if isinstance(settings, Mapping) else {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> TrafficControl:
        reader = Params(params, where, cls.name)
        latency = reader.number(
            "latencyMs", default=0.0, minimum=0, maximum=MAX_LATENCY_MS, aliases=("latency_ms",)
        )
        jitter = reader.number(
            "jitterMs", default=0.0, minimum=0, maximum=MAX_LATENCY_MS, aliases=("jitter_ms",)
        )
        loss = reader.number("loss", default=0.0, minimum=0, maximum=100)
        rate = reader.number("rateKbit", minimum=0, maximum=MAX_RATE_KBIT, aliases=("rate_kbit",))
        interface = reader.text("interface", default=DEFAULT_INTERFACE)
        reader.done()
        if rate is not None and rate < 8:
            raise reader.error(
                "rateKbit", f"must be at least 8 kbit/s (got {rate:g}); omit it for no limit"
            )
        if jitter and not latency:
            raise reader.error("jitterMs", "needs latencyMs: jitter varies the added latency")
        return cls(latency, jitter, loss, rate, interface)

    @property
    def has_work(self) -> bool:
        """Whether anything is impaired: a TrafficControl of zeros leaves the LAN alone."""
        return bool(self.latency_ms or self.loss or self.rate_kbit is not None)

    def impairments(self, endpoint: str) -> dict[str, dict[str, Any]]:
        """What the medium applies to each end of the node's pair (``set_node`` fields):
        all of it to what the node sends, the loss also to what it receives."""
        drop = drop_probability(self.loss)
        return {
            endpoint: {
                "loss": drop,
                "latency_ms": self.latency_ms,
                "jitter_ms": self.jitter_ms,
                "rate_kbit": self.rate_kbit,
            },
            endpoint + PEER_SUFFIX: {"loss": drop},
        }
