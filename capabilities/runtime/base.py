"""What a capability does to a running node: the runtime half of the capability contract.

A ``Driver`` is made per node for each capability the node asked for (``driver_for``),
and lives as long as the node. Its moments mirror the node's lifecycle:

1. ``start``: once the container runs, act on it (rules in its network namespace,
   sidecars, files, an interface on a medium);
2. ``stop``: undo what ``start`` did that would outlive the container. Runs in reverse
   order and must not raise for a node that is already gone;
3. ``restarted``: the container started again, in a new network namespace, so what
   ``start`` set up there must be set up again.

What a running node got from a capability (an access point's subnet, a VNC address) is
held by its driver, not by the capability, which stays what was asked for. Drivers never
import docker: they reach the node through ``NodeRuntime``.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pytest_cirque.capabilities.model.base import Capability


class ExecResult(Protocol):
    exit_code: int
    stdout: str
    stderr: str


class NodeRuntime(Protocol):
    """What a driver may do to a running node (implemented by the home's Node)."""

    name: str
    #: The node's container id (sidecars join its namespaces with ``container:<id>``).
    container_id: str

    @property
    def ip(self) -> str | None:
        """The node's IPv4 address on the home LAN."""
        ...

    def exec(
        self, cmd: str | list[str], timeout: float = 30, check: bool = False, *, record: bool = True
    ) -> ExecResult:
        """Run a command inside the node (kept in its history unless ``record=False``)."""
        ...

    def run_netadmin(self, script: str, timeout: float = 30) -> ExecResult:
        """Run a shell script as root with NET_ADMIN in a short-lived helper container that
        shares the node's network namespace (iptables, tc, ip), so any node image works and
        the pytest process needs no privilege. Raises NodeError when the script fails."""
        ...

    def start_sidecar(self, role: str, image: str, **options: Any) -> str:
        """Start a labelled helper container owned by this node (removed with it); its id."""
        ...

    def sidecar_exec(self, role: str, cmd: str | list[str], timeout: float = 30) -> ExecResult:
        """Run a command in this node's sidecar of that role."""
        ...

    def remove_sidecar(self, role: str) -> None:
        """Remove this node's sidecar of that role (nothing when there is none)."""
        ...

    def host_pid(self) -> int:
        """The host pid of the node's main process (0 when it is not running)."""
        ...

    def medium(self, kind: str) -> Any:
        """The home's medium of ``kind`` ("wifi", "lan"), started on first use: a
        ``radios.client.container.MediumContainer`` (attach, move, cut, carrier, capture)."""
        ...


C = TypeVar("C", bound=Capability)


class Driver(Generic[C]):
    """Base class: a capability's effects on one node. The default does nothing, which is
    right for capabilities whose whole effect is in the container's creation options."""

    def __init__(self, capability: C) -> None:
        self.capability = capability

    @property
    def name(self) -> str:
        return self.capability.name

    def start(self, node: NodeRuntime) -> None:
        """Act on the running container."""

    def stop(self, node: NodeRuntime) -> None:
        """Undo what start did that would outlive the container."""

    def restarted(self, node: NodeRuntime) -> None:
        """The node's container started again in a new network namespace."""

    def describe(self) -> dict[str, Any]:
        """What was asked for, and what the running node got from it."""
        return self.capability.describe()


@runtime_checkable
class ScreenSource(Protocol):
    """A driver that can show the node's screen (the core asks this, not a name)."""

    def screenshot(self, node: NodeRuntime) -> bytes:
        """A PNG of the node's display."""
        ...


@runtime_checkable
class LanRouter(Protocol):
    """A driver whose node routes prefixes for the other nodes of its LAN network (a
    Thread border router's off-mesh-routable prefix): the home gives them a route through
    it (the core asks this, not a name)."""

    def lan_routes(self) -> list[str]:
        """The prefixes (``addr/len``) the node routes for its LAN peers; none until it
        serves them."""
        ...


DRIVERS: dict[type[Capability], type[Driver[Any]]] = {}


def drives(capability: type[Capability]) -> Any:
    """Class decorator: this driver acts for that capability class."""

    def register(cls: type[Driver[Any]]) -> type[Driver[Any]]:
        DRIVERS[capability] = cls
        return cls

    return register


def driver_for(capability: Capability) -> Driver[Any]:
    """A new driver for one node's capability: the registered one for its class (or a
    parent class), else the do-nothing base."""
    from pytest_cirque.capabilities import runtime as _package  # noqa: F401  (registers all)

    for cls in type(capability).__mro__:
        if cls in DRIVERS:
            return DRIVERS[cls](capability)
    return Driver(capability)
