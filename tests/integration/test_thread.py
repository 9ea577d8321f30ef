"""Thread on real Docker and real OpenThread: nodes of a plain image run ot-daemon over a
simulated radio on the home's Thread medium, and the original Cirque flow
(``ot-ctl panid 0x1234; ot-ctl ifconfig up; ot-ctl thread start`` on each node) forms one
network. Range, the network key, the channel and the home decide who hears whom.

The first run on a machine builds the thread image (OpenThread, a few minutes).
"""

from __future__ import annotations

import struct
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.node import Node
from pytest_cirque.radios.relay.pcap import read_pcap
from pytest_cirque.radios.relay.thread import LINKTYPE_IEEE802_15_4_WITHFCS, dataset_tlvs

pytestmark = pytest.mark.slow

#: The original's commands, run by each node's own shell (ot-ctl is on its PATH).
ORIGINAL_FLOW = "ot-ctl panid 0x1234 && ot-ctl ifconfig up && ot-ctl thread start"
#: Generous: forming takes seconds, a lone node gives up attaching after some more.
FORM_TIMEOUT_S = 120.0
HEX = set("0123456789abcdef")


def thread_node(**params) -> dict:
    return {"capabilities": [{"Thread": params}]}


def ctl(node: Node, *args: str) -> str:
    result = node.exec(["ot-ctl", *args], timeout=30)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def value(node: Node, *args: str) -> str:
    """The first line ot-ctl answers (before its "Done")."""
    return ctl(node, *args).split()[0]


def start_original(*nodes: Node) -> None:
    for node in nodes:
        result = node.exec(ORIGINAL_FLOW, timeout=60)
        assert result.exit_code == 0, result.stdout + result.stderr


def wait_state(node: Node, *states: str) -> str:
    return wait_until(
        lambda: (state := value(node, "state")) in states and state,
        f"node {node.name} to be {' or '.join(states)}",
        FORM_TIMEOUT_S,
        log=lambda: ctl(node, "state"),
    )


def neighbours(node: Node) -> set[str]:
    """Extended MAC addresses in the node's neighbour table (16 hex digits in a cell)."""
    rows = ctl(node, "neighbor", "table").splitlines()
    cells = {cell.strip() for row in rows for cell in row.split("|")}
    return {cell for cell in cells if len(cell) == 16 and all(c in HEX for c in cell)}


def extaddr(node: Node) -> str:
    return value(node, "extaddr")


