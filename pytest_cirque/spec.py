"""Home and node specs: parsed and validated before anything is created.

A home spec maps node names to node specs, given as a mapping or a YAML file. Node
specs use our keys (``image``, ``capabilities``, ``env``, ``command``,
``docker_network``) or Cirque's own (``type``, ``base_image``, ``capability``,
``traffic_control``, ``mount_pairs``), so a Cirque topology file works unchanged where
its capabilities exist. Every problem is one SpecError line naming the place (file:line
when the spec came from YAML), the node and the field. Pure: no Docker here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_cirque.capabilities.model.base import Capability, lookup
from pytest_cirque.core.errors import SpecError, did_you_mean

DEFAULT_IMAGE = "base"

#: Values of ``docker_network``: which network of the home a node joins.
NETWORK_DEFAULT = "default"  # a bridge with a way out through the host's NAT
NETWORK_INTERNAL = "internal"  # a bridge with no way out
NETWORK_IPV6 = "ipv6"  # a bridge with an IPv6 ULA subnet as well
NETWORK_IPVLAN = "ipvlan"  # hybrid with devices outside Docker (macvlan where no ipvlan)
NETWORK_VARIANTS = (NETWORK_DEFAULT, NETWORK_INTERNAL, NETWORK_IPV6, NETWORK_IPVLAN)

#: Cirque node types that name one of our images under another spelling.
CIRQUE_TYPES = {
    "generic_node_image": "base",
    "generic_node": "base",
    "mobile_node_image": "base",
    "wifi_ap": "wifi-ap",
    "wifi_ap_image": "wifi-ap",
    "mqtt_broker": "mqtt-broker",
    "xvnc": "xvnc",
}

_NODE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$")
#: A home's name becomes part of every Docker object name of the home, with the run id
#: and the worker before it, and of interface and socket paths: it must stay short.
HOME_NAME_MAX = 40
_HOME_NAME = re.compile(rf"^[a-zA-Z0-9][a-zA-Z0-9_-]{{0,{HOME_NAME_MAX - 1}}}$")
#: The most nodes one LAN segment of a home holds: a /24 has 254 addresses, and the
#: gateway takes one.
SEGMENT_ROOM = 253
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Cirque node keys that ask for a capability when given without it, and that capability.
CIRQUE_PARAM_KEYS = {
    "traffic_control": "TrafficControl",
    "mount_pairs": "Mount",
    "weave_config_file": "Weave",
}

OUR_FIELDS = ("image", "capabilities", "env", "command", "docker_network", "wait_for")
#: How long a node's ``wait_for`` waits unless it says.
WAIT_FOR_TIMEOUT_S = 60.0
#: Cirque's node keys. Capability settings among them are read by the capability's
#: ``params_from_cirque`` (Weave: weave_config_*; XVNC: xvnc_localhost, display_id,
#: docker_display_id); XVNC's are ignored on a node without XVNC, as Cirque did.
CIRQUE_FIELDS = (
    "type",
    "base_image",
    "capability",
    "traffic_control",
    "mount_pairs",
    "weave_config_file",
    "weave_config_target_path",
    "xvnc_localhost",
    "display_id",
    "docker_display_id",
)


#: A hook that turns one raw node spec into our keys before it is parsed:
#: (node name, raw node spec, place for messages) -> raw node spec.
NodeReader = Callable[[str, Any, str], Any]


def node_place(name: Any, where: str = "") -> str:
    """Where a node is, for messages: "home.yaml:12 node hub" or "node hub"."""
    return f"{where} node {name}".strip()


def check_home_name(name: Any, where: str = "") -> str:
    """A home name as given by a user, or SpecError saying what a name may hold."""
    if not isinstance(name, str) or not _HOME_NAME.match(name):
        shown = name if not isinstance(name, str) or len(name) <= 60 else name[:57] + "..."
        length = f" ({len(name)} characters)" if isinstance(name, str) else ""
        raise SpecError(
            f"{where + ': ' if where else ''}invalid home name {shown!r}{length}; use at most "
            f"{HOME_NAME_MAX} letters, digits, '_' and '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class WaitFor:
    """What home creation waits for on a node before the test starts: a log line (a
    regular expression), TCP ports listening inside the node, the image's HEALTHCHECK."""

    log: str | None = None
    ports: tuple[int, ...] = ()
    healthy: bool = False
    timeout: float = WAIT_FOR_TIMEOUT_S


