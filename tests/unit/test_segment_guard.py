"""The per-node segment guard: which routes a node on each kind of network gets."""

from __future__ import annotations

import ipaddress

import pytest

from pytest_cirque.homes import networks
from pytest_cirque.homes.networks import Network


def network(driver: str = "bridge", ipv6_subnet: str = "") -> Network:
    return Network(
        "cirque-r-w-h.lan",
        "id",
        "default",
        "lan",
        "10.213.7.0/24",
        "10.213.7.1",
        ipv6_subnet,
        driver,
    )


def test_bridge_node_cannot_route_to_the_rest_of_the_pool(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CIRQUE_SUBNET_POOL", "10.213.0.0/16")
    assert networks.segment_guard(network()) == "ip route replace prohibit 10.213.0.0/16\n"


def test_ipv6_node_cannot_route_to_other_unique_local_prefixes(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("CIRQUE_SUBNET_POOL", raising=False)
    subnet = networks.ula_subnet("x")
    script = networks.segment_guard(network(ipv6_subnet=subnet)).splitlines()
    assert script == [
        f"ip route replace prohibit {networks.DEFAULT_POOL}",
        f"ip -6 route replace prohibit {networks.ULA_RANGE}",
    ]
    assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(networks.ULA_RANGE))


def test_hybrid_node_keeps_the_host_lan():
    assert networks.segment_guard(network(driver="macvlan")) == ""
