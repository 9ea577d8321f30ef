"""The relay's frame decisions and control requests, with socket pairs standing in for TAPs.

A SOCK_SEQPACKET pair keeps frame boundaries the way a TAP descriptor does; the carrier
switch is recorded instead of sent to a device. The real TAPs are exercised by
tests/integration/test_medium.py.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.endpoint import mac_for
from pytest_cirque.radios.relay.link_model import LinkModel
from pytest_cirque.radios.relay.medium import (
    VNET_F_NEEDS_CSUM,
    VNET_HEADER,
    VNET_PLAIN,
    Medium,
    internet_checksum,
    request,
)
from pytest_cirque.radios.relay.pcap import read_pcap
from pytest_cirque.radios.relay.protocol import (
    Attach,
    CaptureStart,
    CaptureStop,
    CaptureStopped,
    Done,
    Endpoints,
    MediumStatus,
    Move,
    Ping,
    Reset,
    SetLink,
    SetNode,
    Status,
    Stop,
)

BROADCAST = b"\xff" * 6


def frame(dst: bytes, src: bytes, payload: bytes = b"x" * 50) -> bytes:
    return dst + src + b"\x08\x00" + payload


def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, n])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def carriers() -> list[tuple[int, bool]]:
    return []


@pytest.fixture
def medium(tmp_path: Path, clock: Clock, carriers: list) -> Iterator[Medium]:
    model = LinkModel(rng=random.Random(3))
    relay = Medium(
        model,
        str(tmp_path / "control.sock"),
        clock=clock,
        log=lambda _line: None,
        switch_carrier=lambda fd, on: carriers.append((fd, on)),
    )
    yield relay
    relay.close()


@pytest.fixture
def nodes(medium: Medium) -> Iterator[dict[str, socket.socket]]:
    """Three endpoints a, b, c; each value is the node's side of its 'TAP'."""
    sides = {}
    for name in ("a", "b", "c"):
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        node_side.setblocking(False)
        medium.attach(name, medium_side.detach())
        sides[name] = node_side
    yield sides
    for side in sides.values():
        side.close()


def received(side: socket.socket) -> list[bytes]:
    frames = []
    while True:
        try:
            frames.append(side.recv(65536))
        except BlockingIOError:
            return frames


def send(medium: Medium, name: str, data: bytes) -> None:
    medium.relay(medium.endpoints[name], data)


def test_broadcast_reaches_every_other_endpoint(medium: Medium, nodes: dict) -> None:
    hello = frame(BROADCAST, mac(1))
    send(medium, "a", hello)
    assert received(nodes["b"]) == [hello]
    assert received(nodes["c"]) == [hello]
    assert received(nodes["a"]) == []


def test_unicast_goes_only_to_the_learned_owner(medium: Medium, nodes: dict) -> None:
    send(medium, "b", frame(BROADCAST, mac(2)))  # the medium learns b's MAC
    received(nodes["a"]), received(nodes["c"])
    to_b = frame(mac(2), mac(1))
    send(medium, "a", to_b)
    assert received(nodes["b"]) == [to_b]
    assert received(nodes["c"]) == []


def test_a_mac_that_moves_is_learned_again(medium: Medium, nodes: dict) -> None:
    send(medium, "b", frame(BROADCAST, mac(7)))
    send(medium, "c", frame(BROADCAST, mac(7)))  # e.g. a roaming station behind a bridge
    for side in nodes.values():
        received(side)
    send(medium, "a", frame(mac(7), mac(1)))
    assert received(nodes["b"]) == [] and len(received(nodes["c"])) == 1
    medium.detach("b")  # forgets only what b still owns
    send(medium, "a", frame(mac(7), mac(1)))
    assert len(received(nodes["c"])) == 1


def test_unicast_to_an_unknown_address_is_flooded(medium: Medium, nodes: dict) -> None:
    send(medium, "a", frame(mac(9), mac(1)))
    assert len(received(nodes["b"])) == 1
    assert len(received(nodes["c"])) == 1


def test_latency_holds_frames_until_due(medium: Medium, nodes: dict, clock: Clock) -> None:
    medium.model.set_link("a", "b", latency_ms=40)
    send(medium, "a", frame(BROADCAST, mac(1)))
    assert len(received(nodes["c"])) == 1
    assert received(nodes["b"]) == []
    clock.now += 0.039
    medium._deliver_due()
    assert received(nodes["b"]) == []
    clock.now += 0.002
    medium._deliver_due()
    assert len(received(nodes["b"])) == 1


