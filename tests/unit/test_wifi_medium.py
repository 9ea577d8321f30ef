"""The medium's WiFi layer on a fake clock, with socket pairs standing in for TAPs.

The relay loop is driven by hand (advance the clock, deliver due frames, run timers), so
every scenario is deterministic and takes milliseconds. Control requests are the typed
requests of the medium's protocol, sent in their wire form; control-interface commands
go through the ``wifi_ctrl`` op (StationCtrl); the real sockets and wpa_cli are exercised by
tests/unit/test_ctrl_iface.py and tests/integration/test_wifi.py.
"""

from __future__ import annotations

import random
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_cirque.radios.relay.ctrl_iface import (
    EV_TERMINATING,
    FRAME_ACCEPTED,
    FRAME_DATAGRAM,
    FRAME_HEADER,
    FRAME_HELLO,
    Frame,
    FrameReader,
)
from pytest_cirque.radios.relay.link_model import LinkModel
from pytest_cirque.radios.relay.protocol import (
    ApStatus,
    Attach,
    Detach,
    GetWifiStatus,
    Move,
    R,
    Request,
    StartAccessPoint,
    StartStation,
    StationCtrl,
    StationLog,
    StationStatus,
)
from pytest_cirque.radios.relay.wifi import (
    HELLO_TIMEOUT_S,
    MGMT_ETHERTYPE,
    Mgmt,
    Subtype,
    WifiMedium,
    ethernet,
    frequency_mhz,
)
from pytest_cirque.radios.relay.wpa import EAPOL_ETHERTYPE

