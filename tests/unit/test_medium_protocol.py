"""The medium's typed control protocol: requests and replies on the wire, the relay's op
table, and the test process's typed clients, against a real relay on socket pairs (the
Docker session is replaced by one that hands each line to the relay in process)."""

from __future__ import annotations

import dataclasses
import json
import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_cirque.core.errors import NodeError, SpecError
from pytest_cirque.radios.client.container import MediumContainer, relay_security_options
from pytest_cirque.radios.client.wifi import WifiClient
from pytest_cirque.radios.relay.link_model import LinkModel, Phy
from pytest_cirque.radios.relay.medium import Medium
from pytest_cirque.radios.relay.protocol import (
    KEEP,
    REQUESTS,
    Attach,
    CaptureStart,
    CaptureStop,
    CaptureStopped,
    Carrier,
    Detach,
    Done,
    EndpointStatus,
    GetThreadDataset,
    GetThreadNodeId,
    GetThreadStatus,
    GetWifiStatus,
    MediumStatus,
    Move,
    Ping,
    Reset,
    SetLink,
    SetMedium,
    SetNode,
    StartAccessPoint,
    StartStation,
    StationCtrl,
    StationLog,
    Status,
    Stop,
    WifiStatus,
    decode_request,
    error_reply,
    make_request,
)
from pytest_cirque.radios.relay.thread import ThreadMedium
from pytest_cirque.radios.relay.wifi import WifiMedium

#: One request of every op, with its fields set away from their defaults.
EXAMPLES = [
    Ping(),
    Reset(),
    Stop(),
    Attach(name="n1", position=[1.0, 2.0, 0.0], carrier=False, peer="n1.lan"),
    Detach(name="n1"),
    Move(name="n1", position=[3.0, 4.0]),
    SetNode(name="n1", loss=0.1, latency_ms=5.0, jitter_ms=1.0, rate_kbit=None),
    SetLink(a="n1", b="n2", cut=True, symmetric=False, loss=0.2, rate_kbit=800.0),
    SetMedium(airtime=False, queue_ms=50.0, phy="802.11g", data_rate_mbps=11.0),
    Carrier(name="n1", on=False),
    CaptureStart(path="/run/cirque-medium/air.pcap"),
    CaptureStop(),
    Status(),
    StartAccessPoint(name="ap", mac="02:00:00:00:00:01", ssid="home", psk="secret12"),
    StartStation(name="sta", mac="02:00:00:00:00:02", token="0123456789abcdef" * 2),
    GetWifiStatus(),
    StationCtrl(name="sta", command="STATUS"),
    StationLog(name="sta"),
    GetThreadNodeId(name="n1"),
    GetThreadDataset(),
    GetThreadStatus(),
]


def test_every_op_has_an_example() -> None:
    assert {type(example).OP for example in EXAMPLES} == set(REQUESTS)


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: r.OP)
def test_a_request_is_one_json_line_that_decodes_to_itself(request_: Any) -> None:
    line = request_.encode()
    assert "\n" not in line
    assert json.loads(line)["op"] == request_.OP
    assert decode_request(line) == request_


def test_fields_left_as_they_are_are_not_sent_and_none_is() -> None:
    assert json.loads(SetNode(name="a", latency_ms=5).encode()) == {
        "op": "node",
        "name": "a",
        "latency_ms": 5.0,
    }
    unlimited = json.loads(SetNode(name="a", rate_kbit=None).encode())
    assert unlimited == {"op": "node", "name": "a", "rate_kbit": None}
    assert SetNode(name="a", loss=1).changes() == {"loss": 1.0}
    assert SetNode(name="a").loss is KEEP and not KEEP


def test_numbers_are_normalised_when_a_request_is_made() -> None:
    move = Move(name="a", position=(1, 2))  # type: ignore[arg-type]
    assert move.position == [1.0, 2.0] and all(isinstance(c, float) for c in move.position)
    assert decode_request('{"op": "move", "name": "a", "position": [1, 2]}') == move


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Move(name="a", position="far"),
            "medium: op 'move': field 'position' must be a list (a number each), not 'far'",
        ),
        (
            lambda: Carrier(name="a", on="yes"),
            "medium: op 'carrier': field 'on' must be true/false, not 'yes'",
        ),
        (
            lambda: SetNode(name="a", loss=True),
            "medium: op 'node': field 'loss' must be a number or omitted, not True",
        ),
        (
            lambda: StartStation(name="s", mac="m", token=15),
            "medium: op 'wifi_station': field 'token' must be a string, not 15",
        ),
        (
            lambda: Detach(name=None),
            "medium: op 'detach': field 'name' must be a string, not None",
        ),
        (
            lambda: decode_request('{"op": "move", "name": 7, "position": [1, 2]}'),
            "medium: op 'move': field 'name' must be a string, not 7",
        ),
        (
            lambda: decode_request('{"op": "node", "name": "a", "loss": "much"}'),
            "medium: op 'node': field 'loss' must be a number or omitted, not 'much'",
        ),
        (
            lambda: decode_request('{"op": "move", "name": "a"}'),
            "medium: op 'move': missing field 'position'",
        ),
        (
            lambda: decode_request('{"op": "reset", "hard": true}'),
            "medium: op 'reset': unknown field 'hard'; known: none",
        ),
        (
            lambda: decode_request('{"op": "fly", "to": "moon"}'),
            "medium: unknown op 'fly'; known: attach, capture_start, ",
        ),
        (lambda: decode_request('{"name": "a"}'), "medium: bad control request "),
        (lambda: decode_request("[1, 2]"), "medium: bad control request '[1, 2]'"),
        (lambda: decode_request("not json"), "medium: bad control request 'not json'"),
        (
            lambda: make_request(SetMedium, {"speed": 3}),
            "medium: op 'medium': unknown field 'speed'; known: airtime, queue_ms, phy, ",
        ),
    ],
)
def test_a_bad_request_is_refused_with_one_line(make: Any, message: str) -> None:
    with pytest.raises(SpecError) as refused:
        make()
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_the_medium_fields_are_those_of_the_phy() -> None:
    phy_fields = {f.name for f in dataclasses.fields(Phy) if f.name != "name"}
    request_fields = {f.name for f in dataclasses.fields(SetMedium)}
    assert request_fields == {"airtime", "queue_ms", "phy", *phy_fields}


