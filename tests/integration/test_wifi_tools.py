"""The original system's WiFi flow, run as it was, inside station nodes on real Docker:
``wpa_passphrase >> wpa_supplicant.conf``, ``killall wpa_supplicant``, ``wpa_supplicant
-B ... -f LOG -t -dd``, ``dhcpcd wlan0`` and ``iwlist wlan0 scanning``. The node's
wpa_supplicant, iw and iwlist are the station's own front-end (first on PATH);
wpa_passphrase, killall, wpa_cli and dhcpcd are the image's Debian tools."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from pytest_cirque import wifi
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque

SSID = "home"
PSK = "correct horse"
CONF = "/etc/wpa_supplicant/wpa_supplicant.conf"
LOG = "/var/log/wpa_supplicant.log"
START = f"wpa_supplicant -B -i wlan0 -c {CONF} -f {LOG} -t -dd"
LEASED = re.compile(r"wlan0: leased (\d+\.\d+\.\d+\.\d+) for (\d+) seconds")
TIMESTAMP = r"^\d+\.\d{6}: "


@pytest.fixture
def home(service: Cirque) -> Iterator[Home]:
    ap = {"image": "wifi-ap", "capabilities": [{"WiFiAP": {"ssid": SSID, "psk": PSK}}]}
    made = service.create_home(
        {
            "ap": ap,
            "sta1": {"capabilities": [{"WiFi": {}}]},
            "sta2": {"capabilities": [{"WiFi": {"position": [2, 0]}}]},
        },
        name="wifi-tools",
    )
    yield made
    made.destroy()


def sh(node: Node, script: str, timeout: float = 30) -> str:
    """Run a shell line in the node; it must succeed. Its stdout and stderr."""
    result = node.exec(["sh", "-c", script], timeout=timeout)
    output = result.stdout + result.stderr
    assert result.exit_code == 0, f"{script!r} in {node.name}: exit {result.exit_code}: {output}"
    return output


def completed(node: Node) -> bool:
    status = node.exec(["wpa_cli", "-i", "wlan0", "status"]).stdout
    return "wpa_state=COMPLETED" in status


def original_flow(node: Node) -> str:
    """What the original's clients ran; the station's leased address."""
    sh(node, f"wpa_passphrase {SSID} '{PSK}' >> {CONF}")
    sh(node, "killall wpa_supplicant")
    assert "Successfully initialized wpa_supplicant" in sh(node, START)
    node.wait_until(lambda: completed(node), "wpa_cli status to show COMPLETED")
    leased = LEASED.search(sh(node, "dhcpcd wlan0", timeout=60))
    assert leased, "dhcpcd printed no 'leased' line"
    return leased.group(1)


def test_the_original_flow_joins_two_stations_that_ping_each_other(home: Home) -> None:
    sta1, sta2 = home["sta1"], home["sta2"]
    # As the original's node: a configuration file and wpa_supplicant already running.
    assert sh(sta1, f"cat {CONF}") == "ctrl_interface=/var/run/wpa_supplicant\nupdate_config=1\n"
    assert sh(sta1, "for t in wpa_supplicant iw iwlist; do command -v $t; done").split() == [
        "/run/cirque-radio/bin/wpa_supplicant",
        "/run/cirque-radio/bin/iw",
        "/run/cirque-radio/bin/iwlist",
    ]
    assert sh(sta1, "pidof wpa_supplicant").strip()
    first, second = original_flow(sta1), original_flow(sta2)
    assert first.startswith("192.168.50.") and second.startswith("192.168.50.")
    assert wifi.ping(sta1, second).received == 3
    assert wifi.ping(sta2, first).received == 3

    scanning = sh(sta1, "iwlist wlan0 scanning", timeout=60)
    assert scanning.startswith("wlan0     Scan completed :\n")
    assert f'ESSID:"{SSID}"' in scanning and "Encryption key:on" in scanning
    assert "IE: IEEE 802.11i/WPA2 Version 1" in scanning
    assert re.search(r"Quality=\d+/70  Signal level=-\d+ dBm", scanning)
    bssid = wifi.access_point(home["ap"]).bssid
    link = sh(sta1, "iw dev wlan0 link")
    assert link.startswith(f"Connected to {bssid} (on wlan0)\n\tSSID: {SSID}\n\tfreq: 2437\n")
    assert re.search(r"\tsignal: -\d+ dBm", link)
    scan = sh(sta1, "iw dev wlan0 scan", timeout=60)
    assert f"BSS {bssid}(on wlan0) -- associated" in scan and f"\tSSID: {SSID}\n" in scan

    # The -f log: scan, association, the handshake and the events, with -t's timestamps.
    log = sh(sta1, f"cat {LOG}")
    for line in (
        "wlan0: CTRL-EVENT-SCAN-RESULTS",
        f"wlan0: Trying to associate with {bssid}",
        f"wlan0: WPA: RX message 1 of 4-Way Handshake from {bssid} (ver=2)",
        "wlan0: WPA: Sending EAPOL-Key 4/4",
        f"wlan0: WPA: Key negotiation completed with {bssid} [PTK=CCMP GTK=CCMP]",
        f"wlan0: CTRL-EVENT-CONNECTED - Connection to {bssid} completed",
    ):
        assert re.search(TIMESTAMP + re.escape(line), log, re.M), f"{line!r} not in {log}"

    # SAVE_CONFIG writes the networks back (update_config=1).
    assert sh(sta1, "wpa_cli -i wlan0 save_config").strip() == "OK"
    saved = sh(sta1, f"cat {CONF}")
    assert saved.startswith("ctrl_interface=/var/run/wpa_supplicant\nupdate_config=1\n")
    assert re.search(rf'network={{\n\tssid="{SSID}"\n\tpsk=[0-9a-f]{{64}}\n}}', saved)

    # killall stops it as it stops the real one: the station leaves, the carrier goes.
    sh(sta1, "killall wpa_supplicant")
    sta1.wait_until(
        lambda: "LOWER_UP" not in sh(sta1, "ip link show wlan0"), "wlan0's carrier to go"
    )
    sta1.wait_until(lambda: not sh(sta1, "pidof wpa_supplicant || true").strip(), "its exit")
    assert sh(sta1, "iw dev wlan0 link") == "Not connected.\n"
    assert re.search(TIMESTAMP + r"wlan0: CTRL-EVENT-DISCONNECTED", sh(sta1, f"cat {LOG}"), re.M)
