"""Cirque's REST API, used the way Cirque's own Flask example used it.

A program written against Cirque's service creates a home from a topology, looks up its
devices, reads the access point's SSID and PSK and drives the devices with shell commands
over HTTP. Under pytest the ``cirque_service`` fixture serves that API from this process
(one service per xdist worker); set CIRQUE_SERVICE_URL to talk to a `cirque serve` instead.

The topology is Cirque's, minus Thread (refused until the Thread medium lands). The
stations scan for the AP and join it with their own wpa_cli, as on a device; the AP's
SSID and PSK were made up by the service, as Cirque's were.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pytest_cirque import wait_until

DEVICE_CONFIG = {
    "device0": {
        "type": "Generic Node",
        "base_image": "generic_node_image",
        "capability": ["WiFi", "Interactive"],
    },
    "device1": {
        "type": "GenericNode",
        "base_image": "generic_node_image",
        "capability": ["WiFi", "Interactive"],
    },
    "wifi-ap": {"type": "wifi_ap", "base_image": "mac80211_ap_image"},
}


@pytest.fixture(scope="module")
def service(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """An HTTP client of the service: CIRQUE_SERVICE_URL's, or this process's own."""
    url = os.environ.get("CIRQUE_SERVICE_URL") or request.getfixturevalue("cirque_service")
    with httpx.Client(base_url=url, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def home_id(service: httpx.Client) -> Iterator[str]:
    """One home of the topology for the module's tests, destroyed after them."""
    reply = service.post("/create_home", json=DEVICE_CONFIG)
    assert reply.status_code == 200, reply.text
    home = reply.json()
    yield home
    service.get(f"/destroy_home/{home}")


def device_cmd(
    service: httpx.Client, home: str, device: str, command: str, timeout: float = 60
) -> dict[str, Any]:
    """Cirque's device_cmd: {"return_code": "0", "output": "..."}; past ``timeout`` seconds
    the command is killed (return code "124")."""
    path = f"/device_cmd/{home}/{device}/{quote(command, safe='')}"
    return service.get(path, params={"stream": False, "timeout": timeout}).json()


def stations(service: httpx.Client, home: str) -> list[str]:
    devices = service.get(f"/home_devices/{home}").json().values()
    return [device["id"] for device in devices if device["type"] != "wifi_ap"]


def test_001_created_home(service: httpx.Client, home_id: str) -> None:
    assert home_id in service.get("/get_homes").json()


def test_002_created_devices(service: httpx.Client, home_id: str) -> None:
    devices = service.get(f"/home_devices/{home_id}").json().values()
    assert {device["type"] for device in devices} == {"wifi_ap", "GenericNode", "Generic Node"}


def test_003_scan_available_wifi_network(service: httpx.Client, home_id: str) -> None:
    ssid, _ = service.get(f"/wifi_ssid_psk/{home_id}").json()
    for device in stations(service, home_id):
        assert device_cmd(service, home_id, device, "wpa_cli -i wlan0 scan")["output"] == "OK\n"
        wait_until(
            lambda device=device: (
                ssid
                in device_cmd(service, home_id, device, "wpa_cli -i wlan0 scan_results")["output"]
            ),
            f"{device} to see {ssid}",
            30,
        )


def test_004_connect_to_desired_wifi_network(service: httpx.Client, home_id: str) -> None:
    ssid, psk = service.get(f"/wifi_ssid_psk/{home_id}").json()
    for device in stations(service, home_id):
        join = (
            "wpa_cli -i wlan0 add_network && "
            f"wpa_cli -i wlan0 set_network 0 ssid '\"{ssid}\"' && "
            f"wpa_cli -i wlan0 set_network 0 psk '\"{psk}\"' && "
            "wpa_cli -i wlan0 enable_network 0"
        )
        assert device_cmd(service, home_id, device, join)["return_code"] == "0"
    for device in stations(service, home_id):
        wait_until(
            lambda device=device: (
                "wpa_state=COMPLETED"
                in device_cmd(service, home_id, device, "wpa_cli -i wlan0 status")["output"]
            ),
            f"{device} to associate with {ssid}",
            30,
        )
