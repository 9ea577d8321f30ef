"""Capability parameters are validated when the spec is parsed: one line, nothing created.

Pure tests: no Docker. A recording stand-in for the node checks what a capability's
runtime driver asks of it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_cirque.capabilities.model.base import REGISTRY, ContainerConfig, Mount, lookup
from pytest_cirque.capabilities.model.interactive import Interactive, shell_command
from pytest_cirque.capabilities.model.lan_access import LanAccess
from pytest_cirque.capabilities.model.mount import MountCapability
from pytest_cirque.capabilities.model.thread import Thread
from pytest_cirque.capabilities.model.traffic_control import TrafficControl, drop_probability
from pytest_cirque.capabilities.model.weave import DEFAULT_DAEMON, DEFAULT_TARGET, Weave
from pytest_cirque.capabilities.model.wifi import WiFi
from pytest_cirque.capabilities.model.xvnc import XVNC
from pytest_cirque.capabilities.runtime import xvnc as xvnc_module
from pytest_cirque.capabilities.runtime.base import Driver, driver_for
from pytest_cirque.core.errors import NodeError, SpecError, WaitTimeout

WHERE = "home.yaml:3 node 'sensor'"


def build(name: str, params: Any = None):
    return lookup(name, WHERE).from_params(params, WHERE)


def driven(name: str, params: Any = None) -> Driver[Any]:
    """The runtime driver of a capability built from these parameters."""
    return driver_for(build(name, params))


def configured(capability) -> ContainerConfig:
    config = ContainerConfig()
    capability.configure(config, "sensor")
    return config


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(WHERE)
    return message


# --- registry ---------------------------------------------------------------------------


def test_every_capability_is_registered_and_found_case_insensitively():
    assert {cls.name for cls in REGISTRY.values()} >= {
        "Interactive",
        "Mount",
        "LanAccess",
        "TrafficControl",
        "Weave",
        "XVNC",
        "WiFi",
        "Thread",
    }
    assert lookup("xvnc", WHERE) is XVNC
    assert lookup("Xvnc", WHERE) is XVNC  # Cirque's spelling
    assert lookup("lanaccess", WHERE) is LanAccess


def test_unknown_capability_lists_the_known_ones():
    with pytest.raises(SpecError) as error:
        lookup("Bluetooth", WHERE)
    message = one_line(error)
    assert "unknown capability 'Bluetooth'" in message
    for known in ("Interactive", "Mount", "LanAccess", "TrafficControl", "Weave", "XVNC"):
        assert known in message


def test_parameters_must_be_a_mapping():
    with pytest.raises(SpecError) as error:
        build("TrafficControl", [10, 5])
    assert "must be a mapping" in one_line(error)


def test_a_capability_without_parameters_refuses_some():
    with pytest.raises(SpecError) as error:
        build("LanAccess", {"subnet": "10.0.0.0/24"})
    assert "takes no parameters (got subnet)" in one_line(error)


def test_unknown_field_is_refused_with_the_known_ones():
    with pytest.raises(SpecError) as error:
        build("TrafficControl", {"latency": 10})
    message = one_line(error)
    assert "unknown field(s) latency" in message
    assert "latencyMs" in message


# --- Interactive, LanAccess --------------------------------------------------------------


def test_interactive_opens_stdin_with_a_tty():
    config = configured(build("Interactive"))
    assert config.stdin_open and config.tty


def test_shell_command_attaches_a_shell_to_the_container():
    assert shell_command("cirque-r1-main-h1-sensor") == [
        "docker",
        "exec",
        "-it",
        "cirque-r1-main-h1-sensor",
        "/bin/sh",
    ]
    interactive = build("Interactive", {"shell": "/bin/bash"})
    assert isinstance(interactive, Interactive)
    assert shell_command("c1", interactive.shell)[-1] == "/bin/bash"


def test_lan_access_puts_the_node_on_the_lan_access_segment():
    assert ContainerConfig().lan_segment == "lan"
    assert configured(build("LanAccess")).lan_segment == "lan-access"


# --- Mount -------------------------------------------------------------------------------


def test_mount_single_and_read_only(tmp_path):
    mount = build("Mount", {"source": str(tmp_path), "target": "/data", "read_only": True})
    assert configured(mount).mounts == [Mount(str(tmp_path), "/data", read_only=True)]


def test_mount_accepts_cirques_mount_pairs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b.txt").write_text("x")
    params = MountCapability.params_from_cirque(
        {"type": "x", "mount_pairs": [[str(tmp_path / "a"), "/a"], (str(tmp_path / "b.txt"), "/b")]}
    )
    mount = build("Mount", params)
    assert configured(mount).mounts == [
        Mount(str(tmp_path / "a"), "/a"),
        Mount(str(tmp_path / "b.txt"), "/b"),
    ]


def test_mount_list_of_mappings(tmp_path):
    mount = build(
        "Mount",
        {"mounts": [{"source": str(tmp_path), "target": "/x", "read_only": True}]},
    )
    assert mount.describe()["mounts"] == [
        {"source": str(tmp_path), "target": "/x", "read_only": True}
    ]


def test_mount_refuses_a_missing_host_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SpecError) as error:
        build("Mount", {"mount_pairs": [[str(missing), "/data"]]})
    message = one_line(error)
    assert "mount_pairs[0].source" in message
    assert f"{missing!s}' does not exist" in message


def test_mount_refuses_a_relative_host_path(tmp_path):
    with pytest.raises(SpecError) as error:
        build("Mount", {"source": "data/config", "target": "/data"})
    message = one_line(error)
    assert "'source'" in message and "relative" in message and "absolute" in message


def test_mount_refuses_a_relative_target(tmp_path):
    with pytest.raises(SpecError) as error:
        build("Mount", {"source": str(tmp_path), "target": "data"})
    message = one_line(error)
    assert "'target'" in message and "relative" in message and "'/data'" in message


def test_mount_needs_something_to_mount():
    with pytest.raises(SpecError) as error:
        build("Mount", {})
    assert "at least one mount" in one_line(error)


def test_mount_refuses_a_target_given_twice(tmp_path):
    with pytest.raises(SpecError) as error:
        build("Mount", {"mount_pairs": [[str(tmp_path), "/d"], [str(tmp_path), "/d/"]]})
    assert "on /d" in one_line(error)


def test_mount_refuses_a_malformed_pair(tmp_path):
    with pytest.raises(SpecError) as error:
        build("Mount", {"mount_pairs": [[str(tmp_path)]]})
    assert "must be [host_path, node_path]" in one_line(error)


# --- TrafficControl ----------------------------------------------------------------------


def test_traffic_control_negative_latency_is_refused():
    with pytest.raises(SpecError) as error:
        build("TrafficControl", {"latencyMs": -5})
    message = one_line(error)
    assert "'latencyMs'" in message and ">= 0" in message and "-5" in message


def test_traffic_control_loss_over_100_is_refused():
    with pytest.raises(SpecError) as error:
        build("TrafficControl", {"loss": 150})
    message = one_line(error)
    assert "'loss'" in message and "<= 100" in message


@pytest.mark.parametrize(
    ("params", "field_name", "problem"),
    [
        ({"loss": -1}, "loss", ">= 0"),
        ({"loss": "10%"}, "loss", "must be a number"),
        ({"loss": True}, "loss", "must be a number"),
        ({"loss": float("nan")}, "loss", "finite"),
        ({"rateKbit": -1}, "rateKbit", ">= 0"),
        ({"rateKbit": 2}, "rateKbit", "at least 8"),
        ({"jitterMs": -1}, "jitterMs", ">= 0"),
        ({"loss": 1, "interface": ""}, "interface", "non-empty"),
    ],
)
def test_traffic_control_bad_values(params, field_name, problem):
    with pytest.raises(SpecError) as error:
        build("TrafficControl", params)
    message = one_line(error)
    assert f"'{field_name}'" in message and problem in message


def test_traffic_control_jitter_needs_latency():
    with pytest.raises(SpecError) as error:
        build("TrafficControl", {"jitterMs": 5})
    assert "needs latencyMs" in one_line(error)


def test_latency_and_jitter_are_taken_on_any_kernel():
    tc = build(
        "TrafficControl",
        TrafficControl.params_from_cirque(
            {"traffic_control": {"latencyMs": 20, "jitterMs": 5, "loss": 5}}
        ),
    )
    assert (tc.latency_ms, tc.jitter_ms, tc.loss) == (20, 5, 5)


def test_loss_is_split_evenly_over_both_directions():
    for percent in (1, 10, 50, 99):
        p = drop_probability(percent)
        round_trip_loss = 1 - (1 - p) ** 2
        assert math.isclose(round_trip_loss, percent / 100)


def test_everything_applies_to_what_the_node_sends_and_loss_also_to_what_it_receives():
    tc = build("TrafficControl", {"latencyMs": 20, "jitterMs": 5, "loss": 50, "rateKbit": 512})
    drop = drop_probability(50)
    assert tc.impairments("sensor") == {
        "sensor": {"loss": drop, "latency_ms": 20, "jitter_ms": 5, "rate_kbit": 512},
        "sensor.lan": {"loss": drop},
    }
    unlimited = build("TrafficControl", {"latencyMs": 20}).impairments("sensor")["sensor"]
    assert unlimited["rate_kbit"] is None and unlimited["loss"] == 0


@dataclass
class RecordingNode:
    """Stands in for a running node: records what a capability asks of it."""

    name: str = "sensor"
    container_id: str = "c0ffee"
    ip: str | None = "10.1.2.3"
    scripts: list[str] = field(default_factory=list)

    sidecars: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    lan: RecordingMedium | None = None

    def run_netadmin(self, script: str, timeout: float = 30) -> Any:
        self.scripts.append(script)

    def medium(self, kind: str) -> RecordingMedium:
        assert kind == "lan"
        if self.lan is None:
            self.lan = RecordingMedium()
        return self.lan

    def start_sidecar(self, role: str, image: str, **options: Any) -> str:
        self.events.append(f"start {role}")
        self.sidecars[role] = {"image": image, **options}
        return role

    def sidecar_exec(self, role: str, cmd: Any, timeout: float = 30) -> Any:
        stdout = "41234\n" if role == "vnc-forward" else ""
        return Result(0, stdout, "")

    def remove_sidecar(self, role: str) -> None:
        self.events.append(f"remove {role}")
        self.sidecars.pop(role, None)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class RecordingMedium:
    """Stands in for the home's LAN medium: records attach, set_node and detach."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    attached: set[str] = field(default_factory=set)

    def attach(self, node: Any, endpoint: str, **options: Any) -> None:
        self.calls.append(("attach", node, endpoint, options))
        self.attached.add(endpoint)

    def set_node(self, endpoint: str, **impairment: Any) -> None:
        self.calls.append(("set_node", endpoint, impairment))

    def detach(self, endpoint: str) -> None:
        self.calls.append(("detach", endpoint))
        if endpoint not in self.attached:
            raise SpecError(f"medium: no endpoint {endpoint!r}")
        self.attached.discard(endpoint)


