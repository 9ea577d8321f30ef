"""The medium's Thread layer on a fake clock, with socket pairs standing in for TAPs.

Frames are the Ethernet frames a node's ot-rcp sends on ot-radio0 (a UDP datagram to
ff02::116 or 224.0.0.116 port 9000: channel byte, PSDU), built here by hand; the real
radios are exercised by tests/integration/test_thread.py.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.link_model import PHY_802154, LinkModel
from pytest_cirque.radios.relay.pcap import read_pcap
from pytest_cirque.radios.relay.protocol import (
    Attach,
    CaptureStart,
    CaptureStop,
    GetThreadDataset,
    GetThreadNodeId,
    GetThreadStatus,
    R,
    Request,
    SetLink,
)
from pytest_cirque.radios.relay.thread import (
    LINKTYPE_IEEE802_15_4_WITHFCS,
    ThreadMedium,
    dataset_problem,
    dataset_tlvs,
    radio_frame,
    random_dataset,
)

GROUP6 = bytes.fromhex("ff020000000000000000000000000116")
GROUP4 = bytes([224, 0, 0, 116])


def ipv6_datagram(node_id: int, channel: int, psdu: bytes, port: int = 9000) -> bytes:
    """What ot-rcp node ``node_id`` sends on ot-radio0 over IPv6 (checksum left zero)."""
    payload = bytes([channel]) + psdu
    udp = struct.pack("!HHHH", 9000 + node_id, port, 8 + len(payload), 0) + payload
    source = bytes.fromhex("fe80000000000000") + bytes(7) + bytes([node_id])
    ip = struct.pack("!IHBB", 6 << 28, len(udp), 17, 1) + source + GROUP6
    return bytes.fromhex("333300000116") + bytes([2, 0, 0, 0, 0, node_id]) + b"\x86\xdd" + ip + udp


def ipv4_datagram(node_id: int, channel: int, psdu: bytes) -> bytes:
    payload = bytes([channel]) + psdu
    udp = struct.pack("!HHHH", 9000 + node_id, 9000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 0, 0, 1, 17, 0)
    ip += bytes([10, 0, 0, node_id]) + GROUP4
    return bytes.fromhex("01005e000074") + bytes([2, 0, 0, 0, 0, node_id]) + b"\x08\x00" + ip + udp


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Air:
    """A ThreadMedium with radios on socket pairs, and a hand-cranked loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.lines: list[str] = []
        self.medium = ThreadMedium(
            LinkModel(PHY_802154, rng=random.Random(7)),
            str(tmp_path / "control.sock"),
            clock=self.clock,
            log=self.lines.append,
            switch_carrier=lambda fd, on: None,
        )
        self.nodes: dict[str, socket.socket] = {}

    def attach(self, name: str, position=(0, 0, 0)) -> None:
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        node_side.setblocking(False)
        self.nodes[name] = node_side
        self.call(Attach(name=name, position=list(position)), fds=[medium_side.detach()])

    def call(self, request: Request[R], fds: list[int] | None = None) -> R:
        reply = self.medium.handle(request.encode(), fds)
        assert reply["ok"], reply
        return request.decode_reply(reply)

    def send(self, name: str, frame: bytes) -> None:
        """``name``'s node sends a frame; the relay reads it and lets the air carry it."""
        self.nodes[name].send(frame)
        self.medium._on_readable(self.medium.endpoints[name].fd)
        self.run(0.05)

    def run(self, seconds: float, step: float = 0.001) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now += step
            self.medium._deliver_due()
            self.medium._run_timers()

    def received(self, name: str) -> list[bytes]:
        frames = []
        while True:
            try:
                frames.append(self.nodes[name].recv(65536))
            except BlockingIOError:
                return frames

    def close(self) -> None:
        self.medium.close()
        for node in self.nodes.values():
            node.close()


@pytest.fixture
def air(tmp_path: Path) -> Iterator[Air]:
    air = Air(tmp_path)
    yield air
    air.close()


# --- parsing ---------------------------------------------------------------------------


def test_a_radio_datagram_is_parsed_over_ipv6_and_ipv4():
    psdu = bytes.fromhex("4188") + bytes(20)
    assert radio_frame(ipv6_datagram(3, 15, psdu)) == replace(
        radio_frame(ipv4_datagram(3, 15, psdu)), psdu=psdu
    )
    parsed = radio_frame(ipv6_datagram(3, 15, psdu))
    assert (parsed.channel, parsed.psdu, parsed.port) == (15, psdu, 9003)


