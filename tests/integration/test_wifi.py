"""WiFi on real Docker: the node's own wpa_cli drives a station, WPA2 keys are checked by
a real 4-way handshake, DHCP comes from the AP's dnsmasq, and range, roaming, hidden and
open networks behave as on real hardware. Nothing is left behind (the service fixture
checks)."""

from __future__ import annotations

import re

import pytest

from pytest_cirque import wifi
from pytest_cirque.core.errors import SpecError
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque

from .conftest import run_objects

PSK = "correct horse"


def ap_node(ssid: str = "home", psk: str | None = PSK, **settings) -> dict:
    params = {"ssid": ssid, **({"psk": psk} if psk else {}), **settings}
    return {"image": "wifi-ap", "capabilities": [{"WiFiAP": params}]}


def station(**settings) -> dict:
    return {"capabilities": [{"WiFi": settings}]}


def wpa_cli(node: Node, *args: str) -> str:
    result = node.exec(["wpa_cli", "-i", "wlan0", *args], timeout=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def carrier(node: Node) -> bool:
    return "LOWER_UP" in node.exec(["ip", "link", "show", "wlan0"], check=True).stdout


def start_monitor(node: Node) -> None:
    """A real wpa_cli monitor in the node writing every event it gets to /tmp/events."""
    node.put_file("/tmp/action.sh", '#!/bin/sh\necho "$2" >> /tmp/events\n', mode=0o755)
    node.exec(["wpa_cli", "-i", "wlan0", "-a", "/tmp/action.sh", "-B"], check=True)


def monitor_events(node: Node) -> list[str]:
    return node.exec(["sh", "-c", "cat /tmp/events 2>/dev/null"]).stdout.split()


def test_wpa_cli_in_the_node_scans_associates_and_takes_a_lease(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    sta = home["sta"]
    assert not carrier(sta), "wlan0 has a carrier before any association"
    assert wpa_cli(sta, "ping").strip() == "PONG"
    start_monitor(sta)

    assert wpa_cli(sta, "scan").strip() == "OK"
    results = sta.wait_until(
        lambda: wifi.best_result(wpa_cli(sta, "scan_results"), "home"), "home in scan results"
    )
    assert results["flags"] == "[WPA2-PSK-CCMP][ESS]"
    assert results["frequency"] == 2437 and -60 < results["signal"] < 0

    network = wpa_cli(sta, "add_network").strip()
    assert wpa_cli(sta, "set_network", network, "ssid", '"home"').strip() == "OK"
    assert wpa_cli(sta, "set_network", network, "psk", f'"{PSK}"').strip() == "OK"
    assert wpa_cli(sta, "enable_network", network).strip() == "OK"
    sta.wait_until(lambda: "wpa_state=COMPLETED" in wpa_cli(sta, "status"), "COMPLETED")
    status = wpa_cli(sta, "status")
    assert f"bssid={wifi.access_point(home['ap']).bssid}" in status
    assert "key_mgmt=WPA2-PSK" in status and "ssid=home" in status
    assert carrier(sta)
    assert re.search(r"^0\thome\tany\t\[CURRENT\]$", wpa_cli(sta, "list_networks"), re.M)

    address = wifi.dhcp(sta)
    assert address.startswith("192.168.50.")
    sta.wait_until(lambda: f"ip_address={address}" in wpa_cli(sta, "status"), "STATUS ip")
    assert wifi.ping(sta, "192.168.50.1").received == 3
    sta.wait_until(lambda: "CONNECTED" in monitor_events(sta), "the monitor's CONNECTED event")

    assert wpa_cli(sta, "disconnect").strip() == "OK"
    sta.wait_until(lambda: "DISCONNECTED" in monitor_events(sta), "DISCONNECTED event")
    assert "wpa_state=DISCONNECTED" in wpa_cli(sta, "status")
    assert not carrier(sta)
    assert wpa_cli(sta, "reconnect").strip() == "OK"
    sta.wait_until(lambda: "wpa_state=COMPLETED" in wpa_cli(sta, "status"), "reconnected")


def test_a_wrong_psk_fails_the_handshake_as_on_real_hardware(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    sta = home["sta"]
    start_monitor(sta)
    ap = wifi.access_point(home["ap"])
    with pytest.raises(wifi.ProvisioningError) as failure:
        wifi.associate(sta, ap, psk="wrong horse")
    error = failure.value
    assert error.step == "associate" and "reason=WRONG_KEY" in str(error)
    assert "WPA: 4-Way Handshake failed - pre-shared key may be incorrect" in error.log
    assert error.capture is not None and error.capture.stat().st_size > 24
    events = wifi.control_log(sta)
    assert re.search(
        r'CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid="home" auth_failures=1 '
        r"duration=\d+ reason=WRONG_KEY",
        events,
    )
    assert "CTRL-EVENT-CONNECTED" not in events
    assert not carrier(sta)
    state = home.media["wifi"].as_wifi().status()
    assert state.aps["ap"].mic_failures >= 1
    assert "TEMP-DISABLED" in wpa_cli(sta, "list_networks")


def test_the_capture_shows_the_four_way_handshake(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    medium = home.media["wifi"]
    wifi.associate(home["sta"], wifi.access_point(home["ap"]))
    path = medium.start_capture("check.pcap")  # a fresh file: the association is over
    medium.stop_capture()
    assert "EAPOL" not in medium.read_capture(path)
    wifi.ctrl(home["sta"], "DISCONNECT")
    medium.start_capture("handshake.pcap")
    wifi.ctrl(home["sta"], "RECONNECT")
    home["sta"].wait_until(lambda: wifi.status(home["sta"])["wpa_state"] == "COMPLETED", "up")
    medium.stop_capture()
    lines = medium.read_capture(f"{path.rsplit('/', 1)[0]}/handshake.pcap", "ether proto 0x888e")
    assert len([line for line in lines.splitlines() if "EAPOL" in line]) == 4


def test_stations_ping_each_other_and_the_aps_lan_side(make_home):
    home = make_home({"ap": ap_node(), "a": station(), "b": station(position=[20, 0])})
    ap = wifi.access_point(home["ap"])
    reports = [wifi.provision(home[name], ap) for name in ("a", "b")]
    assert set(reports[0].steps) == {"scan", "associate", "dhcp", "ping"}
    assert reports[0].ip_address != reports[1].ip_address
    assert home["a"].ip is None  # a WiFi-only device has no wired LAN
    assert wifi.ping(home["a"], reports[1].ip_address).received == 3
    assert wifi.ping(home["b"], ap.lan_ip).received == 3


def test_out_of_range_loses_the_association_and_back_in_range_regains_it(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    sta, medium = home["sta"], home.media["wifi"]
    wifi.associate(sta, wifi.access_point(home["ap"]))
    medium.move("sta", [2000, 0, 0])
    sta.wait_until(lambda: wifi.status(sta)["wpa_state"] != "COMPLETED", "losing the AP")
    assert "CTRL-EVENT-BEACON-LOSS" in wifi.control_log(sta)
    assert re.search(r"CTRL-EVENT-DISCONNECTED bssid=\S+ reason=4", wifi.control_log(sta))
    assert not carrier(sta)
    medium.move("sta", [5, 0, 0])
    sta.wait_until(lambda: wifi.status(sta)["wpa_state"] == "COMPLETED", "reconnecting")
    assert carrier(sta)


def test_a_station_roams_to_the_stronger_ap_of_its_network(make_home):
    home = make_home(
        {
            "ap1": ap_node(position=[0, 0]),
            "ap2": ap_node(position=[60, 0]),
            "sta": station(position=[5, 0]),
        }
    )
    sta, medium = home["sta"], home.media["wifi"]
    ap1, ap2 = wifi.access_point(home["ap1"]), wifi.access_point(home["ap2"])
    assert ap1.subnet != ap2.subnet
    assert wifi.associate(sta, ap1)["bssid"] == ap1.bssid
    medium.move("sta", [55, 0, 0])
    sta.wait_until(lambda: wifi.status(sta).get("bssid") == ap2.bssid, "roaming to ap2")
    sta.wait_until(lambda: wifi.status(sta)["wpa_state"] == "COMPLETED", "completed on ap2")
    assert f"Connection to {ap2.bssid} completed" in wifi.control_log(sta)
    assert wifi.dhcp(sta).startswith(ap2.subnet.rsplit(".", 1)[0])


def test_two_aps_share_an_ssid_with_different_keys(make_home):
    home = make_home(
        {
            "ap1": ap_node(psk="first passphrase", position=[0, 0]),
            "ap2": ap_node(psk="other passphrase", position=[300, 0]),
            "near1": station(position=[5, 0]),
            "near2": station(position=[295, 0]),
        }
    )
    ap1 = wifi.access_point(home["ap1"])
    assert wifi.associate(home["near1"], ap1)["bssid"] == ap1.bssid
    with pytest.raises(wifi.ProvisioningError, match="WRONG_KEY"):
        wifi.associate(home["near2"], ap1)  # hears only ap2, whose key differs


def test_hidden_and_open_networks(make_home):
    home = make_home(
        {
            "hidden": ap_node(ssid="secret", hidden=True, position=[0, 0]),
            "open": ap_node(ssid="cafe", psk=None, position=[10, 0]),
            "sta": station(),
        }
    )
    sta = home["sta"]
    wifi.ctrl(sta, "SCAN")
    sta.wait_until(lambda: wifi.best_result(wifi.ctrl(sta, "SCAN_RESULTS"), "cafe"), "cafe")
    assert wifi.best_result(wifi.ctrl(sta, "SCAN_RESULTS"), "secret") is None
    cafe = wifi.best_result(wifi.ctrl(sta, "SCAN_RESULTS"), "cafe")
    assert cafe["flags"] == "[ESS]"
    report = wifi.provision(sta, wifi.access_point(home["hidden"]))
    assert report.ssid == "secret"
    assert wifi.best_result(wifi.ctrl(sta, "SCAN_RESULTS"), "secret") is not None
    state = wifi.associate(sta, wifi.access_point(home["open"]))
    assert state["key_mgmt"] == "NONE" and state["ssid"] == "cafe"


def test_a_bridge_mode_ap_puts_stations_on_the_home_lan(make_home):
    home = make_home({"ap": ap_node(mode="bridge"), "sta": station()})
    sta, ap_lan = home["sta"], home["ap"].ip
    wifi.associate(sta, wifi.access_point(home["ap"]))
    address = wifi.dhcp(sta)
    assert address.rsplit(".", 1)[0] == ap_lan.rsplit(".", 1)[0]  # the LAN's subnet
    assert wifi.ping(sta, ap_lan).received == 3


def test_a_restarted_station_serves_its_control_socket_again(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    sta = home["sta"]
    wifi.associate(sta, wifi.access_point(home["ap"]))
    sta.restart()
    assert wpa_cli(sta, "ping").strip() == "PONG"
    assert "wpa_state=" in wpa_cli(sta, "status")
    assert not carrier(sta)
    wifi.associate(sta, wifi.access_point(home["ap"]))
    assert carrier(sta)


def test_bad_input_creates_nothing(service: Cirque):
    for spec, expected in (
        ({"ap": ap_node(psk="short")}, "field 'psk'"),
        ({"ap": ap_node(ssid="x" * 33)}, "field 'ssid'"),
        ({"sta": station()}, "needs the home's wifi medium"),
    ):
        with pytest.raises(SpecError, match=expected):
            service.create_home(spec, name="bad")
    assert run_objects(service) == []


def test_an_unknown_access_point_is_a_clear_error(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    with pytest.raises(Exception, match="is not an access point"):
        wifi.access_point(home["sta"])
    with pytest.raises(KeyError, match="has no node 'nope'"):
        home["nope"]
    with pytest.raises(wifi.ProvisioningError) as failure:
        wifi.scan(home["sta"], "nobody-serves-this", timeout=1)
    assert failure.value.step == "scan"
    assert "SSID 'nobody-serves-this' not found within 1 s (heard: home)" in str(failure.value)


def test_the_topology_shows_the_air(make_home):
    home = make_home({"ap": ap_node(), "sta": station()})
    wifi.associate(home["sta"], wifi.access_point(home["ap"]))
    topology = home.topology()
    assert "medium wifi (802.11g): ap, sta" in topology
    assert re.search(r"ap ap: 'home' WPA2-PSK channel 6 bssid \S+", topology)
    assert re.search(r"station sta: COMPLETED to 'home' \(\S+\)", topology)
