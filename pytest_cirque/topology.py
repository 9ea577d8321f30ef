"""Cirque topologies, as its service took them, turned into our home spec mappings.

A Cirque topology maps device names to device configs (``type``, ``base_image``,
``capability``, ...). Its service kept those files working for years, so they are taken
unchanged: the image names Cirque built (``generic_node_image``, ``mac80211_ap_image``)
name ours, ``type: wifi_ap`` makes an access point with Cirque's defaults (a random
``wifiap-XXXXX`` SSID and 8-character PSK, DHCP and NAT), capability and network names are
read as Cirque spelled them. What this version cannot honour is refused in one line
before anything is created.

One reading for both ways in: ``cirque serve`` translates whole topologies
(:func:`translate`); the pytest plugin reads each node of a spec through
:func:`read_node`, so the same files work in ``@pytest.mark.home`` and ``home_factory``.

A topology that arrives over the network may not bind host paths into nodes unless the
service was started to allow it: a client would otherwise read or write any file the
service's user can. Tests run locally with their user's own rights, so the plugin allows
them. Pure: nothing is created here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_cirque.capabilities.model.base import ContainerConfig
from pytest_cirque.core.errors import SpecError
from pytest_cirque.spec import (
    CIRQUE_FIELDS,
    CIRQUE_TYPES,
    DEFAULT_IMAGE,
    OUR_FIELDS,
    HomeSpec,
)

#: Cirque's image and device type names, and the project image each one runs.
IMAGES: dict[str, str] = {
    **CIRQUE_TYPES,
    "generic_node_image": "base",
    "mac80211_ap_image": "wifi-ap",
    "wifi_ap": "wifi-ap",
}
#: The device type that makes an access point, as Cirque named it.
WIFI_AP_TYPE = "wifi_ap"
#: Characters of the SSIDs and PSKs Cirque made up for its access points.
AP_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ123456789"
SSID_PREFIX = "wifiap-"
SSID_RANDOM = 5
PSK_LENGTH = 8

#: Cirque's spellings of ``docker_network`` values, and ours.
NETWORKS = {
    "internal": "internal",
    "ipv6": "ipv6",
    "ipvlan": "ipvlan",
    "external": "default",
    "default": "default",
}
#: Capabilities that bind host paths into a node, and the Cirque keys that ask for them.
HOST_MOUNT_CAPABILITIES = ("Mount", "Weave")
HOST_MOUNT_KEYS = ("mount_pairs", "weave_config_file")
#: Capabilities Cirque had and this version has no medium for: name -> what is missing.
MISSING = {
    "bluetooth": "a simulated Bluetooth radio (Cirque used the host's BlueZ btvirt), which "
    "this version does not have",
}
#: Cirque's keys that only its Thread capability read. Our Thread decides what it can
#: honour: ``rcp_mode`` is handed to it; the petition and daemon choice have no meaning
#: here (one Thread medium per home, OpenThread's own daemon) and are dropped.
THREAD_KEYS = ("rcp_mode", "thread_petition", "thread_daemon")
#: Keys of an access point device beyond Cirque's: its network's name and passphrase.
AP_KEYS = ("ssid", "psk")
#: Cirque's device keys handed to our spec parser as they are: those it reads itself,
#: beside the three translated here.
PASSED_KEYS = tuple(k for k in CIRQUE_FIELDS if k not in ("type", "base_image", "capability"))
#: Our own node keys, accepted beside Cirque's.
OUR_KEYS = ("image", "capabilities", "env", "command")
KNOWN_KEYS = (
    "type",
    "base_image",
    "capability",
    "docker_network",
    *THREAD_KEYS,
    *AP_KEYS,
    *PASSED_KEYS,
    *OUR_KEYS,
)
#: Keys only Cirque's topologies have (ours are ``image`` and ``capabilities``): a node
#: written with one of them is read as Cirque read it.
CIRQUE_ONLY_KEYS = ("type", "base_image", "capability", *THREAD_KEYS, *AP_KEYS)
#: Keys our spec parser reads that Cirque had not: kept as they are on a Cirque node.
SPEC_ONLY_KEYS = tuple(k for k in (*OUR_FIELDS, *CIRQUE_FIELDS) if k not in KNOWN_KEYS)
_NODE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
NODE_NAME_MAX = 63


@dataclass(frozen=True)
class Device:
    """What the service tells of a device beyond its node: Cirque's type and image name."""

    id: str
    type: str
    base_image: str