def test_traffic_control_wires_the_node_through_the_lan_medium_only_when_it_has_work():
    node = RecordingNode()
    driven("TrafficControl", {"loss": 0, "latencyMs": 0}).start(node)
    assert node.lan is None and node.scripts == []
    tc = driven("TrafficControl", {"latencyMs": 50})
    tc.start(node)
    assert node.lan.calls == [
        ("attach", "c0ffee", "sensor", {"ifname": "eth0", "wired": True}),
        ("set_node", "sensor", tc.capability.impairments("sensor")["sensor"]),
        ("set_node", "sensor.lan", {"loss": 0.0}),
    ]
    assert node.scripts == []  # no qdisc, no iptables: the medium does it all


def test_traffic_control_wires_the_new_namespace_after_a_restart():
    node = RecordingNode()
    tc = driven("TrafficControl", {"loss": 3, "interface": "eth1"})
    tc.start(node)
    node.lan.attached.clear()  # the relay dropped the old pair when its namespace went
    tc.restarted(node)
    assert [call[0] for call in node.lan.calls] == [
        "attach", "set_node", "set_node", "detach", "attach", "set_node", "set_node"
    ]
    assert node.lan.calls[4][3] == {"ifname": "eth1", "wired": True}


def test_traffic_control_stop_detaches_and_never_raises_for_a_gone_pair():
    node = RecordingNode()
    tc = driven("TrafficControl", {"rateKbit": 64})
    tc.start(node)
    tc.stop(node)
    assert node.lan.calls[-1] == ("detach", "sensor") and not node.lan.attached
    tc.stop(node)  # gone already: nothing to undo, nothing raised
    driven("TrafficControl", {}).stop(RecordingNode())  # never started: no medium asked for


