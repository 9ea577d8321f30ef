"""LanAccess: which nodes of a home reach each other on the wired LAN.

The per-node fixtures ``hub`` and ``sensor`` come from conftest.py. The capabilities
marker adds LanAccess to the nodes it names, on top of the home marker's spec.
"""

import pytest

HOME = {"hub": {}, "sensor": {}, "lamp": {}}


def ping(node, address) -> bool:
    return node.exec(["ping", "-c", "1", "-W", "1", address]).exit_code == 0


def gateway(node) -> str:
    route = node.exec("ip -4 route show default", check=True).stdout.split()
    return route[route.index("via") + 1]


@pytest.mark.home(HOME)
@pytest.mark.capabilities("LanAccess", nodes=["hub", "sensor"])
def test_lan_access_pair_reach_each_other(hub, sensor):
    assert ping(hub, sensor.ip)
    assert ping(sensor, hub.ip)


@pytest.mark.home(HOME)
@pytest.mark.capabilities("LanAccess", nodes=["hub", "sensor"])
def test_a_node_without_lan_access_reaches_only_its_gateway(home, hub):
    lamp = home["lamp"]
    assert ping(lamp, gateway(lamp))
    assert not ping(lamp, hub.ip)
    assert not ping(hub, lamp.ip)
