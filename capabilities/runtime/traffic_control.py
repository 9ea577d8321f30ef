"""TrafficControl on a running node: its LAN interface wired through the home's LAN medium,
whose link model applies the impairments (see capabilities/model/traffic_control.py)."""

from __future__ import annotations

import contextlib

from pytest_cirque.capabilities.model.traffic_control import LAN_MEDIUM, TrafficControl
from pytest_cirque.capabilities.runtime.base import Driver, NodeRuntime, drives
from pytest_cirque.core.errors import CirqueError


@drives(TrafficControl)
class TrafficControlDriver(Driver[TrafficControl]):
    """Puts the medium in the middle of the node's LAN interface and sets its impairments."""

    def start(self, node: NodeRuntime) -> None:
        wanted = self.capability
        if not wanted.has_work:
            return
        medium = node.medium(LAN_MEDIUM)
        medium.attach(node.container_id, node.name, ifname=wanted.interface, wired=True)
        for endpoint, impairment in wanted.impairments(node.name).items():
            medium.set_node(endpoint, **impairment)

    def restarted(self, node: NodeRuntime) -> None:
        if not self.capability.has_work:
            return
        # The old pair lived in the old namespace; the relay may not have noticed yet.
        self._detach(node)
        self.start(node)

    def stop(self, node: NodeRuntime) -> None:
        if self.capability.has_work:
            self._detach(node)

    @staticmethod
    def _detach(node: NodeRuntime) -> None:
        """Detach the node's pair; nothing when it is gone already (or the medium is)."""
        with contextlib.suppress(CirqueError):
            node.medium(LAN_MEDIUM).detach(node.name)
