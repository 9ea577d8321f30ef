"""Cirque's REST API, used the way Cirque's own Flask example used it.

A program written against Cirque's service creates a home from a topology, looks up its
devices, and drives them with shell commands over HTTP: it forms a Thread network with
ot-ctl, scans for the access point with iwlist, joins it as a device's init would
(wpa_passphrase into the configuration file, killall wpa_supplicant, start it again),
takes a lease with dhcpcd and pings the other station. Under pytest the
``cirque_service`` fixture serves that API from this process (one service per xdist
worker); set CIRQUE_SERVICE_URL to talk to a `cirque serve` instead.

The topology is Cirque's, unchanged; the AP's SSID and PSK were made up by the service,
as Cirque's were. Where Cirque's example slept a fixed time, this one waits for what it
was waiting for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from pytest_cirque import wait_until

#: The original's example topology, as a client of the original service sends it (the same
#: file works in @pytest.mark.home and home_factory).
DEVICE_CONFIG = yaml.safe_load(
    Path(__file__).with_name("cirque_original_topology.yaml").read_text()
)
CONF = "/etc/wpa_supplicant/wpa_supplicant.conf"
LEASED = re.compile(r"wlan0: leased (\d+\.\d+\.\d+\.\d+) for (\d+) seconds")


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


@pytest.fixture(scope="module")
def addresses() -> dict[str, str]:
    """Each station's leased address, as test_006 finds them."""
    return {}


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


def test_003_connect_to_thread_network(service: httpx.Client, home_id: str) -> None:
    nodes = stations(service, home_id)
    for device in nodes:
        form = "ot-ctl panid 0x1234 && ot-ctl ifconfig up && ot-ctl thread start"
        assert device_cmd(service, home_id, device, f"bash -c '{form}'")["return_code"] == "0"

    def roles() -> set[str]:
        return {
            device_cmd(service, home_id, device, "ot-ctl state")["output"].split()[0]
            for device in nodes
        }

    def formed() -> bool:
        found = roles()
        return "leader" in found and bool(found & {"router", "child"})

    wait_until(formed, "a Thread leader and a router or child", 120)


def test_004_scan_available_wifi_network(service: httpx.Client, home_id: str) -> None:
    ssid, _ = service.get(f"/wifi_ssid_psk/{home_id}").json()
    for device in stations(service, home_id):
        scan = device_cmd(service, home_id, device, "iwlist wlan0 scanning")["output"]
        assert re.search(r'\s+ESSID:"(.+)"', scan).group(1) == ssid  # type: ignore[union-attr]


def test_005_connect_to_desired_wifi_network(service: httpx.Client, home_id: str) -> None:
    ssid, psk = service.get(f"/wifi_ssid_psk/{home_id}").json()
    for device in stations(service, home_id):
        for command in (
            f"sh -c 'wpa_passphrase {ssid} {psk} >> {CONF}'",
            "killall wpa_supplicant",
            f"wpa_supplicant -B -i wlan0 -c {CONF} -f /var/log/wpa_supplicant.log -t -dd",
        ):
            reply = device_cmd(service, home_id, device, command)
            assert reply["return_code"] == "0", f"{command}: {reply}"
    for device in stations(service, home_id):
        wait_until(
            lambda device=device: (
                "wpa_state=COMPLETED"
                in device_cmd(service, home_id, device, "wpa_cli -i wlan0 status")["output"]
            ),
            f"{device} to join {ssid}",
            30,
        )


def test_006_device_connectivity(
    service: httpx.Client, home_id: str, addresses: dict[str, str]
) -> None:
    for device in stations(service, home_id):
        reply = device_cmd(service, home_id, device, "dhcpcd wlan0")
        assert reply["return_code"] == "0", reply
        leased = LEASED.search(reply["output"])
        assert leased, reply
        addresses[device] = leased.group(1)
    first, second = list(addresses)
    ping = device_cmd(service, home_id, first, f"ping -c 3 {addresses[second]}")["output"]
    assert re.search(r"(\d+)% packet loss", ping).group(1) != "100"  # type: ignore[union-attr]


def test_007_stations_reach_the_access_point(
    service: httpx.Client, home_id: str, addresses: dict[str, str]
) -> None:
    ap = service.get(f"/device_state/{home_id}/wifi-ap").json()
    gateway = ap["capability"]["WiFiAP"]["address"]  # its wlan0, the stations' router
    for device in addresses:
        reply = device_cmd(service, home_id, device, f"ping -c 3 {gateway}")
        assert reply["return_code"] == "0", reply
