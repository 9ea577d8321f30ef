"""RCP mode on real Docker and real OpenThread: a node gets /dev/ttyUSB0, a serial line
speaking spinel over HDLC to its own simulated radio co-processor on the home's Thread
medium. On the project's base image our ot-daemon drives it, so the original ``ot-ctl``
flow works as without RCP mode; on another image nothing drives it until the image's own
host does, as a device's software would.

The first run on a machine builds the thread image (OpenThread, a few minutes).
"""

from __future__ import annotations

import pytest

from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque
from pytest_cirque.radios.relay.thread import dataset_tlvs

from .test_thread import (
    FORM_TIMEOUT_S,
    ctl,
    start_original,
    thread_node,
    value,
    wait_state,
)

pytestmark = pytest.mark.slow

#: How a device's own software would run its Thread host on the serial line: OpenThread's
#: ot-daemon, with a shell as its parent (ot-daemon ends when its parent does).
OWN_HOST = (
    "mkdir -p /var/lib/own-host && cd /var/lib/own-host && "
    "/opt/cirque-thread/bin/ot-daemon -I wpan0 'spinel+hdlc+uart:///dev/ttyUSB0'; exit $?"
)


def has_serial_line(node: Node) -> bool:
    return node.exec(["test", "-c", "/dev/ttyUSB0"]).exit_code == 0


def answers(node: Node) -> bool:
    result = node.exec(["ot-ctl", "state"], timeout=30)
    return result.exit_code == 0 and "Done" in result.stdout


def wait_answers(node: Node) -> None:
    wait_until(lambda: answers(node), f"ot-daemon in {node.name} to answer ot-ctl", 60)


def pings(source: Node, target: Node) -> None:
    address = value(target, "ipaddr", "mleid")
    wait_until(
        lambda: "1 packets received" in ctl(source, "ping", address),
        f"{source.name} to ping {target.name} ({address}) over the mesh",
        FORM_TIMEOUT_S,
    )


def test_a_base_node_in_rcp_mode_runs_our_daemon_on_its_serial_line(service: Cirque) -> None:
    home = service.create_home(
        {"rcp": thread_node(rcp_mode=True), "plain": thread_node(position=[20, 0])},
        name="rcp",
    )
    rcp, plain = home["rcp"], home["plain"]
    assert has_serial_line(rcp) and not has_serial_line(plain)
    # Our daemon drives the serial line: it is the radio ot-daemon was started on.
    daemons = rcp.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
    assert "ot-daemon -I wpan0 spinel+hdlc+uart:///dev/ttyUSB0" in daemons
    assert value(rcp, "state") == "disabled"

    start_original(rcp)
    assert wait_state(rcp, "leader") == "leader"
    start_original(plain)
    assert wait_state(plain, "router", "child") in ("router", "child")
    assert value(rcp, "partitionid") == value(plain, "partitionid")
    pings(plain, rcp)
    pings(rcp, plain)


def test_an_image_that_brings_its_own_host_drives_the_serial_line_itself(service: Cirque) -> None:
    home = service.create_home(
        {
            "hub": thread_node(),
            "sdk": {"image": "thread", "capabilities": [{"Thread": {"radio": "rcp"}}]},
        },
        name="rcp-sdk",
    )
    hub, sdk = home["hub"], home["sdk"]
    assert has_serial_line(sdk)
    assert not answers(sdk)  # nothing drives the line yet: no daemon, no socket
    ctl(hub, "ifconfig", "up")
    ctl(hub, "thread", "start")
    wait_state(hub, "leader")

    own_host = sdk.exec_background(["sh", "-c", OWN_HOST])
    wait_answers(sdk)
    # Commissioning is the image's business: its host is given the home's network.
    dataset = home.medium("thread").as_thread().dataset()
    ctl(sdk, "dataset", "set", "active", dataset_tlvs(dataset))
    ctl(sdk, "ifconfig", "up")
    ctl(sdk, "thread", "start")
    assert wait_state(sdk, "router", "child") in ("router", "child")
    assert value(sdk, "partitionid") == value(hub, "partitionid")
    pings(sdk, hub)

    # The host goes and comes back on the same line: the radio behind it lives on.
    own_host.kill()
    wait_until(lambda: not answers(sdk), "the image's host to be gone", 30)
    assert has_serial_line(sdk)
    sdk.exec_background(["sh", "-c", OWN_HOST])
    wait_answers(sdk)
    ctl(sdk, "ifconfig", "up")
    ctl(sdk, "thread", "start")
    assert wait_state(sdk, "router", "child") in ("router", "child")
    pings(sdk, hub)


def test_a_restarted_rcp_node_gets_its_serial_line_and_network_back(service: Cirque) -> None:
    home = service.create_home(
        {"n1": thread_node(), "rcp": thread_node(rcp_mode=True)}, name="rcp-restart"
    )
    n1, rcp = home["n1"], home["rcp"]
    start_original(n1)
    wait_state(n1, "leader")
    start_original(rcp)
    wait_state(rcp, "router", "child")
    partition = value(n1, "partitionid")

    rcp.restart()
    assert has_serial_line(rcp)
    assert value(rcp, "state") == "disabled"
    assert value(rcp, "panid") == "0x1234"  # its settings survived, as flash does
    ctl(rcp, "ifconfig", "up")
    ctl(rcp, "thread", "start")
    wait_state(rcp, "router", "child")
    assert value(rcp, "partitionid") == partition