@dataclass
class NodeSpec:
    """One node: its image, capabilities (validated instances), environment and command."""

    name: str
    image: str = DEFAULT_IMAGE
    capabilities: list[Capability] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command: str | list[str] | None = None
    docker_network: str = NETWORK_DEFAULT
    wait_for: WaitFor | None = None
    #: Where the spec came from, for messages ("home.yaml:12 node hub").
    where: str = ""

    @classmethod
    def parse(cls, name: Any, raw: Any, where: str = "") -> NodeSpec:
        """Validate one node spec. ``raw`` may be None (all defaults) or a mapping."""
        place = node_place(name, where)
        if not isinstance(name, str) or not _NODE_NAME.match(name):
            raise SpecError(
                f"{place}: invalid node name {name!r}; use letters, digits, '_' and '-' "
                "(at most 63, starting with a letter or digit)"
            )
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise SpecError(
                f"{place}: node spec must be a mapping of fields, got {type(raw).__name__}"
            )
        unknown = sorted(str(k) for k in raw if k not in OUR_FIELDS + CIRQUE_FIELDS)
        if unknown:
            known = ", ".join(OUR_FIELDS + CIRQUE_FIELDS)
            raise SpecError(
                f"{place}: unknown field {unknown[0]!r}"
                f"{did_you_mean(unknown[0], OUR_FIELDS + CIRQUE_FIELDS)}; known fields: {known}"
            )
        return cls(
            name=name,
            image=_image(raw, place),
            capabilities=_capabilities(raw, place),
            env=_env(raw.get("env"), place),
            command=_command(raw.get("command"), place),
            docker_network=_docker_network(raw.get("docker_network"), place),
            wait_for=_wait_for(raw.get("wait_for"), place),
            where=place,
        )

    def capability(self, name: str) -> Capability | None:
        """This node's capability of that name (case-insensitive), or None."""
        for cap in self.capabilities:
            if cap.name.lower() == name.lower():
                return cap
        return None


@dataclass
class HomeSpec:
    """A home: its nodes in the order they were written."""

    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    #: The file the spec came from, or "".
    source: str = ""
    #: Media the home has besides those its nodes bring (an access point brings "wifi"):
    #: ``@pytest.mark.wifi`` declares "wifi" for a home whose AP comes from ``wifi_ap``.
    media: set[str] = field(default_factory=set)

    def provided_media(self) -> set[str]:
        """The media this home will have: declared ones and those its nodes bring."""
        brought = {
            cap.medium
            for node in self.nodes.values()
            for cap in node.capabilities
            if cap.medium and cap.provides_medium
        }
        return self.media | brought

    def check_media(self, present: set[str] | None = None) -> None:
        """Refuse a node whose radio needs a medium the home will not have (``present``:
        media the running home has already)."""
        have = self.provided_media() | (present or set())
        for node in self.nodes.values():
            for cap in node.capabilities:
                if cap.medium and cap.medium not in have:
                    raise SpecError(
                        f"{node.where}: capability {cap.name} needs the home's {cap.medium} "
                        f"medium, and this home has none; add an access point node (capability "
                        f"WiFiAP) or mark the test @pytest.mark.{cap.medium} and use the "
                        f"{cap.medium}_ap fixture"
                    )

    @classmethod
    def parse(cls, source: Any, where: str = "", read_node: NodeReader | None = None) -> HomeSpec:
        """Parse a mapping of node name -> node spec, a path to a YAML file, or an
        existing HomeSpec (returned as is). ``read_node``, when given, turns each raw node
        spec into our keys first (the plugin reads Cirque's topologies so), with the
        node's place, file:line included, for its messages."""
        if isinstance(source, HomeSpec):
            return source
        lines: dict[str, int] = {}
        file_name = ""
        if isinstance(source, (str, os.PathLike)):
            file_name = str(source)
            source, lines = load_yaml(file_name)
        if source is None:
            source = {}
        if not isinstance(source, Mapping):
            place = file_name or where or "home spec"
            raise SpecError(
                f"{place}: a home spec is a mapping of node name to node spec, "
                f"got {type(source).__name__}"
            )
        if not source:
            place = file_name or where or "home spec"
            raise SpecError(
                f"{place}: the home spec has no nodes; list at least one, e.g. "
                "{'hub': {'image': 'base'}}"
            )
        nodes: dict[str, NodeSpec] = {}
        for name, raw in source.items():
            node_where = f"{file_name}:{lines.get(str(name), 0)}" if file_name else where
            if read_node is not None:
                raw = read_node(str(name), raw, node_place(name, node_where))
            nodes[str(name)] = NodeSpec.parse(name, raw, node_where)
        return cls(nodes=nodes, source=file_name)

    def names(self) -> list[str]:
        return list(self.nodes)


