"""Home and Node against a fake backend: the order things are made and undone, what a
failure half-way leaves, and what a node asks of its context. No Docker here: the
integration tests run the same paths against the real engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_cirque.capabilities.model import base
from pytest_cirque.capabilities.model.base import Capability, ContainerConfig
from pytest_cirque.capabilities.runtime.base import DRIVERS, Driver, NodeRuntime
from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import ExecResult
from pytest_cirque.core.errors import CirqueError, NodeError, SpecError, WaitTimeout
from pytest_cirque.homes.home import Home, HomeContext, Images
from pytest_cirque.homes.node import listening_ports
from pytest_cirque.spec import HomeSpec


@dataclass
class FakeBackend:
    """Records what a home asks of Docker; containers "run" once started."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_create: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def used_subnets(self) -> list[str]:
        return []

    def create_network(self, name: str, **options: Any) -> str:
        self.calls.append(("create_network", name))
        return f"net-{name}"

    def remove_network(self, name_or_id: str) -> None:
        self.calls.append(("remove_network", name_or_id))

    def create_container(self, name: str, image: str, **options: Any) -> str:
        if self.fail_create and name.endswith(f".{self.fail_create}"):
            raise NodeError(f"cannot create {name}: the engine said no")
        container = f"c{next(self._ids)}"
        self.containers[container] = {"name": name, "image": image, "running": False, **options}
        self.calls.append(("create", name))
        return container

    def start(self, container: str) -> None:
        self.containers[container]["running"] = True
        self.calls.append(("start", self.containers[container]["name"]))

    def remove_container(self, container: str) -> None:
        self.calls.append(("remove", self.containers.pop(container)["name"]))

    def inspect(self, container: str) -> dict[str, Any] | None:
        info = self.containers.get(container)
        if info is None:
            return None
        status = "running" if info["running"] else "created"
        return {"State": {"Status": status, "Pid": 4242}, "NetworkSettings": {"Networks": {}}}

    def exec(self, container: str, cmd: Any, *, node: str = "", **options: Any) -> ExecResult:
        self.calls.append(("exec", self.containers[container]["name"]))
        return ExecResult(0, "", "", str(cmd), node)

    def wait(self, container: str, timeout: float) -> int:
        self.calls.append(("wait", self.containers[container]["name"]))
        return 0

    def split_logs(self, container: str) -> tuple[str, str]:
        return "", ""

    def logs(self, container: str, tail: int | str = 100) -> str:
        return f"recent log of {self.containers[container]['name']}\n"


EVENTS: list[str] = []


class Probe(Capability):
    """Records its driver's moments; ``fail`` makes its start raise."""

    name = "Probe"

    @classmethod
    def from_params(cls, params: Any, where: str) -> Capability:
        return cls(**dict(params or {}))

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.lan_segment = None  # no LAN: the fake needs no networks or segment guards
        config.environment["PROBED"] = "yes"