# --- Weave -------------------------------------------------------------------------------


def test_weave_mounts_the_file_at_cirques_path_and_names_the_daemon(tmp_path):
    cert = tmp_path / "device.config"
    cert.write_text("secret")
    weave = build("Weave", {"file": str(cert)})
    config = configured(weave)
    assert config.mounts == [Mount(str(cert), DEFAULT_TARGET)]
    assert config.environment["CIRQUE_CREDENTIALS_FILE"] == DEFAULT_TARGET
    assert config.environment["CIRQUE_DAEMON"] == DEFAULT_DAEMON == "nldaemon"


def test_weave_from_cirque_keys_with_own_target_and_daemon(tmp_path):
    cert = tmp_path / "weave.conf"
    cert.write_text("x")
    params = Weave.params_from_cirque(
        {"weave_config_file": str(cert), "weave_config_target_path": "/etc/weave.conf"}
    )
    weave = build("Weave", {**params, "daemon": "weaved", "read_only": True})
    config = configured(weave)
    assert config.mounts == [Mount(str(cert), "/etc/weave.conf", read_only=True)]
    assert config.environment["CIRQUE_DAEMON"] == "weaved"


def test_weave_refuses_a_missing_file(tmp_path):
    with pytest.raises(SpecError) as error:
        build("Weave", {"file": str(tmp_path / "absent.pem")})
    message = one_line(error)
    assert "'file'" in message and "does not exist" in message