# ---- YAML ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (YAML would keep the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hashable_key = key if not isinstance(key, list) else tuple(key)
            first = seen.get(hashable_key)
        except TypeError:
            continue
        if first is not None:
            raise SpecError(
                f"{key_node.start_mark.name}:{line}: duplicate key {key!r} (first at line "
                f"{first}); each node and field may appear once"
            )
        seen[hashable_key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str) -> tuple[Any, dict[str, int]]:
    """Load a YAML file; returns the data and the line of each top-level key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: home spec file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read home spec ({exc})") from None
    try:
        loader = _StrictLoader(text)
        loader.name = path
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"{path}{line}: invalid YAML: {problem}; fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        raise SpecError(f"{path}: home spec file is empty; list the nodes as name: {{image: ...}}")
    lines = {}
    if isinstance(root, yaml.MappingNode):
        for key_node, _ in root.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
    return data, lines


# ---- fields -------------------------------------------------------------------------


def _image(raw: Mapping[str, Any], place: str) -> str:
    for key in ("image", "base_image", "type"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise SpecError(f"{place}: field {key!r} must be an image name, got {value!r}")
        return CIRQUE_TYPES.get(value, value) if key == "type" else value
    return DEFAULT_IMAGE


def _capability_entries(raw: Mapping[str, Any], place: str) -> list[tuple[str, Any]]:
    """(name, params) pairs from ``capabilities`` and Cirque's ``capability`` + params."""
    entries: list[tuple[str, Any]] = []
    for key in ("capabilities", "capability"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            raise SpecError(
                f"{place}: field {key!r} must be a list of capabilities, got the string "
                f"{value!r}; write [{value}]"
            )
        if isinstance(value, Mapping):
            entries += [(str(k), v) for k, v in value.items()]
            continue
        if not isinstance(value, list):
            raise SpecError(
                f"{place}: field {key!r} must be a list of names or {{name: params}}, "
                f"got {type(value).__name__}"
            )
        for item in value:
            if isinstance(item, str):
                entries.append((item, None))
            elif isinstance(item, Mapping) and len(item) == 1:
                ((name, params),) = item.items()
                entries.append((str(name), params))
            else:
                raise SpecError(
                    f"{place}: field {key!r}: entry {item!r} must be a name or {{name: params}}"
                )
    # Cirque keeps capability parameters beside the list (traffic_control, mount_pairs):
    # a key given without its capability listed asks for that capability.
    listed = {name.lower() for name, _ in entries}
    for key, cap_name in CIRQUE_PARAM_KEYS.items():
        if raw.get(key) is not None and cap_name.lower() not in listed:
            entries.append((cap_name, None))
    return entries


def _capabilities(raw: Mapping[str, Any], place: str) -> list[Capability]:
    built: list[Capability] = []
    seen: set[str] = set()
    for name, params in _capability_entries(raw, place):
        if params is not None and not isinstance(params, Mapping):
            raise SpecError(
                f"{place}: capability {name} parameters must be a mapping, got {params!r}"
            )
        where = f"{place} capability {name}"
        cls = lookup(name, place)
        cirque_params = cls.params_from_cirque(raw)
        if cirque_params and params:
            raise SpecError(
                f"{place}: capability {cls.name} parameters given twice (in the capability "
                "list and beside it, Cirque style); keep one"
            )
        params = params or cirque_params or None
        if cls.name.lower() in seen:
            raise SpecError(f"{place}: capability {cls.name} listed twice; list it once")
        seen.add(cls.name.lower())
        built.append(cls.from_params(params, where))
    return built


def _env(value: Any, place: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        example = "{MODE: eco}"
        if isinstance(value, list) and value and isinstance(value[0], str) and "=" in value[0]:
            name, _, val = value[0].partition("=")
            example = f"{{{name}: {val!r}}}"
        raise SpecError(
            f"{place}: field 'env' must be a mapping of NAME: value, got "
            f"{type(value).__name__} {value!r}; write it as {example}"
        )
    env = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise SpecError(f"{place}: field 'env': invalid variable name {key!r}")
        if isinstance(val, (Mapping, list)):
            raise SpecError(f"{place}: field 'env': {key} must be a scalar, got {val!r}")
        env[key] = "" if val is None else str(val).lower() if isinstance(val, bool) else str(val)
    return env


def _command(value: Any, place: str) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise SpecError(f"{place}: field 'command' must be a string or a list of strings")


def _wait_for(value: Any, place: str) -> WaitFor | None:
    """``wait_for``: {log: REGEX, port: N or [N, ...], healthy: true, timeout: S}."""
    if value is None:
        return None
    label = f"{place}: field 'wait_for'"
    if not isinstance(value, Mapping):
        raise SpecError(
            f"{label} must be a mapping such as {{log: 'ready', port: 8080, healthy: true}}, "
            f"got {value!r}"
        )
    known = ("log", "port", "healthy", "timeout")
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise SpecError(
            f"{label}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], known)}; "
            f"known: {', '.join(known)}"
        )
    log = value.get("log")
    if log is not None:
        if not isinstance(log, str) or not log:
            raise SpecError(f"{label}: log must be a regular expression, got {log!r}")
        try:
            re.compile(log)
        except re.error as exc:
            raise SpecError(f"{label}: log {log!r} is not a regular expression ({exc})") from None
    raw_ports = value.get("port", [])
    ports = raw_ports if isinstance(raw_ports, list) else [raw_ports]
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SpecError(f"{label}: port must be a TCP port 1..65535, got {port!r}")
    healthy = value.get("healthy", False)
    if not isinstance(healthy, bool):
        raise SpecError(f"{label}: healthy must be true or false, got {healthy!r}")
    timeout = value.get("timeout", WAIT_FOR_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise SpecError(f"{label}: timeout must be a number of seconds over 0, got {timeout!r}")
    if log is None and not ports and not healthy:
        raise SpecError(f"{label} asks for nothing; give log, port or healthy")
    return WaitFor(log=log, ports=tuple(ports), healthy=healthy, timeout=float(timeout))


def _docker_network(value: Any, place: str) -> str:
    if value is None:
        return NETWORK_DEFAULT
    text = str(value).strip().lower()
    if text in ("", "bridge", "lan"):
        return NETWORK_DEFAULT
    if text not in NETWORK_VARIANTS:
        raise SpecError(
            f"{place}: field 'docker_network': unknown network {value!r}; "
            f"use one of {', '.join(NETWORK_VARIANTS)}"
        )
    return text
