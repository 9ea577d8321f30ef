"""The wpa_supplicant control interface: network table, commands, events, the socket.

Expected texts were checked against wpa_supplicant 2.10 itself (wired driver on a veth):
STATUS layout and WPS UUID, GET_NETWORK values and defaults, LIST_NETWORKS flags, event
wording. The station behind the interface is a small fake here (this is protocol logic);
the socket tests play the node's relay over a socket pair, then run the real relay program
(built from images/medium/cirque-wpa-ctrl.c with the host's gcc) with real datagram
clients and the real ``wpa_cli``.
"""

from __future__ import annotations

import errno
import os
import queue
import re
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_cirque.core.waiting import wait_until
from pytest_cirque.radios.relay.ctrl_iface import (
    EV_PSK_MAY_BE_INCORRECT,
    EV_SCAN_RESULTS,
    EV_SCAN_STARTED,
    EV_TERMINATING,
    FRAME_ACCEPTED,
    FRAME_DATAGRAM,
    FRAME_FAILED,
    FRAME_HEADER,
    FRAME_HELLO,
    MAX_ADDRESS,
    MAX_BACKLOG,
    MAX_DATAGRAM,
    MAX_MONITOR_ERRORS,
    ControlSocket,
    CtrlInterface,
    Frame,
    FrameReader,
    LinkStatus,
    NetworkTable,
    ScanResult,
    address_text,
    c_atoi,
    ev_associated,
    ev_connected,
    ev_disconnected,
    ev_key_negotiation_completed,
    ev_reenabled,
    ev_sme_authenticating,
    ev_temp_disabled,
    ev_trying_to_associate,
    scan_flags,
    ssid_txt,
    temp_disable_duration,
    wps_uuid,
)