def test_weave_needs_a_file():
    with pytest.raises(SpecError) as error:
        build("Weave", {"daemon": "nldaemon"})
    assert "'file': is required" in one_line(error)


def test_weave_refuses_a_relative_target(tmp_path):
    cert = tmp_path / "c"
    cert.write_text("x")
    with pytest.raises(SpecError) as error:
        build("Weave", {"file": str(cert), "target": "certs/c"})
    assert "relative" in one_line(error)


def test_weave_file_with_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.pem").write_text("x")
    weave = build("Weave", {"file": "~/c.pem"})
    assert weave.file == os.path.join(str(tmp_path), "c.pem")


# --- XVNC --------------------------------------------------------------------------------


def test_xvnc_gives_the_node_its_display():
    xvnc = build("XVNC", XVNC.params_from_cirque({"display_id": 3, "xvnc_localhost": True}))
    assert configured(xvnc).environment["DISPLAY"] == ":3"
    assert xvnc.describe() == {
        "name": "XVNC",
        "display": 3,
        "geometry": "1280x800",
        "depth": 24,
        "password": True,
    }


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"display": 100}, "<= 99"),
        ({"display": -1}, ">= 0"),
        ({"geometry": "big"}, "WIDTHxHEIGHT"),
        ({"geometry": "10x10"}, "WIDTHxHEIGHT"),
        ({"depth": 32}, "8, 16 or 24"),
        ({"localhost": "yes"}, "true or false"),
        ({"password": "hunter2"}, "must be true (a random password per node"),
        ({"password": 0}, "or false (no password"),
        ({"pasword": False}, "unknown field(s) pasword"),
    ],
)
def test_xvnc_bad_values(params, problem):
    with pytest.raises(SpecError) as error:
        build("XVNC", params)
    assert problem in one_line(error)


