"""Thread homes on the real OpenThread stack: ``pytest -m thread`` selects these.

Each Thread node runs OpenThread's own daemon over a simulated radio, so ``ot-ctl`` in
the node (``node.exec("ot-ctl state")``) answers as on a device. Nodes start with the
home's network settings (its dataset) and Thread stopped: the test, or the device's own
software, starts it. A failed Thread test's report shows each node's role, neighbours and
daemon log, and its log folder holds ``<home>.thread.pcap`` (802.15.4 for Wireshark).
"""

import pytest

from pytest_cirque import thread

#: The original Cirque's Thread flow, as its tests and the SDKs that drive it run it.
ORIGINAL_FLOW = "ot-ctl panid 0x1234 && ot-ctl ifconfig up && ot-ctl thread start"


@pytest.mark.home({"node1": {"capabilities": ["Thread"]}, "node2": {"capabilities": ["Thread"]}})
def test_the_original_ot_ctl_flow_forms_one_network(home):
    """The original's scenario: each node runs the ot-ctl flow; one leads, the other
    routes or is a child, and each pings the other's mesh-local address."""
    node1, node2 = home["node1"], home["node2"]
    node1.exec(ORIGINAL_FLOW, check=True)
    assert thread.wait_for_state(node1, "leader") == "leader"
    node2.exec(ORIGINAL_FLOW, check=True)
    assert thread.wait_for_state(node2, ("router", "child")) in ("router", "child")

    for source, target in ((node1, node2), (node2, node1)):
        address = thread.mesh_address(target)
        answer = source.exec(["ping", "-6", "-c", "2", "-I", "wpan0", address], check=True)
        assert "2 received" in answer.stdout


@pytest.mark.thread
@pytest.mark.home(
    {
        # A line 45 m apart: each node hears only its neighbours (sure up to 50 m).
        "hub": {"capabilities": [{"Thread": {"position": [0, 0]}}]},
        "hall": {"capabilities": [{"Thread": {"position": [45, 0]}}]},
        "porch": {"capabilities": [{"Thread": {"position": [90, 0]}}]},
        # A battery sensor: a sleepy end device, polling its parent.
        "doorbell": {"capabilities": [{"Thread": {"position": [100, 0], "mode": "-"}}]},
    }
)
def test_the_marker_forms_a_mesh_before_the_test(home, thread_network):
    """``@pytest.mark.thread`` forms the network first: the hub leads, the others are
    attached when the test starts; the doorbell reaches the hub over several hops."""
    assert thread_network.leader.name == "hub"
    assert thread_network.roles()["doorbell"] == "child"
    print(thread_network.topology())
    thread.ping(home["doorbell"], home["hub"], count=3, max_loss=0.34)


@pytest.mark.thread(nodes=["bulb"])
@pytest.mark.home({"bulb": {}})
def test_a_device_joins_a_running_network(home, thread_node_factory):
    """``thread_node_factory`` adds a node to the running home and waits until it is
    attached; ``thread.join`` gives a node a dataset of your choosing first."""
    plug = thread_node_factory("plug", position=[20, 0])
    assert thread.state(plug) in ("router", "child")
    assert thread.ping(plug, home["bulb"]).loss == 0
