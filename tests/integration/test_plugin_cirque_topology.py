"""An original Cirque topology file under ``@pytest.mark.home`` on real Docker: its
devices come up as Cirque made them (WiFi stations that keep their Ethernet, Thread in RCP
mode, an access point with a made-up SSID the stations hear)."""

from __future__ import annotations

import pytest

from pytest_cirque import wifi
from pytest_cirque.homes.home import Home
from pytest_cirque.wifi import AccessPoint


@pytest.mark.home("../../examples/cirque_original_topology.yaml")
def test_the_original_example_topology_comes_up_as_cirque_made_it(
    home: Home, wifi_ap: AccessPoint
) -> None:
    assert wifi_ap.ssid.startswith("wifiap-")
    for name in ("device0", "device1"):
        station = home[name]
        assert station.ip is not None  # Cirque's WiFi devices kept their Ethernet
        assert wifi.scan(station, wifi_ap.ssid)["ssid"] == wifi_ap.ssid
        # rcp_mode: the radio is a serial line our ot-daemon drives, as on Cirque's nodes.
        assert station.exec(["test", "-c", "/dev/ttyUSB0"]).exit_code == 0