def test_replies_decode_typed_and_refusals_raise_their_error_class() -> None:
    status = Status().decode_reply(
        {
            "ok": True,
            "model": {"phy": {"name": "802.11g"}},
            "endpoints": {
                "a": {"carrier": True, "macs": [], "counters": {"sent": 2}, "peer": None}
            },
            "drops": {"cut": 1},
            "pending": 0,
            "capture": None,
        }
    )
    assert status == MediumStatus(
        model={"phy": {"name": "802.11g"}},
        endpoints={"a": EndpointStatus(carrier=True, macs=[], counters={"sent": 2}, peer=None)},
        drops={"cut": 1},
        pending=0,
        capture=None,
    )
    with pytest.raises(SpecError, match=r"^medium: no endpoint 'x'$"):
        Move(name="x", position=[0.0, 0.0]).decode_reply(
            error_reply("SpecError", "medium: no endpoint 'x'")
        )
    for kind in ("ValueError", "NoSuchError", None):
        with pytest.raises(NodeError, match=r"^boom$"):
            Ping().decode_reply({"ok": False, "kind": kind, "error": "boom"})
    with pytest.raises(NodeError, match=r"reply to op 'capture_stop': missing field 'frames'"):
        CaptureStop().decode_reply({"ok": True, "path": None})


def test_the_relays_tables_serve_every_op(tmp_path: Path) -> None:
    plain = Medium(LinkModel(), str(tmp_path / "plain.sock"), log=lambda _line: None)
    wifi = WifiMedium(LinkModel(), str(tmp_path / "wifi.sock"), log=lambda _line: None)
    thread = ThreadMedium(LinkModel(), str(tmp_path / "thread.sock"), log=lambda _line: None)
    try:
        wifi_ops = {op for op in REQUESTS if op.startswith("wifi_")}
        thread_ops = {op for op in REQUESTS if op.startswith("thread_")}
        layer_ops = wifi_ops | thread_ops
        assert {cls.OP for cls in plain.handlers()} == set(REQUESTS) - layer_ops
        assert {cls.OP for cls in wifi.handlers()} == set(REQUESTS) - thread_ops
        assert {cls.OP for cls in thread.handlers()} == set(REQUESTS) - wifi_ops
    finally:
        plain.close()
        wifi.close()
        thread.close()


def test_the_relay_container_gets_least_privilege() -> None:
    for wifi in (False, True):
        options = relay_security_options(wifi)
        assert options["privileged"] is False and options["network_mode"] == "none"
        assert options["cap_drop"] == ["ALL"] and options["devices"] == []
        assert options["security_opt"] == ["no-new-privileges"]
        # No medium, WiFi included, shares a host namespace or holds a capability.
        assert options["cap_add"] == [] and options["pid_mode"] is None
    assert relay_security_options(True) == relay_security_options(False)


# --- the clients, against a relay in process ---------------------------------------------


class InProcessSession:
    """The exec session into the medium container, as the relay in this process."""

    def __init__(self, relay: Medium) -> None:
        self.relay = relay
        self.lines: list[str] = []

    def ask(self, line: str) -> str:
        self.lines.append(line)
        return json.dumps(self.relay.handle(line))

    def close(self) -> None:
        pass


class InProcessBackend:
    """Just what MediumContainer.request needs of the backend."""

    def __init__(self, relay: Medium) -> None:
        self.session = InProcessSession(relay)

    def open_session(self, container: str, command: list[str], **_options: Any) -> Any:
        assert command[:4] == ["python3", "-m", "pytest_cirque.radios.relay.medium", "session"]
        return self.session


