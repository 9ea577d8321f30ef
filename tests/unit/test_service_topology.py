"""The service's pure parts: Cirque topologies into our specs, the caller gate, limits,
and the gRPC messages to and from the device configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from pytest_cirque import topology
from pytest_cirque.capabilities.model.base import ContainerConfig
from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.protocol import STATIONS_DIR, THREAD_BIN_DIR
from pytest_cirque.service.grpc_api import (
    DEADLINE_MARGIN_S,
    command_time_limit,
    device_config,
    device_message,
    parse_peer,
)
from pytest_cirque.service.peers import Gate, peer_uid
from pytest_cirque.service.proto import capability_pb2, device_pb2, service_pb2
from pytest_cirque.service.registry import (
    DEFAULT_COMMAND_TIMEOUT_S,
    MAX_COMMAND_TIMEOUT_S,
    check_tail,
    check_timeout,
)
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
            latency_ms=20, loss_rate=2
        ),
    )
    config = device_config(spec)
    assert config == {
        "type": "GenericNode",
        "base_image": "generic_node_image",
        "capability": ["WiFi", "LanAccess", "TrafficControl"],
        "docker_network": "internal",
        "traffic_control": {"latencyMs": 20, "loss": 2},
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


def test_grpc_thread_capability_keeps_rcp_mode_both_ways() -> None:
    spec = device_pb2.DeviceSpecification(
        device_type="Generic Node",
        base_image="generic_node_image",
        thread_capability=capability_pb2.ThreadCapability(rcp_mode=True),
    )
    config = device_config(spec)
    assert config["capability"] == ["Thread"] and config["rcp_mode"] is True
    node, _ = topology.translate_device("device0", config)
    assert node["capability"] == [{"Thread": {"rcp_mode": True}}]
    message = device_message(
        {
            "id": "device0",
            "name": "home.device0",
            "type": "Generic Node",
            "base_image": "generic_node_image",
            "capability": {"Thread": {"rcp_mode": True}},
            "description": {"ipv4_addr": "172.18.0.2"},
        }
    )
    assert message.device_specification.thread_capability.rcp_mode is True


def test_grpc_command_time_limit_is_the_calls_deadline() -> None:
    assert command_time_limit(None) == DEFAULT_COMMAND_TIMEOUT_S
    assert command_time_limit(10.0) == pytest.approx(10.0 - DEADLINE_MARGIN_S)
    assert 0 < command_time_limit(0.01) < 1
    assert command_time_limit(10 * MAX_COMMAND_TIMEOUT_S) == MAX_COMMAND_TIMEOUT_S


#: Cirque's gRPC interface as its .proto files and its clients have it: message -> field
#: -> (number, type). What a client built from Cirque's stubs sends must parse here.
T = FieldDescriptor
CIRQUE_MESSAGES: dict[str, dict[str, tuple[int, int]]] = {
    "WeaveCapability": {
        "weave_certificate_path": (1, T.TYPE_STRING),
        "target_path": (2, T.TYPE_STRING),
    },
    "ThreadCapability": {
        "petition_id": (1, T.TYPE_INT32),
        "rcp_mode": (2, T.TYPE_BOOL),
        "daemons": (3, T.TYPE_STRING),
    },
    "WiFiCapability": {},
    "XvncCapability": {
        "localhost": (1, T.TYPE_BOOL),
        "display_id": (2, T.TYPE_INT32),
        "docker_display_id": (3, T.TYPE_INT32),
    },
    "InteractiveCapability": {},
    "LanAccessCapability": {"internal_lan": (1, T.TYPE_BOOL)},
    "MountPair": {"host_path": (1, T.TYPE_STRING), "target_path": (2, T.TYPE_STRING)},
    "MountCapability": {"mount_pairs": (1, T.TYPE_MESSAGE)},
    "TrafficControlCapability": {"latency_ms": (1, T.TYPE_INT32), "loss_rate": (2, T.TYPE_INT32)},
    "DeviceSpecification": {
        "device_type": (1, T.TYPE_STRING),
        "base_image": (2, T.TYPE_STRING),
        **{
            f"{name}_capability": (number, T.TYPE_MESSAGE)
            for number, name in enumerate(
                (
                    "weave",
                    "thread",
                    "wifi",
                    "xvnc",
                    "interactive",
                    "lan_access",
                    "mount",
                    "trafficcontrol",
                ),
                start=3,
            )
        },
    },
    "DeviceDescription": {
        "ipv4_addr": (1, T.TYPE_STRING),
        "ssid": (2, T.TYPE_STRING),
        "psk": (3, T.TYPE_STRING),
    },
    "CirqueDevice": {
        "device_specification": (1, T.TYPE_MESSAGE),
        "device_id": (2, T.TYPE_STRING),
        "device_name": (3, T.TYPE_STRING),
        "device_description": (4, T.TYPE_MESSAGE),
    },
    "CreateCirqueHomeRequest": {},
    "CreateCirqueHomeResponse": {"home_id": (1, T.TYPE_STRING)},
    "CreateCirqueDeviceRequest": {
        "home_id": (1, T.TYPE_STRING),
        "specification": (2, T.TYPE_MESSAGE),
    },
    "CreateCirqueDeviceResponse": {"device": (1, T.TYPE_MESSAGE)},
    "ExecuteDeviceCommandRequest": {
        "home_id": (1, T.TYPE_STRING),
        "device_id": (2, T.TYPE_STRING),
        "command": (3, T.TYPE_STRING),
        "streaming": (4, T.TYPE_BOOL),
    },
    "ExecuteDeviceCommandResponse": {"output": (1, T.TYPE_STRING)},
    "ListCirqueHomesRequest": {},
    "ListCirqueHomesResponse": {"home_id": (1, T.TYPE_STRING)},
    "ListCirqueHomeDevicesRequest": {"home_id": (1, T.TYPE_STRING)},
    "ListCirqueHomeDevicesResponse": {"devices": (1, T.TYPE_MESSAGE)},
    "QueryCirqueDeviceRequest": {"home_id": (1, T.TYPE_STRING), "device_id": (2, T.TYPE_STRING)},
    "QueryCirqueDeviceResponse": {"device": (1, T.TYPE_MESSAGE)},
    "StopCirqueDeviceRequest": {"home_id": (1, T.TYPE_STRING), "device_id": (2, T.TYPE_STRING)},
    "StopCirqueHomeRequest": {"home_id": (1, T.TYPE_STRING)},
    "GetCirqueDeviceLogRequest": {
        "home_id": (1, T.TYPE_STRING),
        "device_id": (2, T.TYPE_STRING),
        "tail": (3, T.TYPE_UINT32),
    },
    "GetCirqueDeviceLogResponse": {"log": (1, T.TYPE_STRING)},
}
CIRQUE_METHODS = {
    "CreateCirqueHome": ("CreateCirqueHomeRequest", "CreateCirqueHomeResponse"),
    "CreateCirqueDevice": ("CreateCirqueDeviceRequest", "CreateCirqueDeviceResponse"),
    "ExecuteDeviceCommand": ("ExecuteDeviceCommandRequest", "ExecuteDeviceCommandResponse"),
    "ListCirqueHomes": ("ListCirqueHomesRequest", "ListCirqueHomesResponse"),
    "ListCirqueHomeDevices": ("ListCirqueHomeDevicesRequest", "ListCirqueHomeDevicesResponse"),
    "QueryCirqueDevice": ("QueryCirqueDeviceRequest", "QueryCirqueDeviceResponse"),
    "StopCirqueDevice": ("StopCirqueDeviceRequest", "google.protobuf.Empty"),
    "StopCirqueHome": ("StopCirqueHomeRequest", "google.protobuf.Empty"),
    "GetCirqueDeviceLog": ("GetCirqueDeviceLogRequest", "GetCirqueDeviceLogResponse"),
}


def test_grpc_messages_are_cirques_field_for_field() -> None:
    pool = service_pb2.DESCRIPTOR.pool
    ours = {
        name: {f.name: (f.number, f.type) for f in message.fields}
        for module in (capability_pb2, device_pb2, service_pb2)
        for name, message in module.DESCRIPTOR.message_types_by_name.items()
    }
    assert ours == CIRQUE_MESSAGES
    assert all(pool.FindMessageTypeByName(f"cirque.proto.{name}") for name in CIRQUE_MESSAGES)
    specification = device_pb2.DeviceSpecification.DESCRIPTOR
    assert {o.name: [f.name for f in o.fields] for o in specification.oneofs} == {
        f"optional_{name}": [name]
        for name in CIRQUE_MESSAGES["DeviceSpecification"]
        if name.endswith("_capability")
    }


def test_grpc_service_is_cirques_method_for_method() -> None:
    service = service_pb2.DESCRIPTOR.services_by_name["CirqueService"]
    assert service.full_name == "cirque.proto.CirqueService"
    methods = {
        m.name: (m.input_type.name, m.output_type.full_name.removeprefix("cirque.proto."))
        for m in service.methods
    }
    assert methods == CIRQUE_METHODS
    assert not any(m.client_streaming or m.server_streaming for m in service.methods)


@pytest.mark.parametrize("order", [["WiFi", "Thread"], ["Thread", "WiFi"]])
def test_cirque_wifi_and_thread_node_finds_both_tool_folders(order: list[str]) -> None:
    """Cirque's example nodes list WiFi, then Thread: wpa_supplicant and iwlist must stay
    on the node's PATH beside ot-ctl, whatever the order."""
    node = parse({"n": {"type": "generic_node_image", "capability": order, "rcp_mode": True}})
    config = ContainerConfig()
    for capability in node.nodes["n"].capabilities:
        capability.configure(config, "n")
    path = config.environment["PATH"].split(":")
    assert f"{STATIONS_DIR}/bin" in path and THREAD_BIN_DIR in path
    assert path.index("/usr/bin") > max(
        path.index(THREAD_BIN_DIR), path.index(f"{STATIONS_DIR}/bin")
    )