# --- radio slots -------------------------------------------------------------------------


def test_the_wifi_station_declares_its_interface_and_control_socket():
    assert (WiFi.medium, WiFi.interface, WiFi.control_socket) == (
        "wifi",
        "wlan0",
        "/var/run/wpa_supplicant/wlan0",
    )


def test_a_thread_node_gets_wpan0_its_daemon_socket_and_openthread_on_its_path():
    assert (Thread.medium, Thread.interface, Thread.control_socket) == (
        "thread",
        "wpan0",
        "/run/openthread-wpan0.sock",
    )
    thread = build(Thread.name)
    assert (thread.commissioned, thread.mode, thread.dataset) == (True, "rdn", {})
    config = configured(thread)
    assert config.cap_add == ["NET_ADMIN"]
    assert config.devices == ["/dev/net/tun:/dev/net/tun:rwm"]
    assert config.home_volumes == {"thread": ("/opt/cirque-thread", True)}
    assert config.environment["PATH"].startswith("/opt/cirque-thread/bin:")
    assert driven(Thread.name).name == "Thread"
    assert type(driven(Thread.name)).__name__ == "ThreadDriver"


def test_xvnc_sidecars_share_the_node_namespace_and_publish_on_loopback():
    node = RecordingNode()
    xvnc = driven("XVNC", {"display": 2})
    xvnc.start(node)
    display, forward = node.sidecars["xvnc"], node.sidecars["vnc-forward"]
    assert display["image"] == forward["image"] == "xvnc"
    assert display["network_mode"] == "container:c0ffee"
    assert display["command"][:2] == ["cirque-display", "2"]
    assert forward["network_mode"] == "host"
    assert forward["command"][1:4] == ["127.0.0.1", "10.1.2.3", "5902"]
    assert xvnc.vnc_address(node) == "127.0.0.1:41234"
    assert xvnc.describe()["vnc"] == "127.0.0.1:41234"


def test_xvnc_starts_its_sidecars_afresh_after_a_restart():
    node = RecordingNode()
    xvnc = driven("XVNC")
    xvnc.start(node)
    node.ip = "10.1.2.9"
    xvnc.restarted(node)
    assert node.events == [
        "start xvnc",
        "start vnc-forward",
        "remove vnc-forward",
        "remove xvnc",
        "start xvnc",
        "start vnc-forward",
    ]
    assert node.sidecars["vnc-forward"]["command"][2] == "10.1.2.9"


def test_xvnc_password_reaches_the_display_sidecar_off_its_command_line():
    node = RecordingNode()
    xvnc = driven("XVNC")
    xvnc.start(node)
    display = node.sidecars["xvnc"]
    password = xvnc.password
    assert password and len(password) == 8 and password.isalnum()
    assert display["environment"] == {"CIRQUE_VNC_PASSWORD": password}
    assert display["command"][3] == "password"
    for role, sidecar in node.sidecars.items():
        assert not any(password in arg for arg in sidecar["command"]), role
    assert "CIRQUE_VNC_PASSWORD" not in node.sidecars["vnc-forward"].get("environment", {})


def test_xvnc_describe_gives_the_password_and_each_node_has_its_own():
    first, second = driven("XVNC"), driven("XVNC")
    first.start(RecordingNode())
    assert first.describe()["vnc_password"] == first.password
    assert first.describe()["vnc"] == "127.0.0.1:41234"
    assert first.password != second.password


def test_xvnc_keeps_the_password_across_a_restart():
    node = RecordingNode()
    xvnc = driven("XVNC")
    xvnc.start(node)
    password = xvnc.password
    xvnc.restarted(node)
    assert xvnc.password == password
    assert node.sidecars["xvnc"]["environment"] == {"CIRQUE_VNC_PASSWORD": password}


