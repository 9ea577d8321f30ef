"""A Thread border router on real Docker and real OpenThread: it routes between its Thread
network and its IPv6 LAN, so a LAN node without privileges and a Thread node several hops
away ping each other through it.

The first run on a machine builds the thread image (OpenThread, a few minutes).
"""

from __future__ import annotations

import ipaddress
import re
import time

import pytest

from pytest_cirque.capabilities.model.thread import Thread
from pytest_cirque.capabilities.runtime.thread import ThreadDriver
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque

from .test_thread import (
    FORM_TIMEOUT_S,
    ctl,
    extaddr,
    neighbours,
    value,
    wait_state,
)

pytestmark = pytest.mark.slow

#: Linux's capability bit of CAP_NET_ADMIN.
CAP_NET_ADMIN = 12
SPACING_M = 45  # in range (<= 50 m: no loss), two apart never hear each other (> 80 m)


def border_router() -> dict:
    return {
        "docker_network": "ipv6",
        "capabilities": ["LanAccess", {"Thread": {"border_router": True}}],
    }


def lan_node() -> dict:
    return {"docker_network": "ipv6", "capabilities": ["LanAccess"]}


def thread_at(metres: float) -> dict:
    return {"capabilities": [{"Thread": {"position": [metres, 0]}}]}


def omr_prefix(home: Home) -> ipaddress.IPv6Network:
    driver = home["br"].driver(Thread)
    assert isinstance(driver, ThreadDriver) and driver.omr_prefix
    return ipaddress.IPv6Network(driver.omr_prefix)


def omr_address(node: Node, prefix: ipaddress.IPv6Network) -> str:
    """The node's address in the border router's prefix, once it has taken one."""

    def taken() -> str | None:
        addresses = [word for word in ctl(node, "ipaddr").split() if ":" in word]  # no "Done"
        return next((a for a in addresses if ipaddress.IPv6Address(a) in prefix), None)

    return wait_until(taken, f"{node.name} to take an address in {prefix}", FORM_TIMEOUT_S)


def start_thread(*nodes: Node) -> None:
    for node in nodes:
        ctl(node, "ifconfig", "up")
        ctl(node, "thread", "start")
    for node in nodes:
        wait_state(node, "router", "child")


def ping(source: Node, address: str, *options: str) -> str:
    """One ping6 exchange (five echoes at most); its summary line when one came back."""
    result = source.exec(["ping", "-c", "5", "-i", "0.3", "-W", "2", *options, address], timeout=60)
    return result.stdout if result.exit_code == 0 else ""


def wait_ping(source: Node, address: str, *options: str) -> str:
    return wait_until(
        lambda: ping(source, address, *options),
        f"{source.name} to ping6 {address}",
        FORM_TIMEOUT_S,
    )


def mean_rtt(summary: str) -> float:
    match = re.search(r"= [\d.]+/([\d.]+)/", summary)
    assert match, summary
    return float(match.group(1))


def test_a_lan_node_and_a_thread_node_three_hops_away_ping_through_the_border_router(
    service: Cirque,
) -> None:
    started = time.monotonic()
    home = service.create_home(
        {
            "br": border_router(),
            "t1": thread_at(SPACING_M),
            "t2": thread_at(2 * SPACING_M),
            "t3": thread_at(3 * SPACING_M),
            "pc": lan_node(),
        },
        name="border-router",
    )
    built = time.monotonic()
    br, t1, t2, t3, pc = (home[name] for name in ("br", "t1", "t2", "t3", "pc"))
    prefix = omr_prefix(home)
    lan = ipaddress.IPv6Network(pc.network.ipv6_subnet)
    # The home started the border router, which published its prefix and its LAN route.
    assert value(br, "state") in ("leader", "router")
    netdata = ctl(br, "netdata", "show")
    assert f"{prefix} paros" in netdata and f"{lan} s" in netdata
    # The LAN node learnt the way to the prefix from the home, and holds no NET_ADMIN.
    assert f"via {br.ipv6[0]}" in pc.exec(["ip", "-6", "route", "show", str(prefix)]).stdout
    status = pc.exec(["cat", "/proc/self/status"]).stdout
    effective = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    assert not effective & (1 << CAP_NET_ADMIN)

    start_thread(t1, t2, t3)
    far = omr_address(t3, prefix)
    wait_ping(pc, far)
    usable = time.monotonic()
    # t3 is out of the border router's range: its packets cross the mesh.
    assert extaddr(t3) not in neighbours(br)
    there = ping(pc, far)
    back = wait_ping(t3, pc.ipv6[0], "-I", "wpan0")
    assert "bytes from" in there and "bytes from" in back
    assert "1 packets received" in ctl(t3, "ping", pc.ipv6[0])
    print(
        f"\nborder router: home built in {built - started:.1f} s; LAN to the far Thread node "
        f"{usable - built:.1f} s later (Thread nodes started meanwhile); mean RTT "
        f"LAN->t3 {mean_rtt(there):.1f} ms, t3->LAN {mean_rtt(back):.1f} ms"
    )


def test_a_restarted_lan_node_and_border_router_route_again(service: Cirque) -> None:
    home = service.create_home(
        {"br": border_router(), "t1": thread_at(20), "pc": lan_node()}, name="br-restart"
    )
    br, t1, pc = home["br"], home["t1"], home["pc"]
    prefix = omr_prefix(home)
    start_thread(t1)
    address = omr_address(t1, prefix)
    wait_ping(pc, address)

    pc.restart()  # a new network namespace: the home routes it again
    assert f"via {br.ipv6[0]}" in pc.exec(["ip", "-6", "route", "show", str(prefix)]).stdout
    wait_ping(pc, address)

    br.restart()  # Thread starts again and the prefix and route are published again
    assert value(br, "state") in ("leader", "router")
    assert f"{prefix} paros" in ctl(br, "netdata", "show")
    assert f"via {br.ipv6[0]}" in pc.exec(["ip", "-6", "route", "show", str(prefix)]).stdout
    wait_ping(pc, address)
    wait_ping(t1, pc.ipv6[0], "-I", "wpan0")
