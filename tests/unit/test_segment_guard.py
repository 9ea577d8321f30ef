"""The per-node segment guard: which routes a node on each kind of network gets."""

from __future__ import annotations

import ipaddress

import pytest

from pytest_cirque.homes import networks
from pytest_cirque.homes.networks import Network


def network(driver: str = "bridge", ipv6_subnet: str = "", segment: str = "lan") -> Network:
    return Network(
        "cirque-r-w-h.lan",
        "id",
        "default",
        segment,
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
    script = networks.segment_guard(network(ipv6_subnet=subnet, segment="lan-access"))
    assert script.splitlines() == [
        f"ip route replace prohibit {networks.DEFAULT_POOL}",
        f"ip -6 route replace prohibit {networks.ULA_RANGE}",
    ]
    assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(networks.ULA_RANGE))


def test_an_ipv6_lan_node_sends_on_its_lan_only_to_the_gateway_and_neighbour_discovery():
    """Docker's enable_icc=false keeps lan nodes apart over IPv4 only: the guard refuses
    the rest of the LAN over IPv6 in the node's own namespace, in this order."""
    lan = network(ipv6_subnet="fd12:3456:789a:1::/64")
    assert lan.ipv6_gateway == "fd12:3456:789a:1::1"
    script = networks.segment_guard(lan)
    assert networks.lan_ipv6_guard(lan) in script
    rules = [
        line.split(f"-A {networks.LAN_IPV6_CHAIN} ", 1)[1]
        for line in script.splitlines()
        if f"-A {networks.LAN_IPV6_CHAIN} " in line
    ]
    assert rules == [
        "-d fd12:3456:789a:1::1 -j RETURN",
        "-p ipv6-icmp --icmpv6-type router-solicitation -j RETURN",
        "-p ipv6-icmp --icmpv6-type neighbour-solicitation -j RETURN",
        "-p ipv6-icmp --icmpv6-type neighbour-advertisement -j RETURN",
        "-d fd12:3456:789a:1::/64 -j REJECT --reject-with adm-prohibited",
        "-d fe80::/10 -j REJECT --reject-with adm-prohibited",
        "-d ff00::/8 -j REJECT --reject-with adm-prohibited",
    ]
    # Only what leaves through the LAN interface goes through the chain (not lo, wpan0).
    assert '-I OUTPUT -o "$dev" -j CIRQUE-LAN6' in script


def test_hybrid_node_keeps_the_host_lan():
    assert networks.segment_guard(network(driver="macvlan")) == ""
