"""WiFi captures on real Docker, read back by the real tools: the air of a WPA2 home is
802.11 with radiotap, which tcpdump decodes (beacons, authentication, association, the
four EAPOL-Key frames) and tshark decrypts given the SSID and passphrase; a failed test's
log folder holds it; `cirque capture` streams it live. Nothing is left behind (the
service fixture checks)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from needs import host_tool

from pytest_cirque import wifi
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.session import Cirque
from pytest_cirque.radios.relay.dot11 import LINKTYPE_IEEE802_11_RADIOTAP
from pytest_cirque.radios.relay.pcap import read_pcap

from .test_plugin_docker import client, run_id, run_inner, run_objects  # noqa: F401 (fixtures)
from .test_wifi import PSK, ap_node, station

SSID = "home"
#: What ping fills its payload with (ping -p): found again in the decrypted capture.
PATTERN = "c1a55e0fca97"


def tcpdump_lines(capture: Path) -> list[str]:
    result = subprocess.run(
        [host_tool("tcpdump"), "-n", "-r", str(capture), "-y", "IEEE802_11_RADIO"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def assert_association_decodes(capture: Path) -> None:
    """tcpdump shows the whole association as 802.11: beacons, authentication,
    association, and the 4-way handshake as four EAPOL-Key frames."""
    lines = tcpdump_lines(capture)
    assert any(f"Beacon ({SSID})" in line and "2437 MHz" in line for line in lines)
    for kind in ("Authentication (Open System)", "Assoc Request", "Assoc Response"):
        assert any(kind in line for line in lines), f"no {kind} in {capture}"
    assert len([line for line in lines if "EAPOL key" in line]) == 4


def tshark_fields(capture: Path, display_filter: str, *fields: str, keys: bool) -> list[str]:
    """One line per frame matching the filter: the fields, tab-separated; with ``keys``,
    decrypted with the SSID and passphrase (Wireshark's wpa-pwd key)."""
    command = [host_tool("tshark"), "-r", str(capture), "-Y", display_filter, "-T", "fields"]
    for field in fields:
        command += ["-e", field]
    if keys:
        command += ["-o", "wlan.enable_decryption:TRUE"]
        command += ["-o", f'uat:80211_keys:"wpa-pwd","{PSK}:{SSID}"']
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


@pytest.fixture
def home(service: Cirque) -> Iterator[Home]:
    """A WPA2 access point and a station that has not joined yet."""
    home = service.create_home({"ap": ap_node(ssid=SSID), "sta": station()}, name="air")
    yield home
    home.destroy()


def ping_with_pattern(home: Home, ap: wifi.AccessPoint) -> None:
    """Two pings from the station to the AP's wlan0, their payload filled with PATTERN."""
    assert ap.address is not None, "the AP has no address on its WiFi side"
    result = home["sta"].exec(["ping", "-n", "-c", "2", "-p", PATTERN, ap.address], timeout=30)
    assert " 0% packet loss" in result.stdout, result.output


def test_a_saved_capture_decodes_as_802_11_and_decrypts_with_the_passphrase(
    home: Home, tmp_path: Path
):
    ap = wifi.access_point(home["ap"])
    wifi.provision(home["sta"], ap)
    ping_with_pattern(home, ap)
    # As a failed test's report saves it (plugin.report_wifi).
    capture = home.media["wifi"].save_capture(tmp_path / f"{home.name}.wifi.pcap")
    assert capture is not None
    assert capture.read_bytes()[20] == LINKTYPE_IEEE802_11_RADIOTAP

    assert_association_decodes(capture)
    icmp = tshark_fields(capture, "icmp", "icmp.type", "data.data", keys=True)
    echoes = [line.split("\t") for line in icmp if PATTERN in line]
    assert {kind for kind, _data in echoes} == {"0", "8"}  # requests and their replies
    # Without the key nothing of the data shows: every data frame is Protected.
    assert tshark_fields(capture, "icmp", "icmp.type", keys=False) == []
    protected = tshark_fields(
        capture, "wlan.fc.type == 2 && !eapol", "wlan.fc.protected", keys=False
    )
    assert protected and set(protected) == {"1"}


def test_cirque_capture_streams_the_air_live_and_leaves_no_follower(
    home: Home, tmp_path: Path, sigint_reaches_children
):
    ap = wifi.access_point(home["ap"])
    wifi.associate(home["sta"], ap)
    wifi.dhcp(home["sta"])
    live = tmp_path / "live.pcap"
    cirque = [sys.executable, "-m", "pytest_cirque.cli", "capture", home.name]
    process = subprocess.Popen([*cirque, "-w", str(live)], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(
            lambda: live.exists() and live.stat().st_size > 24 and len(list(read_pcap(live))) > 5,
            f"cirque capture writing records to {live}",
            60,
        )
        ping_with_pattern(home, ap)
        # The file always ends at a whole record, so it can be read while it grows.
        wait_until(
            lambda: any(
                PATTERN in line for line in tshark_fields(live, "icmp", "data.data", keys=True)
            ),
            "the decrypted ping in the live capture",
            60,
        )
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err.strip().endswith(f"is in {live}")
    assert_association_decodes(live)  # the stream starts at the capture's first frame

    medium = home.media["wifi"]
    assert medium.container_id is not None

    def follower_gone() -> bool:
        """No process of the medium container runs tail any more (Ctrl-C ended it)."""
        script = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
        result = medium.backend.exec(medium.container_id or "", ["sh", "-c", script], node="medium")
        return not any(line.startswith("tail ") for line in result.stdout.splitlines())

    wait_until(follower_gone, "the capture's follower in the medium container to end", 30)

    for kind, message in (
        ("lan", "has no lan medium to capture: its wired LAN is a Docker bridge"),
        ("thread", "has no thread medium"),
    ):
        refused = subprocess.run(
            [*cirque, "--medium", kind, "-w", str(tmp_path / f"{kind}.pcap")],
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2 and message in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


FAILING = """
import pytest
from pytest_cirque import wifi


@pytest.mark.wifi(stations=["sta"], ssid="home", psk="correct horse")
@pytest.mark.home({"sta": {}})
def test_fails_after_joining(home, wifi_ap):
    wifi.associate(home["sta"], wifi_ap)
    assert False, "deliberate failure"
"""


def test_a_failed_wifi_tests_log_folder_holds_the_air_as_802_11(
    pytester: pytest.Pytester,
    client: docker.DockerClient,  # noqa: F811 (the fixture imported above)
    run_id: str,  # noqa: F811
) -> None:
    pytester.makepyfile(test_air=FAILING)
    run_inner(pytester, run_id).assert_outcomes(failed=1)
    home = f"cirque-{run_id}-main-test_fails_after_joining"
    folder = pytester.path / "cirque-logs" / "test_air.py_test_fails_after_joining"
    assert_association_decodes(folder / f"{home}.wifi.pcap")
    assert run_objects(client, run_id) == []