class ProbeDriver(Driver[Probe]):
    def start(self, node: NodeRuntime) -> None:
        EVENTS.append(f"start {node.name}")
        if self.capability.params.get("fail"):
            raise RuntimeError("probe refused to start")
        self.started_on = node.name

    def stop(self, node: NodeRuntime) -> None:
        EVENTS.append(f"stop {node.name}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "started_on": getattr(self, "started_on", None)}


@pytest.fixture(autouse=True)
def probe() -> Iterator[None]:
    base.lookup("LanAccess", "import")  # the registry knows the stock capabilities first
    base.REGISTRY["probe"] = Probe
    DRIVERS[Probe] = ProbeDriver
    EVENTS.clear()
    yield
    base.REGISTRY.pop("probe", None)
    DRIVERS.pop(Probe, None)


def make_home(backend: FakeBackend, spec: dict[str, Any]) -> tuple[Home, list[Home]]:
    destroyed: list[Home] = []
    context = HomeContext(
        backend=backend,  # type: ignore[arg-type]
        identity=identity.RunIdentity.create("run1", "gw0"),
        images=Images(lambda name: f"cirque/{name}:1", lambda reference: False),
        on_destroyed=destroyed.append,
        on_cleanup_problems=lambda home, errors: None,
    )
    return Home(context, "cirque-run1-gw0-h", HomeSpec.parse(spec)), destroyed


def test_a_home_builds_itself_and_is_removed_in_reverse() -> None:
    backend = FakeBackend()
    home, destroyed = make_home(backend, {"a": {"capabilities": ["Probe"]}, "b": {}})
    assert home.state == "creating" and not backend.calls
    assert home.build() is home and home.state == "running"
    created = [name for call, name in backend.calls if call == "create"]
    # b is on the home LAN: the home made its network, and b's segment guard came from a
    # helper in b's own namespace, started after b and gone before the home was handed over.
    helpers = [name for name in created if ".netadmin-" in name]
    assert len(created) == 3 and len(helpers) == 1
    assert set(created) - set(helpers) == {"cirque-run1-gw0-h.a", "cirque-run1-gw0-h.b"}
    helper = helpers[0]
    assert helper.startswith("cirque-run1-gw0-h.b.netadmin-")
    assert backend.calls.index(("start", "cirque-run1-gw0-h.b")) < backend.calls.index(
        ("start", helper)
    ) < backend.calls.index(("remove", helper))
    assert ("create_network", "cirque-run1-gw0-h.lan") in backend.calls
    made = backend.containers[home["a"].container_id]
    assert made["labels"][identity.HOME] == home.name
    assert made["labels"][identity.ROLE] == identity.ROLE_NODE
    assert made["environment"]["PROBED"] == "yes"
    assert EVENTS == ["start a"]
    assert home["a"].describe()["capabilities"] == [{"name": "Probe", "started_on": "a"}]

    home.destroy()
    assert EVENTS == ["start a", "stop a"]
    assert not backend.containers and home.state == "destroyed"
    assert backend.calls[-1] == ("remove_network", "net-cirque-run1-gw0-h.lan")
    assert destroyed == [home] and not home.nodes


def test_a_home_is_built_once() -> None:
    home, _ = make_home(FakeBackend(), {"a": {}})
    home.build()
    with pytest.raises(CirqueError, match="build a home only once"):
        home.build()


def test_a_failure_half_way_removes_everything_the_home_made() -> None:
    backend = FakeBackend()
    home, destroyed = make_home(
        backend, {"a": {"capabilities": ["Probe"]}, "b": {"capabilities": [{"Probe": {"fail": 1}}]}}
    )
    with pytest.raises(NodeError, match="capability Probe failed to start") as error:
        home.build()
    assert "probe refused to start" in str(error.value)
    assert not backend.containers, "every container the home made is gone"
    assert home.state == "destroyed" and destroyed == [home]
    assert "stop a" in EVENTS  # what started was stopped


def test_a_container_the_engine_refuses_leaves_nothing_behind() -> None:
    backend = FakeBackend(fail_create="b")
    home, _ = make_home(backend, {"a": {}, "b": {}, "c": {}})
    with pytest.raises(NodeError, match=r"cannot create cirque-run1-gw0-h\.b"):
        home.build()
    assert not backend.containers and home.state == "destroyed"


def test_a_node_asks_its_context_not_its_home() -> None:
    backend = FakeBackend()
    home, _ = make_home(backend, {"a": {"capabilities": ["Probe"]}})
    node = home.build()["a"]
    assert node.context.home_id == home.name
    assert not hasattr(node, "home")
    driver = node.driver(Probe)
    assert isinstance(driver, ProbeDriver) and driver.capability is node.capabilities[0]
    assert node.driver(base.lookup("LanAccess", "test")) is None


def test_a_failed_node_wait_says_what_it_waited_for_with_the_node_log() -> None:
    home, _ = make_home(FakeBackend(), {"a": {}})
    node = home.build()["a"]
    with pytest.raises(WaitTimeout) as error:
        node.wait_until(lambda: False, "the moon to rise", timeout=0.05)
    message = str(error.value)
    assert message.startswith("waited 0.05 s for the moon to rise (node a of home ")
    assert error.value.log == "recent log of cirque-run1-gw0-h.a\n"


def test_a_node_without_a_screen_says_which_capability_gives_one() -> None:
    home, _ = make_home(FakeBackend(), {"a": {}})
    with pytest.raises(NodeError, match="needs the XVNC capability"):
        home.build()["a"].screenshot()


def test_more_nodes_than_a_segment_holds_are_refused_before_anything_is_made() -> None:
    backend = FakeBackend()
    home, _ = make_home(backend, {f"n{i}": {} for i in range(300)})
    with pytest.raises(SpecError) as error:
        home.build()
    message = str(error.value)
    assert "300 nodes on the lan segment of the default network, which holds 253" in message
    assert "\n" not in message
    assert backend.calls == [] and not backend.containers


def test_nodes_on_other_segments_do_not_count_against_one_another() -> None:
    spec: dict[str, Any] = {f"a{i}": {} for i in range(200)}
    spec.update({f"b{i}": {"capabilities": ["LanAccess"]} for i in range(200)})
    home, _ = make_home(FakeBackend(), spec)
    assert len(home.build().nodes) == 400


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0A0D0002:D2A4 0A0D0001:0050 01 00000000:00000000 00:00000000 00000000     0
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A
"""


def test_listening_ports_are_read_from_the_kernel_tables() -> None:
    # 8080 and 53 listen on IPv4, 443 on IPv6; 53924 is an established connection.
    assert listening_ports(PROC_NET_TCP) == {8080, 53, 443}
    assert listening_ports("garbage\n\n") == set()