OWN = "02:00:00:00:00:01"
AP = "02:00:00:00:01:00"
#: wpa_supplicant 2.10 showed this UUID for 5e:e2:9a:6c:8a:8e.
REFERENCE_UUID = ("5e:e2:9a:6c:8a:8e", "593630c0-5b96-5e95-af43-80b801f52a66")
WPA_CLI = shutil.which("wpa_cli") or "/usr/sbin/wpa_cli"
needs_wpa_cli = pytest.mark.skipif(
    not os.access(WPA_CLI, os.X_OK),
    reason="wpa_cli is not installed (scripts/setup installs the wpasupplicant package)",
)
DEADLINE_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStation:
    """A StationDriver that records what the interface asked of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.link = LinkStatus("DISCONNECTED", OWN)
        self.results: list[ScanResult] = []
        self.scanning = False
        self.fail_status = False

    def request_scan(self) -> bool:
        self.calls.append("request_scan")
        if self.scanning:
            return False
        self.scanning = True
        return True

    def scan_results(self) -> list[ScanResult]:
        return list(self.results)

    def status(self) -> LinkStatus:
        if self.fail_status:
            raise RuntimeError("radio gone")
        return self.link

    def networks_changed(self) -> None:
        self.calls.append("networks_changed")

    def disconnect(self) -> None:
        self.calls.append("disconnect")

    def reconnect(self) -> None:
        self.calls.append("reconnect")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def station() -> FakeStation:
    return FakeStation()


@pytest.fixture
def events() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def ctrl(station: FakeStation, clock: Clock, events: list) -> CtrlInterface:
    interface = CtrlInterface(station, clock=clock)
    interface.listeners.append(lambda text, level: events.append((text, level)))
    return interface


def run(ctrl: CtrlInterface, *commands: str) -> list[str]:
    return [ctrl.handle(command) for command in commands]


def connect(station: FakeStation, network_id: int, **changes: Any) -> None:
    fields = {
        "wpa_state": "COMPLETED",
        "address": OWN,
        "bssid": AP,
        "ssid": b"home",
        "frequency": 2437,
        "network_id": network_id,
        "key_mgmt": "WPA2-PSK",
    }
    fields.update(changes)
    station.link = LinkStatus(**fields)


# --- the network table and its values -------------------------------------------------


def test_add_network_gives_increasing_ids_disabled_with_wpa_supplicants_defaults(
    ctrl: CtrlInterface, events: list
) -> None:
    assert run(ctrl, "ADD_NETWORK", "ADD_NETWORK") == ["0\n", "1\n"]
    assert events == [("CTRL-EVENT-NETWORK-ADDED 0", 3), ("CTRL-EVENT-NETWORK-ADDED 1", 3)]
    assert run(
        ctrl,
        "GET_NETWORK 0 disabled",
        "GET_NETWORK 0 key_mgmt",
        "GET_NETWORK 0 proto",
        "GET_NETWORK 0 pairwise",
        "GET_NETWORK 0 ieee80211w",
        "GET_NETWORK 0 priority",
        "GET_NETWORK 0 scan_ssid",
    ) == ["1", "WPA-PSK WPA-EAP", "WPA RSN", "CCMP TKIP", "3", "0", "0"]
    # Unset values, unknown variables and networks answer FAIL.
    assert (
        run(
            ctrl,
            "GET_NETWORK 0 ssid",
            "GET_NETWORK 0 psk",
            "GET_NETWORK 0 bssid",
            "GET_NETWORK 0 id_str",
            "GET_NETWORK 0 bogus",
            "GET_NETWORK 9 ssid",
            "GET_NETWORK 0",
        )
        == ["FAIL\n"] * 7
    )


@pytest.mark.parametrize(
    ("value", "reply", "shown"),
    [
        ('"home"', "OK\n", '"home"'),
        ('"my home"', "OK\n", '"my home"'),
        ("686f6d65ff", "OK\n", "686f6d65ff"),  # hex, not printable: shown as hex
        ("686f6d65", "OK\n", '"home"'),
        ('P"a\\x01b"', "OK\n", "610162"),
        ('""', "OK\n", '""'),
        ("home", "FAIL\n", None),  # neither quoted nor hex
        ("686", "FAIL\n", None),  # odd number of hex digits
        ("41  42", "FAIL\n", None),  # hex digits and nothing else
        ('"' + "x" * 33 + '"', "FAIL\n", None),  # longer than 32 bytes
        ('"home', "FAIL\n", None),
    ],
)
def test_ssid_values(ctrl: CtrlInterface, value: str, reply: str, shown: str | None) -> None:
    ctrl.handle("ADD_NETWORK")
    assert ctrl.handle(f"SET_NETWORK 0 ssid {value}") == reply
    assert ctrl.handle("GET_NETWORK 0 ssid") == (shown if shown is not None else "FAIL\n")


@pytest.mark.parametrize(
    ("value", "reply", "stored"),
    [
        ('"password123"', "OK\n", "password123"),
        ('"password123', "OK\n", "password123"),  # wpa_supplicant accepts the open quote
        ('"12345678"', "OK\n", "12345678"),
        ('"' + "p" * 63 + '"', "OK\n", "p" * 63),
        ('"short"', "FAIL\n", None),
        ('"' + "p" * 64 + '"', "FAIL\n", None),
        ('"pass\tword123"', "FAIL\n", None),  # control characters are refused
        ("AB" * 32, "OK\n", "ab" * 32),  # the 256-bit PSK itself, as 64 hex digits
        ("ab" * 31, "FAIL\n", None),
        ("zz" * 32, "FAIL\n", None),
        ("ab " * 21 + "a", "FAIL\n", None),
    ],
)
def test_psk_values(ctrl: CtrlInterface, value: str, reply: str, stored: str | None) -> None:
    ctrl.handle("ADD_NETWORK")
    assert ctrl.handle(f"SET_NETWORK 0 psk {value}") == reply
    network = ctrl.networks.get(0)
    assert network is not None and network.psk == stored
    # wpa_supplicant never shows a key: "*" once set.
    assert ctrl.handle("GET_NETWORK 0 psk") == ("*" if stored else "FAIL\n")


def test_other_network_variables(ctrl: CtrlInterface) -> None:
    ctrl.handle("ADD_NETWORK")
    replies = run(
        ctrl,
        "SET_NETWORK 0 key_mgmt WPA-PSK-SHA256 WPA-PSK",
        "GET_NETWORK 0 key_mgmt",
        "SET_NETWORK 0 key_mgmt BOGUS",
        "SET_NETWORK 0 key_mgmt NONE",
        "GET_NETWORK 0 key_mgmt",
        "SET_NETWORK 0 priority 0x10",
        "GET_NETWORK 0 priority",
        "SET_NETWORK 0 priority 010",
        "GET_NETWORK 0 priority",
        "SET_NETWORK 0 priority -5",
        "GET_NETWORK 0 priority",
        "SET_NETWORK 0 priority 5x",
        "SET_NETWORK 0 scan_ssid 1",
        "GET_NETWORK 0 scan_ssid",
        "SET_NETWORK 0 scan_ssid 2",
        "SET_NETWORK 0 bssid 02:AA:bb:cc:dd:ee",
        "GET_NETWORK 0 bssid",
        "SET_NETWORK 0 bssid any",
        "GET_NETWORK 0 bssid",
        "SET_NETWORK 0 bssid 02:aa",
        "BSSID 0 02:00:00:00:00:AA",
        "GET_NETWORK 0 bssid",
        'SET_NETWORK 0 id_str "kitchen"',
        "GET_NETWORK 0 id_str",
        "SET_NETWORK 0 proto RSN",
        "GET_NETWORK 0 proto",
        "SET_NETWORK 0 proto RSN BOGUS",
        "SET_NETWORK 0 mode 2",  # AP mode: not simulated
        "SET_NETWORK 0 bogus 1",
        "SET_NETWORK 0 extra 1",  # an attribute of ours, not a wpa_supplicant variable
        'SET_NETWORK 9 ssid "x"',
        "SET_NETWORK 0 ssid",
        "SET_NETWORK 0",
    )
    assert replies == [
        "OK\n", "WPA-PSK WPA-PSK-SHA256", "FAIL\n", "OK\n", "NONE",
        "OK\n", "16", "OK\n", "8", "OK\n", "-5", "FAIL\n",
        "OK\n", "1", "FAIL\n",
        "OK\n", "02:aa:bb:cc:dd:ee", "OK\n", "FAIL\n", "FAIL\n", "OK\n", "02:00:00:00:00:aa",
        "OK\n", '"kitchen"',
        "OK\n", "RSN", "FAIL\n", "FAIL\n", "FAIL\n", "FAIL\n", "FAIL\n", "FAIL\n", "FAIL\n",
    ]  # fmt: skip
    network = ctrl.networks.get(0)
    assert network is not None and network.is_open and not network.uses_psk
    assert network.id_str == "kitchen" and network.scan_ssid and network.priority == -5


def test_psk_usability_follows_key_mgmt() -> None:
    table = NetworkTable()
    network = table.add()
    assert not network.usable  # no SSID yet
    table.set(0, "ssid", '"home"')
    assert network.uses_psk and not network.usable  # PSK network without a psk
    table.set(0, "psk", '"password123"')
    assert network.usable
    table.set(0, "key_mgmt", "WPA-EAP")
    assert not network.uses_psk and not network.usable


def test_select_enable_disable_remove(
    ctrl: CtrlInterface, station: FakeStation, events: list
) -> None:
    run(ctrl, "ADD_NETWORK", "ADD_NETWORK", "ADD_NETWORK")
    events.clear()

    def disabled() -> list[bool]:
        return [n.disabled for n in ctrl.networks]

    assert ctrl.handle("ENABLE_NETWORK 0") == "OK\n"
    assert disabled() == [False, True, True]
    assert ctrl.handle("SELECT_NETWORK 1") == "OK\n"
    assert disabled() == [True, False, True]
    assert ctrl.handle("SELECT_NETWORK any") == "OK\n"
    assert disabled() == [False, False, False]
    assert ctrl.handle("DISABLE_NETWORK all") == "OK\n"
    assert disabled() == [True, True, True]
    assert ctrl.handle("ENABLE_NETWORK all") == "OK\n"
    assert disabled() == [False, False, False]
    assert ctrl.handle("DISABLE_NETWORK 2") == "OK\n"
    assert disabled() == [False, False, True]
    assert ctrl.handle("ENABLE_NETWORK 2 no-connect") == "OK\n"
    assert disabled() == [False, False, False]
    # Unknown ids fail; a non-number reads as 0, as atoi does in wpa_supplicant.
    assert run(ctrl, "ENABLE_NETWORK 7", "DISABLE_NETWORK 7", "SELECT_NETWORK 7") == ["FAIL\n"] * 3
    assert ctrl.handle("ENABLE_NETWORK abc") == "OK\n"
    assert station.calls.count("networks_changed") == 7  # all but "no-connect"

    assert ctrl.handle("REMOVE_NETWORK 1") == "OK\n"
    assert ctrl.handle("REMOVE_NETWORK 1") == "FAIL\n"
    assert [n.id for n in ctrl.networks] == [0, 2]
    assert ctrl.handle("ADD_NETWORK") == "3\n"  # one above the highest id in use
    assert ctrl.handle("REMOVE_NETWORK all") == "OK\n"
    assert len(ctrl.networks) == 0
    assert ctrl.handle("ADD_NETWORK") == "0\n"
    assert [text for text, _level in events] == [
        "CTRL-EVENT-NETWORK-REMOVED 1",
        "CTRL-EVENT-NETWORK-ADDED 3",
        "CTRL-EVENT-NETWORK-REMOVED 0",
        "CTRL-EVENT-NETWORK-REMOVED 2",
        "CTRL-EVENT-NETWORK-REMOVED 3",
        "CTRL-EVENT-NETWORK-ADDED 0",
    ]


def test_set_network_asks_the_station_to_reconsider_only_for_enabled_networks(
    ctrl: CtrlInterface, station: FakeStation
) -> None:
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 ssid "home"')
    assert station.calls == []
    ctrl.handle("SET_NETWORK 0 disabled 0")
    assert station.calls == ["networks_changed"]
    ctrl.handle('SET_NETWORK 0 psk "password123"')
    assert station.calls == ["networks_changed"] * 2


def test_list_networks_flags(ctrl: CtrlInterface, station: FakeStation, clock: Clock) -> None:
    run(
        ctrl,
        "ADD_NETWORK",
        'SET_NETWORK 0 ssid "home"',
        "ADD_NETWORK",
        'SET_NETWORK 1 ssid P"a\\"b"',
        "BSSID 1 02:00:00:00:02:00",
        "ADD_NETWORK",
        "SET_NETWORK 2 ssid 41ff",
        "ENABLE_NETWORK 0",
        "ENABLE_NETWORK 2",
    )
    connect(station, 0)
    ctrl.auth_failed(2)
    assert ctrl.handle("LIST_NETWORKS") == (
        "network id / ssid / bssid / flags\n"
        "0\thome\tany\t[CURRENT]\n"
        '1\ta\\"b\t02:00:00:00:02:00\t[DISABLED]\n'
        "2\tA\\xff\tany\t[TEMP-DISABLED]\n"
    )
    assert ctrl.handle("LIST_NETWORKS LAST_ID=0") == (
        "network id / ssid / bssid / flags\n"
        '1\ta\\"b\t02:00:00:00:02:00\t[DISABLED]\n'
        "2\tA\\xff\tany\t[TEMP-DISABLED]\n"
    )
    clock.now += 10
    assert ctrl.handle("LIST_NETWORKS").endswith("2\tA\\xff\tany\t\n")


def test_failures_disable_a_network_for_growing_times(
    ctrl: CtrlInterface, clock: Clock, events: list
) -> None:
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 ssid "home"', 'SET_NETWORK 0 psk "password123"')
    ctrl.handle("ENABLE_NETWORK 0")
    events.clear()
    assert [n.id for n in ctrl.networks.candidates(clock.now)] == [0]
    ctrl.auth_failed(0)
    assert events[-1] == (
        'CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="home" auth_failures=1 duration=10 '
        "reason=WRONG_KEY",
        3,
    )
    assert ctrl.networks.candidates(clock.now) == []
    clock.now += 9
    ctrl.reenable_expired()
    assert len(events) == 1  # not yet
    clock.now += 1
    ctrl.reenable_expired()
    assert events[-1] == ('CTRL-EVENT-SSID-REENABLED id=0 ssid="home"', 3)
    assert [n.id for n in ctrl.networks.candidates(clock.now)] == [0]
    ctrl.auth_failed(0, reason="CONN_FAILED")
    assert events[-1][0].endswith("auth_failures=2 duration=20 reason=CONN_FAILED")
    # A connection forgets the failures (and re-enables at once).
    ctrl.connection_completed(0)
    assert events[-1] == ('CTRL-EVENT-SSID-REENABLED id=0 ssid="home"', 3)
    network = ctrl.networks.get(0)
    assert network is not None and network.auth_failures == 0
    assert [temp_disable_duration(n) for n in (1, 2, 3, 4, 6, 11, 51)] == [
        10, 20, 30, 60, 90, 120, 300,
    ]  # fmt: skip


def test_enabling_a_disabled_network_forgets_its_failures(
    ctrl: CtrlInterface, events: list
) -> None:
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 ssid "home"', "ENABLE_NETWORK 0")
    ctrl.auth_failed(0)
    ctrl.handle("DISABLE_NETWORK 0")
    events.clear()
    ctrl.handle("ENABLE_NETWORK 0")
    assert events == [('CTRL-EVENT-SSID-REENABLED id=0 ssid="home"', 3)]
    network = ctrl.networks.get(0)
    assert network is not None and network.auth_failures == 0 and not network.temp_disabled_until


def test_candidates_by_priority_then_id() -> None:
    table = NetworkTable()
    for name, priority in (("a", 0), ("b", 5), ("c", 5), ("d", 9)):
        network = table.add()
        table.set(network.id, "ssid", f'"{name}"')
        table.set(network.id, "key_mgmt", "NONE")
        table.set(network.id, "priority", str(priority))
    table.enable(None)
    table.disable(3)
    assert [n.ssid for n in table.candidates(0.0)] == [b"b", b"c", b"a"]


# --- commands -----------------------------------------------------------------------


def test_status_disconnected_is_wpa_supplicants_text(
    ctrl: CtrlInterface, station: FakeStation
) -> None:
    address, expected_uuid = REFERENCE_UUID
    station.link = LinkStatus("DISCONNECTED", address.upper())
    assert wps_uuid(address) == expected_uuid
    assert ctrl.handle("STATUS") == (
        f"wpa_state=DISCONNECTED\naddress={address}\nuuid={expected_uuid}\n"
    )
    station.link = LinkStatus("INACTIVE", address, ip_address="10.9.9.1")
    expected = f"wpa_state=INACTIVE\nip_address=10.9.9.1\naddress={address}\nuuid={expected_uuid}\n"
    assert run(ctrl, "STATUS", "STATUS-VERBOSE", "STATUSX") == [expected] * 3
    assert ctrl.handle("STATUS-DRIVER") == "FAIL\n"


def test_status_connected_describes_the_bss_and_keys(
    ctrl: CtrlInterface, station: FakeStation
) -> None:
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 ssid "home"', 'SET_NETWORK 0 id_str "kit"')
    connect(station, 0, ip_address="192.168.1.20")
    assert ctrl.handle("STATUS") == (
        f"bssid={AP}\nfreq=2437\nssid=home\nid=0\nid_str=kit\nmode=station\n"
        "pairwise_cipher=CCMP\ngroup_cipher=CCMP\nkey_mgmt=WPA2-PSK\n"
        f"wpa_state=COMPLETED\nip_address=192.168.1.20\naddress={OWN}\nuuid={wps_uuid(OWN)}\n"
    )
    connect(station, 0, key_mgmt="NONE", ssid=b"A\xff", wpa_state="ASSOCIATED")
    status = ctrl.handle("STATUS")
    assert "ssid=A\\xff\nid=0\n" in status
    keys = "pairwise_cipher=NONE\ngroup_cipher=NONE\nkey_mgmt=NONE\nwpa_state=ASSOCIATED\n"
    assert keys in status
    # Before association, STATUS says nothing of a BSS.
    connect(station, 0, wpa_state="ASSOCIATING")
    assert ctrl.handle("STATUS").startswith("wpa_state=ASSOCIATING\n")


def test_scan_and_scan_results(ctrl: CtrlInterface, station: FakeStation) -> None:
    assert run(ctrl, "SCAN", "SCAN", "SCAN TYPE=ONLY") == ["OK\n", "FAIL-BUSY\n", "FAIL-BUSY\n"]
    assert station.calls == ["request_scan"] * 3
    station.results = [
        ScanResult(AP, 2437, -42, scan_flags("WPA2-PSK"), b"home"),
        ScanResult("02:00:00:00:02:00", 2412, -71, scan_flags("NONE"), b"caf\xc3\xa9\t"),
    ]
    assert ctrl.handle("SCAN_RESULTS") == (
        "bssid / frequency / signal level / flags / ssid\n"
        f"{AP}\t2437\t-42\t[WPA2-PSK-CCMP][ESS]\thome\n"
        "02:00:00:00:02:00\t2412\t-71\t[ESS]\tcaf\\xc3\\xa9\\t\n"
    )


def test_long_replies_stop_at_the_last_whole_line(
    ctrl: CtrlInterface, station: FakeStation
) -> None:
    station.results = [
        ScanResult(f"02:00:00:00:{n // 256:02x}:{n % 256:02x}", 2437, -50, "[ESS]", b"x" * 32)
        for n in range(200)
    ]
    reply = ctrl.handle("SCAN_RESULTS")
    assert len(reply.encode()) < 4096
    assert reply.endswith("x" * 32 + "\n")
    assert reply.count("\n") == 1 + (4095 - 48) // len(f"{AP}\t2437\t-50\t[ESS]\t{'x' * 32}\n")


def test_disconnect_holds_until_reconnect_reassociate_or_select(
    ctrl: CtrlInterface, station: FakeStation
) -> None:
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 ssid "home"', "SET_NETWORK 0 key_mgmt NONE")
    assert not ctrl.disconnected
    assert ctrl.handle("RECONNECT") == "OK\n"  # not disconnected: nothing to do
    assert station.calls == []
    assert ctrl.handle("DISCONNECT") == "OK\n"
    assert ctrl.disconnected and station.calls == ["disconnect"]
    ctrl.handle("ENABLE_NETWORK 0")  # enabling does not end the hold
    assert ctrl.disconnected and station.calls[-1] == "networks_changed"
    ctrl.handle("RECONNECT")
    assert not ctrl.disconnected and station.calls[-1] == "reconnect"
    ctrl.handle("DISCONNECT")
    ctrl.handle("SELECT_NETWORK 0")  # a selection ends it
    assert not ctrl.disconnected and station.calls[-2:] == ["disconnect", "reconnect"]
    ctrl.handle("SELECT_NETWORK 0")
    assert station.calls[-1] == "networks_changed"
    ctrl.handle("REASSOCIATE")  # always reconnects
    assert station.calls[-1] == "reconnect"


def test_small_commands(ctrl: CtrlInterface, station: FakeStation) -> None:
    assert run(ctrl, "PING", "IFNAME", "INTERFACES", "SAVE_CONFIG") == [
        "PONG\n", "wlan0", "wlan0\n", "FAIL\n",
    ]  # fmt: skip
    # Case, newlines and garbage matter, as in wpa_supplicant.
    assert (
        run(ctrl, "ping", "PING\n", "", "\udcff\udcfe", "SET_NETWORKS") == ["UNKNOWN COMMAND\n"] * 5
    )
    # ATTACH, DETACH and LEVEL need to know who asks: only a socket can serve them.
    assert run(ctrl, "ATTACH", "DETACH", "LEVEL 2") == ["FAIL\n"] * 3
    assert ctrl.handle("SIGNAL_POLL") == "FAIL\n"
    connect(station, 0)
    station.results = [ScanResult(AP, 2437, -48, "[ESS]", b"home")]
    assert ctrl.handle("SIGNAL_POLL") == (
        "RSSI=-48\nLINKSPEED=54\nNOISE=9999\nFREQUENCY=2437\nWIDTH=20 MHz (no HT)\n"
        "CENTER_FRQ1=2437\n"
    )
    connect(station, 0, signal_dbm=-60)
    assert ctrl.handle("SIGNAL_POLL").startswith("RSSI=-60\n")


def test_control_log_masks_keys_and_records_driver_failures(
    ctrl: CtrlInterface, station: FakeStation, clock: Clock
) -> None:
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 psk "password123"', "SET_NETWORK 0 psk 0123")
    clock.now += 1.5
    station.fail_status = True
    assert ctrl.handle("STATUS") == "FAIL\n"
    ctrl.event(EV_SCAN_STARTED)
    log = ctrl.control_log()
    assert "password123" not in log
    assert "0.000 > SET_NETWORK 0 psk [REMOVED]" in log
    assert "SET_NETWORK 0 psk: no such network, unknown variable or invalid value" in log
    assert "1.500 ! 'STATUS' failed: RuntimeError: radio gone" in log
    assert "1.500 < FAIL" in log
    assert log.endswith("1.500 event CTRL-EVENT-SCAN-STARTED ")
    for _ in range(600):
        ctrl.handle("PING")
    assert len(ctrl.history) == 500


def test_event_texts_are_wpa_supplicants() -> None:
    bssid = "01:80:C2:00:00:03"
    assert ev_connected(bssid, 0, "kit") == (
        "CTRL-EVENT-CONNECTED - Connection to 01:80:c2:00:00:03 completed [id=0 id_str=kit]"
    )
    assert ev_disconnected(bssid, 3, locally_generated=True) == (
        "CTRL-EVENT-DISCONNECTED bssid=01:80:c2:00:00:03 reason=3 locally_generated=1"
    )
    assert ev_disconnected(bssid, 15) == "CTRL-EVENT-DISCONNECTED bssid=01:80:c2:00:00:03 reason=15"
    assert ev_temp_disabled(0, b"home", 1, 10, "WRONG_KEY") == (
        'CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="home" auth_failures=1 duration=10 '
        "reason=WRONG_KEY"
    )
    assert ev_reenabled(0, b'a"b') == 'CTRL-EVENT-SSID-REENABLED id=0 ssid="a\\"b"'
    assert EV_SCAN_STARTED == "CTRL-EVENT-SCAN-STARTED "
    assert EV_SCAN_RESULTS == "CTRL-EVENT-SCAN-RESULTS "
    assert ev_sme_authenticating(AP, b"home", 2437) == (
        f"SME: Trying to authenticate with {AP} (SSID='home' freq=2437 MHz)"
    )
    assert ev_trying_to_associate(AP, b"home", 2437) == (
        f"Trying to associate with {AP} (SSID='home' freq=2437 MHz)"
    )
    assert ev_associated(AP) == f"Associated with {AP}"
    assert ev_key_negotiation_completed(AP) == (
        f"WPA: Key negotiation completed with {AP} [PTK=CCMP GTK=CCMP]"
    )
    assert EV_PSK_MAY_BE_INCORRECT == (
        "WPA: 4-Way Handshake failed - pre-shared key may be incorrect"
    )
    assert ssid_txt(b'\x1b\r\n\\"~\x7f') == '\\e\\r\\n\\\\\\"~\\x7f'


def test_atoi_reads_like_c() -> None:
    assert [c_atoi(t) for t in ("12", " 7x", "-3", "+4", "abc", "", "-")] == [12, 7, -3, 4, 0, 0, 0]


# --- frames between the node's relay and the medium --------------------------------------


def test_frames_survive_any_split_and_refuse_sizes_over_the_limits() -> None:
    frames = [
        Frame(FRAME_HELLO, b"", b"a1b2" * 8),
        Frame(FRAME_DATAGRAM, b"/tmp/wpa_ctrl_7-1\0", b"PING"),
        Frame(FRAME_DATAGRAM, b"\0abstract", b""),
        Frame(FRAME_FAILED, b"/gone", b"2 No such file or directory"),
    ]
    stream = b"".join(f.encode() for f in frames)
    reader = FrameReader()
    got = []
    for byte in stream:  # the worst split: one byte at a time
        reader.feed(bytes([byte]))
        while (frame := reader.next()) is not None:
            got.append(frame)
    assert got == frames
    with pytest.raises(ValueError):
        Frame(FRAME_DATAGRAM, b"x" * (MAX_ADDRESS + 1)).encode()
    with pytest.raises(ValueError):
        Frame(FRAME_DATAGRAM, b"/c", b"x" * (MAX_DATAGRAM + 1)).encode()
    reader.feed(FRAME_HEADER.pack(FRAME_DATAGRAM, MAX_ADDRESS + 1, 0))
    with pytest.raises(ValueError, match="over the limits"):
        reader.next()
    assert address_text(b"/tmp/c\0") == "/tmp/c"
    assert address_text(b"\0name") == "@name"
    assert address_text(b"") == "an unbound client"


class FakeRelay:
    """The node's relay, played by the test over a socket pair: frames in, frames out."""

    def __init__(self, ctrl: CtrlInterface) -> None:
        self.end, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.end.settimeout(DEADLINE_S)
        self.served = ControlSocket(ctrl, theirs)
        self.reader = FrameReader()

    def send(self, frame: Frame) -> bool:
        self.end.sendall(frame.encode())
        return self.served.handle_io()

    def receive(self) -> Frame:
        while (frame := self.reader.next()) is None:
            data = self.end.recv(65536)
            assert data, "the medium hung up"
            self.reader.feed(data)
        return frame

    def ask(self, address: bytes, command: bytes) -> bytes:
        assert self.send(Frame(FRAME_DATAGRAM, address, command))
        reply = self.receive()
        assert (reply.kind, reply.address) == (FRAME_DATAGRAM, address)
        return reply.payload

    def nothing_pending(self) -> bool:
        """No frame waits (frames are queued the moment they are sent, so no waiting)."""
        if self.reader.next() is not None:
            return False
        self.end.setblocking(False)
        try:
            self.end.recv(65536)
        except BlockingIOError:
            return True
        finally:
            self.end.settimeout(DEADLINE_S)
        return False

    def close(self) -> None:
        self.served.close()
        self.end.close()


