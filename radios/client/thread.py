"""The Thread ops of a medium, typed: radio ids, the home's dataset and the radios' state."""

from __future__ import annotations

from pytest_cirque.radios.client.container import MediumClient
from pytest_cirque.radios.relay.protocol import (
    GetThreadDataset,
    GetThreadNodeId,
    GetThreadStatus,
    ThreadDataset,
    ThreadStatus,
)


class ThreadClient(MediumClient):
    """What tests and capabilities ask of a Thread medium (one started with thread=True)."""

    LAYER = "thread"

    def node_id(self, name: str) -> int:
        """The simulated radio id of node ``name`` (1..128), the same after a restart."""
        return self.request(GetThreadNodeId(name=name)).node_id

    def dataset(self) -> ThreadDataset:
        """The home's Thread network, chosen once by the medium."""
        return self.request(GetThreadDataset())

    def status(self) -> ThreadStatus:
        """Each radio's id, the channel it last sent on and how many frames it sent."""
        return self.request(GetThreadStatus())
