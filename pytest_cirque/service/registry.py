"""The homes of one service, by the opaque ids its clients use, and what clients ask of them.

Both front ends (REST and gRPC) call this, so they answer alike. Every home is made by the
one ``Cirque`` the serving process owns: it is labelled as that process's, goes away when
the process exits, and the watchdog removes it if the process is killed. Requests run
concurrently: the registry's lock only guards the id maps, never a Docker call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_cirque import topology
from pytest_cirque.capabilities.model.wifi import WiFiAP
from pytest_cirque.core.docker_backend import ExecResult
from pytest_cirque.core.errors import CirqueError, ExecTimeout, NotFound, SpecError, one_line
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque
from pytest_cirque.spec import HomeSpec

#: How long a command may run unless the request says otherwise, and the most it may ask.
DEFAULT_COMMAND_TIMEOUT_S = 60.0
MAX_COMMAND_TIMEOUT_S = 24 * 3600.0
#: How often a streamed command's new output is sent.
STREAM_INTERVAL_S = 0.05
#: A log tail that means the whole log (Node.logs takes a number of lines).
ALL_LINES = 1 << 30
#: Our capability names that Cirque spelled otherwise.
CIRQUE_CAPABILITY_NAMES = {"XVNC": "Xvnc"}


@dataclass
class ServiceHome:
    """A home of the service and Cirque's view of its devices."""

    home: Home
    devices: dict[str, topology.Device]
    #: Every node name the home ever had, so an added device never takes a removed one's.
    used_names: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ServiceHomes:
    """Creates, finds and destroys the service's homes; runs what clients ask in them."""

    def __init__(self, cirque: Cirque, *, allow_host_mounts: bool = False) -> None:
        self.cirque = cirque
        self.allow_host_mounts = allow_host_mounts
        self._homes: dict[str, ServiceHome] = {}
        self._lock = threading.Lock()

    # ---- homes ----------------------------------------------------------------------

    def create_home(self, raw_topology: Any) -> str:
        """Build a home from a Cirque topology; its id. A refused topology creates nothing."""
        translated = topology.translate(raw_topology, allow_host_mounts=self.allow_host_mounts)
        spec = translated.parse(allow_host_mounts=self.allow_host_mounts)
        home = self.cirque.create_home(spec)
        entry = ServiceHome(home, dict(translated.devices), set(translated.devices))
        with self._lock:
            self._homes[home.name] = entry
        return home.name

    def create_empty_home(self) -> str:
        """A home without devices yet (gRPC adds them one by one). It declares a WiFi
        medium, so stations may come before their access point, as Cirque allowed."""
        home = self.cirque.create_home(HomeSpec(nodes={}, media={"wifi"}))
        with self._lock:
            self._homes[home.name] = ServiceHome(home, {})
        return home.name

    def add_device(self, home_id: str, config: Mapping[str, Any]) -> str:
        """Add one device (a Cirque device config) to a running home; its id."""
        entry = self._entry(home_id)
        with entry.lock:
            name = topology.node_name(f"device{len(entry.used_names)}", entry.used_names)
            node, device = topology.translate_device(
                name, config, allow_host_mounts=self.allow_host_mounts
            )
            spec = topology.Topology({name: node}, {name: device}).parse(
                allow_host_mounts=self.allow_host_mounts
            )
            entry.home.add_node(name, spec.nodes[name])
            entry.devices[name] = device
        return name

    def home_ids(self) -> list[str]:
        with self._lock:
            return list(self._homes)

    def destroy_home(self, home_id: str) -> str:
        with self._lock:
            entry = self._homes.pop(home_id, None)
        if entry is None:
            raise self._no_home(home_id)
        entry.home.destroy(force=True)
        return home_id

    def destroy_all(self) -> list[str]:
        """Destroy every home of the service; all are attempted, problems told together."""
        with self._lock:
            entries, self._homes = dict(self._homes), {}
        errors: list[BaseException] = []
        for entry in entries.values():
            try:
                entry.home.destroy(force=True)
            except CirqueError as exc:
                errors.append(exc)
        if errors:
            raise CirqueError(f"destroying the service's homes: {one_line(errors)}")
        return list(entries)

    def keep_all(self) -> list[str]:
        """Mark every home kept, for `cirque ls` and `cirque down` after the service ends."""
        with self._lock:
            entries = list(self._homes.values())
        return [entry.home.keep() for entry in entries]

    def wifi_ssid_psk(self, home_id: str) -> list[str | None]:
        """[ssid, psk] of the home's first access point (psk None for an open one)."""
        entry = self._entry(home_id)
        for node in list(entry.home.nodes.values()):
            for capability in node.capabilities:
                if isinstance(capability, WiFiAP):
                    return [capability.ssid, capability.psk]
        raise NotFound(f"home {home_id} has no access point; add a device of type wifi_ap")

    # ---- devices --------------------------------------------------------------------

    def devices(self, home_id: str) -> dict[str, dict[str, Any]]:
        entry = self._entry(home_id)
        return {device: self._describe(entry, device) for device in list(entry.devices)}

    def device(self, home_id: str, device_id: str) -> dict[str, Any]:
        entry = self._entry(home_id)
        self._node(entry, device_id)
        return self._describe(entry, device_id)

    def stop_device(self, home_id: str, device_id: str) -> str:
        """Stop the device and take it out of its home, as Cirque did; its id."""
        entry = self._entry(home_id)
        self._node(entry, device_id)
        with entry.lock:
            entry.devices.pop(device_id, None)
        entry.home.remove_node(device_id)
        return device_id

    def log(self, home_id: str, device_id: str, tail: int | None) -> str:
        node = self._node(self._entry(home_id), device_id)
        return node.logs(tail=tail if tail is not None else ALL_LINES)

    def run(self, home_id: str, device_id: str, command: str, timeout: float) -> ExecResult:
        """Run a command to its end; ExecTimeout (after it was killed) past ``timeout``."""
        node = self._node(self._entry(home_id), device_id)
        return node.exec(command, timeout=timeout)

    def stream(self, home_id: str, device_id: str, command: str, timeout: float) -> Iterator[bytes]:
        """Start a command and give its output as it comes; past ``timeout`` it is killed
        and a last line says so. A client that goes away kills it too."""
        node = self._node(self._entry(home_id), device_id)
        running = node.exec_background(command)
        return _stream(running, timeout)

    # ---- lookups --------------------------------------------------------------------

    def _entry(self, home_id: str) -> ServiceHome:
        with self._lock:
            entry = self._homes.get(home_id)
        if entry is None:
            raise self._no_home(home_id)
        return entry

    def _no_home(self, home_id: str) -> NotFound:
        with self._lock:
            known = ", ".join(self._homes) or "none"
        return NotFound(f"no home {home_id!r} in this service (its homes: {known})")

    def _node(self, entry: ServiceHome, device_id: str) -> Node:
        if device_id not in entry.devices or device_id not in entry.home.nodes:
            known = ", ".join(entry.devices) or "none"
            raise NotFound(
                f"home {entry.home.name} has no device {device_id!r} (its devices: {known})"
            )
        return entry.home.nodes[device_id]

    def _describe(self, entry: ServiceHome, device_id: str) -> dict[str, Any]:
        """Cirque's device state: id, name, type, base_image, capability, description."""
        node = self._node(entry, device_id)
        device = entry.devices[device_id]
        info = node.describe()
        capabilities: dict[str, Any] = {}
        for described in info["capabilities"]:
            params = dict(described)
            name = str(params.pop("name"))
            capabilities[CIRQUE_CAPABILITY_NAMES.get(name, name)] = params
        description: dict[str, Any] = {"ipv4_addr": info["ip"], "ipv6_addr": info["ipv6"]}
        for capability in node.capabilities:
            if isinstance(capability, WiFiAP):
                description.update(ssid=capability.ssid, psk=capability.psk)
        return {
            "id": device.id,
            "name": info["container"],
            "type": device.type,
            "base_image": device.base_image,
            "image": node.spec.image,
            "state": info["state"],
            "capability": capabilities,
            "description": description,
        }


