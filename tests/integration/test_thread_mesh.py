"""The Thread mesh as tests rely on it, on real OpenThread and through ``pytest_cirque.thread``:
a line of nodes routes over several hops, range decides who is attached, a lost parent
is replaced, a sleepy end device answers, and a failed wait says what it saw.

OpenThread's timers are left as a device has them except where a test says otherwise:
those that decide how soon a node notices it is alone (``networkidtimeout``,
``childtimeout``) are shortened in the test, as the OpenThread CLI allows.
"""

from __future__ import annotations

import pytest

from pytest_cirque import thread
from pytest_cirque.core.errors import ProvisioningError
from pytest_cirque.core.waiting import wait_until

pytestmark = pytest.mark.slow

#: Generous: a line of routers forms in tens of seconds, a re-attach takes a timeout more.
MESH_TIMEOUT_S = 180.0
#: Nodes 45 m apart hear their neighbours only (range: up to 50 m sure, past 80 m never).
SPACING_M = 45.0


def line(count: int, **params) -> dict:
    """``count`` Thread nodes n1..nN on a line, SPACING_M apart."""
    return {
        f"n{i + 1}": {"capabilities": [{"Thread": {"position": [i * SPACING_M, 0], **params}}]}
        for i in range(count)
    }


def router_row(source, target) -> dict[str, str]:
    """``source``'s router-table row for ``target`` (by extended address)."""
    wanted = thread.extended_address(target)
    rows = thread.table(source, "router", "table")
    return next((row for row in rows if row.get("Extended MAC") == wanted), {})


def test_a_line_of_four_routes_end_to_end_over_several_hops(make_home):
    home = make_home(line(4))
    nodes = [home[f"n{i}"] for i in range(1, 5)]
    roles = thread.form(nodes, timeout=MESH_TIMEOUT_S)
    assert roles[0] == "leader"
    first, last = nodes[0], nodes[-1]
    # The ends are routers that never hear each other: the end is reached through others.
    for node in nodes:
        thread.wait_for_state(node, ("leader", "router"), MESH_TIMEOUT_S)
    row = wait_until(
        lambda: (found := router_row(first, last)) and found.get("Next Hop") != "63" and found,
        "n1 to have a route to n4",
        MESH_TIMEOUT_S,
        log=lambda: thread.topology(nodes),
    )
    assert row["Link"] == "0", row  # not a neighbour
    assert int(row["Path Cost"]) >= 2, row  # more than one hop
    assert thread.extended_address(last) not in {
        entry.get("Extended MAC") for entry in thread.table(first, "neighbor", "table")
    }
    # ping waits for a first echo (n4's address resolved) before it counts.
    result = thread.ping(first, last, count=5, max_loss=0.4, reach_timeout=MESH_TIMEOUT_S)
    print(f"\nn1 -> n4 over {row['Path Cost']} cost: {result.rtt_ms} ms")
    print(thread.topology(nodes))


def test_out_of_range_detaches_back_in_range_reattaches(make_home):
    home = make_home(line(2))
    n1, n2 = home["n1"], home["n2"]
    for node in (n1, n2):
        # How long a router may go without hearing its leader before it leads its own.
        thread.ctl(node, "networkidtimeout", "10")
    thread.form([n1, n2], timeout=MESH_TIMEOUT_S)
    thread.wait_for_state(n2, "router", MESH_TIMEOUT_S)
    partition = thread.ctl(n1, "partitionid")[0]
    medium = n2.medium("thread")

    medium.move("n2", [500, 0])
    # Alone, n2 soon leads a partition of its own: it hears nobody.
    thread.wait_for_state(n2, "leader", MESH_TIMEOUT_S)
    assert thread.ctl(n2, "partitionid")[0] != partition

    medium.move("n2", [SPACING_M, 0])
    # Back in range, the two partitions merge into one.
    wait_until(
        lambda: thread.ctl(n1, "partitionid")[0] == thread.ctl(n2, "partitionid")[0],
        "n1 and n2 to be one partition again",
        MESH_TIMEOUT_S,
        log=lambda: thread.topology([n1, n2]),
    )
    assert sorted(thread.network(home).roles().values()) in (
        ["leader", "router"],
        ["child", "leader"],
    )
    thread.ping(n2, n1, count=3, max_loss=0.34)