def test_what_is_not_a_radio_datagram_is_not_parsed():
    psdu = bytes(10)
    assert radio_frame(ipv6_datagram(3, 15, psdu, port=9001)) is None
    assert radio_frame(b"\x00" * 13) is None
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    assert radio_frame(arp) is None
    truncated = ipv6_datagram(3, 15, psdu)[:-4]
    assert radio_frame(truncated) is None


# --- the air ---------------------------------------------------------------------------


def test_a_frame_reaches_every_radio_on_its_channel_as_the_same_datagram(air: Air):
    for name in ("n1", "n2", "n3"):
        air.attach(name)
    frame = ipv6_datagram(1, 15, bytes.fromhex("4188") + bytes(30))
    air.send("n1", frame)
    assert air.received("n2") == [frame]
    assert air.received("n3") == [frame]
    assert air.received("n1") == []


def test_radios_on_other_channels_never_hear_each_other(air: Air):
    for name in ("n1", "n2", "n3"):
        air.attach(name)
    air.send("n2", ipv6_datagram(2, 20, bytes(12)))  # n2 is on channel 20 now
    for name in ("n1", "n3"):
        air.received(name)
    air.send("n1", ipv6_datagram(1, 15, bytes(12)))
    assert air.received("n2") == []
    assert len(air.received("n3")) == 1  # has not sent yet: hears every channel
    status = air.call(GetThreadStatus()).radios
    assert (status["n1"].channel, status["n2"].channel, status["n3"].channel) == (15, 20, None)


def test_range_decides_who_hears(air: Air):
    air.attach("n1")
    air.attach("near", (50, 0, 0))
    air.attach("far", (100, 0, 0))
    for _ in range(20):
        air.send("n1", ipv6_datagram(1, 11, bytes(12)))
    assert len(air.received("near")) == 20
    assert air.received("far") == []


def test_a_cut_link_carries_nothing(air: Air):
    air.attach("n1")
    air.attach("n2")
    air.call(SetLink(a="n1", b="n2", cut=True))
    air.send("n1", ipv6_datagram(1, 11, bytes(12)))
    assert air.received("n2") == []


def test_what_the_kernel_sends_on_the_radio_interface_stays_off_the_air(air: Air):
    air.attach("n1")
    air.attach("n2")
    neighbour_solicitation = bytes.fromhex("3333ff00000102000000000186dd") + bytes(64)
    air.send("n1", neighbour_solicitation)
    assert air.received("n2") == []
    assert air.medium.drops["not a radio frame"] == 1


def test_the_capture_holds_802_15_4_frames(air: Air, tmp_path: Path):
    air.attach("n1")
    air.attach("n2")
    path = tmp_path / "air.pcap"
    air.call(CaptureStart(path=str(path)))
    psdu = bytes.fromhex("4188") + bytes(20)
    air.send("n1", ipv6_datagram(1, 15, psdu))
    assert air.call(CaptureStop()).frames == 1
    header = path.read_bytes()[:24]
    assert struct.unpack("<I", header[20:24])[0] == LINKTYPE_IEEE802_15_4_WITHFCS == 195
    assert [frame for _when, frame in read_pcap(path)] == [psdu]


def test_each_channel_has_its_own_airtime():
    model = LinkModel(PHY_802154)
    model.add_node("a")
    model.add_node("b")
    waits = [model.transmit("a", 127, 0.0, True, channel=11) for _ in range(2)]
    assert waits == [0.0, pytest.approx(model.airtime_s(127))]  # the second waits for the first
    # Channel 12 is free: its first frame waits no more than channel 11's first did.
    assert model.transmit("b", 127, 0.0, True, channel=12) == 0.0
    assert model.airtime_s(127) == pytest.approx((320 + 133 * 32) / 1e6)