@pytest.fixture
def relay(ctrl: CtrlInterface) -> Iterator[FakeRelay]:
    fake = FakeRelay(ctrl)
    yield fake
    fake.close()


def test_replies_go_to_their_sender_by_its_address(relay: FakeRelay) -> None:
    client = b"/tmp/wpa_ctrl_42-1\0"
    assert relay.ask(client, b"PING") == b"PONG\n"
    assert relay.ask(client, b"ADD_NETWORK") == b"0\n"
    assert relay.ask(client, b"\xff\xfe garbage") == b"UNKNOWN COMMAND\n"
    assert relay.ask(client, b"") == b"UNKNOWN COMMAND\n"
    assert relay.ask(b"\0abstract-client", b"PING") == b"PONG\n"
    # A client that never bound an address cannot be answered; the medium carries on.
    assert relay.send(Frame(FRAME_DATAGRAM, b"", b"PING"))
    assert relay.nothing_pending()
    assert "reply to an unbound client lost" in relay.served.interface.control_log()
    assert relay.ask(client, b"PING") == b"PONG\n"


def test_monitors_get_events_at_their_level(relay: FakeRelay) -> None:
    monitor, other = b"/tmp/m\0", b"/tmp/c\0"
    assert relay.ask(monitor, b"LEVEL 2") == b"FAIL\n"  # not attached yet
    assert relay.send(Frame(FRAME_DATAGRAM, b"", b"ATTACH"))  # unbound: cannot be one
    assert relay.nothing_pending() and not relay.served.monitors
    assert relay.ask(monitor, b"ATTACH") == b"OK\n"
    relay.served.event("CTRL-EVENT-SCAN-STARTED ")
    assert relay.receive() == Frame(FRAME_DATAGRAM, monitor, b"<3>CTRL-EVENT-SCAN-STARTED ")
    # Events from commands reach monitors too (before the command's reply).
    relay.send(Frame(FRAME_DATAGRAM, other, b"ADD_NETWORK"))
    assert relay.receive() == Frame(FRAME_DATAGRAM, monitor, b"<3>CTRL-EVENT-NETWORK-ADDED 0")
    assert relay.receive() == Frame(FRAME_DATAGRAM, other, b"0\n")
    assert relay.ask(monitor, b"LEVEL 4") == b"OK\n"
    relay.served.event("quiet", level=3)
    relay.served.event("loud", level=4)
    assert relay.receive().payload == b"<4>loud"
    assert relay.ask(monitor, b"DETACH") == b"OK\n"
    assert relay.ask(monitor, b"DETACH") == b"FAIL\n"
    relay.served.event("after")
    assert relay.nothing_pending()
    log = relay.served.interface.control_log()
    assert "> ATTACH" in log and "event loud" in log