@dataclass
class Topology:
    """A topology turned into a home spec mapping, and the devices it describes."""

    spec: dict[str, dict[str, Any]]
    devices: dict[str, Device]

    def parse(self, *, allow_host_mounts: bool) -> HomeSpec:
        """The validated home spec; SpecError when our parser or the mount rule refuses."""
        parsed = HomeSpec.parse(self.spec, where="topology")
        if not allow_host_mounts:
            refuse_host_paths(parsed)
        return parsed


def new_ssid() -> str:
    return SSID_PREFIX + "".join(secrets.choice(AP_CHARACTERS) for _ in range(SSID_RANDOM))


def new_psk() -> str:
    return "".join(secrets.choice(AP_CHARACTERS) for _ in range(PSK_LENGTH))


def node_name(device: Any, taken: set[str]) -> str:
    """A node name for a topology key: the key itself when it is one, else the key with
    what a node name may not hold replaced, made unique among ``taken``."""
    text = _NODE_NAME_UNSAFE.sub("-", str(device)).strip("-_")[:NODE_NAME_MAX] or "device"
    if not text[0].isalnum():
        text = "d" + text[: NODE_NAME_MAX - 1]
    name, number = text, 2
    while name in taken:
        suffix = f"-{number}"
        name = text[: NODE_NAME_MAX - len(suffix)] + suffix
        number += 1
    taken.add(name)
    return name


def translate(topology: Any, *, allow_host_mounts: bool = False) -> Topology:
    """Turn a Cirque topology (device name -> device config) into our spec mapping."""
    if not isinstance(topology, Mapping):
        raise SpecError(
            f"topology: a topology is a JSON object of device name to device config, got "
            f'{type(topology).__name__}; send e.g. {{"device0": {{"type": "generic_node"}}}}'
        )
    if not topology:
        raise SpecError(
            "topology: the topology has no devices; list at least one, e.g. "
            '{"device0": {"type": "generic_node"}}'
        )
    spec: dict[str, dict[str, Any]] = {}
    devices: dict[str, Device] = {}
    taken: set[str] = set()
    for key, config in topology.items():
        name = node_name(key, taken)
        node, device = translate_device(name, config, allow_host_mounts=allow_host_mounts)
        spec[name] = node
        devices[name] = device
    return Topology(spec, devices)


def is_cirque_node(config: Any) -> bool:
    """Whether a node spec is written in Cirque's keys: it uses one only Cirque has."""
    return isinstance(config, Mapping) and any(key in config for key in CIRQUE_ONLY_KEYS)


def read_node(name: str, config: Any, place: str) -> Any:
    """A node spec of a test's home in our keys: HomeSpec.parse's ``read_node`` hook.

    The rule: a node that uses a key only Cirque's topologies have (``type``,
    ``base_image``, ``capability``, ``rcp_mode``, ``thread_petition``, ``thread_daemon``,
    ``ssid``, ``psk``) is read as the service reads it, so ``capability: [WiFi]`` keeps
    the node's Ethernet and ``type: wifi_ap`` is an access point with Cirque's defaults;
    any other node is ours and returned as it is. Every device of a Cirque topology has a
    ``type``, so a whole Cirque file is read as Cirque read it, while a spec of ours may
    mix both. Unlike over the service, ``type`` may be left out (the image then comes
    from ``base_image``), our keys such as ``wait_for`` may sit beside Cirque's, and host
    paths may be bound (tests run with their user's own rights). Node names stay as
    written: the parser refuses one that is not a valid name rather than renaming it.
    """
    if not is_cirque_node(config):
        return config
    node, _ = translate_device(
        name,
        config,
        allow_host_mounts=True,
        type_required=False,
        extra_keys=SPEC_ONLY_KEYS,
        place=place,
    )
    return node


