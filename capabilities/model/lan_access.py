"""LanAccess: the node reaches the other LanAccess nodes of its home, as in Cirque.

Without it a node sits on the home's default LAN segment, a bridge without traffic between
containers: it reaches only its gateway (and the outside, unless the network is internal).
With it, the home puts the node on its "lan-access" segment, whose nodes reach each other.
Cirque did this with iptables rules on the host; two bridges need no privilege. Docker's
isolation between the bridges has gaps on this engine, so each node also gets a route
that makes the other segments unreachable (networks.segment_guard).
"""

from __future__ import annotations

from pytest_cirque.capabilities.model.base import Capability, ContainerConfig, register

#: The home's segment for LanAccess nodes (see ContainerConfig.lan_segment).
LAN_ACCESS_SEGMENT = "lan-access"


@register
class LanAccess(Capability):
    """Join the home's LanAccess segment instead of the isolated default one."""

    name = "LanAccess"

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.lan_segment = LAN_ACCESS_SEGMENT