def test_a_monitor_that_disappears_is_dropped(relay: FakeRelay) -> None:
    live, gone, full = b"/tmp/live\0", b"/tmp/gone\0", b"/tmp/full\0"
    for address in (live, gone, full):
        assert relay.ask(address, b"ATTACH") == b"OK\n"
    assert relay.send(Frame(FRAME_FAILED, gone, f"{errno.ENOENT} No such file".encode()))
    assert set(relay.served.monitors) == {live, full}
    # A monitor whose queue is full only goes after repeated failures.
    for _ in range(MAX_MONITOR_ERRORS):
        assert relay.send(Frame(FRAME_FAILED, full, f"{errno.EAGAIN} Try again".encode()))
    assert full in relay.served.monitors
    assert relay.send(Frame(FRAME_FAILED, full, f"{errno.EAGAIN} Try again".encode()))
    assert list(relay.served.monitors) == [live]
    relay.served.event("CTRL-EVENT-SCAN-RESULTS ")
    assert relay.receive() == Frame(FRAME_DATAGRAM, live, b"<3>CTRL-EVENT-SCAN-RESULTS ")
    assert relay.served.interface.control_log().count("dropped") == 2
    # A failed reply to a client that is no monitor is only noted.
    assert relay.send(Frame(FRAME_FAILED, b"/tmp/c\0", b"111 Connection refused"))
    assert "reply to /tmp/c lost: 111 Connection refused" in relay.served.interface.control_log()


