"""What a node can ask for: the pure half of the capability contract.

A capability is a function a node asks for. This half is the request: its name, its
parameters, validated by ``from_params`` when the spec is parsed (so a bad one fails before
anything is created), and ``configure``, which adds to the container's creation options
(cap_add, devices, sysctls, mounts, environment, LAN segment). It also answers what the
core asks of it: which medium it needs (``medium``) and whether it brings that medium to
its home (``provides_medium``).

What a capability does to the running container lives in capabilities/runtime/. This
module and its siblings import nothing from Docker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload

from pytest_cirque.core.errors import SpecError, did_you_mean


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
    #: Volumes of the node's home it mounts, by logical name -> (target, read_only). The
    #: home creates each (labelled as its own) before any node, and removes it with itself;
    #: nodes asking for the same name share one volume (a WiFi medium's stations socket).
    home_volumes: dict[str, tuple[str, bool]] = field(default_factory=dict)


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

    def check_node(self, where: str, image: str, docker_network: str) -> None:
        """Refuse (one SpecError line) a node this capability cannot serve: its image (the
        spec's name) or its ``docker_network``. Called before anything is created."""

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        """Add to the container's creation options."""

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

    @overload
    def number(
        self,
        key: str,
        *,
        default: float,
        minimum: float | None = None,
        maximum: float | None = None,
        aliases: Iterable[str] = (),
    ) -> float: ...
    @overload
    def number(
        self,
        key: str,
        *,
        default: None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        aliases: Iterable[str] = (),
    ) -> float | None: ...
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

    @overload
    def integer(
        self,
        key: str,
        *,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
        aliases: Iterable[str] = (),
    ) -> int: ...
    @overload
    def integer(
        self,
        key: str,
        *,
        default: None = None,
        minimum: int | None = None,
        maximum: int | None = None,
        aliases: Iterable[str] = (),
    ) -> int | None: ...
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

    @overload
    def text(self, key: str, *, default: str, aliases: Iterable[str] = ()) -> str: ...
    @overload
    def text(
        self, key: str, *, default: None = None, aliases: Iterable[str] = ()
    ) -> str | None: ...
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
            hint = did_you_mean(unknown[0], self._read)
            raise SpecError(
                f"{subject(self.where, self.capability)} has unknown field(s) "
                f"{', '.join(unknown)}{hint}; known fields: {known}"
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
    from pytest_cirque.capabilities import model as _package  # noqa: F401  (imports every module)

    cls = REGISTRY.get(str(name).lower())
    if cls is None:
        known = ", ".join(sorted(c.name for c in REGISTRY.values()))
        hint = did_you_mean(name, [c.name for c in REGISTRY.values()])
        raise SpecError(
            f"{where}: unknown capability {name!r}{hint}; known capabilities: {known}"
        )
    return cls
