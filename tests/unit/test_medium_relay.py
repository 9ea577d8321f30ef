"""The relay's frame decisions and control requests, with socket pairs standing in for TAPs.

A SOCK_SEQPACKET pair keeps frame boundaries the way a TAP descriptor does; the carrier
switch is recorded instead of sent to a device. The real TAPs are exercised by
tests/integration/test_medium.py.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_cirque.radios.endpoint import mac_for
from pytest_cirque.radios.link_model import LinkModel
from pytest_cirque.radios.medium import Medium, request
from pytest_cirque.radios.pcap import read_pcap

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
    assert medium.handle(json.dumps({"op": "capture_start", "path": str(path)}))["ok"]
    hello = frame(BROADCAST, mac(1))
    send(medium, "a", hello)
    reply = medium.handle('{"op": "capture_stop"}')
    assert reply == {"ok": True, "frames": 1, "path": str(path)}
    assert [data for _, data in read_pcap(path)] == [hello]


def test_control_changes_the_model(medium: Medium, nodes: dict) -> None:
    assert medium.handle('{"op": "move", "name": "b", "position": [3, 4]}')["ok"]
    assert medium.handle('{"op": "link", "a": "a", "b": "c", "cut": true}')["ok"]
    assert medium.handle('{"op": "node", "name": "a", "latency_ms": 5}')["ok"]
    status = medium.handle('{"op": "status"}')
    assert status["model"]["nodes"]["b"]["position"] == [3.0, 4.0, 0.0]
    assert status["model"]["links"]["a->c"]["cut"] is True
    assert status["model"]["nodes"]["a"]["egress"]["latency_ms"] == 5.0
    assert set(status["endpoints"]) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "medium: bad control request 'not json'"),
        ('{"op": "fly"}', "medium: unknown op 'fly'"),
        ('{"op": "move", "name": "zz", "position": [1, 2]}', "no endpoint 'zz'"),
        ('{"op": "node", "name": "a", "loss": 2}', "node 'a': loss must be between 0 and 1"),
        ('{"op": "attach", "name": "d"}', "attach 'd' needs exactly one TAP descriptor"),
        ('{"op": "move", "name": "a"}', "op 'move': "),
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
    medium.handle(json.dumps({"op": "capture_start", "path": str(tmp_path / "x.pcap")}))
    assert medium.handle('{"op": "reset"}') == {"ok": True}
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
    try:
        assert request(str(tmp_path / "control.sock"), {"op": "ping"}) == {
            "ok": True,
            "endpoints": [],
        }
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        reply = request(
            str(tmp_path / "control.sock"), {"op": "attach", "name": "z"}, [medium_side.fileno()]
        )
        medium_side.close()
        assert reply == {"ok": True}
        assert "z" in medium.endpoints
    finally:
        assert request(str(tmp_path / "control.sock"), {"op": "stop"}) == {"ok": True}
        serving.join(5)
        node_side.close()
    assert not serving.is_alive()
