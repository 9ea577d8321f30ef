"""Cirque's own two examples, restated step by step against `cirque serve`: its Flask
(REST) example and its gRPC example. Each makes the requests its example makes, in the
same order, and asserts what the example asserts; only the service's address and the
stubs' import path are ours. Where an example slept a fixed time, the step waits on the
condition the example was waiting for (or on the tool that waits for it itself).

The flows: a home of two generic nodes (WiFi, Thread with rcp_mode, Interactive) and an
access point; Thread formed with ot-ctl; the AP's SSID found by ``iwlist wlan0
scanning``; each station joined as a device's init would (wpa_passphrase into the
config, killall wpa_supplicant, wpa_supplicant -B again); a lease from the AP with
``dhcpcd wlan0``; one station pings the other. The gRPC example adds the stations before
the access point.

The REST example's client is ``requests``, as the example's was, so its URLs (the raw
command in the path) are encoded exactly as it encoded them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import grpc
import pytest
import requests
import yaml

from pytest_cirque.core.waiting import wait_until
from pytest_cirque.service.proto import (
    capability_pb2,
    device_pb2,
    service_pb2,
    service_pb2_grpc,
)

from .service_client import CLIENT_TIMEOUT_S, Served, objects_of_home

pytestmark = pytest.mark.slow

#: Both examples' topology: two Thread and WiFi nodes and an access point.
REST_DEVICE_CONFIG = yaml.safe_load(
    (Path(__file__).parents[2] / "examples" / "cirque_original_topology.yaml").read_text()
)
GRPC_DEVICE_CONFIG: dict[str, dict[str, Any]] = {
    "device0": {
        "device_type": "Generic Node",
        "base_image": "generic_node_image",
        "wifi_capability": capability_pb2.WiFiCapability(),
        "thread_capability": capability_pb2.ThreadCapability(rcp_mode=True),
        "interactive_capability": capability_pb2.InteractiveCapability(),
    },
    "device1": {
        "device_type": "GenericNode",
        "base_image": "generic_node_image",
        "wifi_capability": capability_pb2.WiFiCapability(),
        "thread_capability": capability_pb2.ThreadCapability(rcp_mode=True),
        "interactive_capability": capability_pb2.InteractiveCapability(),
    },
    "wifi-ap": {"device_type": "wifi_ap", "base_image": "mac80211_ap_image"},
}
#: The examples' commands, as they wrote them (the Thread one with its line continuation).
FORM_THREAD = "bash -c 'ot-ctl panid 0x1234 && \
                             ot-ctl ifconfig up && \
                             ot-ctl thread start'"
THREAD_STATE = "ot-ctl state"
SCAN = "iwlist wlan0 scanning"
KILL_WPA_SUPPLICANT = "killall wpa_supplicant"
START_WPA_SUPPLICANT = (
    "wpa_supplicant -B -i wlan0 -c /etc/wpa_supplicant/wpa_supplicant.conf "
    "-f /var/log/wpa_supplicant.log -t -dd"
)
REQUEST_ADDRESS = "dhcpcd wlan0"
PING = "ping -c 3 {}"
ESSID = re.compile(r'\s+ESSID:"(.+)"')
LEASED = re.compile(r"wlan0: leased (\d+\.\d+\.\d+\.\d+) for (\d+) seconds")
LOSS = re.compile(r"(\d+)% packet loss")
#: What the examples slept for Thread to form (10 s) is the condition waited on here.
THREAD_FORM_TIMEOUT_S = 120.0


def write_psk_command(ssid: str, psk: str) -> str:
    return f"sh -c 'wpa_passphrase {ssid} {psk} >> /etc/wpa_supplicant/wpa_supplicant.conf'"


def formed(roles: set[str]) -> bool:
    """What both examples assert of the Thread network: a leader and a router or child."""
    return "leader" in roles and ("router" in roles or "child" in roles)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A service of its own: each example takes the first home the service lists as its
    home. It must answer everything without an unhandled error and leave nothing behind."""
    service = Served(tmp_path_factory.mktemp("serve") / "serve.log", "--grpc-port", "0")
    try:
        yield service
    finally:
        assert service.stop() == 0, service.log.read_text()
        assert "Traceback" not in service.log.read_text(), service.log.read_text()
        assert service.objects() == []


# ---- the Flask (REST) example