AP_MAC = "02:00:00:00:00:01"
STA_MAC = "02:00:00:00:00:02"
PSK = "correct horse"
TOKEN = "5ca1ab1e" * 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Air:
    """A WifiMedium with an AP and a station on socket pairs, and a hand-cranked loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.carriers: dict[int, bool] = {}
        self.lines: list[str] = []
        self.medium = WifiMedium(
            LinkModel(rng=random.Random(7)),
            str(tmp_path / "control.sock"),
            clock=self.clock,
            log=self.lines.append,
            switch_carrier=lambda fd, on: self.carriers.__setitem__(fd, on),
        )
        self.nodes: dict[str, socket.socket] = {}
        self.fds: dict[str, int] = {}
        # The home's radio volume, with the relay program the medium hands out.
        self.radio = tmp_path / "radio"
        self.radio.mkdir()
        program = tmp_path / "cirque-wpa-ctrl"
        program.write_bytes(b"\x7fELF stand-in")
        self.medium.serve_stations(str(self.radio), program=str(program))

    def attach(self, name: str, position=(0, 0, 0), carrier: bool = True) -> None:
        node_side, medium_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        node_side.setblocking(False)
        fd = medium_side.detach()
        self.nodes[name], self.fds[name] = node_side, fd
        self.call(Attach(name=name, position=list(position), carrier=carrier), fds=[fd])

    def call(self, request: Request[R], fds: list[int] | None = None) -> R:
        """One request through the relay's wire form, as a client sends it."""
        reply = self.medium.handle(request.encode(), fds)
        assert reply["ok"], reply
        return request.decode_reply(reply)

    def ctrl(self, station: str, command: str) -> str:
        return self.call(StationCtrl(name=station, command=command)).reply

    def status(self, station: str) -> dict[str, str]:
        lines = self.ctrl(station, "STATUS").splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def log(self, station: str) -> str:
        return "\n".join(self.call(StationLog(name=station)).lines)

    def run(self, seconds: float, step: float = 0.005) -> None:
        """Let ``seconds`` pass on the air: frames arrive, timers fire."""
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now += step
            self.medium._deliver_due()
            self.medium._run_timers()

    def pump(self) -> None:
        """Serve every socket that is ready (the relay loop's select, by hand)."""
        for _ in range(20):
            ready = self.medium._selector.select(0)
            if not ready:
                return
            for key, _events in ready:
                key.data(key.fileobj)

    def connect(self, *frames: Frame | bytes) -> socket.socket:
        """A node's connection to the stations socket, sending these first."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.radio / "stations.sock"))
        sock.settimeout(5)
        for frame in frames:
            sock.sendall(frame.encode() if isinstance(frame, Frame) else frame)
        self.pump()
        return sock

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
def air() -> Iterator[Air]:
    # A short directory: the socket path inside the node's root must fit sun_path.
    with tempfile.TemporaryDirectory(prefix="cq-", dir="/tmp") as short:
        air = Air(Path(short))
        yield from _setup(air)


def _setup(air: Air) -> Iterator[Air]:
    air.attach("ap")
    air.attach("sta", position=(10, 0, 0), carrier=False)
    assert air.call(StartAccessPoint(name="ap", mac=AP_MAC, ssid="home", psk=PSK)).bssid == AP_MAC
    air.call(StartStation(name="sta", mac=STA_MAC, token=TOKEN))
    yield air
    air.close()


def join(air: Air, psk: str = PSK, ssid: str = "home") -> None:
    network = air.ctrl("sta", "ADD_NETWORK").strip()
    assert air.ctrl("sta", f'SET_NETWORK {network} ssid "{ssid}"') == "OK\n"
    assert air.ctrl("sta", f'SET_NETWORK {network} psk "{psk}"') == "OK\n"
    assert air.ctrl("sta", f"SELECT_NETWORK {network}") == "OK\n"


def data(dst: str, src: str) -> bytes:
    mac = bytes.fromhex
    return mac(dst.replace(":", "")) + mac(src.replace(":", "")) + b"\x08\x00" + b"p" * 60


def test_management_frames_round_trip_and_garbage_is_refused():
    frame = Mgmt(Subtype.PROBE_RESP, 0, b"home", 11, b"\x30\x02\x01\x00")
    assert Mgmt.decode(frame.encode()) == frame
    for garbage in (b"", b"\x02\x04\x00\x00", b"\x01\x04\x00\x00\x00\x09ab"):
        with pytest.raises(ValueError):
            Mgmt.decode(garbage)
    assert (frequency_mhz(1), frequency_mhz(6), frequency_mhz(14), frequency_mhz(36)) == (
        2412,
        2437,
        2484,
        5180,
    )


def test_the_station_scans_associates_and_only_then_carries_data(air: Air):
    air.run(0.3)  # beacons
    assert air.ctrl("sta", "SCAN") == "OK\n"
    air.run(0.2)
    results = air.ctrl("sta", "SCAN_RESULTS").splitlines()
    assert results[0] == "bssid / frequency / signal level / flags / ssid"
    bssid, frequency, signal, flags, ssid = results[1].split("\t")
    assert (bssid, frequency, flags, ssid) == (AP_MAC, "2437", "[WPA2-PSK-CCMP][ESS]", "home")
    assert -70 < int(signal) < -20

    air.nodes["sta"].send(data(AP_MAC, STA_MAC))  # before association: refused
    air.medium._on_readable(air.fds["sta"])
    air.run(0.05)
    assert air.received("ap") == []
    assert air.carriers[air.fds["sta"]] is False

    join(air)
    air.run(1.0)
    status = air.status("sta")
    assert (status["wpa_state"], status["bssid"], status["key_mgmt"]) == (
        "COMPLETED",
        AP_MAC,
        "WPA2-PSK",
    )
    assert air.carriers[air.fds["sta"]] is True
    log = air.log("sta")
    assert "WPA: Key negotiation completed with 02:00:00:00:00:01 [PTK=CCMP GTK=CCMP]" in log
    assert "CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:00:01 completed [id=0" in log

    air.nodes["sta"].send(data(AP_MAC, STA_MAC))
    air.medium._on_readable(air.fds["sta"])
    air.run(0.05)
    delivered = air.received("ap")
    assert delivered == [data(AP_MAC, STA_MAC)]  # only data: no radio frames reach nodes


def test_a_wrong_key_is_refused_by_the_aps_mic_check(air: Air):
    join(air, psk="wrong horse")
    air.run(3.0)
    log = air.log("sta")
    assert "WPA: 4-Way Handshake failed - pre-shared key may be incorrect" in log
    assert "CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:00:01 reason=15" in log
    assert 'CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="home" auth_failures=1' in log
    assert "reason=WRONG_KEY" in log and "CTRL-EVENT-CONNECTED" not in log
    assert air.call(GetWifiStatus()).aps["ap"].mic_failures >= 1
    assert air.carriers[air.fds["sta"]] is False
    # After the temporary disabling it tries again (and fails again: the key is wrong).
    air.run(11.0)
    assert 'CTRL-EVENT-SSID-REENABLED id=0 ssid="home"' in air.log("sta")


def test_out_of_range_drops_the_association_and_back_in_range_restores_it(air: Air):
    join(air)
    air.run(1.0)
    assert air.status("sta")["wpa_state"] == "COMPLETED"
    air.call(Move(name="sta", position=[5000, 0]))
    air.run(2.0)
    assert air.status("sta")["wpa_state"] != "COMPLETED"
    assert "CTRL-EVENT-BEACON-LOSS" in air.log("sta")
    assert air.carriers[air.fds["sta"]] is False
    air.call(Move(name="sta", position=[3, 0]))
    air.run(4.0)
    assert air.status("sta")["wpa_state"] == "COMPLETED"


def test_a_held_up_relay_is_not_mistaken_for_beacon_loss(air: Air):
    join(air)
    air.run(1.0)
    assert air.status("sta")["wpa_state"] == "COMPLETED"
    # Stalls that start at every phase of the beacon and link-check timers: in some, the
    # late link check runs before the late beacon.
    for step in range(12):
        air.run(0.01 + 0.02 * step)
        air.clock.now += 3.0  # the relay's loop did not run for 3 s: no beacons were sent
        air.run(0.01)
        assert air.status("sta")["wpa_state"] == "COMPLETED"
    assert "BEACON-LOSS" not in air.log("sta")


def test_radio_frames_from_a_node_are_refused(air: Air):
    forged = ethernet(bytes(6 * [0xFF]), bytes.fromhex("020000000002"), MGMT_ETHERTYPE, b"\x01")
    eapol = ethernet(bytes.fromhex("020000000001"), bytes.fromhex("020000000002"),
                     EAPOL_ETHERTYPE, b"\x02\x03\x00\x00")
    for frame in (forged, eapol):
        air.medium.receivers(air.medium.endpoints["ap"], frame)
    drops = air.medium.endpoints["ap"].counters
    assert drops["dropped: radio frames come from the medium, not the node"] == 2


def read_frames(sock: socket.socket, count: int) -> list[Frame]:
    reader, frames = FrameReader(), []
    while len(frames) < count:
        while (frame := reader.next()) is not None:
            frames.append(frame)
        if len(frames) < count:
            data = sock.recv(65536)
            assert data, f"closed after {frames}"
            reader.feed(data)
    return frames


def hung_up(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_the_medium_hands_out_the_relay_and_serves_the_stations_socket(air: Air):
    program = air.radio / "bin" / "cirque-wpa-ctrl"
    assert program.read_bytes() == b"\x7fELF stand-in"
    assert program.stat().st_mode & 0o777 == 0o555
    assert (air.radio / "stations.sock").stat().st_mode & 0o777 == 0o600
    node = air.connect(Frame(FRAME_HELLO, b"", TOKEN.encode()))
    assert read_frames(node, 1) == [Frame(FRAME_ACCEPTED)]
    assert air.call(GetWifiStatus()).stations["sta"].control_socket
    client = b"/tmp/wpa_ctrl_9-1\0"
    node.sendall(Frame(FRAME_DATAGRAM, client, b"ATTACH").encode())
    node.sendall(Frame(FRAME_DATAGRAM, client, b"PING").encode())
    air.pump()
    assert read_frames(node, 2) == [
        Frame(FRAME_DATAGRAM, client, b"OK\n"),
        Frame(FRAME_DATAGRAM, client, b"PONG\n"),
    ]
    assert "control socket served by the node's relay" in "\n".join(air.lines)
    # The node restarted: its new relay takes over, the old connection is closed.
    again = air.connect(Frame(FRAME_HELLO, b"", TOKEN.encode()))
    assert read_frames(again, 1) == [Frame(FRAME_ACCEPTED)]
    assert read_frames(node, 1)[0].payload == f"<3>{EV_TERMINATING}".encode()
    assert hung_up(node)
    # The station goes: its monitors hear it terminate, and the relay is let go.
    again.sendall(Frame(FRAME_DATAGRAM, client, b"ATTACH").encode())
    air.pump()
    assert read_frames(again, 1) == [Frame(FRAME_DATAGRAM, client, b"OK\n")]
    air.call(Detach(name="sta"))
    assert read_frames(again, 1)[0].payload == f"<3>{EV_TERMINATING}".encode()
    assert hung_up(again)


def test_the_stations_socket_serves_nothing_without_a_stations_token(air: Air):
    """Every node of the home sees the stations socket: a connection must name a station
    by its token first, and gets that station's control socket, never the medium's ops."""
    attempts = [
        ("presented a wrong token", Frame(FRAME_HELLO, b"", b"0" * 32)),
        ("presented a wrong token", Frame(FRAME_HELLO, b"", TOKEN[:-1].encode())),
        ("spoke before presenting a token", Frame(FRAME_DATAGRAM, b"/tmp/c\0", b"STATUS")),
        # The medium's own control protocol means nothing here.
        ("sent a malformed frame", b'{"op": "move", "name": "ap", "position": [9, 9]}\n'),
        ("sent a malformed frame", FRAME_HEADER.pack(FRAME_HELLO, 0xFFFF, 0)),
    ]
    for expected, attempt in attempts:
        node = air.connect(attempt)
        assert hung_up(node), expected
        assert air.lines[-1].startswith(f"stations: a connection {expected}; closed")
    assert air.call(GetWifiStatus()).stations["sta"].control_socket is False
    silent = air.connect()
    air.run(HELLO_TIMEOUT_S + 0.1)
    assert hung_up(silent)
    assert "sent no token within" in air.lines[-1]
    for bad, message in (("short", "must be 16..128 letters"), (TOKEN, "already in use")):
        air.attach("sta2")
        reply = air.medium.handle(
            StartStation(name="sta2", mac="02:00:00:00:00:07", token="x" * 16).encode()
            .replace("x" * 16, bad)
        )
        assert reply["ok"] is False and message in reply["error"], reply
        air.call(Detach(name="sta2"))


def test_the_status_is_typed_and_follows_the_association(air: Air):
    before = air.call(GetWifiStatus())
    assert before.aps == {
        "ap": ApStatus(
            bssid=AP_MAC,
            ssid="home",
            security="WPA2-PSK",
            channel=6,
            hidden=False,
            clients={},
            mic_failures=0,
        )
    }
    assert before.stations["sta"].wpa_state != "COMPLETED"
    assert before.stations["sta"].bssid is None
    assert before.stations["sta"].control_socket is False  # no relay has connected
    join(air)
    air.run(1.0)
    after = air.call(GetWifiStatus())
    assert after.aps["ap"].clients == {STA_MAC: "authorized"}
    station = after.stations["sta"]
    assert isinstance(station, StationStatus)
    assert (station.wpa_state, station.bssid, station.ssid) == ("COMPLETED", AP_MAC, "home")
    assert station.summary() == f"COMPLETED to 'home' ({AP_MAC})"


@pytest.mark.parametrize(
    ("request_line", "message"),
    [
        (
            '{"op": "wifi_ap", "name": "ap2", "mac": "02:00:00:00:00:09", "ssid": "x", '
            '"channel": "six"}',
            "medium: op 'wifi_ap': field 'channel' must be an integer, not 'six'",
        ),
        ('{"op": "wifi_ctrl", "name": "sta"}', "medium: op 'wifi_ctrl': missing field 'command'"),
        ('{"op": "wifi_log", "name": "ap"}', "medium: 'ap' is not a WiFi station (stations: sta)"),
    ],
)
def test_bad_wifi_requests_are_refused_in_one_line(air: Air, request_line: str, message: str):
    reply = air.medium.handle(request_line)
    assert reply["ok"] is False and reply["kind"] == "SpecError"
    assert reply["error"].startswith(message) and "\n" not in reply["error"]
