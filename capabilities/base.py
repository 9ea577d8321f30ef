"""The capability contract.

A capability is a function a node asks for. It has three moments, mirrored by the
home's node lifecycle:

1. ``configure``: before the container exists, add to its creation options
   (cap_add, devices, sysctls, mounts, environment, ...). Parameters were already
   validated by ``from_params`` when the spec was parsed, so nothing fails here.
2. ``start``: once the container runs, act on it (rules in its network namespace,
   sidecars, files).
3. ``stop``: undo what ``start`` did that would outlive the container. Runs in
   reverse order and must not raise for a node that is already gone.

Capabilities never import docker: they reach the node through ``NodeRuntime``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pytest_cirque.errors import SpecError


@dataclass
class Mount:
    """A host path bound into the node."""

    source: str
    target: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    """What capabilities contribute to a node's container creation."""

    cap_add: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    stdin_open: bool = False
    tty: bool = False
    #: Which LAN segment of the home the node joins. "lan" is the default segment, a bridge
    #: without inter-container traffic: its nodes reach only the gateway (and, unless the
    #: network is internal, the outside). "lan-access" is the LanAccess segment, whose nodes
    #: also reach each other.
    lan_segment: str = "lan"
    #: Extra labels (keys under ``io.cirque.``) describing what the capability set up.
    labels: dict[str, str] = field(default_factory=dict)


class ExecResult(Protocol):
    exit_code: int
    stdout: str
    stderr: str


class NodeRuntime(Protocol):
    """What a capability may do to a running node (implemented by the home's Node)."""

    name: str

    def exec(self, cmd: str | list[str], timeout: float = 30, check: bool = False) -> ExecResult:
        """Run a command inside the node."""
        ...

    def run_netadmin(self, script: str, timeout: float = 30) -> ExecResult:
        """Run a shell script as root with NET_ADMIN in a short-lived helper container that
        shares the node's network namespace (iptables, tc, ip), so any node image works and
        the pytest process needs no privilege. Raises NodeError when the script fails."""
        ...

    def start_sidecar(self, role: str, image: str, **options: Any) -> str:
        """Start a labelled helper container owned by this node (removed with it); returns its id."""
        ...

    def sidecar_exec(self, role: str, cmd: str | list[str], timeout: float = 30) -> ExecResult:
        """Run a command in this node's sidecar of that role."""
        ...


class Capability:
    """Base class: subclasses set ``name`` and override what they need."""

    #: Name as written in specs and markers (matched case-insensitively).
    name: ClassVar[str] = ""
    #: Medium kind this capability attaches the node to ("wifi", "thread"), or None.
    medium: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        self.params = params

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Capability:
        """Validate parameters and build the capability; ``where`` names the node/spec
        location for error messages. Raise SpecError naming the field and what to do."""
        if params:
            unknown = ", ".join(sorted(params))
            raise SpecError(f"{where}: capability {cls.name} takes no parameters (got {unknown})")
        return cls()

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        """Add to the container's creation options."""

    def start(self, node: NodeRuntime) -> None:
        """Act on the running container."""

    def stop(self, node: NodeRuntime) -> None:
        """Undo what start did that would outlive the container."""

    def describe(self) -> dict[str, Any]:
        """Name and parameters, for `cirque ls` and home queries."""
        return {"name": self.name, **self.params}


REGISTRY: dict[str, type[Capability]] = {}


def register(cls: type[Capability]) -> type[Capability]:
    """Class decorator: make a capability known by its name (case-insensitive)."""
    REGISTRY[cls.name.lower()] = cls
    return cls


def lookup(name: str, where: str) -> type[Capability]:
    """The capability class for a name, or a SpecError listing the known ones."""
    from pytest_cirque import capabilities as _package  # noqa: F401  (imports every module)

    cls = REGISTRY.get(str(name).lower())
    if cls is None:
        known = ", ".join(sorted(c.name for c in REGISTRY.values()))
        raise SpecError(f"{where}: unknown capability {name!r}; known capabilities: {known}")
    return cls
