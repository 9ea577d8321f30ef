"""Homes on real Docker: creation, queries, add/remove nodes, capability lifecycle, keep,
teardown that always completes, and bad input that leaves nothing behind."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest

from pytest_cirque.capabilities.model import base
from pytest_cirque.capabilities.model.base import Capability, ContainerConfig, Mount
from pytest_cirque.capabilities.runtime.base import DRIVERS, Driver, NodeRuntime
from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.errors import (
    CirqueError,
    DockerUnavailable,
    ImageError,
    NodeError,
    SpecError,
)
from pytest_cirque.homes import cleanup
from pytest_cirque.homes.session import Cirque

from .conftest import run_objects

EVENTS: list[str] = []


class Recorder(Capability):
    """Records its lifecycle, starts a sidecar, and runs a NET_ADMIN script."""

    name = "Recorder"

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Capability:
        return cls(**dict(params or {}))

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        EVENTS.append(f"configure {node_name}")
        config.environment["RECORDED"] = "yes"
        config.labels["recorder"] = "on"

        if self.params.get("mount"):
            config.cap_add.append("NET_ADMIN")
            config.devices.append("/dev/net/tun")
            config.sysctls["net.ipv4.ip_forward"] = "1"
            config.mounts.append(Mount(self.params["mount"], "/mnt/host", read_only=True))
            config.stdin_open = config.tty = True



class RecorderDriver(Driver[Recorder]):
    """The Recorder's effects on a running node."""

    def start(self, node: NodeRuntime) -> None:
        EVENTS.append(f"start {node.name}")
        params = self.capability.params
        if params.get("fail_start"):
            raise RuntimeError("refusing to start")
        if params.get("sidecar"):
            node.start_sidecar("helper", "base", share_network=True)
        if params.get("netadmin"):
            node.run_netadmin("ip link set dev lo mtu 1400")

    def stop(self, node: NodeRuntime) -> None:
        EVENTS.append(f"stop {node.name}")
        if self.capability.params.get("fail_stop"):
            raise RuntimeError("stop went wrong")
        if self.capability.params.get("interrupt_stop"):
            raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def recorder() -> Iterator[None]:
    base.lookup("LanAccess", "import")
    base.REGISTRY["recorder"] = Recorder
    DRIVERS[Recorder] = RecorderDriver
    EVENTS.clear()
    yield
    base.REGISTRY.pop("recorder", None)
    DRIVERS.pop(Recorder, None)


def test_home_of_three_nodes(service: Cirque) -> None:
    home = service.create_home({"hub": {}, "lamp": {"env": {"MODE": "eco"}}, "plug": None})
    assert home in service.homes()
    assert home.name.startswith(f"cirque-{service.run_id}-{service.worker}-")
    assert list(home.nodes) == ["hub", "lamp", "plug"]
    assert home["lamp"] is home.nodes["lamp"]
    assert home["lamp"].exec("echo $MODE").stdout == "eco\n"
    info = home.describe()
    assert info["state"] == "running"
    assert {n["state"] for n in info["nodes"].values()} == {"running"}
    assert all(n["ip"] and n["image"] for n in info["nodes"].values())
    assert len(info["networks"]) == 1
    text = home.topology()
    assert "node hub: running" in text and home.name in text
    names = run_objects(service)
    assert f"container:{home.name}.hub" in names and f"network:{home.name}.lan" in names
    home.destroy()
    home.destroy()  # idempotent
    assert home.state == "destroyed" and home not in service.homes()
    assert run_objects(service) == []
    with pytest.raises(KeyError, match="no node 'nope'"):
        home["nope"]


def test_home_from_yaml_file_and_context_manager(service: Cirque, tmp_path: Path) -> None:
    spec = tmp_path / "home.yaml"
    spec.write_text("a: {}\nb:\n  capabilities: [LanAccess]\n")
    with service.create_home(spec, name="yaml") as home:
        assert home.name.endswith("-yaml")
        assert set(home.nodes) == {"a", "b"}
    assert home.state == "destroyed"
    assert run_objects(service) == []


def test_home_names_are_unique(service: Cirque) -> None:
    first = service.create_home({"a": {}}, name="same")
    second = service.create_home({"a": {}}, name="same")
    assert first.name != second.name


@pytest.mark.parametrize("name", ["x" * 400, "a/b", "has space"])
def test_a_bad_home_name_creates_nothing(service: Cirque, name: str) -> None:
    with pytest.raises(SpecError, match=r"^invalid home name .*; use at most 40 letters"):
        service.create_home({"a": {}}, name=name)
    assert run_objects(service) == []