def test_a_frame_the_busy_channel_would_hold_past_the_ack_timeout_is_dropped(air: Air):
    """A radio gives up on a frame it cannot send within 8 ms (CSMA-CA), so nothing
    reaches a receiver after its sender stopped waiting for the ACK (16 ms)."""
    for name in ("n1", "n2", "n3"):
        air.attach(name)
    longest = ipv6_datagram(1, 15, bytes.fromhex("4188") + bytes(125))  # 4.6 ms of air
    for _ in range(3):  # sent at once: on the air at 0 and 4.6 ms; the third would be 9.2
        air.nodes["n1"].send(longest)
    air.medium._on_readable(air.medium.endpoints["n1"].fd)
    assert air.medium.drops["channel busy"] == 1
    assert not air.medium.endpoints["n1"].held  # the sender is read on, not held back
    air.run(0.0095)  # the second frame's air ends at 9.2 ms
    assert len(air.received("n2")) == 2
    # The dropped frame took no air: the channel is free again once the two are sent
    # (had it taken its 4.6 ms, the next frame would wait until 13.7 ms).
    other = ipv6_datagram(3, 15, bytes.fromhex("4188") + bytes(125))
    air.nodes["n3"].send(other)
    air.medium._on_readable(air.medium.endpoints["n3"].fd)
    assert air.received("n2") == [other]


def test_an_idle_channel_carries_a_frame_at_once_and_an_ack_never_queues(air: Air):
    air.attach("n1")
    air.attach("n2")

    def put(name: str, frame: bytes) -> None:  # sent, with no time passing
        air.nodes[name].send(frame)
        air.medium._on_readable(air.medium.endpoints[name].fd)

    longest = ipv6_datagram(1, 15, bytes.fromhex("4188") + bytes(125))  # a 127-byte PSDU
    ack = ipv6_datagram(2, 15, bytes.fromhex("0200") + bytes(3))
    put("n1", longest)
    assert air.received("n2") == [longest]  # a free channel: on the air at once
    put("n1", longest)
    assert air.received("n2") == []  # the channel is busy with the first for 4.6 ms
    put("n2", ack)
    assert air.received("n1") == [ack]  # an acknowledgement follows its frame at once
    air.run(0.01)
    assert air.received("n2") == [longest]


# --- ids and the dataset ---------------------------------------------------------------


def test_node_ids_are_stable_per_name_and_run_out_at_128(air: Air):
    first = air.call(GetThreadNodeId(name="a")).node_id
    assert first == 1
    assert air.call(GetThreadNodeId(name="b")).node_id == 2
    assert air.call(GetThreadNodeId(name="a")).node_id == 1
    for number in range(3, 129):
        assert air.medium.node_id(f"n{number}") == number
    reply = air.medium.handle(GetThreadNodeId(name="one-too-many").encode())
    assert not reply["ok"] and "at most 128 Thread nodes" in reply["error"]


def test_the_home_dataset_is_chosen_once(air: Air):
    first = air.call(GetThreadDataset())
    assert first == air.call(GetThreadDataset())
    assert dataset_problem(first) is None
    assert 11 <= first.channel <= 26 and first.mesh_local_prefix.startswith("fd")
    assert first != random_dataset()


def test_the_dataset_becomes_the_tlvs_openthread_takes():
    dataset = replace(
        random_dataset(),
        channel=25,
        panid=0x1234,
        network_name="OpenThreadDemo",
        extended_panid="1111111122222222",
        network_key="00112233445566778899aabbccddeeff",
        mesh_local_prefix="fdad70bfe5aa15dd",
        pskc="445f2b5ca6f2a93a55ce570a70efeecb",
    )
    # As `ot-ctl dataset active -x` prints such a network (OpenThread's documentation).
    assert dataset_tlvs(dataset) == (
        "0e080000000000010000000300001935060004001fffe00208111111112222222207"
        "08fdad70bfe5aa15dd051000112233445566778899aabbccddeeff030e4f70656e54"
        "687265616444656d6f010212340410445f2b5ca6f2a93a55ce570a70efeecb0c0402a0f7f8"
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"channel": 10}, "channel"),
        ({"channel": 27}, "channel"),
        ({"panid": 0xFFFF}, "panid"),
        ({"network_key": "00112233"}, "network_key"),
        ({"network_key": "zz" * 16}, "network_key"),
        ({"extended_panid": "11" * 9}, "extended_panid"),
        ({"network_name": "x" * 17}, "network_name"),
    ],
)
def test_a_bad_dataset_is_refused_naming_its_field(changes, field):
    dataset = replace(random_dataset(), **changes)
    assert dataset_problem(dataset)[0] == field
    with pytest.raises(SpecError, match=field):
        dataset_tlvs(dataset)