def _stream(running: Any, timeout: float) -> Iterator[bytes]:
    deadline = time.monotonic() + timeout
    sent_out = sent_err = 0
    finished = False
    try:
        while not finished:
            try:
                running.wait(timeout=STREAM_INTERVAL_S)
                finished = True
            except ExecTimeout:
                pass
            out, err = running.stdout, running.stderr
            chunk = out[sent_out:] + err[sent_err:]
            sent_out, sent_err = len(out), len(err)
            if chunk:
                yield chunk.encode()
            if not finished and time.monotonic() >= deadline:
                running.kill()
                finished = True
                yield (
                    f"\ncirque: command {running.command!r} did not finish within "
                    f"{timeout:g} s and was killed; ask for a longer ?timeout=\n"
                ).encode()
    finally:
        if not finished:
            running.kill()


def check_timeout(value: Any, default: float = DEFAULT_COMMAND_TIMEOUT_S) -> float:
    """A command time limit given by a client, or SpecError saying what is allowed."""
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds <= MAX_COMMAND_TIMEOUT_S:
        raise SpecError(
            f"timeout {value!r}: give seconds, more than 0 and at most {MAX_COMMAND_TIMEOUT_S:g}"
        )
    return seconds


def check_tail(value: Any) -> int | None:
    """Cirque's ``tail``: a number of lines, anything else meaning all of them."""
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None