def test_xvnc_password_false_asks_for_none():
    node = RecordingNode()
    xvnc = driven("XVNC", {"password": False})
    xvnc.start(node)
    assert xvnc.password is None
    assert not node.sidecars["xvnc"].get("environment")
    assert node.sidecars["xvnc"]["command"][3] == "none"
    assert "vnc_password" not in xvnc.describe()
    assert xvnc.describe()["password"] is False


class DisplayThatNeverComesUp(RecordingNode):
    def sidecar_exec(self, role: str, cmd: Any, timeout: float = 30) -> Any:
        if "cat /tmp/cirque-display.log" in cmd[-1]:
            return Result(0, "Fatal server error: no screens found\n", "")
        return Result(1, "", "unable to open display :0")


def test_xvnc_display_that_never_comes_up_is_a_wait_timeout_with_its_log(monkeypatch):
    monkeypatch.setattr(xvnc_module, "READY_TIMEOUT", 0.2)
    with pytest.raises(WaitTimeout) as error:
        driven("XVNC").start(DisplayThatNeverComesUp())
    first_line, *_ = str(error.value).splitlines()
    assert first_line.startswith("waited 0.2 s for node sensor: XVNC X display")
    assert "unable to open display :0" in first_line
    assert "no screens found" in error.value.log


def test_xvnc_needs_the_node_lan_address():
    with pytest.raises(NodeError, match="needs the node's LAN address"):
        driven("XVNC").start(RecordingNode(ip=None))


# --- bad input that used to pass or fail late ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("TrafficControl", {"latencyMs": 1e12}, "field 'latencyMs': must be <= 60000"),
        ("TrafficControl", {"jitterMs": 1e9, "latencyMs": 5}, "field 'jitterMs': must be <= 60000"),
        ("TrafficControl", {"rateKbit": 1e15}, "field 'rateKbit': must be <= 1e+07"),
        (
            "WiFiAP",
            {"ssid": "home", "channel": 15},
            "field 'channel': channel 15 is not a WiFi channel: use 1..14 (2.4 GHz)",
        ),
        (
            "WiFiAP",
            {"ssid": "home", "subnet": "127.0.0.0/24"},
            "field 'subnet': 127.0.0.0/24 is not a private network for a home's WiFi; give one "
            "in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
        ),
        ("WiFiAP", {"ssid": "home", "subnet": "169.254.3.0/24"}, "is not a private network"),
        (
            "WiFiAP",
            {"ssid": "home", "chanel": 6},
            "unknown field(s) chanel (did you mean channel?)",
        ),
        (
            "Mount",
            {"source": "/", "target": "/host"},
            "field 'source': mounting the host's root / gives the node the whole host",
        ),
        (
            "Mount",
            {"source": "/tmp", "target": "/"},
            "field 'target': '/' would replace the node's own root; mount under another path",
        ),
        ("Mount", {"source": "/tmp", "target": "/proc"}, "field 'target': '/proc' would replace"),
    ],
)
def test_values_out_of_any_sense_are_refused_in_one_line(name, params, expected):
    with pytest.raises(SpecError) as error:
        build(name, params)
    assert expected in one_line(error)


def test_a_wifi_channel_of_5ghz_is_accepted():
    assert build("WiFiAP", {"ssid": "home", "channel": 149}).channel == 149


@pytest.fixture
def docker_socket(tmp_path):
    """A Unix socket named like the engine's, standing in for it."""
    import socket

    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield str(path)
    server.close()


def test_the_docker_socket_is_mounted_only_when_asked_for_by_name(docker_socket):
    with pytest.raises(SpecError) as error:
        build("Mount", {"source": docker_socket, "target": "/var/run/docker.sock"})
    message = one_line(error)
    assert "is a Docker socket, which lets the node run anything as root on the host" in message
    assert "set allow_host_socket: true" in message
    allowed = build(
        "Mount",
        {"source": docker_socket, "target": "/var/run/docker.sock", "allow_host_socket": True},
    )
    assert [m.source for m in allowed.mounts] == [docker_socket]
