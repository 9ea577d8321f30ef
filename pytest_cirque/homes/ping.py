"""Ping from inside a node, with the node's own ``ping``: how the WiFi and Thread helpers
check that one device reaches another, as the device's own software would."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_cirque.homes.node import Node


@dataclass
class PingResult:
    """How many echo requests went out, how many came back, and their round trips."""

    target: str
    sent: int
    received: int
    rtt_ms: list[float] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0


def ping(
    node: Node,
    target: str,
    count: int = 3,
    interval: float = 0.2,
    interface: str | None = None,
    deadline_s: float | None = None,
) -> PingResult:
    """Run ``ping`` in the node (IPv4 or IPv6, from the address) and count the replies.
    Raises nothing for lost replies: callers judge the loss."""
    # -W (wait per reply), not -w (a deadline): with -w, ping stops once it has ``count``
    # replies and counts requests still in flight as lost.
    deadline = deadline_s or count * interval + 5
    command = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2"]
    if ":" in target:
        command.append("-6")
    if interface:
        command += ["-I", interface]
    result = node.exec([*command, target], timeout=deadline + 10)
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", result.stdout)]
    if sent is None:
        return PingResult(target, count, 0)
    return PingResult(target, int(sent.group(1)), int(sent.group(2)), rtts)
