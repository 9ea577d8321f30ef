"""A Thread border router: a node that routes between the home's Thread mesh and its IPv6
LAN, so a computer on the LAN and a sensor several radio hops away reach each other.

A border router is infrastructure: the home starts its Thread network at once and, as
soon as it leads, publishes an off-mesh-routable prefix (every Thread node takes an
address in it) and a route to its LAN. The LAN's other nodes get a route to that prefix
from the home; they need no privileges of their own. A border router needs an IPv6 LAN
(``docker_network: ipv6``), and LanAccess lets LAN nodes reach it (and each other).
"""

import ipaddress

import pytest

from pytest_cirque import Node, wait_until

#: Thread nodes in a line, 45 m apart: each hears only its neighbours (sure up to 50 m,
#: never beyond 80 m), so the sensor at the far end is three radio hops from the router.
SPACING_M = 45


def thread_node(metres: float) -> dict:
    return {"capabilities": [{"Thread": {"position": [metres, 0]}}]}


def ot_ctl(node: Node, *command: str) -> str:
    """Ask the node's OpenThread, as its own software would (``ot-ctl`` is on its PATH)."""
    return node.exec(["ot-ctl", *command], check=True).stdout


def address_in(node: Node, prefix: ipaddress.IPv6Network) -> str | None:
    """The node's Thread address in ``prefix``, once it has one."""
    addresses = [word for word in ot_ctl(node, "ipaddr").split() if ":" in word]  # no "Done"
    return next((a for a in addresses if ipaddress.IPv6Address(a) in prefix), None)


def pings(source: Node, address: str, *options: str) -> bool:
    return source.exec(["ping", "-c", "3", "-W", "2", *options, address], timeout=60).exit_code == 0


@pytest.mark.home(
    {
        "router": {
            "docker_network": "ipv6",
            "capabilities": ["LanAccess", {"Thread": {"border_router": True}}],
        },
        "hall": thread_node(SPACING_M),
        "porch": thread_node(2 * SPACING_M),
        "sensor": thread_node(3 * SPACING_M),
        # A computer on the LAN: no radio, no NET_ADMIN.
        "laptop": {"docker_network": "ipv6", "capabilities": ["LanAccess"]},
    }
)
def test_a_laptop_and_a_far_sensor_ping_each_other_through_the_border_router(home):
    router, laptop, sensor = home["router"], home["laptop"], home["sensor"]
    assert ot_ctl(router, "state").split()[0] == "leader"  # started by the home

    # The border router's network data: its prefix ("paros": preferred, SLAAC, default
    # route, on-mesh, stable) and the route to its LAN.
    prefixes = [line.split() for line in ot_ctl(router, "netdata", "show").splitlines()]
    omr = next(ipaddress.IPv6Network(f[0]) for f in prefixes if len(f) > 1 and f[1] == "paros")
    # The laptop's way to the Thread network, which the home gave it.
    route = laptop.exec(["ip", "-6", "route", "show", str(omr)]).stdout
    assert f"via {router.ipv6[0]}" in route

    # The other Thread nodes start the home's network, as the devices' software would.
    for name in ("hall", "porch", "sensor"):
        home[name].exec("ot-ctl ifconfig up && ot-ctl thread start", check=True)
    far = wait_until(lambda: address_in(sensor, omr), "the sensor to take an address", 120)

    # Laptop to sensor and back: over the LAN, through the router, across three hops.
    wait_until(lambda: pings(laptop, far), f"the laptop to reach the sensor at {far}", 120)
    assert pings(sensor, laptop.ipv6[0], "-I", "wpan0")
    assert "1 packets received" in ot_ctl(sensor, "ping", laptop.ipv6[0])