def test_cut_link_and_out_of_range_are_counted(medium: Medium, nodes: dict) -> None:
    medium.model.set_link("a", "b", cut=True)
    medium.model.move("c", (5000.0, 0.0))
    send(medium, "a", frame(BROADCAST, mac(1)))
    assert received(nodes["b"]) == [] and received(nodes["c"]) == []
    assert medium.drops == {"cut": 1, "out of range": 1}


def test_carrier_off_silences_both_ways(medium: Medium, nodes: dict, carriers: list) -> None:
    medium.set_endpoint_carrier("b", False)
    assert carriers[-1][1] is False
    send(medium, "b", frame(BROADCAST, mac(2)))
    send(medium, "a", frame(BROADCAST, mac(1)))
    assert received(nodes["a"]) == []
    assert received(nodes["b"]) == []
    assert len(received(nodes["c"])) == 1
    assert medium.endpoints["b"].counters["dropped: no carrier"] == 2  # sent and missed


def test_capture_records_each_transmission_once(
    medium: Medium, nodes: dict, tmp_path: Path
) -> None:
    path = tmp_path / "air.pcap"
    assert medium.handle(CaptureStart(path=str(path)).encode())["ok"]
    hello = frame(BROADCAST, mac(1))
    send(medium, "a", hello)
    reply = medium.handle('{"op": "capture_stop"}')  # the wire form, as a client sends it
    assert reply == {"ok": True, "frames": 1, "path": str(path)}
    assert CaptureStop().decode_reply(reply) == CaptureStopped(frames=1, path=str(path))
    assert [data for _, data in read_pcap(path)] == [hello]


def test_control_changes_the_model(medium: Medium, nodes: dict) -> None:
    assert medium.handle('{"op": "move", "name": "b", "position": [3, 4]}')["ok"]
    assert medium.handle(SetLink(a="a", b="c", cut=True).encode())["ok"]
    assert medium.handle(SetNode(name="a", latency_ms=5).encode())["ok"]
    status = Status().decode_reply(medium.handle(Status().encode()))
    assert isinstance(status, MediumStatus)
    assert status.model["nodes"]["b"]["position"] == [3.0, 4.0, 0.0]
    assert status.model["links"]["a->c"]["cut"] is True
    assert status.model["nodes"]["a"]["egress"]["latency_ms"] == 5.0
    assert set(status.endpoints) == {"a", "b", "c"}
    assert status.endpoints["a"].carrier is True and status.endpoints["a"].peer is None


def test_a_node_change_touches_only_the_fields_it_names(medium: Medium, nodes: dict) -> None:
    medium.handle(SetNode(name="a", latency_ms=5, rate_kbit=800).encode())
    medium.handle(SetNode(name="a", loss=0.5).encode())
    egress = medium.model.snapshot()["nodes"]["a"]["egress"]  # type: ignore[index]
    assert egress == {"loss": 0.5, "latency_ms": 5.0, "jitter_ms": 0.0, "rate_kbit": 800.0}
    medium.handle(SetNode(name="a", rate_kbit=None).encode())  # None: unlimited again
    egress = medium.model.snapshot()["nodes"]["a"]["egress"]  # type: ignore[index]
    assert egress["rate_kbit"] is None and egress["latency_ms"] == 5.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "medium: bad control request 'not json'"),
        ('{"op": "fly"}', "medium: unknown op 'fly'"),
        ('{"op": "move", "name": "zz", "position": [1, 2]}', "no endpoint 'zz'"),
        ('{"op": "node", "name": "a", "loss": 2}', "node 'a': loss must be between 0 and 1"),
        ('{"op": "attach", "name": "d"}', "attach 'd' needs exactly one TAP descriptor"),
        ('{"op": "move", "name": "a"}', "medium: op 'move': missing field 'position'"),
        (
            '{"op": "move", "name": "a", "position": "far"}',
            "medium: op 'move': field 'position' must be a list",
        ),
        ('{"op": "carrier", "name": "a", "on": 1}', "op 'carrier': field 'on' must be true/false"),
        ('{"op": "detach", "name": "a", "now": true}', "op 'detach': unknown field 'now'"),
        ('{"op": "wifi_status"}', "op 'wifi_status' is not served by a Medium"),
    ],
)
def test_bad_requests_are_refused_in_one_line(
    medium: Medium, nodes: dict, line: str, message: str
) -> None:
    reply = medium.handle(line)
    assert reply["ok"] is False
    assert reply["kind"] == "SpecError"
    assert message in reply["error"]
    assert "\n" not in reply["error"]