def crc16_kermit(data: bytes) -> int:
    """802.15.4's FCS (ITU-T CRC-16, reflected), as OpenThread's radio computes it."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def test_the_original_flow_forms_one_network_that_pings_and_is_captured(make_home, tmp_path: Path):
    started = time.monotonic()
    home = make_home({"n1": thread_node(), "n2": thread_node(position=[20, 0])})
    built = time.monotonic()
    n1, n2 = home["n1"], home["n2"]
    assert value(n1, "state") == value(n2, "state") == "disabled"
    assert n1.exec("command -v ot-ctl").stdout.strip() == "/opt/cirque-thread/bin/ot-ctl"

    start_original(n1)
    assert wait_state(n1, "leader") == "leader"
    start_original(n2)
    assert wait_state(n2, "router", "child") in ("router", "child")
    print(
        f"\nformation: home built in {built - started:.1f} s, then leader and "
        f"{value(n2, 'state')} {time.monotonic() - built:.1f} s later"
    )
    assert value(n1, "panid") == value(n2, "panid") == "0x1234"
    assert value(n1, "partitionid") == value(n2, "partitionid")

    for source, target in ((n1, n2), (n2, n1)):
        address = value(target, "ipaddr", "mleid")
        wait_until(
            lambda source=source, address=address: (
                "1 packets received" in ctl(source, "ping", address)
            ),
            f"{source.name} to ping {address} with ot-ctl",
            FORM_TIMEOUT_S,
        )
        wait_until(
            lambda source=source, address=address: (
                source.exec(
                    ["ping", "-c", "1", "-W", "2", "-I", "wpan0", address], timeout=30
                ).exit_code
                == 0
            ),
            f"{source.name} to ping6 {address} over wpan0",
            FORM_TIMEOUT_S,
        )

    medium = home.medium("thread")
    radios = medium.as_thread().status().radios
    assert {radios["n1"].node_id, radios["n2"].node_id} == {1, 2}
    # tcpdump in the medium decodes what was on the air as 802.15.4 frames.
    lines = medium.read_capture(medium.status().capture or "").splitlines()
    decoded = [line for line in lines if line[:1].isdigit()]  # one per frame, then its bytes
    assert decoded and all("IEEE 802.15.4" in line for line in decoded)
    capture = medium.save_capture(tmp_path / "air.pcap")
    assert capture is not None
    header = capture.read_bytes()[:24]
    assert struct.unpack("<I", header[20:24])[0] == LINKTYPE_IEEE802_15_4_WITHFCS
    frames = [frame for _when, frame in read_pcap(capture)]
    assert len(frames) > 10
    for frame in frames:
        assert len(frame) >= 5 and frame[0] & 0x07 in (0, 1, 2, 3)  # beacon, data, ack, cmd
        assert crc16_kermit(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def test_a_restarted_node_comes_back_to_its_network(make_home):
    home = make_home({"n1": thread_node(), "n2": thread_node()})
    n1, n2 = home["n1"], home["n2"]
    start_original(n1)
    wait_state(n1, "leader")
    start_original(n2)
    wait_state(n2, "router", "child")
    partition = value(n1, "partitionid")

    n2.restart()
    assert value(n2, "state") == "disabled"
    assert value(n2, "panid") == "0x1234"  # its settings survived, as flash does
    ctl(n2, "ifconfig", "up")
    ctl(n2, "thread", "start")
    wait_state(n2, "router", "child")
    assert value(n2, "partitionid") == partition


def test_two_homes_never_hear_each_other(make_home):
    first = make_home({"n1": thread_node()}, name="thread-a")
    second = make_home({"n1": thread_node(commissioned=False)}, name="thread-b")
    a, b = first["n1"], second["n1"]
    # The second home's node is given the first home's very network: only the air differs.
    dataset = first.medium("thread").as_thread().dataset()
    ctl(b, "dataset", "set", "active", dataset_tlvs(dataset))
    ctl(a, "ifconfig", "up")
    ctl(a, "thread", "start")
    wait_state(a, "leader")
    ctl(b, "ifconfig", "up")
    ctl(b, "thread", "start")
    assert wait_state(b, "leader") == "leader"  # heard nobody: formed its own partition
    assert value(a, "partitionid") != value(b, "partitionid")
    assert neighbours(a) == set() and neighbours(b) == set()


def test_distance_the_network_key_and_the_channel_keep_nodes_apart(make_home):
    home = make_home(
        {
            "n1": thread_node(),
            "near": thread_node(position=[-40, 0]),
            "far": thread_node(position=[100, 0]),
            "stranger": thread_node(commissioned=False),
            "elsewhere": thread_node(commissioned=False),
        }
    )
    n1, near, far = home["n1"], home["near"], home["far"]
    stranger, elsewhere = home["stranger"], home["elsewhere"]
    dataset = home.medium("thread").as_thread().dataset()
    wrong_key = replace(dataset, network_key="00112233445566778899aabbccddeeff")
    ctl(stranger, "dataset", "set", "active", dataset_tlvs(wrong_key))
    other_channel = replace(dataset, channel=11 if dataset.channel != 11 else 26)
    ctl(elsewhere, "dataset", "set", "active", dataset_tlvs(other_channel))

    start_original(n1)
    wait_state(n1, "leader")
    start_original(near, far, stranger, elsewhere)
    wait_state(near, "router", "child")
    for loner in (far, stranger, elsewhere):
        # Nobody it can hear and understand answered: it formed a partition of its own.
        assert wait_state(loner, "leader") == "leader"
        assert value(loner, "partitionid") != value(n1, "partitionid")
    assert extaddr(near) in neighbours(n1)
    assert not {extaddr(far), extaddr(stranger), extaddr(elsewhere)} & neighbours(n1)

    status = home.medium("thread").status()
    assert status.endpoints["far"].counters.get("dropped: out of range", 0) > 0
    radios = home.medium("thread").as_thread().status().radios
    assert radios["elsewhere"].channel == other_channel.channel != radios["n1"].channel
