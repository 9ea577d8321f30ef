"""The service's pure parts: Cirque topologies into our specs, the caller gate, limits,
and the gRPC messages to and from the device configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_cirque.core.errors import SpecError
from pytest_cirque.service import topology
from pytest_cirque.service.grpc_api import device_config, device_message, parse_peer
from pytest_cirque.service.peers import Gate, peer_uid
from pytest_cirque.service.proto import capability_pb2, device_pb2
from pytest_cirque.service.registry import check_tail, check_timeout
from pytest_cirque.spec import HomeSpec

FLASK_EXAMPLE = {
    "device0": {
        "type": "Generic Node",
        "base_image": "generic_node_image",
        "capability": ["WiFi", "Interactive"],
    },
    "device1": {"type": "GenericNode", "base_image": "generic_node_image", "capability": ["WiFi"]},
    "wifi-ap": {"type": "wifi_ap", "base_image": "mac80211_ap_image"},
}


def parse(raw: object, allow_host_mounts: bool = False) -> HomeSpec:
    return topology.translate(raw, allow_host_mounts=allow_host_mounts).parse(
        allow_host_mounts=allow_host_mounts
    )


def test_cirque_example_topology_maps_images_types_and_capabilities() -> None:
    translated = topology.translate(FLASK_EXAMPLE)
    spec = translated.parse(allow_host_mounts=False)
    assert {name: node.image for name, node in spec.nodes.items()} == {
        "device0": "base",
        "device1": "base",
        "wifi-ap": "wifi-ap",
    }
    station = spec.nodes["device0"].capability("WiFi")
    assert station is not None and station.params["lan"] is True  # Cirque kept Ethernet
    assert spec.nodes["device0"].capability("Interactive") is not None
    ap = spec.nodes["wifi-ap"].capability("WiFiAP")
    assert ap is not None and ap.params["mode"] == "router"
    assert translated.devices["device0"] == topology.Device(
        "device0", "Generic Node", "generic_node_image"
    )
    assert translated.devices["wifi-ap"].base_image == "mac80211_ap_image"


def test_access_point_gets_cirque_style_ssid_and_psk_unless_given() -> None:
    made = parse({"ap": {"type": "wifi_ap"}}).nodes["ap"].capability("WiFiAP")
    assert made is not None
    ssid, psk = made.ssid, made.psk  # type: ignore[attr-defined]
    assert ssid.startswith("wifiap-") and len(ssid) == len("wifiap-") + 5
    assert len(psk) == 8 and set(psk + ssid[7:]) <= set(topology.AP_CHARACTERS)
    given = parse({"ap": {"type": "wifi_ap", "ssid": "home", "psk": "secret123"}})
    cap = given.nodes["ap"].capability("WiFiAP")
    assert (cap.ssid, cap.psk) == ("home", "secret123")  # type: ignore[union-attr]


def test_base_image_defaults_to_type() -> None:
    spec = parse({"n": {"type": "generic_node_image"}})
    assert spec.nodes["n"].image == "base"
    assert topology.translate({"n": {"type": "base"}}).devices["n"].base_image == "base"


@pytest.mark.parametrize(
    ("given", "ours"), [("Internal", "internal"), ("Ipv6", "ipv6"), ("IpvLan", "ipvlan")]
)
def test_docker_network_as_cirque_spelled_it(given: str, ours: str) -> None:
    assert parse({"n": {"type": "base", "docker_network": given}}).nodes["n"].docker_network == ours


def test_capability_names_as_cirque_spelled_them() -> None:
    spec = parse(
        {
            "n": {
                "type": "base",
                "capability": ["LanAccess", "Interactive", "TrafficControl", "Xvnc"],
                "traffic_control": {"latencyMs": 50, "loss": 5},
            }
        }
    )
    names = [c.name for c in spec.nodes["n"].capabilities]
    assert names == ["LanAccess", "Interactive", "TrafficControl", "XVNC"]


def test_bluetooth_refused_in_one_line_naming_what_is_missing() -> None:
    with pytest.raises(SpecError) as caught:
        parse({"n": {"type": "base", "capability": ["Bluetooth"]}})
    message = str(caught.value)
    assert "Bluetooth" in message and "radio" in message and "\n" not in message


def test_cirques_thread_node_is_a_thread_node() -> None:
    spec = parse({"n": {"type": "base", "capability": ["Thread"], "rcp_mode": True}})
    assert [c.name for c in spec.nodes["n"].capabilities] == ["Thread"]


@pytest.mark.parametrize(
    "device",
    [
        {"type": "base", "capability": ["Mount"], "mount_pairs": [["/tmp", "/x"]]},
        {"type": "base", "mount_pairs": [["/tmp", "/x"]]},
        {"type": "base", "capability": ["Weave"], "weave_config_file": "/etc/hostname"},
        {"type": "base", "weave_config_file": "/etc/hostname"},
        {"type": "base", "capabilities": [{"mount": {"mount_pairs": [["/tmp", "/x"]]}}]},
    ],
)
def test_host_mounts_refused_unless_allowed(device: dict[str, object]) -> None:
    with pytest.raises(SpecError, match="--allow-host-mounts"):
        parse({"n": device})
    assert parse({"n": device}, allow_host_mounts=True).nodes["n"].capabilities


def test_refuse_host_paths_catches_any_capability_that_binds_them() -> None:
    spec = HomeSpec.parse({"n": {"capabilities": [{"Mount": {"mount_pairs": [["/tmp", "/x"]]}}]}})
    with pytest.raises(SpecError, match="capability Mount"):
        topology.refuse_host_paths(spec)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([1, 2], "JSON object of device name"),
        ({}, "no devices"),
        ({"n": "base"}, "a device config is an object"),
        ({"n": {"base_image": "base"}}, "field 'type' is required"),
        ({"n": {"type": "base", "colour": "red"}}, "unknown field 'colour'"),
        ({"n": {"type": "base", "capability": "WiFi"}}, "must be a list"),
        ({"n": {"type": "base", "ssid": "x"}}, "type wifi_ap"),
    ],
)
def test_malformed_topologies_refused_in_one_line(raw: object, expected: str) -> None:
    with pytest.raises(SpecError, match=expected) as caught:
        parse(raw)
    assert "\n" not in str(caught.value)


def test_device_names_made_valid_and_unique() -> None:
    taken: set[str] = set()
    assert topology.node_name("Generic Node", taken) == "Generic-Node"
    assert topology.node_name("Generic Node", taken) == "Generic-Node-2"
    assert topology.node_name("_x", taken) == "x"
    assert topology.node_name("***", taken) == "device"


def test_timeout_and_tail_limits() -> None:
    assert check_timeout(None) == 60.0
    assert check_timeout("2.5") == 2.5
    for bad in ("0", "-1", "abc", "nan", str(10**9)):
        with pytest.raises(SpecError, match="timeout"):
            check_timeout(bad)
    assert check_tail("10") == 10
    assert check_tail("all") is None and check_tail(None) is None


# ---- who may connect


def _row(local: str, remote: str, uid: int) -> str:
    return f"   0: {local} {remote} 01 00000000:00000000 00:00000000 00000000 {uid:>5} 0 1 1\n"


def test_peer_uid_read_from_the_socket_table(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    # 127.0.0.1:40000 -> 127.0.0.1:5000 owned by 1001; the server's side owned by 0.
    table.write_text(
        "  sl  local_address rem_address   st ...  uid\n"
        + _row("0100007F:9C40", "0100007F:1388", 1001)
        + _row("0100007F:1388", "0100007F:9C40", 0)
    )
    table6 = tmp_path / "tcp6"
    table6.write_text(
        "header\n"
        + _row("00000000000000000000000001000000:9C41", "00000000000000000000000001000000:1388", 7)
    )
    tables = [str(table), str(table6)]
    assert peer_uid(("127.0.0.1", 40000), ("127.0.0.1", 5000), tables) == 1001
    assert peer_uid(("::1", 40001), ("::1", 5000), tables) == 7
    assert peer_uid(("127.0.0.1", 40001), ("127.0.0.1", 5000), tables) is None
    assert peer_uid(("127.0.0.1", 40000), ("", 5000), tables) == 1001


def test_gate_without_token_admits_only_its_own_user() -> None:
    gate = Gate(None, uid=os.getuid() + 1)
    refusal = gate.refusal(("127.0.0.1", 1), ("127.0.0.1", 2), {}, None)
    assert refusal is not None and "socket table" in refusal
    assert Gate(None).refusal(None, None, {}, None) is not None


def test_gate_with_token_wants_the_token() -> None:
    gate = Gate("t" * 20)
    assert gate.refusal(None, None, {}, None) is not None
    assert gate.refusal(None, None, {"authorization": "Bearer wrong"}, None) is not None
    assert gate.refusal(None, None, {"authorization": "Bearer " + "t" * 20}, None) is None
    assert gate.refusal(None, None, {}, "t" * 20) is None


# ---- gRPC messages


def test_grpc_specification_becomes_a_cirque_device_config() -> None:
    spec = device_pb2.DeviceSpecification(
        device_type="GenericNode",
        base_image="generic_node_image",
        wifi_capability=capability_pb2.WiFiCapability(),
        lan_access_capability=capability_pb2.LanAccessCapability(internal_lan=True),
        trafficcontrol_capability=capability_pb2.TrafficControlCapability(
            latency_ms=20, loss_rate=1.5
        ),
    )
    config = device_config(spec)
    assert config == {
        "type": "GenericNode",
        "base_image": "generic_node_image",
        "capability": ["WiFi", "LanAccess", "TrafficControl"],
        "docker_network": "internal",
        "traffic_control": {"latencyMs": 20, "loss": 1.5},
    }
    node, device = topology.translate_device("device0", config)
    assert node["image"] == "base" and device.type == "GenericNode"


def test_grpc_device_message_from_a_device_state() -> None:
    message = device_message(
        {
            "id": "ap",
            "name": "home.ap",
            "type": "wifi_ap",
            "base_image": "mac80211_ap_image",
            "capability": {"WiFiAP": {"ssid": "s"}, "Interactive": {}},
            "description": {"ipv4_addr": None, "ssid": "s", "psk": "p" * 8},
        }
    )
    assert message.device_id == "ap" and message.device_description.psk == "p" * 8
    assert message.device_specification.HasField("interactive_capability")
    assert not message.device_specification.HasField("wifi_capability")


def test_parse_grpc_peer() -> None:
    assert parse_peer("ipv4:127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_peer("ipv6:[::1]:5000") == ("::1", 5000)
    assert parse_peer("unix:/tmp/x") is None
