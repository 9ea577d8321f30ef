"""A home from a Cirque-style topology file (the path is relative to this test file)."""

import pytest


@pytest.mark.home("cirque_topology.yaml")
def test_cirque_topology_comes_up(home):
    assert set(home.nodes) == {"gateway", "thermostat", "doorbell"}
    gateway = home["gateway"]
    for name in ("thermostat", "doorbell"):
        assert gateway.exec(["ping", "-c", "1", "-W", "2", home[name].ip]).exit_code == 0
    # docker_network: ipv6 gives every node an IPv6 address as well.
    assert all(node.ipv6 for node in home.nodes.values())
    description = home.describe()
    caps = [c["name"] for c in description["nodes"]["thermostat"]["capabilities"]]
    assert caps == ["LanAccess", "TrafficControl"]


def test_two_homes_in_one_test_are_isolated(home_factory):
    first = home_factory("cirque_topology.yaml")
    second = home_factory({"intruder": {"capabilities": ["LanAccess"]}})
    assert first.name != second.name
    intruder = second["intruder"]
    assert intruder.exec(["ping", "-c", "1", "-W", "1", first["gateway"].ip]).exit_code != 0