def test_a_relay_that_breaks_the_framing_or_hangs_up_is_let_go(ctrl: CtrlInterface) -> None:
    broken = FakeRelay(ctrl)
    broken.end.sendall(FRAME_HEADER.pack(FRAME_DATAGRAM, 500, 0))
    assert broken.served.handle_io() is False
    assert "over the limits; disconnected" in ctrl.control_log()
    broken.close()
    gone = FakeRelay(ctrl)
    assert gone.send(Frame(b"?", b"", b"what"))  # an unknown frame is only noted
    gone.end.close()
    assert gone.served.handle_io() is False
    gone.served.close()


def test_a_relay_that_does_not_read_is_let_go(relay: FakeRelay) -> None:
    assert relay.ask(b"/tmp/m\0", b"ATTACH") == b"OK\n"
    for _ in range(MAX_BACKLOG // 1000 + 200):
        relay.served.event("x" * 1000)
    assert relay.served.handle_io() is False
    assert "unread; disconnected" in relay.served.interface.control_log()


def test_close_tells_monitors_and_hangs_up(relay: FakeRelay) -> None:
    assert relay.ask(b"/tmp/m\0", b"ATTACH") == b"OK\n"
    relay.served.close()
    assert relay.receive().payload == f"<3>{EV_TERMINATING}".encode()
    assert relay.end.recv(100) == b""
    relay.served.close()  # twice is harmless


# --- the real relay program and the real wpa_cli ---------------------------------------

RELAY_SOURCE = Path(__file__).resolve().parents[2] / "images" / "medium" / "cirque-wpa-ctrl.c"
GCC = shutil.which("gcc")
TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def relay_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node relay, built for this host as the medium image builds it (not static)."""
    if GCC is None:
        pytest.skip("gcc is not installed (the node relay is C; scripts/setup installs it)")
    program = tmp_path_factory.mktemp("relay") / "cirque-wpa-ctrl"
    built = subprocess.run(
        [GCC, "-Os", "-Wall", "-Wextra", "-Werror", "-o", str(program), str(RELAY_SOURCE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return program


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short name: socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="cq-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Loop:
    """The medium's side in a thread: a stations socket that accepts one relay presenting
    TOKEN and serves ``ctrl`` to it. Calls into the loop run on its thread."""

    def __init__(self, ctrl: CtrlInterface, path: Path) -> None:
        self.ctrl = ctrl
        self.served: ControlSocket | None = None
        self.refused = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(4)
        self._calls: queue.Queue[tuple[Callable[[], Any], list, threading.Event]] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._running = True
        self._thread = threading.Thread(target=self._run, name="ctrl-loop", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        connection, _ = self._server.accept()
        connection.settimeout(DEADLINE_S)
        reader = FrameReader()
        while (hello := reader.next()) is None:
            data = connection.recv(4096)
            if not data:
                break
            reader.feed(data)
        if hello is None or hello != Frame(FRAME_HELLO, b"", TOKEN.encode()):
            self.refused += 1
            connection.close()
            return
        connection.sendall(Frame(FRAME_ACCEPTED).encode())
        self.served = ControlSocket(
            self.ctrl,
            connection,
            reader=reader,
            on_output=lambda pending: self._selector.modify(
                connection,
                selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0),
                "ctrl",
            ),
        )
        self._selector.register(connection, selectors.EVENT_READ, "ctrl")

    def _run(self) -> None:
        while self._running:
            for key, _events in self._selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "ctrl":
                    assert self.served is not None
                    if not self.served.handle_io():
                        self._selector.unregister(key.fileobj)
                        self.served.close()
                else:
                    os.read(self._wake_r, 4096)
                    while not self._calls.empty():
                        function, box, done = self._calls.get()
                        try:
                            box.append(function())
                        except BaseException as exc:
                            box.append(exc)
                        done.set()

    def call(self, function: Callable[[], Any]) -> Any:
        box: list[Any] = []
        done = threading.Event()
        self._calls.put((function, box, done))
        os.write(self._wake_w, b"x")
        assert done.wait(DEADLINE_S), "the control socket loop did not run the call"
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def hang_up(self) -> None:
        """The medium closes the station: monitors hear CTRL-EVENT-TERMINATING, the relay
        exits and removes its socket."""

        def finish() -> None:
            if self.served is not None and not self.served.closed:
                self._selector.unregister(self.served.fileno())
                self.served.close()

        self.call(finish)

    def stop(self) -> None:
        if not self._running:
            return
        self.hang_up()

        def finish() -> None:
            self._running = False

        self.call(finish)
        self._thread.join(DEADLINE_S)
        self._selector.close()
        self._server.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class Node:
    """A stand-in node directory: the token file, the control directory, the relay."""

    def __init__(self, program: Path, root: Path) -> None:
        self.program = program
        self.root = root
        self.ctrl_dir = root / "run" / "wpa_supplicant"
        self.token = root / "token"
        self.token.write_text(TOKEN + "\n")
        self.token.chmod(0o600)
        self.medium = root / "stations.sock"
        self.process: subprocess.Popen[str] | None = None

    def command(self, *extra: str) -> list[str]:
        return [
            str(self.program),
            "-C",
            str(self.ctrl_dir),
            "-i",
            "wlan0",
            "--medium",
            str(self.medium),
            "--token-file",
            str(self.token),
            *extra,
        ]

    def start(self) -> subprocess.Popen[str]:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("cirque-wpa-ctrl: serving "), self.process.stderr.read()
        return self.process

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """``condition()``'s first truthy value, else (after DEADLINE_S, a guard against a
    hang) a WaitTimeout naming it; an exception of the condition fails at once."""
    return wait_until(condition, what, DEADLINE_S, ignore=(), max_interval=0.02)


@pytest.fixture
def node(relay_program: Path, short_tmp: Path) -> Iterator[Node]:
    stand_in = Node(relay_program, short_tmp)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def loop(node: Node, ctrl: CtrlInterface) -> Iterator[Loop]:
    running = Loop(ctrl, node.medium)
    node.start()
    yield running
    running.stop()


def client(path: Path, server: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.connect(str(server))
    sock.settimeout(DEADLINE_S)
    return sock


def test_the_relay_serves_the_socket_like_wpa_supplicant(node: Node, loop: Loop) -> None:
    path = node.ctrl_dir / "wlan0"
    assert stat.S_IMODE(os.stat(node.ctrl_dir).st_mode) == 0o770
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o770
    with client(node.root / "c", path) as c:
        c.send(b"PING")
        assert c.recv(4096) == b"PONG\n"
        c.send(b"P" * 5000)  # over wpa_ctrl's 4096 bytes: dropped by the relay
        c.send(b"PING")
        assert c.recv(4096) == b"PONG\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unbound:
        unbound.sendto(b"PING", str(path))  # nobody to answer: the relay carries on
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind(f"\0cirque-test-{os.getpid()}")
        abstract.sendto(b"PING", str(path))
        abstract.settimeout(DEADLINE_S)
        assert abstract.recv(4096) == b"PONG\n"
    # A live socket is not taken over: a second relay refuses.
    second = subprocess.run(node.command(), capture_output=True, text=True, timeout=DEADLINE_S)
    assert second.returncode == 1
    assert "is served by another process" in second.stderr
    # The medium hangs up: the relay leaves cleanly and removes its socket.
    loop.hang_up()
    assert node.process is not None and node.process.wait(DEADLINE_S) == 0
    assert not path.exists()


def test_a_monitor_that_vanishes_is_dropped_through_the_relay(node: Node, loop: Loop) -> None:
    path = node.ctrl_dir / "wlan0"
    gone = client(node.root / "gone", path)
    gone.send(b"ATTACH")
    assert gone.recv(4096) == b"OK\n"
    gone.close()
    os.unlink(node.root / "gone")
    loop.call(lambda: loop.ctrl.event("CTRL-EVENT-SCAN-RESULTS "))
    wait_for(lambda: loop.call(lambda: not loop.served.monitors), "the monitor to be dropped")
    assert "dropped: 2 No such file or directory" in loop.call(loop.ctrl.control_log)


def test_the_relay_leaves_a_leftover_socket_to_nobody_and_needs_its_token(
    relay_program: Path, short_tmp: Path, ctrl: CtrlInterface
) -> None:
    node = Node(relay_program, short_tmp)
    node.ctrl_dir.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
        dead.bind(str(node.ctrl_dir / "wlan0"))  # a supplicant that died left its socket
    node.token.write_text("not-the-token\n")
    loop = Loop(ctrl, node.medium)
    try:
        refused = subprocess.run(node.command(), capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1
        assert "did not accept the token" in refused.stderr
        assert not (node.ctrl_dir / "wlan0").exists()  # it bound, then cleaned up
        assert loop.call(lambda: loop.refused) == 1
        node.token.unlink()
        missing = subprocess.run(node.command(), capture_output=True, text=True, timeout=30)
        assert missing.returncode == 1 and "cannot read the token file" in missing.stderr
        usage = subprocess.run([str(relay_program)], capture_output=True, text=True, timeout=30)
        assert usage.returncode == 2 and usage.stderr.startswith("usage: cirque-wpa-ctrl")
    finally:
        loop.stop()
    node.medium.unlink()
    nobody = subprocess.run(node.command(), capture_output=True, text=True, timeout=30)
    assert nobody.returncode == 1 and "cannot read the token file" in nobody.stderr


def test_the_relay_stops_on_a_malformed_frame(node: Node, short_tmp: Path) -> None:
    """A medium that sends nonsense makes the relay stop with a line, never crash."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(node.medium))
        server.listen(1)
        server.settimeout(DEADLINE_S)
        process = subprocess.Popen(node.command(), stderr=subprocess.PIPE, text=True)
        connection, _ = server.accept()
        with connection:
            connection.settimeout(DEADLINE_S)
            assert connection.recv(4096) == Frame(FRAME_HELLO, b"", TOKEN.encode()).encode()
            connection.sendall(Frame(FRAME_ACCEPTED).encode())
            connection.sendall(Frame(FRAME_DATAGRAM, b"", b"no address").encode())
            connection.sendall(Frame(b"Z", b"/x", b"unknown type").encode())
            connection.sendall(FRAME_HEADER.pack(FRAME_DATAGRAM, 0xFFFF, 0xFFFFFFFF))
            assert process.wait(DEADLINE_S) == 1
    assert process.stderr is not None
    assert "malformed frame" in process.stderr.read()