def test_a_child_that_loses_its_parent_reattaches_through_another_router(make_home):
    # p and r are routers 50 m from the child c and 60 m from each other; the leader is 40 m
    # from c.
    home = make_home(
        {
            "leader": {"capabilities": [{"Thread": {"position": [0, 0]}}]},
            "p": {"capabilities": [{"Thread": {"position": [-30, 0]}}]},
            "r": {"capabilities": [{"Thread": {"position": [30, 0]}}]},
            "c": {"capabilities": [{"Thread": {"position": [0, 40], "mode": "rn"}}]},
        }
    )
    leader, p, r, c = home["leader"], home["p"], home["r"], home["c"]
    thread.form([leader, p, r], timeout=MESH_TIMEOUT_S)
    for router in (p, r):
        thread.wait_for_state(router, "router", MESH_TIMEOUT_S)
    # An end device that is no router candidate: it stays a child. Its parent is
    # whichever router answered first; the test takes that one away.
    thread.ctl(c, "childtimeout", "10")
    thread.join(c, states="child", timeout=MESH_TIMEOUT_S)
    parent_address = thread.parent(c)
    by_address = {thread.extended_address(node): node for node in (leader, p, r)}
    parent = by_address[parent_address]

    c.medium("thread").move(parent.name, [1000, 1000])

    def new_parent() -> str | None:
        address = thread.parent(c)
        return address if address != parent_address else None

    found = wait_until(
        new_parent, "c to attach to another parent", MESH_TIMEOUT_S, log=lambda: thread.report(c)
    )
    assert by_address[found] is not parent
    thread.ping(c, by_address[found], count=3, max_loss=0.34)


def test_a_sleepy_end_device_attaches_as_a_child_and_answers(make_home):
    home = make_home(
        {
            "router": {"capabilities": ["Thread"]},
            "sleepy": {"capabilities": [{"Thread": {"position": [10, 0], "mode": "-"}}]},
        }
    )
    router, sleepy = home["router"], home["sleepy"]
    roles = thread.form([router, sleepy], timeout=MESH_TIMEOUT_S)
    assert roles == ["leader", "child"]
    assert thread.ctl(sleepy, "mode") == ["-"]
    children = thread.table(router, "child", "table")
    assert [row["Extended MAC"] for row in children] == [thread.extended_address(sleepy)]
    assert children[0]["R"] == "0"  # its receiver sleeps between polls
    # Its parent holds the echo request until the child polls (every 500 ms here).
    assert thread.ping(router, sleepy, count=3, max_loss=0.34).received >= 2


def test_a_failed_wait_names_the_node_and_shows_what_it_saw(make_home):
    home = make_home({"alone": {"capabilities": ["Thread"]}})
    alone = home["alone"]
    with pytest.raises(ProvisioningError) as raised:
        thread.wait_for_state(alone, "router", timeout=2)
    error = raised.value
    assert str(error).splitlines()[0] == (
        f"node alone: not router within 2 s (it is disabled); capture of the air: {error.capture}"
    )
    assert error.step == "state"
    assert "ot-ctl state: disabled" in error.log
    assert "ot-ctl neighbor table:" in error.log


def test_a_ping_that_never_gets_an_echo_says_so(make_home):
    home = make_home({"alone": {"capabilities": ["Thread"]}})
    alone = home["alone"]
    thread.form([alone], timeout=MESH_TIMEOUT_S)
    nobody = "fd00:db8::1"  # on no mesh: no echo ever comes back
    with pytest.raises(ProvisioningError) as raised:
        thread.ping(alone, nobody, reach_timeout=3)
    error = raised.value
    first_line = str(error).splitlines()[0]
    assert first_line == (
        f"node alone: no echo from {nobody} over wpan0 within 3 s; "
        f"capture of the air: {error.capture}"
    )
    assert error.step == "ping" and "ot-ctl state: leader" in error.log