class RestExample:
    """The REST example's calls: ``requests`` against SERVICE_URL, as it made them."""

    def __init__(self, service_url: str) -> None:
        self.service_url = service_url

    def get(self, path: str) -> Any:
        return requests.get(urljoin(self.service_url, path), timeout=CLIENT_TIMEOUT_S).json()

    def device_cmd(self, home_id: str, device_id: str, command: str) -> dict[str, str]:
        url = urljoin(
            self.service_url, f"device_cmd/{home_id}/{device_id}/{command}?stream={False}"
        )
        reply: dict[str, str] = requests.get(url, stream=False, timeout=CLIENT_TIMEOUT_S).json()
        return reply

    def home_id(self) -> str:
        return str(next(iter(self.get("get_homes"))))

    def stations(self, home_id: str) -> list[str]:
        devices = self.get(f"home_devices/{home_id}").values()
        return [device["id"] for device in devices if device["type"] != "wifi_ap"]

    def test_001_created_home(self) -> str:
        home_id = requests.post(
            urljoin(self.service_url, "create_home"),
            json=REST_DEVICE_CONFIG,
            timeout=CLIENT_TIMEOUT_S,
        ).json()
        assert home_id == next(iter(self.get("get_homes"))), "created home_id not in get_homes"
        return str(home_id)

    def test_002_created_devices(self) -> None:
        home_id = self.home_id()
        devices = self.get(f"home_devices/{home_id}").values()
        assert {device["type"] for device in devices} == {"wifi_ap", "GenericNode", "Generic Node"}

    def test_003_connect_to_thread_network(self) -> None:
        home_id = self.home_id()
        device_ids = self.stations(home_id)
        for device_id in device_ids:
            self.device_cmd(home_id, device_id, FORM_THREAD)

        def roles() -> set[str]:
            return {
                self.device_cmd(home_id, device_id, THREAD_STATE)["output"].split()[0]
                for device_id in device_ids
            }

        wait_until(
            lambda: formed(roles()),
            "a Thread leader and a router or child among the nodes",
            THREAD_FORM_TIMEOUT_S,
        )

    def test_004_scan_available_wifi_network(self) -> None:
        home_id = self.home_id()
        ssid, _ = self.get(f"wifi_ssid_psk/{home_id}")
        for device_id in self.stations(home_id):
            reply = self.device_cmd(home_id, device_id, SCAN)
            found = ESSID.search(reply["output"])
            assert found, f"{device_id} scanned no ESSID: {reply}"
            assert found.group(1) == ssid, "ssid from device did not match the wifi_ap's"

    def test_005_connect_to_desired_wifi_network(self) -> None:
        home_id = self.home_id()
        ssid, psk = self.get(f"wifi_ssid_psk/{home_id}")
        for device_id in self.stations(home_id):
            reply = self.device_cmd(home_id, device_id, write_psk_command(ssid, psk))
            assert reply["return_code"] == "0", f"writing ssid, psk failed: {reply}"
            reply = self.device_cmd(home_id, device_id, KILL_WPA_SUPPLICANT)
            assert reply["return_code"] == "0", f"killall wpa_supplicant failed: {reply}"
            reply = self.device_cmd(home_id, device_id, START_WPA_SUPPLICANT)
            assert reply["return_code"] == "0", f"starting wpa_supplicant failed: {reply}"
        # The example slept 5 s here; dhcpcd (next) waits for wlan0's carrier itself.

    def test_006_device_connectivity(self) -> None:
        home_id = self.home_id()
        addresses = []
        for device_id in self.stations(home_id):
            reply = self.device_cmd(home_id, device_id, REQUEST_ADDRESS)
            assert reply["return_code"] == "0", f"dhcpcd in {device_id} failed: {reply}"
            leased = LEASED.search(reply["output"])
            assert leased, f"dhcpcd in {device_id} printed no lease: {reply}"
            addresses.append((device_id, leased.group(1)))
        reply = self.device_cmd(home_id, addresses[0][0], PING.format(addresses[1][1]))
        loss = LOSS.search(reply["output"])
        assert loss, f"ping printed no loss line: {reply}"
        assert loss.group(1) != "100", f"unable to ping {addresses[1][1]}: no WiFi connectivity"

    def tear_down(self) -> list[str]:
        home_ids = list(self.get("get_homes"))
        for home_id in home_ids:
            self.get(f"destroy_home/{home_id}")
        return home_ids


def test_cirque_rest_example(served: Served) -> None:
    example = RestExample(served.url)
    home_id = example.test_001_created_home()
    try:
        example.test_002_created_devices()
        example.test_003_connect_to_thread_network()
        example.test_004_scan_available_wifi_network()
        example.test_005_connect_to_desired_wifi_network()
        example.test_006_device_connectivity()
    finally:
        assert example.tear_down() == [home_id]
    assert objects_of_home(home_id) == []


# ---- the gRPC example