def wpa_cli(node: Node, *args: str) -> str:
    done = subprocess.run(
        [WPA_CLI, "-p", str(node.ctrl_dir), "-i", "wlan0", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, f"wpa_cli {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@needs_wpa_cli
def test_real_wpa_cli_drives_the_socket(loop: Loop, node: Node, station: FakeStation) -> None:
    station.results = [ScanResult(AP, 2437, -42, scan_flags("WPA2-PSK"), b"home")]
    assert wpa_cli(node, "ping") == "PONG\n"
    assert wpa_cli(node, "status") == (
        f"wpa_state=DISCONNECTED\naddress={OWN}\nuuid={wps_uuid(OWN)}\n"
    )
    assert wpa_cli(node, "scan") == "OK\n"
    assert wpa_cli(node, "scan") == "FAIL-BUSY\n"
    assert wpa_cli(node, "scan_results") == (
        "bssid / frequency / signal level / flags / ssid\n"
        f"{AP}\t2437\t-42\t[WPA2-PSK-CCMP][ESS]\thome\n"
    )
    assert wpa_cli(node, "add_network") == "0\n"
    assert wpa_cli(node, "set_network", "0", "ssid", '"home"') == "OK\n"
    assert wpa_cli(node, "set_network", "0", "psk", '"password123"') == "OK\n"
    assert wpa_cli(node, "set_network", "0", "psk", '"short"') == "FAIL\n"
    assert wpa_cli(node, "get_network", "0", "ssid") == '"home"'
    assert wpa_cli(node, "get_network", "0", "psk") == "*"
    assert wpa_cli(node, "enable_network", "0") == "OK\n"
    assert wpa_cli(node, "list_networks") == ("network id / ssid / bssid / flags\n0\thome\tany\t\n")
    assert wpa_cli(node, "select_network", "0") == "OK\n"
    assert wpa_cli(node, "disconnect") == "OK\n"
    assert wpa_cli(node, "reconnect") == "OK\n"
    assert wpa_cli(node, "remove_network", "0") == "OK\n"
    assert wpa_cli(node, "list_networks") == "network id / ssid / bssid / flags\n"
    assert wpa_cli(node, "ifname") == "wlan0"
    calls = loop.call(lambda: list(station.calls))
    assert calls == [
        "request_scan",
        "request_scan",
        "networks_changed",  # enable_network
        "networks_changed",  # select_network
        "disconnect",
        "reconnect",
        "networks_changed",  # remove_network
    ]
    log = loop.call(loop.ctrl.control_log)
    assert "password123" not in log and "> SET_NETWORK 0 psk [REMOVED]" in log


@needs_wpa_cli
def test_events_reach_a_real_wpa_cli_action_script(loop: Loop, node: Node, tmp_path: Path) -> None:
    record = tmp_path / "actions.log"
    script = tmp_path / "action.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $2 id=$WPA_ID id_str=$WPA_ID_STR" >> {record}\n')
    script.chmod(0o755)
    output = tmp_path / "wpa_cli.out"
    # -G 1: ping every second; after CTRL-EVENT-TERMINATING wpa_cli leaves at its next ping.
    with open(output, "w") as out:
        watcher = subprocess.Popen(
            [WPA_CLI, "-p", str(node.ctrl_dir), "-i", "wlan0", "-G", "1", "-a", str(script)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: loop.call(lambda: len(loop.served.monitors)) == 1, "wpa_cli to attach")
        loop.call(lambda: loop.ctrl.event(ev_connected(AP, 0, "kitchen")))
        wait_for(lambda: record.exists() and record.read_text(), "the CONNECTED action")
        loop.call(lambda: loop.ctrl.event(ev_disconnected(AP, 3, locally_generated=True)))
        wait_for(lambda: "DISCONNECTED" in record.read_text(), "the DISCONNECTED action")
        assert record.read_text().splitlines() == [
            "wlan0 CONNECTED id=0 id_str=kitchen",
            "wlan0 DISCONNECTED id=0 id_str=kitchen",
        ]
        # The medium closing the station tells wpa_cli the supplicant terminates: it stops.
        loop.hang_up()
        assert watcher.wait(DEADLINE_S) == 0
        assert "wpa_supplicant is terminating" in output.read_text()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


# --- what device software asks beyond the basics ------------------------------------------


def test_bss_capabilities_and_autoconnect(ctrl: CtrlInterface, station: FakeStation) -> None:
    station.results = [
        ScanResult(AP, 2437, -48, scan_flags("WPA2-PSK"), b"home"),
        ScanResult("02:00:00:00:02:00", 2412, -70, "[ESS]", b"cafe"),
    ]
    connect(station, 0)
    first = ctrl.handle("BSS 0")
    assert first.startswith(f"id=0\nbssid={AP}\nfreq=2437\nbeacon_int=100\ncapabilities=0x0411\n")
    assert "\nlevel=-48\n" in first and "\nflags=[WPA2-PSK-CCMP][ESS]\nssid=home\n" in first
    # The IEs: SSID, rates, DS parameter set (channel 6) and RSN with CCMP and PSK.
    ie = bytes.fromhex(first.split("\nie=")[1].split("\n")[0])
    assert ie.startswith(b"\x00\x04home") and b"\x03\x01\x06" in ie and b"\x00\x0f\xac\x02" in ie
    assert "associated=1" in first
    assert ctrl.handle("BSS FIRST") == first == ctrl.handle(f"BSS {AP.upper()}")
    last = ctrl.handle("BSS LAST")
    assert last == ctrl.handle("BSS NEXT-0") and "capabilities=0x0401" in last
    assert "ssid=cafe" in last and "associated" not in last
    assert ctrl.handle("BSS PREV-1") == first
    assert run(ctrl, "BSS 2", "BSS NEXT-1", "BSS 02:00:00:00:09:00", "BSS nonsense") == [""] * 4
    assert run(ctrl, "GET_CAPABILITY pairwise", "GET_CAPABILITY key_mgmt strict") == [
        "CCMP TKIP NONE", "NONE IEEE8021X WPA-EAP WPA-PSK",
    ]  # fmt: skip
    assert ctrl.handle("GET_CAPABILITY channels").startswith("Mode[B] Channels: 1 2 3 ")
    assert " 6 = 2437 MHz\n" in ctrl.handle("GET_CAPABILITY freq")
    assert ctrl.handle("GET_CAPABILITY fips") == "FAIL\n"
    assert run(ctrl, "STA_AUTOCONNECT 0") == ["OK\n"] and not ctrl.autoconnect
    assert run(ctrl, "STA_AUTOCONNECT 1") == ["OK\n"] and ctrl.autoconnect


def test_save_config_blocks_are_what_wpa_supplicant_writes(ctrl: CtrlInterface) -> None:
    hex_psk = "ab" * 32
    run(ctrl, "ADD_NETWORK", 'SET_NETWORK 0 ssid "home"', 'SET_NETWORK 0 psk "password123"')
    run(ctrl, "SET_NETWORK 0 key_mgmt WPA-PSK", "ENABLE_NETWORK 0", "ADD_NETWORK")
    run(ctrl, "SET_NETWORK 1 ssid 63c3a9", f"SET_NETWORK 1 psk {hex_psk}")
    run(ctrl, "SET_NETWORK 1 priority 5", "SET_NETWORK 1 scan_ssid 1")
    assert ctrl.networks.config_text() == (
        '\nnetwork={\n\tssid="home"\n\tpsk="password123"\n\tkey_mgmt=WPA-PSK\n}\n'
        f"\nnetwork={{\n\tssid=63c3a9\n\tscan_ssid=1\n\tpsk={hex_psk}\n\tpriority=5\n"
        "\tdisabled=1\n}\n"
    )


def test_save_config_goes_to_the_relay_with_the_blocks(relay: FakeRelay) -> None:
    relay.served.interface.handle("ADD_NETWORK")
    relay.served.interface.handle('SET_NETWORK 0 ssid "home"')
    assert relay.send(Frame(FRAME_DATAGRAM, b"/c", b"SAVE_CONFIG"))
    frame = relay.receive()
    assert frame.kind == b"C" and frame.address == b"/c"
    assert frame.payload == b'\nnetwork={\n\tssid="home"\n\tdisabled=1\n}\n'


# --- the node's wpa_supplicant, iw and iwlist: the relay program under those names --------

HEX_PSK = "c1a6c1e6f2b5a8f2d3ff0e4f1c3e1b0d9e3c4f6a7b8c9d0e1f2a3b4c5d6e7f80"
TIMESTAMPED = re.compile(r"^\d{10}\.\d{6}: ")


def tool(node: Node, name: str) -> Path:
    """The relay program under a tool's name (the radio volume has such links)."""
    link = node.root / name
    if not link.exists():
        link.symlink_to(node.program)
    return link


def supplicant(node: Node, conf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool(node, "wpa_supplicant")), "-B", "-i", "wlan0", "-c", str(conf), *extra,
         "--medium", str(node.medium), "--token-file", str(node.token)],
        capture_output=True, text=True, timeout=DEADLINE_S, check=False,
    )  # fmt: skip


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except FileNotFoundError:
        return True


@needs_wpa_cli
def test_wpa_supplicant_gives_the_station_its_file_logs_and_lets_go(
    node: Node, ctrl: CtrlInterface, station: FakeStation
) -> None:
    conf = node.root / "wpa.conf"
    conf.write_text(
        f"ctrl_interface=DIR={node.ctrl_dir} GROUP=netdev\nupdate_config=1\n"
        # What wpa_passphrase appends, then a block written by hand.
        f'network={{\n\tssid="home"\n\t#psk="correct horse"\n\tpsk={HEX_PSK}\n}}\n'
        'network={\n  ssid="cafe"\n  psk="password123"\n  key_mgmt=WPA-PSK\n  scan_ssid=1\n'
        "  priority=5\n  disabled=1\n}\n"
    )
    log, pidfile = node.root / "wpa.log", node.root / "wpa.pid"
    loop = Loop(ctrl, node.medium)
    try:
        started = supplicant(node, conf, "-f", str(log), "-t", "-dd", "-P", str(pidfile))
        assert started.returncode == 0, started.stderr
        assert started.stdout == "Successfully initialized wpa_supplicant\n"
        pid = int(pidfile.read_text())
        assert Path(f"/proc/{pid}/comm").read_text() == "wpa_supplicant\n"  # killall finds it
        home, cafe = loop.call(lambda: [ctrl.networks.get(0), ctrl.networks.get(1)])
        assert (home.ssid, home.psk, home.disabled) == (b"home", HEX_PSK, False)
        assert (cafe.ssid, cafe.psk, cafe.disabled) == (b"cafe", "password123", True)
        assert (cafe.priority, cafe.scan_ssid, cafe.key_mgmt) == (5, True, "WPA-PSK")
        assert "networks_changed" in loop.call(lambda: list(station.calls))
        # Events reach the -f log with -t's timestamps, debug ones too with -dd.
        loop.call(lambda: ctrl.event(ev_key_negotiation_completed(AP), level=2))
        loop.call(lambda: ctrl.event(ev_connected(AP, 0)))
        wait_for(lambda: "CTRL-EVENT-CONNECTED" in log.read_text(), "the event in the log")
        lines = log.read_text().splitlines()
        assert all(TIMESTAMPED.match(line) for line in lines), lines
        assert any(line.endswith(": Successfully initialized wpa_supplicant") for line in lines)
        assert lines[-2].endswith(f": wlan0: WPA: Key negotiation completed with {AP} "
                                  "[PTK=CCMP GTK=CCMP]")  # fmt: skip
        assert lines[-1].endswith(f": wlan0: {ev_connected(AP, 0)}")
        # SAVE_CONFIG: the file's globals, then the station's networks.
        assert wpa_cli(node, "set_network", "1", "priority", "7") == "OK\n"
        assert wpa_cli(node, "save_config") == "OK\n"
        assert conf.read_text() == (
            f"ctrl_interface=DIR={node.ctrl_dir} GROUP=netdev\nupdate_config=1\n"
            f'\nnetwork={{\n\tssid="home"\n\tpsk={HEX_PSK}\n}}\n'
            '\nnetwork={\n\tssid="cafe"\n\tscan_ssid=1\n\tpsk="password123"\n'
            "\tkey_mgmt=WPA-PSK\n\tpriority=7\n\tdisabled=1\n}\n"
        )
        # Stopped as killall stops it: the station leaves and forgets the networks.
        del station.calls[:]
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: gone(pid), "wpa_supplicant to exit")
        assert loop.call(lambda: (list(station.calls), len(ctrl.networks))) == (
            ["disconnect", "networks_changed"], 0,
        )  # fmt: skip
        assert not (node.ctrl_dir / "wlan0").exists() and not pidfile.exists()
        assert log.read_text().splitlines()[-1].endswith(": wlan0: CTRL-EVENT-TERMINATING")
        # Started again (a restart script), it ends the hold the stop left.
        assert supplicant(node, conf).returncode == 0
        assert loop.call(lambda: station.calls[-1]) == "reconnect"
        assert loop.call(lambda: len(ctrl.networks)) == 2
    finally:
        loop.stop()


