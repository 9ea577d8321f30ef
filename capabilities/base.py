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

``restarted`` runs after the container starts again: its network namespace is new.

Capabilities never import docker: they reach the node through ``NodeRuntime``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pytest_cirque.core.errors import SpecError


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
    #: also reach each other. None: the node has no wired LAN at all (a WiFi-only device).
    lan_segment: str | None = "lan"
    #: Extra labels (keys under ``io.cirque.``) describing what the capability set up.
    labels: dict[str, str] = field(default_factory=dict)


class ExecResult(Protocol):
    exit_code: int
    stdout: str
    stderr: str


class NodeRuntime(Protocol):
    """What a capability may do to a running node (implemented by the home's Node)."""

    name: str
    #: The node's container id (sidecars join its namespaces with ``container:<id>``).
    container_id: str

    @property
    def ip(self) -> str | None:
        """The node's IPv4 address on the home LAN."""
        ...

    def exec(self, cmd: str | list[str], timeout: float = 30, check: bool = False) -> ExecResult:
        """Run a command inside the node."""
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
        ``radios.medium_container.MediumContainer`` (attach, move, cut, carrier, capture)."""
        ...


class Capability:
    """Base class: subclasses set ``name`` and override what they need."""

    #: Name as written in specs and markers (matched case-insensitively).
    name: ClassVar[str] = ""
    #: Medium kind this capability attaches the node to ("wifi", "thread"), or None.
    medium: ClassVar[str | None] = None
    #: Whether the node brings that medium to its home (an access point does; a station
    #: needs a home that has it).
    provides_medium: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = params

    @classmethod
    def params_from_cirque(cls, node_config: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters this capability takes from a Cirque node config, whose capability
        settings sit beside the node's keys (``mount_pairs``, ``traffic_control``, ...)."""
        return {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Capability:
        """Validate parameters and build the capability; ``where`` names the node/spec
        location for error messages. Raise SpecError naming the field and what to do."""
        if params:
            unknown = ", ".join(sorted(params))
            raise SpecError(f"{subject(where, cls.name)} takes no parameters (got {unknown})")
        return cls()

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        """Add to the container's creation options."""

    def start(self, node: NodeRuntime) -> None:
        """Act on the running container."""

    def stop(self, node: NodeRuntime) -> None:
        """Undo what start did that would outlive the container."""

    def restarted(self, node: NodeRuntime) -> None:
        """The node's container started again (stop/start, restart). Docker gives it a new
        network namespace then, so what ``start`` set up there must be set up again."""

    def describe(self) -> dict[str, Any]:
        """Name and parameters, for `cirque ls` and home queries."""
        return {"name": self.name, **self.params}


def subject(where: str, capability: str) -> str:
    """How a message names the capability at ``where``: "WHERE: capability NAME", or just
    WHERE when it already ends with the capability (the spec parser's places do)."""
    if where.lower().endswith(f"capability {capability}".lower()):
        return where
    return f"{where}: capability {capability}" if where else f"capability {capability}"


class Params:
    """Reads one capability's parameters for ``from_params``.

    Every error is one SpecError line naming the spec location, the capability, the field,
    what was given and what to do, so each capability validates in a few declarative lines.
    Call ``done()`` last: it refuses the keys nobody read (typos).
    """

    def __init__(self, params: Mapping[str, Any] | None, where: str, capability: str) -> None:
        if params is not None and not isinstance(params, Mapping):
            raise SpecError(
                f"{subject(where, capability)} parameters must be a mapping of field to "
                f"value (got {type(params).__name__} {params!r})"
            )
        self.values: dict[str, Any] = dict(params or {})
        self.where = where
        self.capability = capability
        self._read: set[str] = set()

    def error(self, key: str, problem: str) -> SpecError:
        """A SpecError for one field: ``problem`` says what is wrong and what to do."""
        return SpecError(f"{subject(self.where, self.capability)} field {key!r}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str, aliases: Iterable[str] = ()) -> tuple[str, Any]:
        """The (name used, value) of a field given under its name or an alias; value None
        when absent. Giving both a name and its alias is refused."""
        present = [name for name in (key, *aliases) if name in self.values]
        self._read.update((key, *aliases))
        if len(present) > 1:
            raise self.error(key, f"given twice (as {' and '.join(present)}); keep one")
        if not present:
            return key, None
        return present[0], self.values[present[0]]

    def number(
        self,
        key: str,
        *,
        default: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        aliases: Iterable[str] = (),
    ) -> float | None:
        """A real number within [minimum, maximum]."""
        name, value = self.raw(key, aliases)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"must be a number (got {value!r})")
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(name, f"must be a finite number (got {value!r})")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum:g} (got {value!r})")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum:g} (got {value!r})")
        return float(value)

    def integer(
        self,
        key: str,
        *,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        aliases: Iterable[str] = (),
    ) -> int | None:
        """A whole number within [minimum, maximum]."""
        name, value = self.raw(key, aliases)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be a whole number (got {value!r})")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum} (got {value!r})")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum} (got {value!r})")
        return value

    def boolean(self, key: str, *, default: bool, aliases: Iterable[str] = ()) -> bool:
        name, value = self.raw(key, aliases)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false (got {value!r})")
        return value

    def text(
        self, key: str, *, default: str | None = None, aliases: Iterable[str] = ()
    ) -> str | None:
        """A non-empty string."""
        name, value = self.raw(key, aliases)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, f"must be a non-empty string (got {value!r})")
        return value

    def required(self, key: str, value: Any, hint: str) -> Any:
        """``value`` itself, or the error that the field is missing; ``hint`` says what to give."""
        if value is None:
            raise self.error(key, f"is required: {hint}")
        return value

    def done(self) -> None:
        """Refuse the fields no one read: they are typos or belong to another capability."""
        unknown = sorted(set(self.values) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            raise SpecError(
                f"{subject(self.where, self.capability)} has unknown field(s) "
                f"{', '.join(unknown)}; known fields: {known}"
            )


def check_host_path(value: Any, field_name: str, where: str, capability: str) -> str:
    """A host path that a node will see: absolute (``~`` expanded) and existing, else a
    SpecError saying so. Checked when the spec is parsed, before anything is created."""
    label = f"{subject(where, capability)} field {field_name!r}"
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{label}: must be a host path (got {value!r})")
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        raise SpecError(
            f"{label}: host path {value!r} is relative; give an absolute path "
            f"(e.g. {os.path.abspath(path)!r})"
        )
    if not os.path.exists(path):
        raise SpecError(f"{label}: host path {path!r} does not exist; create it or fix the path")
    return os.path.normpath(path)


def check_node_path(value: Any, field_name: str, where: str, capability: str) -> str:
    """A path inside the node: absolute, else a SpecError saying so."""
    label = f"{subject(where, capability)} field {field_name!r}"
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{label}: must be a path inside the node (got {value!r})")
    if not value.startswith("/"):
        raise SpecError(
            f"{label}: node path {value!r} is relative; give an absolute path such as "
            f"'/{value.lstrip('./')}'"
        )
    return os.path.normpath(value)


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