def test_add_and_remove_nodes_while_running(service: Cirque) -> None:
    home = service.create_home({"a": {}})
    added = home.add_node("b", {"capabilities": ["LanAccess"]})
    assert added is home["b"] and added.state == "running"
    assert [s for s in run_objects(service) if s.endswith(".lan-access")]
    with pytest.raises(SpecError, match="already exists"):
        home.add_node("a", {})
    with pytest.raises(SpecError, match="unknown field"):
        home.add_node("c", {"colour": "red"})
    assert "c" not in home.nodes
    home.remove_node("a")
    assert list(home.nodes) == ["b"]
    assert not [s for s in run_objects(service) if s == f"container:{home.name}.a"]
    home.destroy()


def test_capability_lifecycle_order_sidecar_and_netadmin(service: Cirque) -> None:
    home = service.create_home(
        {"n1": {"capabilities": [{"Recorder": {"sidecar": True, "netadmin": True}}]}}
    )
    node = home["n1"]
    assert node.exec("echo $RECORDED").stdout == "yes\n"
    assert "mtu 1400" in node.exec("cat /sys/class/net/lo/mtu; ip link show lo").stdout
    assert f"container:{home.name}.n1.helper" in run_objects(service)
    labels = service.client.api.inspect_container(node.container_id)["Config"]["Labels"]
    assert labels["io.cirque.recorder"] == "on" and labels[identity.NODE] == "n1"
    home.destroy()
    assert EVENTS == ["configure n1", "start n1", "stop n1"]
    assert run_objects(service) == []


