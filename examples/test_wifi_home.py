"""WiFi homes: an access point and stations that join it the way real devices do.

``pytest -m wifi`` selects these. The stations are WiFi-only devices (no wired LAN):
everything they reach goes over the simulated air and through the AP. Each station's own
wpa_cli works too: ``station.exec(["wpa_cli", "-i", "wlan0", "status"])``.
"""

import pytest

from pytest_cirque import wifi


@pytest.mark.wifi(stations=["phone", "speaker"], ssid="home", psk="correct horse")
@pytest.mark.home({"phone": {}, "speaker": {}})
def test_one_ap_two_stations(home, wifi_ap):
    """The seed scenario: scan, associate, lease, ping each other and the AP's LAN side."""
    phone, speaker = home["phone"], home["speaker"]
    assert wifi.scan(phone, "home")["flags"] == "[WPA2-PSK-CCMP][ESS]"

    reports = {node.name: wifi.provision(node, wifi_ap) for node in (phone, speaker)}
    for report in reports.values():
        assert report.bssid == wifi_ap.bssid
        assert set(report.steps) == {"scan", "associate", "dhcp", "ping"}

    wifi.ping(phone, reports["speaker"].ip_address)
    wifi.ping(speaker, reports["phone"].ip_address)
    wifi.ping(phone, wifi_ap.lan_ip)  # the AP's address on the home's wired LAN
    status = phone.exec(["wpa_cli", "-i", "wlan0", "status"], check=True).stdout
    assert "wpa_state=COMPLETED" in status and f"ip_address={reports['phone'].ip_address}" in status


@pytest.mark.wifi
@pytest.mark.home(
    {
        # Two APs of one network 80 m apart (each station joins the nearer) and a guest AP.
        "upstairs": {
            "image": "wifi-ap",
            "capabilities": [{"WiFiAP": {"ssid": "home", "psk": "correct horse"}}],
        },
        "downstairs": {
            "image": "wifi-ap",
            "capabilities": [
                {"WiFiAP": {"ssid": "home", "psk": "correct horse", "position": [80, 0]}}
            ],
        },
        "guest": {
            "image": "wifi-ap",
            "capabilities": [{"WiFiAP": {"ssid": "guests", "channel": 11}}],  # open
        },
        "tv": {"capabilities": [{"WiFi": {"position": [5, 0]}}]},
        "fridge": {"capabilities": [{"WiFi": {"position": [75, 0]}}]},
        "visitor": {"capabilities": [{"WiFi": {"position": [10, 5]}}]},
    }
)
def test_two_aps_of_one_network_and_a_guest_network(home):
    upstairs, downstairs, guest = (
        wifi.access_point(home[name]) for name in ("upstairs", "downstairs", "guest")
    )
    tv = wifi.provision(home["tv"], upstairs)
    fridge = wifi.provision(home["fridge"], downstairs)
    visitor = wifi.provision(home["visitor"], guest)

    assert (tv.bssid, fridge.bssid, visitor.bssid) == (
        upstairs.bssid,
        downstairs.bssid,
        guest.bssid,
    )
    # Each AP has its own subnet and DHCP server.
    assert len({upstairs.subnet, downstairs.subnet, guest.subnet}) == 3
    assert fridge.ip_address.startswith(downstairs.subnet.rsplit(".", 1)[0])
    wifi.ping(home["tv"], upstairs.lan_ip)
    wifi.ping(home["fridge"], downstairs.lan_ip)


@pytest.mark.wifi(stations=["sensor"], psk="correct horse")
@pytest.mark.home({"sensor": {}})
def test_a_wrong_passphrase_is_refused(home, wifi_ap):
    with pytest.raises(wifi.ProvisioningError) as failure:
        wifi.associate(home["sensor"], wifi_ap, psk="battery staple")
    assert failure.value.step == "associate"
    assert "reason=WRONG_KEY" in str(failure.value)
    # What a person would look at: the station's control log and the air as a pcap.
    assert "4-Way Handshake failed" in failure.value.log
    assert failure.value.capture is not None