@pytest.fixture
def relay() -> Iterator[WifiMedium]:
    # A short directory: socket paths must fit sun_path.
    with tempfile.TemporaryDirectory(prefix="cq-", dir="/tmp") as short:
        medium = WifiMedium(
            LinkModel(rng=random.Random(5)),
            f"{short}/control.sock",
            log=lambda _line: None,
            switch_carrier=lambda _fd, _on: None,
        )
        sides = []
        for name in ("ap", "sta"):
            node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sides.append(node_side)
            medium.attach(name, medium_side.detach())
        yield medium
        medium.close()
        for side in sides:
            side.close()


@pytest.fixture
def client(relay: WifiMedium) -> MediumContainer:
    labels = {"io.cirque.run": "r", "io.cirque.home": "h", "io.cirque.owner": "o"}
    medium = MediumContainer(
        InProcessBackend(relay),  # type: ignore[arg-type]
        name="h-wifi",
        image="unused",
        labels=labels,
        wifi=True,
    )
    medium.container_id = "in-process"
    return medium


def test_the_container_client_is_typed(client: MediumContainer, relay: WifiMedium) -> None:
    assert client.ping() == ["ap", "sta"]
    client.move("sta", (30, 40))
    client.set_node("sta", latency_ms=5, rate_kbit=None)
    client.cut("ap", "sta")
    client.carrier("sta", False)
    status = client.status()
    assert isinstance(status, MediumStatus)
    assert status.model["nodes"]["sta"]["position"] == [30.0, 40.0, 0.0]
    assert status.model["nodes"]["sta"]["egress"]["latency_ms"] == 5.0
    assert status.model["links"]["ap->sta"]["cut"] is True
    assert status.endpoints["sta"].carrier is False
    path = str(Path(relay._server.getsockname()).parent / "air.pcap")
    assert client.request(CaptureStart(path=path)) == Done()
    assert client.status().capture == path
    client.reset()
    after = client.status()
    assert after.capture is None and after.endpoints["sta"].carrier is True
    assert after.model["links"] == {}


def test_a_refusal_raises_the_class_the_relay_names(client: MediumContainer) -> None:
    with pytest.raises(SpecError, match=r"^medium: no endpoint 'nobody' \(attached: ap, sta\)$"):
        client.set_node("nobody", loss=0.5)
    with pytest.raises(SpecError, match=r"node 'ap': loss must be between 0 and 1"):
        client.set_node("ap", loss=2)
    with pytest.raises(SpecError, match=r"^medium: op 'medium': unknown field 'warp'"):
        client.set_medium(warp=9)


def test_the_wifi_client_is_typed(client: MediumContainer, relay: WifiMedium) -> None:
    wifi = client.as_wifi()
    assert isinstance(wifi, WifiClient)
    bssid = wifi.add_access_point("ap", mac="02:00:00:00:00:01", ssid="home", psk="secret12")
    assert bssid == "02:00:00:00:00:01"
    wifi.add_station("sta", mac="02:00:00:00:00:02", token="0123456789abcdef" * 2)
    assert wifi.ctrl("sta", "PING") == "PONG\n"
    assert wifi.ctrl("sta", "DISCONNECT") == "OK\n"
    # The helper's commands are marked in the log; its polling (PING) is left out.
    assert wifi.log("sta")[-2:] == [
        wifi.log("sta")[-2].split(" helper ")[0] + " helper > DISCONNECT",
        wifi.log("sta")[-1].split(" helper ")[0] + " helper < OK",
    ]
    assert not any("PING" in line for line in wifi.log("sta"))
    status = wifi.status()
    assert isinstance(status, WifiStatus)
    assert status.aps["ap"].ssid == "home" and status.aps["ap"].security == "WPA2-PSK"
    assert status.stations["sta"].mac == "02:00:00:00:00:02"
    lines = client.topology_lines("wifi")
    assert lines[0] == "  medium wifi (802.11g): ap, sta"
    assert lines[1] == "    ap ap: 'home' WPA2-PSK channel 6 bssid 02:00:00:00:00:01"
    assert lines[2].startswith("    station sta: ")


def test_only_a_wifi_medium_has_a_wifi_client(relay: WifiMedium) -> None:
    labels = {"io.cirque.run": "r", "io.cirque.home": "h", "io.cirque.owner": "o"}
    lan = MediumContainer(InProcessBackend(relay), name="h-lan", image="x", labels=labels)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^medium h-lan: it runs no wifi layer; start it with"):
        lan.as_wifi()


def test_a_medium_that_is_not_running_says_so(relay: WifiMedium) -> None:
    labels = {"io.cirque.run": "r", "io.cirque.home": "h", "io.cirque.owner": "o"}
    idle = MediumContainer(InProcessBackend(relay), name="h-wifi", image="x", labels=labels)  # type: ignore[arg-type]
    with pytest.raises(NodeError, match=r"^medium h-wifi: not running; start\(\) it first$"):
        idle.status()
    assert CaptureStop().decode_reply({"ok": True, "frames": 3, "path": "/x"}) == CaptureStopped(
        frames=3, path="/x"
    )
    assert Reset().decode_reply({"ok": True}) == Done()
