"""The README's quick start: a home of three nodes, and who can reach whom.

Nodes with LanAccess share a LAN segment and reach each other; a node without it reaches
only its gateway, as in Cirque.
"""

import pytest


@pytest.mark.home(
    {
        "hub": {"capabilities": ["LanAccess"]},
        "sensor": {"capabilities": ["LanAccess"]},
        "lamp": {},  # no LanAccess: reaches only the gateway
    }
)
def test_hub_sees_sensor(home):
    result = home["hub"].exec(["ping", "-c", "1", "-W", "2", home["sensor"].ip])
    assert result.exit_code == 0, result.stdout
    assert home["lamp"].exec(["ping", "-c", "1", "-W", "1", home["sensor"].ip]).exit_code != 0


@pytest.mark.home({"hub": {}, "sensor": {}, "lamp": {}})
def test_a_home_describes_itself(home):
    description = home.describe()
    assert set(description["nodes"]) == {"hub", "sensor", "lamp"}
    assert all(node["state"] == "running" for node in description["nodes"].values())
    # Every node has its own address on the home LAN.
    assert len({node.ip for node in home.nodes.values()}) == 3
    assert "hub" in home.topology()