class GrpcExample:
    """The gRPC example's calls, through our generated stubs."""

    def __init__(self, stub: service_pb2_grpc.CirqueServiceStub) -> None:
        self.stub = stub

    def home_id(self) -> str:
        return str(self.stub.ListCirqueHomes(service_pb2.ListCirqueHomesRequest()).home_id[0])

    def devices(self, home_id: str) -> list[Any]:
        return list(
            self.stub.ListCirqueHomeDevices(
                service_pb2.ListCirqueHomeDevicesRequest(home_id=home_id)
            ).devices
        )

    def execute(self, home_id: str, device_id: str, command: str, **streaming: bool) -> str:
        request = service_pb2.ExecuteDeviceCommandRequest(
            home_id=home_id, device_id=device_id, command=command, **streaming
        )
        return str(self.stub.ExecuteDeviceCommand(request, timeout=CLIENT_TIMEOUT_S).output)

    def test_001_create_home(self) -> str:
        home_id = self.stub.CreateCirqueHome(service_pb2.CreateCirqueHomeRequest()).home_id
        assert home_id == self.home_id(), "created home_id not found in the cirque service"
        return str(home_id)

    def test_002_create_devices(self) -> None:
        home_id = self.home_id()
        device_ids = set()
        for config in GRPC_DEVICE_CONFIG.values():  # the stations first, then the AP
            device_ids.add(
                self.stub.CreateCirqueDevice(
                    service_pb2.CreateCirqueDeviceRequest(
                        home_id=home_id, specification=device_pb2.DeviceSpecification(**config)
                    )
                ).device.device_id
            )
        listed = {device.device_id for device in self.devices(home_id)}
        assert device_ids == listed, "devices created did not match the devices listed"

    def test_003_connect_to_thread_network(self) -> None:
        home_id = self.home_id()
        devices = [
            d
            for d in self.devices(home_id)
            if d.device_specification.base_image == "generic_node_image"
        ]
        for device in devices:
            self.execute(home_id, device.device_id, FORM_THREAD)

        def roles() -> set[str]:
            return {
                self.execute(home_id, device.device_id, THREAD_STATE).split()[0]
                for device in devices
            }

        wait_until(
            lambda: formed(roles()),
            "a Thread leader and a router or child among the nodes",
            THREAD_FORM_TIMEOUT_S,
        )

    def stations_and_ap(self, home_id: str) -> tuple[list[str], Any]:
        devices = self.devices(home_id)
        stations = [d.device_id for d in devices if d.device_specification.device_type != "wifi_ap"]
        ap = next(d for d in devices if d.device_specification.device_type == "wifi_ap")
        return stations, ap

    def test_004_scan_available_wifi_network(self) -> None:
        home_id = self.home_id()
        stations, ap = self.stations_and_ap(home_id)
        ssid = ap.device_description.ssid
        for device_id in stations:
            output = self.execute(home_id, device_id, SCAN, streaming=False)
            found = ESSID.search(output)
            assert found, f"{device_id} scanned no ESSID: {output}"
            assert found.group(1) == ssid, "ssid from device did not match the wifi_ap's"

    def test_005_connect_to_desired_wifi_network(self) -> None:
        home_id = self.home_id()
        stations, ap = self.stations_and_ap(home_id)
        ssid, psk = ap.device_description.ssid, ap.device_description.psk
        for device_id in stations:
            # A command that fails is an ABORTED error: the example's only check here.
            self.execute(home_id, device_id, write_psk_command(ssid, psk), streaming=False)
            self.execute(home_id, device_id, KILL_WPA_SUPPLICANT, streaming=False)
            self.execute(home_id, device_id, START_WPA_SUPPLICANT, streaming=False)
        # The example slept 5 s here; dhcpcd (next) waits for wlan0's carrier itself.

    def test_006_device_connectivity(self) -> None:
        home_id = self.home_id()
        stations, _ = self.stations_and_ap(home_id)
        addresses = []
        for device_id in stations:
            output = self.execute(home_id, device_id, REQUEST_ADDRESS, streaming=False)
            leased = LEASED.search(output)
            assert leased, f"dhcpcd in {device_id} printed no lease: {output}"
            addresses.append((device_id, leased.group(1)))
        output = self.execute(
            home_id, addresses[0][0], PING.format(addresses[1][1]), streaming=False
        )
        loss = LOSS.search(output)
        assert loss, f"ping printed no loss line: {output}"
        assert loss.group(1) != "100", f"unable to ping {addresses[1][1]}: no WiFi connectivity"

    def tear_down(self) -> list[str]:
        home_ids = list(self.stub.ListCirqueHomes(service_pb2.ListCirqueHomesRequest()).home_id)
        for home_id in home_ids:
            self.stub.StopCirqueHome(service_pb2.StopCirqueHomeRequest(home_id=home_id))
        return home_ids


def test_cirque_grpc_example(served: Served) -> None:
    assert served.grpc_target is not None
    with grpc.insecure_channel(served.grpc_target) as channel:
        example = GrpcExample(service_pb2_grpc.CirqueServiceStub(channel))
        home_id = example.test_001_create_home()
        try:
            example.test_002_create_devices()
            example.test_003_connect_to_thread_network()
            example.test_004_scan_available_wifi_network()
            example.test_005_connect_to_desired_wifi_network()
            example.test_006_device_connectivity()
        finally:
            assert example.tear_down() == [home_id]
    assert objects_of_home(home_id) == []