def translate_device(
    name: str,
    config: Any,
    *,
    allow_host_mounts: bool = False,
    type_required: bool = True,
    extra_keys: tuple[str, ...] = (),
    place: str = "",
) -> tuple[dict[str, Any], Device]:
    """One device config -> (our node spec mapping, its Device).

    ``type_required``: refuse a device without ``type`` (or ``image``), as Cirque did;
    ``extra_keys``: more keys to accept and pass on unchanged; ``place``: where the
    device is, for messages (default: its name in the topology).
    """
    place = place or f"topology device {name}"
    if not isinstance(config, Mapping):
        raise SpecError(
            f"{place}: a device config is an object of fields such as type and capability, "
            f"got {type(config).__name__}"
        )
    known = (*KNOWN_KEYS, *extra_keys)
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise SpecError(f"{place}: unknown field {unknown[0]!r}; known fields: {', '.join(known)}")
    device_type = config.get("type")
    if type_required and device_type is None and config.get("image") is None:
        raise SpecError(
            f"{place}: field 'type' is required (the device type, e.g. generic_node or "
            "wifi_ap); base_image defaults to it"
        )
    if device_type is not None and (not isinstance(device_type, str) or not device_type):
        raise SpecError(f"{place}: field 'type' must be a non-empty string, got {device_type!r}")
    base_image = config.get("base_image", device_type)
    if base_image is not None and (not isinstance(base_image, str) or not base_image):
        raise SpecError(f"{place}: field 'base_image' must be an image name, got {base_image!r}")
    image = config.get("image")
    if image is None:
        image = IMAGES.get(base_image, base_image) if base_image is not None else DEFAULT_IMAGE
    is_ap = device_type == WIFI_AP_TYPE
    if not is_ap and any(config.get(key) is not None for key in AP_KEYS):
        raise SpecError(f"{place}: fields ssid and psk are for a device of type wifi_ap")
    if not allow_host_mounts:
        _refuse_host_mount_keys(place, config)

    node: dict[str, Any] = {"image": image}
    capabilities = _capabilities(place, config.get("capability"), is_ap)
    if config.get("rcp_mode"):
        capabilities = [
            {"Thread": {"rcp_mode": True}} if isinstance(c, str) and c.lower() == "thread" else c
            for c in capabilities
        ]
    if is_ap:
        ssid = config.get("ssid") or new_ssid()
        psk = config.get("psk") or new_psk()
        capabilities.insert(0, {"WiFiAP": {"ssid": ssid, "psk": psk, "mode": "router"}})
    if capabilities:
        node["capability"] = capabilities
    network = config.get("docker_network")
    if network is not None:
        node["docker_network"] = NETWORKS.get(str(network).strip().lower(), network)
    for key in (*PASSED_KEYS, *OUR_KEYS, *extra_keys):
        if key != "image" and config.get(key) is not None:
            node[key] = config[key]
    shown_type = str(device_type) if device_type is not None else str(image)
    return node, Device(name, shown_type, str(base_image or image))


def _capabilities(place: str, value: Any, is_ap: bool) -> list[Any]:
    """Cirque's capability list in our terms."""
    if value is None:
        return []
    if isinstance(value, Mapping):  # {name: params}, as our own spec may write it
        value = [name if params is None else {name: params} for name, params in value.items()]
    if isinstance(value, str) or not isinstance(value, list):
        raise SpecError(
            f"{place}: field 'capability' must be a list of names such as [\"WiFi\"], got {value!r}"
        )
    entries: list[Any] = []
    for entry in value:
        name = entry if isinstance(entry, str) else None
        if isinstance(entry, Mapping) and len(entry) == 1:
            name = str(next(iter(entry)))
        if name is None:
            raise SpecError(f"{place}: capability entry {entry!r} must be a name")
        missing = MISSING.get(name.lower())
        if missing:
            raise SpecError(f"{place}: capability {name} needs {missing}; remove it")
        if name.lower() == "wifi":
            if is_ap:
                continue  # Cirque listed WiFi on its access point; the AP has its radio
            # Cirque's WiFi devices kept their Ethernet: stay on the home's LAN.
            entries.append({"WiFi": {"lan": True}} if isinstance(entry, str) else entry)
            continue
        entries.append(entry)
    return entries


def _refuse_host_mount_keys(place: str, config: Mapping[str, Any]) -> None:
    names = []
    for key in ("capability", "capabilities"):
        value = config.get(key)
        if isinstance(value, Mapping):
            names += [str(k) for k in value]
        elif isinstance(value, list):
            for entry in value:
                if isinstance(entry, Mapping):
                    names += [str(k) for k in entry]
                else:
                    names.append(str(entry))
    asked = [n for n in names if n.lower() in {c.lower() for c in HOST_MOUNT_CAPABILITIES}]
    asked += [k for k in HOST_MOUNT_KEYS if config.get(k) is not None]
    if asked:
        raise host_mounts_refused(place, asked[0])


def host_mounts_refused(place: str, what: str) -> SpecError:
    return SpecError(
        f"{place}: {what} binds host paths into the node, which this service refuses (a "
        "client could read or write any file of the service's user); start "
        "`cirque serve --allow-host-mounts` to allow it"
    )


def refuse_host_paths(spec: HomeSpec) -> None:
    """Refuse any node whose capabilities bind host paths, whatever they are called."""
    for node in spec.nodes.values():
        config = ContainerConfig()
        for capability in node.capabilities:
            capability.configure(config, node.name)
            if config.mounts:
                raise host_mounts_refused(node.where, f"capability {capability.name}")