def test_reset_restores_the_medium_as_attached(
    medium: Medium, nodes: dict, carriers: list, tmp_path: Path
) -> None:
    medium.model.move("b", (5000.0, 0.0))
    medium.model.set_link("a", "c", cut=True)
    medium.model.set_medium(data_rate_mbps=11)
    medium.set_endpoint_carrier("c", False)
    medium.handle(CaptureStart(path=str(tmp_path / "x.pcap")).encode())
    assert medium.handle(Reset().encode()) == {"ok": True}
    assert medium.capture is None
    assert medium.model.position("b") == (0.0, 0.0, 0.0)
    assert medium.model.phy.data_rate_mbps == 54
    assert carriers[-1][1] is True and medium.endpoints["c"].carrier
    send(medium, "a", frame(BROADCAST, mac(1)))
    assert len(received(nodes["b"])) == 1 and len(received(nodes["c"])) == 1


def test_mac_for_is_stable_unicast_and_locally_administered() -> None:
    address = mac_for("sta1")
    assert address == mac_for("sta1") != mac_for("sta2")
    first = int(address.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01


def test_detach_closes_and_forgets(medium: Medium, nodes: dict) -> None:
    medium.detach("b")
    assert "b" not in medium.model.nodes
    send(medium, "a", frame(BROADCAST, mac(1)))
    assert len(received(nodes["c"])) == 1
    assert nodes["b"].recv(10) == b""  # the medium's side is closed


def test_requests_over_the_socket(medium: Medium, tmp_path: Path) -> None:
    import threading

    serving = threading.Thread(target=medium.serve_forever, daemon=True)
    serving.start()
    path = str(tmp_path / "control.sock")
    try:
        assert request(path, Ping()) == Endpoints(endpoints=[])
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        reply = request(path, Attach(name="z"), [medium_side.fileno()])
        medium_side.close()
        assert reply == Done()
        assert "z" in medium.endpoints
        with pytest.raises(SpecError, match=r"^medium: no endpoint 'nobody' \(attached: z\)$"):
            request(path, Move(name="nobody", position=[1.0, 2.0]))
    finally:
        assert request(path, Stop()) == Done()
        serving.join(5)
        node_side.close()
    assert not serving.is_alive()


# --- wired pairs: a node's TAP and the packet socket on its real LAN interface -----------


def ipv4_udp(payload: bytes = b"hello, wire") -> tuple[bytes, int, int]:
    """An Ethernet frame of IPv4/UDP with a zero UDP checksum, the correct checksum, and
    the folded pseudo-header sum an offloading sender leaves in its place."""
    src, dst = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])
    udp = struct.pack("!HHHH", 4000, 5000, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    frame_bytes = mac(2) + mac(1) + b"\x08\x00" + header + udp
    return frame_bytes, naive_checksum(pseudo + udp), ~naive_checksum(pseudo) & 0xFFFF


def naive_checksum(data: bytes) -> int:
    """RFC 1071 the long way, to check the relay's short way against."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def vnet(frame: bytes, flags: int = 0, start: int = 0, offset: int = 0) -> bytes:
    return VNET_HEADER.pack(flags, 0, 0, 0, start, offset) + frame


@pytest.fixture
def pair(medium: Medium, nodes: dict, carriers: list) -> Iterator[dict[str, socket.socket]]:
    """Endpoint "n" (the node's TAP) wired to "n.lan" (a packet socket), beside a, b, c,
    attached through the control op as the attach helper does."""
    sides, medium_sides = {}, []
    for name in ("n", "n.lan"):
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        node_side.setblocking(False)
        sides[name] = node_side
        medium_sides.append(medium_side.detach())
    carriers.clear()
    reply = medium.handle(Attach(name="n", peer="n.lan").encode(), medium_sides)
    assert reply == {"ok": True}
    yield sides
    for side in sides.values():
        side.close()


def test_a_pair_carries_frames_between_its_ends_only(
    medium: Medium, nodes: dict, pair: dict
) -> None:
    hello = frame(BROADCAST, mac(5))
    send(medium, "n", hello)
    assert received(pair["n.lan"]) == [VNET_PLAIN + hello]  # a packet socket wants a header
    assert all(received(side) == [] for side in nodes.values())
    send(medium, "n.lan", frame(BROADCAST, mac(6)))
    assert received(pair["n"]) == [frame(BROADCAST, mac(6))]
    assert all(received(side) == [] for side in nodes.values())
    # Nor does the rest of the medium reach into the pair, broadcast or flooded unicast.
    send(medium, "a", frame(BROADCAST, mac(1)))
    send(medium, "a", frame(mac(5), mac(1)))
    assert received(pair["n"]) == [] and received(pair["n.lan"]) == []
    assert len(received(nodes["b"])) == 2


def test_pairs_learn_no_addresses(medium: Medium, nodes: dict, pair: dict) -> None:
    send(medium, "n.lan", frame(BROADCAST, mac(6)))  # e.g. the LAN's gateway
    send(medium, "n", frame(BROADCAST, mac(5)))
    assert medium.endpoints["n"].macs == set() == medium.endpoints["n.lan"].macs
    received(pair["n"]), received(pair["n.lan"])
    send(medium, "a", frame(mac(6), mac(1)))
    assert received(pair["n"]) == [] and received(pair["n.lan"]) == []


def test_two_pairs_keep_their_frames_apart(medium: Medium, nodes: dict, pair: dict) -> None:
    sides = {}
    for name in ("m", "m.lan"):
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        node_side.setblocking(False)
        sides[name] = node_side
        medium.attach(name, medium_side.detach(), packet=name.endswith(".lan"),
                      peer="m" if name == "m.lan" else None)
    try:
        for source, target in (("n", "n.lan"), ("n.lan", "n"), ("m", "m.lan"), ("m.lan", "m")):
            send(medium, source, frame(BROADCAST, mac(9)))
            everyone = {**pair, **sides}
            got = {name for name, side in everyone.items() if received(side)}
            assert got == {target}, f"a frame of {source} reached {got}"
    finally:
        for side in sides.values():
            side.close()


def test_the_impairments_of_each_end_apply_to_what_it_sends(
    medium: Medium, pair: dict, clock: Clock
) -> None:
    medium.handle(SetNode(name="n", latency_ms=50).encode())
    send(medium, "n.lan", frame(BROADCAST, mac(6)))
    assert len(received(pair["n"])) == 1  # what the node receives is not delayed
    send(medium, "n", frame(BROADCAST, mac(5)))
    assert received(pair["n.lan"]) == []
    clock.now += 0.051
    medium._deliver_due()
    assert len(received(pair["n.lan"])) == 1


def test_only_the_tap_of_a_pair_has_a_carrier_to_switch(
    medium: Medium, pair: dict, carriers: list
) -> None:
    tap = medium.endpoints["n"].fd
    assert carriers == [(tap, True)]
    medium.handle(Reset().encode())
    medium.set_endpoint_carrier("n.lan", False)  # no ioctl on a socket
    assert [fd for fd, _ in carriers] == [tap]
    assert medium.endpoints["n.lan"].carrier is False
    assert medium.endpoints["n"].peer == "n.lan" and medium.endpoints["n.lan"].peer == "n"


def test_detaching_either_end_detaches_the_pair(medium: Medium, pair: dict) -> None:
    medium.detach("n.lan")
    assert "n" not in medium.endpoints and "n.lan" not in medium.endpoints
    assert {"n", "n.lan"}.isdisjoint(medium.model.nodes)
    assert pair["n"].recv(10) == b"" and pair["n.lan"].recv(10) == b""  # both closed


def test_a_failed_read_on_one_end_detaches_the_pair(
    medium: Medium, pair: dict, tmp_path: Path
) -> None:
    fd = medium.endpoints["n.lan"].fd
    # Its interface went with the node's namespace: reads fail (here: a directory's).
    directory = os.open(tmp_path, os.O_RDONLY)
    os.dup2(directory, fd)
    os.close(directory)
    medium._on_readable(fd)
    assert "n" not in medium.endpoints and "n.lan" not in medium.endpoints


def test_a_packet_socket_frame_is_read_without_its_header_and_with_its_checksum(
    medium: Medium, pair: dict
) -> None:
    udp, checksum, pseudo_sum = ipv4_udp()
    start, offset = 14 + 20, 6
    # As a neighbour with checksum offload sends it: the field holds the pseudo-header sum.
    partial = bytearray(udp)
    struct.pack_into("!H", partial, start + offset, pseudo_sum)
    pair["n.lan"].send(vnet(bytes(partial), VNET_F_NEEDS_CSUM, start, offset))
    pair["n.lan"].send(vnet(udp))  # nothing to complete: passed as it is
    medium._on_readable(medium.endpoints["n.lan"].fd)
    completed, plain = received(pair["n"])
    assert struct.unpack_from("!H", completed, start + offset)[0] == checksum
    assert completed[: start + offset] == udp[: start + offset]
    assert completed[start + offset + 2 :] == udp[start + offset + 2 :]
    assert plain == udp


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1499, 1500, 65535])
def test_internet_checksum_agrees_with_rfc_1071(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert internet_checksum(data) == naive_checksum(data)
    assert internet_checksum(bytes(size)) == 0xFFFF  # all zeros: the sum is zero


@pytest.mark.parametrize(
    ("line", "fds", "message"),
    [
        ({"op": "attach", "name": "p", "peer": "p.lan"}, 1, "needs two descriptors"),
        ({"op": "attach", "name": "p", "peer": "a"}, 2, "a name is taken"),
        ({"op": "attach", "name": "p", "peer": "p"}, 2, "a name is taken"),
    ],
)
def test_a_bad_pair_attaches_nothing_and_closes_its_descriptors(
    medium: Medium, nodes: dict, line: dict, fds: int, message: str
) -> None:
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(fds)]
    reply = medium.handle(json.dumps(line), [medium_side.detach() for _, medium_side in pairs])
    assert reply["ok"] is False and message in reply["error"]
    assert set(medium.endpoints) == {"a", "b", "c"}
    for node_side, _ in pairs:
        assert node_side.recv(10) == b""  # the medium kept no descriptor
        node_side.close()


def test_a_pair_whose_tap_cannot_attach_leaves_nothing(medium: Medium, nodes: dict) -> None:
    def refuse(fd: int, on: bool) -> None:
        raise OSError(25, "Inappropriate ioctl for device")

    medium._switch_carrier = refuse
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(2)]
    reply = medium.handle(
        json.dumps({"op": "attach", "name": "p", "peer": "p.lan"}),
        [medium_side.detach() for _, medium_side in pairs],
    )
    assert reply["ok"] is False and reply["kind"] == "NodeError"
    assert set(medium.endpoints) == {"a", "b", "c"} and "p.lan" not in medium.model.nodes
    for node_side, _ in pairs:
        assert node_side.recv(10) == b""
        node_side.close()


def test_a_sender_ahead_of_its_rate_is_held_back_not_dropped(
    medium: Medium, nodes: dict, clock: Clock
) -> None:
    """Back-pressure: the relay stops reading a node that is ahead of its rate, so its
    frames wait in its own queue (its stack slows down) instead of being dropped."""
    medium.model.set_node("a", rate_kbit=1000)  # a 1514-byte frame every 12 ms
    node_a = nodes["a"]
    big = frame(mac(2), mac(1), b"x" * 1500)
    for _ in range(40):  # 480 ms of frames at once: far beyond the 100 ms queue
        node_a.send(big)
    delivered = 0
    for _ in range(200):  # the relay loop, cranked by hand: a held node is not read
        if not medium.endpoints["a"].held:
            medium._on_readable(medium.endpoints["a"].fd)
        clock.now += 0.005
        medium._deliver_due()
        medium._run_timers()
        delivered += len(received(nodes["b"]))
    assert delivered == 40
    assert dict(medium.drops) == {}
    counters = medium.endpoints["a"].counters
    assert counters["held"] > 0 and counters["sent"] == 40
    assert not medium.endpoints["a"].held