def test_container_config_from_capabilities_is_honoured(service: Cirque, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("from the host")
    home = service.create_home({"n": {"capabilities": [{"Recorder": {"mount": str(tmp_path)}}]}})
    node = home["n"]
    assert node.exec("cat /mnt/host/hello.txt").stdout == "from the host"
    assert node.exec("touch /mnt/host/new").exit_code != 0  # read-only
    assert node.exec("cat /proc/sys/net/ipv4/ip_forward").stdout == "1\n"
    assert node.exec("test -c /dev/net/tun").exit_code == 0
    assert node.exec("ip link set dev lo mtu 1300").exit_code == 0  # NET_ADMIN granted
    assert home.add_node("plain", {}).exec("ip link set dev lo mtu 1300").exit_code != 0
    config = service.client.api.inspect_container(node.container_id)
    assert "NET_ADMIN" in config["HostConfig"]["CapAdd"]
    assert config["Config"]["Tty"] and config["Config"]["OpenStdin"]


def test_failed_capability_start_removes_everything(service: Cirque) -> None:
    spec = {"ok": {}, "bad": {"capabilities": [{"Recorder": {"fail_start": True}}]}}
    with pytest.raises(NodeError) as exc:
        service.create_home(spec)
    assert "capability Recorder failed to start" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert run_objects(service) == []
    assert service.homes() == []


def test_teardown_completes_and_reports_in_one_line(service: Cirque) -> None:
    home = service.create_home(
        {"a": {"capabilities": [{"Recorder": {"fail_stop": True}}]}, "b": {}}
    )
    with pytest.raises(CirqueError) as exc:
        home.destroy()
    assert "stop went wrong" in str(exc.value) and "\n" not in str(exc.value)
    assert run_objects(service) == []
    assert home.state == "destroyed"


@pytest.mark.parametrize("nodes", [1, 3])
def test_ctrl_c_during_teardown_still_removes_everything(service: Cirque, nodes: int) -> None:
    spec: dict[str, Any] = {"a": {"capabilities": [{"Recorder": {"interrupt_stop": True}}]}}
    spec.update({f"n{i}": {"capabilities": ["Recorder"]} for i in range(1, nodes)})
    home = service.create_home(spec)
    with pytest.raises(KeyboardInterrupt):
        home.destroy()
    assert run_objects(service) == []
    assert home.state == "destroyed" and home.nodes == {}
    assert sorted(e for e in EVENTS if e.startswith("stop")) == sorted(f"stop {n}" for n in spec)


def test_keep_survives_close_and_reap_until_down(service: Cirque) -> None:
    home = service.create_home({"a": {}}, name="keepme")
    try:
        how = home.keep()
        assert f"cirque down {home.name}" in how
        service.close()
        assert f"container:{home.name}.a" in run_objects(service)
        cleanup.reap(service.client)
        assert f"container:{home.name}.a" in run_objects(service)
        assert cleanup.list_homes(service.client)[home.name]["kept"] is True
        removed = cleanup.remove_home(service.client, home.name)
        assert f"{home.name}.a" in removed and f"{home.name}._kept" in removed
        assert run_objects(service) == []
    finally:
        cleanup.remove_home(service.client, home.name)  # a kept home outlives a failure


# ---- bad input: one line, nothing created, nothing left behind -------------------------


@pytest.mark.parametrize(
    ("spec", "error", "expected"),
    [
        ({"a": {}, "b": {"capabilities": ["Teleport"]}}, SpecError, "unknown capability"),
        ({"a": {"capabilities": [{"TrafficControl": {"loss": 101}}]}}, SpecError, "loss"),
        ({"a": {"capabilities": [{"TrafficControl": {"latencyMs": -5}}]}}, SpecError, "latency"),
        (
            {"a": {"capabilities": [{"Mount": {"source": "/no/such", "target": "/x"}}]}},
            SpecError,
            "/no/such",
        ),
        ({"a": {}, "b": {"image": "no-such-image-cirque:never"}}, ImageError, "no-such-image"),
        ({"a": {"docker_network": "overlay"}}, SpecError, "docker_network"),
        ({}, SpecError, "the home spec has no nodes"),
        ({"a": {"capabilities": "LanAccess"}}, SpecError, "write [LanAccess]"),
        ({"a": {"env": ["A=1"]}}, SpecError, "field 'env' must be a mapping"),
        (
            {"a": {"capabilities": [{"TrafficControl": {"latencyMs": 1e12}}]}},
            SpecError,
            "'latencyMs': must be <= 60000",
        ),
        (
            {"a": {"capabilities": [{"TrafficControl": {"rateKbit": 1e15}}]}},
            SpecError,
            "'rateKbit': must be <=",
        ),
        (
            {"a": {"capabilities": [{"Mount": {"source": "/", "target": "/host"}}]}},
            SpecError,
            "mounting the host's root / gives the node the whole host",
        ),
        (
            {"a": {"capabilities": [{"Mount": {"source": "/tmp", "target": "/"}}]}},
            SpecError,
            "would replace the node's own root",
        ),
        (
            {"ap": {"capabilities": [{"WiFiAP": {"ssid": "h", "subnet": "127.0.0.0/24"}}]}},
            SpecError,
            "is not a private network",
        ),
        (
            {"ap": {"capabilities": [{"WiFiAP": {"ssid": "h", "channel": 15}}]}},
            SpecError,
            "channel 15 is not a WiFi channel",
        ),
        ({f"n{i}": {} for i in range(300)}, SpecError, "300 nodes on the lan segment"),
    ],
)
def test_bad_spec_creates_nothing(
    service: Cirque, spec: dict[str, Any], error: type[Exception], expected: str
) -> None:
    before = run_objects(service)
    with pytest.raises(error) as exc:
        service.create_home(spec)
    assert expected in str(exc.value) and "\n" not in str(exc.value)
    assert run_objects(service) == before == []
    assert service.homes() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: {}\nb: {}\na: {}\n", "home.yaml:3: duplicate key 'a'"),
        ("a: {}\nb: [unclosed\n", "home.yaml:3: invalid YAML"),
    ],
)
def test_bad_yaml_creates_nothing(
    service: Cirque, tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "home.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=expected):
        service.create_home(path)
    assert run_objects(service) == []


def test_docker_unreachable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock", version="1.41")
    with pytest.raises(DockerUnavailable) as exc:
        Cirque(client)
    assert "\n" not in str(exc.value) and "Docker engine unreachable" in str(exc.value)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerUnavailable) as exc:
        Cirque()
    assert "\n" not in str(exc.value) and "no-docker.sock" in str(exc.value)


def test_parallel_workers_never_collide(pytester: pytest.Pytester) -> None:
    """Eight tests on four xdist workers, each making homes of the same names."""
    run_id = identity.new_run_id()
    pytester.makepyfile(
        test_many=textwrap.dedent(
            f"""
            import os
            import pytest
            from pytest_cirque.homes.session import Cirque

            @pytest.fixture(scope="session")
            def svc():
                s = Cirque(run_id="{run_id}", worker=os.environ.get("PYTEST_XDIST_WORKER"))
                yield s
                s.close()

            @pytest.mark.parametrize("i", range(8))
            def test_home(svc, i):
                home = svc.create_home({{"a": {{}}, "b": {{"capabilities": ["LanAccess"]}}}},
                                       name="same")
                assert home["b"].exec("ping -c1 -W2 " + home["b"].network.gateway).exit_code == 0
                home.destroy()
            """
        )
    )
    result = pytester.runpytest_subprocess("-n", "4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    client = docker.from_env()
    try:
        left = Backend(client).find([f"{identity.RUN}={run_id}"])
    finally:
        client.close()
    assert left == []
