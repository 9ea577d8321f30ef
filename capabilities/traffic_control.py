"""TrafficControl: a worse network on the node's LAN interface (loss, rate, latency, jitter).

Parameters (Cirque's ``latencyMs`` and ``loss``, plus ``jitterMs`` and ``rateKbit``):

- ``loss``: percent 0..100 of round trips through the node that are lost. Each packet is
  dropped independently in each direction (iptables ``statistic`` on INPUT and OUTPUT) with
  probability ``1 - sqrt(1 - loss/100)``, so a ping to or from the node loses ``loss``
  percent, and a one-way stream loses that per-direction share. Done with iptables on every
  kernel, netem or not, so the meaning never depends on the host.
- ``rateKbit``: what the node sends is shaped to this rate (tbf on its egress).
- ``latencyMs`` and ``jitterMs``: added to what the node sends (netem delay). They need the
  kernel's netem qdisc; without it they are refused when the spec is parsed.

Everything is applied through ``node.run_netadmin``: a helper container in the node's
network namespace with NET_ADMIN, so the node's image needs neither tc nor iptables.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
from collections.abc import Mapping
from typing import Any

from pytest_cirque.capabilities.base import Capability, NodeRuntime, Params, register, subject
from pytest_cirque.errors import CapabilityUnavailable

#: Forces netem detection: "1" (the engine's kernel has sch_netem) or "0" (it has not).
NETEM_ENV = "CIRQUE_NETEM"
#: Interface the home's LAN appears as in every node.
DEFAULT_INTERFACE = "eth0"
#: How long tbf may queue a packet before dropping it.
TBF_LATENCY_MS = 200


@functools.cache
def netem_available() -> bool:
    """Whether the kernel has the netem qdisc, read once from the host (no privilege needed).

    Checks a loaded module, the kernel config, then the module tree; ``CIRQUE_NETEM`` wins
    when the Docker engine's kernel is not this host's.
    """
    forced = os.environ.get(NETEM_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    if os.path.isdir("/sys/module/sch_netem"):
        return True
    release = os.uname().release
    for config_path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{release}", open)):
        try:
            with opener(config_path, "rt") as config:
                for line in config:
                    if line.startswith("CONFIG_NET_SCH_NETEM="):
                        return line.strip().split("=", 1)[1] in ("y", "m")
                return False
        except OSError:
            continue
    modules = f"/lib/modules/{release}"
    try:
        with open(f"{modules}/modules.builtin") as builtin:
            if "sch_netem.ko" in builtin.read():
                return True
    except OSError:
        pass
    sched = f"{modules}/kernel/net/sched"
    return os.path.isdir(sched) and any(n.startswith("sch_netem.ko") for n in os.listdir(sched))


def drop_probability(loss_percent: float) -> float:
    """Per-packet, per-direction drop probability giving ``loss_percent`` round-trip loss."""
    return 1.0 - math.sqrt(1.0 - loss_percent / 100.0)


@register
class TrafficControl(Capability):
    """Loss and rate on every kernel; latency and jitter where netem exists."""

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
        latency = reader.number("latencyMs", default=0.0, minimum=0, aliases=("latency_ms",))
        jitter = reader.number("jitterMs", default=0.0, minimum=0, aliases=("jitter_ms",))
        loss = reader.number("loss", default=0.0, minimum=0, maximum=100)
        rate = reader.number("rateKbit", minimum=0, aliases=("rate_kbit",))
        interface = reader.text("interface", default=DEFAULT_INTERFACE)
        reader.done()
        if rate is not None and rate < 8:
            raise reader.error(
                "rateKbit", f"must be at least 8 kbit/s (got {rate:g}); omit it for no limit"
            )
        if jitter and not latency:
            raise reader.error("jitterMs", "needs latencyMs: jitter varies the added latency")
        if (latency or jitter) and not netem_available():
            raise CapabilityUnavailable(
                f"{subject(where, cls.name)} latencyMs/jitterMs need the kernel's "
                "netem qdisc (sch_netem), which this host lacks; latency and jitter on the "
                "LAN arrive with the userspace LAN medium of the radio work: remove them, "
                f"keep loss and rateKbit, or set {NETEM_ENV}=1 if the Docker engine's "
                "kernel has netem"
            )
        return cls(latency, jitter, loss, rate, interface)

    def netadmin_script(self) -> str:
        """The shell script that sets this up in the node's network namespace."""
        dev = self.interface
        lines = ["set -e"]
        if self.latency_ms or self.rate_kbit is not None:
            lines.append(f"tc qdisc del dev {dev} root 2>/dev/null || true")
        shaper_parent = "root"
        if self.latency_ms:
            delay = f"delay {self.latency_ms:g}ms"
            if self.jitter_ms:
                delay += f" {self.jitter_ms:g}ms distribution normal"
            lines.append(f"tc qdisc add dev {dev} root handle 1: netem {delay}")
            shaper_parent = "parent 1:1"
        if self.rate_kbit is not None:
            rate_bytes = self.rate_kbit * 1000 / 8
            # Small enough that a transfer sees the configured rate, at least two full
            # frames so tbf can send one at all.
            burst = max(3200, int(rate_bytes / 50))
            lines.append(
                f"tc qdisc add dev {dev} {shaper_parent} handle 10: tbf "
                f"rate {self.rate_kbit:g}kbit burst {burst} latency {TBF_LATENCY_MS}ms"
            )
        if self.loss:
            probability = f"{drop_probability(self.loss):.6f}"
            for tool in ("iptables", "ip6tables"):
                for chain, direction in (("INPUT", "-i"), ("OUTPUT", "-o")):
                    lines.append(
                        f"{tool} -w -I {chain} {direction} {dev} -m statistic --mode random "
                        f"--probability {probability} -j DROP"
                    )
        return "\n".join(lines) + "\n"

    def start(self, node: NodeRuntime) -> None:
        if self.latency_ms or self.loss or self.rate_kbit is not None:
            node.run_netadmin(self.netadmin_script())

    def restarted(self, node: NodeRuntime) -> None:
        # The qdiscs and iptables rules lived in the old network namespace.
        self.start(node)