def test_wpa_supplicant_refuses_what_the_real_one_refuses(node: Node, ctrl: CtrlInterface) -> None:
    missing = supplicant(node, node.root / "none.conf")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"Failed to open config file '{node.root}/none.conf'")
    broken = node.root / "broken.conf"
    broken.write_text('network={\n\tssid="home"\n\tnonsense\n}\n')
    failed = supplicant(node, broken)
    assert failed.returncode == 1 and failed.stderr.startswith("Line 3: a network line without")
    broken.write_text('network={\n\tssid="home"\n')
    assert "without its closing '}'" in supplicant(node, broken).stderr
    usage = subprocess.run(
        [str(tool(node, "wpa_supplicant")), "-B"], capture_output=True, text=True, timeout=30
    )
    assert usage.returncode == 1 and "give one interface (-i wlan0)" in usage.stderr


@needs_wpa_cli
def test_save_config_needs_update_config(node: Node, ctrl: CtrlInterface) -> None:
    conf = node.root / "wpa.conf"
    conf.write_text(f"ctrl_interface={node.ctrl_dir}\n")
    loop = Loop(ctrl, node.medium)
    try:
        assert supplicant(node, conf).returncode == 0
        assert wpa_cli(node, "save_config") == "FAIL\n"
        assert conf.read_text() == f"ctrl_interface={node.ctrl_dir}\n"
    finally:
        loop.stop()


