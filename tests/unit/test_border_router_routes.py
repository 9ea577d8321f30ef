"""The home routes the LAN nodes of a border router's network to the prefixes it serves:
from a NET_ADMIN-only helper in each node's own namespace, again after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_cirque.capabilities.model import base
from pytest_cirque.capabilities.model.base import Capability
from pytest_cirque.capabilities.runtime.base import DRIVERS, Driver

from .test_home_node import FakeBackend, make_home

PREFIX = "fd12:3456:789a:2::/64"


class Routes(Capability):
    """Stands for a border router: its driver serves PREFIX to its LAN."""

    name = "Routes"

    @classmethod
    def from_params(cls, params: Any, where: str) -> Capability:
        return cls()


class RoutesDriver(Driver[Routes]):
    def lan_routes(self) -> list[str]:
        return [PREFIX]


@dataclass
class RoutingBackend(FakeBackend):
    """Gives each container an IPv6 LAN address, and keeps each NET_ADMIN helper's script
    by the name of the node whose namespace it ran in."""

    scripts: dict[str, list[str]] = field(default_factory=dict)

    def create_container(self, name: str, image: str, **options: Any) -> str:
        container = super().create_container(name, image, **options)
        joined = str(options.get("network_mode") or "").removeprefix("container:")
        if ".netadmin-" in name and joined in self.containers:
            node = self.containers[joined]["name"].rsplit(".", 1)[1]
            self.scripts.setdefault(node, []).append(options["command"][2])
        return container

    def inspect(self, container: str) -> dict[str, Any] | None:
        info = super().inspect(container)
        if info is not None:
            address = f"fd00:1::{container.removeprefix('c')}"
            info["NetworkSettings"]["Networks"] = {"lan": {"GlobalIPv6Address": address}}
        return info

    def restart(self, container: str, timeout: float = 10) -> None:
        self.calls.append(("restart", self.containers[container]["name"]))


@pytest.fixture(autouse=True)
def routes() -> Iterator[None]:
    base.lookup("LanAccess", "import")  # the registry knows the stock capabilities first
    base.REGISTRY["routes"] = Routes
    DRIVERS[Routes] = RoutesDriver
    yield
    base.REGISTRY.pop("routes", None)
    DRIVERS.pop(Routes, None)


def routed(backend: RoutingBackend, node: str) -> list[str]:
    return [script for script in backend.scripts.get(node, []) if PREFIX in script]


def test_the_lan_nodes_of_a_routers_network_get_a_route_through_it() -> None:
    backend = RoutingBackend()
    home, _ = make_home(
        backend,
        {
            "br": {"docker_network": "ipv6", "capabilities": ["Routes"]},
            "pc": {"docker_network": "ipv6"},
            "apart": {"docker_network": "ipv6", "capabilities": ["LanAccess"]},
            "v4": {},
        },
    )
    home.build()
    via = home["br"].ipv6[0]
    assert routed(backend, "pc") == [f"ip -6 route replace {PREFIX} via {via}\n"]
    # Another segment, another network, and the router itself: nothing.
    assert routed(backend, "apart") == routed(backend, "v4") == routed(backend, "br") == []

    home["pc"].restart()  # a new network namespace: routed again
    assert len(routed(backend, "pc")) == 2
    home["br"].restart()  # its LAN address may have changed: its peers are routed again
    assert len(routed(backend, "pc")) == 3
    home["v4"].restart()
    assert len(routed(backend, "pc")) == 3 and routed(backend, "v4") == []


def test_a_node_added_later_is_routed_too() -> None:
    backend = RoutingBackend()
    home, _ = make_home(backend, {"br": {"docker_network": "ipv6", "capabilities": ["Routes"]}})
    home.build()
    home.add_node("late", {"docker_network": "ipv6"})
    assert routed(backend, "late") == [f"ip -6 route replace {PREFIX} via {home['br'].ipv6[0]}\n"]