def run_tool(node: Node, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool(node, name)), *args], capture_output=True, text=True, timeout=DEADLINE_S,
        check=False, env={**os.environ, "WPA_CTRL_DIR": str(node.ctrl_dir)},
    )  # fmt: skip


def test_iw_and_iwlist_answer_in_their_own_formats(
    node: Node, loop: Loop, station: FakeStation
) -> None:
    station.results = [
        ScanResult(AP, 2437, -48, scan_flags("WPA2-PSK"), b"home"),
        ScanResult("02:00:00:00:02:00", 2412, -120, "[ESS]", b"cafe"),
    ]
    assert run_tool(node, "iw", "dev", "wlan0", "link").stdout == "Not connected.\n"
    dump = run_tool(node, "iw", "dev", "wlan0", "scan", "dump").stdout
    assert dump.startswith(f"BSS {AP}(on wlan0)\n\tfreq: 2437\n")
    assert (
        "\tsignal: -48.00 dBm\n" in dump and "\tSSID: home\n\tDS Parameter set: channel 6\n" in dump
    )
    assert "\tRSN:\t * Version: 1\n" in dump and "\t\t * Authentication suites: PSK\n" in dump
    assert dump.count("RSN:") == 1 and "BSS 02:00:00:00:02:00(on wlan0)\n" in dump
    loop.call(lambda: connect(station, 0))
    link = run_tool(node, "iw", "dev", "wlan0", "link").stdout
    assert link.startswith(f"Connected to {AP} (on wlan0)\n\tSSID: home\n\tfreq: 2437\n"
                           "\tsignal: -48 dBm\n")  # fmt: skip
    assert (
        f"BSS {AP}(on wlan0) -- associated\n"
        in run_tool(node, "iw", "wlan0", "scan", "dump").stdout
    )
    # iwlist scans afresh: it waits for the scan's end, as with a real radio.
    with subprocess.Popen(
        [str(tool(node, "iwlist")), "wlan0", "scanning"], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "WPA_CTRL_DIR": str(node.ctrl_dir)},
    ) as iwlist:  # fmt: skip
        wait_for(lambda: loop.call(lambda: "request_scan" in station.calls), "iwlist's scan")
        loop.call(lambda: loop.ctrl.event(EV_SCAN_RESULTS))
        out, _ = iwlist.communicate(timeout=DEADLINE_S)
    assert iwlist.returncode == 0
    assert out.startswith(f"wlan0     Scan completed :\n          Cell 01 - Address: {AP}\n"
                          "                    Channel:6\n"
                          "                    Frequency:2.437 GHz (Channel 6)\n"
                          "                    Quality=62/70  Signal level=-48 dBm  \n"
                          "                    Encryption key:on\n"
                          '                    ESSID:"home"\n')  # fmt: skip
    assert "IE: IEEE 802.11i/WPA2 Version 1\n" in out
    assert "Cell 02 - Address: 02:00:00:00:02:00\n" in out and "Quality=0/70" in out
    assert 'Encryption key:off\n                    ESSID:"cafe"' in out
    wrong = run_tool(node, "iwlist", "wlan0", "rate")
    assert wrong.returncode == 1 and wrong.stderr.startswith("Usage: iwlist")
    nobody = run_tool(node, "iw", "dev", "wlan1", "link")
    assert nobody.returncode != 0 and "No such device" in nobody.stderr
