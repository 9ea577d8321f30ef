"""Run a medium in a helper container and attach nodes to it (the Docker side of radios).

Least privilege, measured on Docker 20.10:

- the medium container has no network, drops every capability and gets no device: it
  only holds TAP descriptors it is handed and serves a Unix socket on a volume;
- attaching a node runs a short-lived endpoint container in the node's network
  namespace (``network_mode=container:<node>``) with NET_ADMIN and /dev/net/tun: it
  creates ``wlan0`` there and hands its descriptor to the medium over that socket;
- nothing privileged, nothing on the host outside Docker. A WiFi medium alone shares
  the host's pid namespace with one capability, SYS_PTRACE: it serves each station's
  wpa_supplicant control socket inside the node's own filesystem, which it reaches as
  /proc/<pid>/root (the kernel's ptrace access check guards that path, and a process
  without capabilities may not look into one that has some), so the node's software
  finds the socket where it expects it.

The relay package (radios/relay/) is copied whole into the containers at creation
(``put_archive``), so any image with python3 and iproute2 can serve, and no host path is
bind-mounted.

Control requests go through one long-lived ``docker exec`` into the medium container
(``python3 -m pytest_cirque.radios.relay.medium session``), which forwards each JSON line to
the relay's control socket.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import re
import struct
import tarfile
import threading
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
import requests.exceptions
import tenacity

from pytest_cirque.core import errors, identity
from pytest_cirque.core.errors import NodeError, WaitTimeout
from pytest_cirque.radios.relay.link_model import PHYS

#: Where the volume with the control socket and captures is mounted in the helpers.
RUN_DIR = "/run/cirque-medium"
SOCKET = f"{RUN_DIR}/control.sock"
CODE_DIR = "/opt/cirque"
#: Packages whose __init__ the containers get empty: the relay imports nothing above them.
_PARENT_PACKAGES = ("pytest_cirque", "pytest_cirque.core", "pytest_cirque.radios")
START_TIMEOUT_S = 30.0
#: Endpoint and interface names: what Docker names and Linux interfaces both accept.
IFNAME = re.compile(r"[A-Za-z0-9_.-]+")
ATTACH_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0


def relay_code() -> dict[str, bytes]:
    """The files the medium containers run, by path under CODE_DIR: the relay package
    whole, the error hierarchy it raises, and empty parents. Read through
    importlib.resources, so an installed wheel works as a checkout does."""
    code = {f"{package.replace('.', '/')}/__init__.py": b"" for package in _PARENT_PACKAGES}
    code["pytest_cirque/core/errors.py"] = (
        resources.files("pytest_cirque.core").joinpath("errors.py").read_bytes()
    )
    relay = resources.files("pytest_cirque.radios.relay")
    for entry in relay.iterdir():
        if entry.name.endswith(".py"):
            code[f"pytest_cirque/radios/relay/{entry.name}"] = entry.read_bytes()
    return code


def _code_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in relay_code().items():
            info = tarfile.TarInfo(f"{CODE_DIR.lstrip('/')}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class ControlSession:
    """One long-lived ``docker exec`` into the medium that carries control requests, so a
    runtime change (move, cut, carrier) costs a round trip on an open socket rather than
    a new process in the container."""

    def __init__(self, client: docker.DockerClient, container_id: str) -> None:
        command = ["python3", "-m", "pytest_cirque.radios.relay.medium", "session", "--socket", SOCKET]
        exec_id = client.api.exec_create(
            container_id,
            command,
            stdin=True,
            stdout=True,
            stderr=False,
            tty=False,
            environment={"PYTHONPATH": CODE_DIR},
        )["Id"]
        self._stream = client.api.exec_start(exec_id, socket=True)
        self._socket = getattr(self._stream, "_sock", self._stream)
        self._socket.settimeout(REQUEST_TIMEOUT_S)
        self._stdout = bytearray()

    def ask(self, line: str) -> str:
        """Send one request line, return the reply line."""
        self._socket.sendall(line.encode() + b"\n")
        while b"\n" not in self._stdout:
            # Without a TTY, Docker frames the output: stream (1 byte), 3 zero bytes, size.
            header = self._read_exactly(8)
            payload = self._read_exactly(struct.unpack(">I", header[4:])[0])
            if header[0] == 1:
                self._stdout += payload
        reply, _, rest = self._stdout.partition(b"\n")
        self._stdout = bytearray(rest)
        return reply.decode(errors="replace")

    def _read_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._socket.recv(size - len(data))
            if not chunk:
                raise OSError("the control session ended")
            data += chunk
        return bytes(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.close()


class MediumContainer:
    """One medium of a home, run by a helper container, controlled from the test process.

    ``labels`` must carry at least io.cirque.run, io.cirque.home and io.cirque.owner; the
    medium adds io.cirque.role and io.cirque.medium to everything it creates, and
    ``remove()`` removes exactly that.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        name: str,
        image: str,
        labels: Mapping[str, str],
        phy: str = "802.11g",
        airtime: bool = True,
        wifi: bool = False,
    ) -> None:
        missing = {"io.cirque.run", "io.cirque.home", "io.cirque.owner"} - set(labels)
        if missing:
            raise errors.SpecError(f"medium {name}: labels lack {', '.join(sorted(missing))}")
        if phy not in PHYS:
            raise errors.SpecError(f"medium {name}: unknown phy {phy!r}; known: {', '.join(PHYS)}")
        self.client = client
        self.name = name
        self.image = image
        self.phy = phy
        self.airtime = airtime
        self.wifi = wifi
        self.labels = {**labels, "io.cirque.medium": name}
        self.container: Any = None
        self.volume: Any = None
        self._session: ControlSession | None = None
        self._session_lock = threading.Lock()
        self._captures = 0
        #: Subnets handed out by claim_subnet, by owner.
        self._subnets_lock = threading.Lock()
        self._subnets: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> MediumContainer:
        """Create the volume and the relay container, and wait until it serves."""
        labels = {**self.labels, identity.ROLE: identity.ROLE_MEDIUM}
        try:
            volume = self.client.volumes.create(name=f"{self.name}-run", labels=labels)
            if volume.attrs.get("Labels") != labels:  # an existing volume of that name
                raise NodeError(f"medium {self.name}: volume {volume.name} exists and is not ours")
            self.volume = volume
            command = ["python3", "-m", "pytest_cirque.radios.relay.medium", "serve"]
            command += ["--socket", SOCKET, "--phy", self.phy]
            if not self.airtime:
                command.append("--no-airtime")
            if self.wifi:
                command.append("--wifi")
            self.container = self.client.containers.create(
                self.image,
                command=command,
                name=self.name,
                labels=labels,
                network_mode="none",
                pid_mode="host" if self.wifi else None,
                cap_drop=["ALL"],
                cap_add=["SYS_PTRACE"] if self.wifi else None,
                security_opt=["no-new-privileges"],
                environment={"PYTHONPATH": CODE_DIR, "PYTHONDONTWRITEBYTECODE": "1"},
                volumes={self.volume.name: {"bind": RUN_DIR, "mode": "rw"}},
                init=True,
            )
            self.container.put_archive("/", _code_archive())
            self.container.start()
            self._wait_ready()
        except docker.errors.ImageNotFound:
            self.remove()
            raise errors.ImageError(
                f"medium {self.name}: image {self.image!r} not found; "
                "pass ensure_image(client, 'medium')"
            ) from None
        except docker.errors.APIError as exc:
            self.remove()
            raise NodeError(f"medium {self.name}: {exc.explanation or exc}") from None
        except BaseException:
            self.remove()
            raise
        return self

    def _wait_ready(self) -> None:
        @tenacity.retry(
            stop=tenacity.stop_after_delay(START_TIMEOUT_S),
            wait=tenacity.wait_exponential(multiplier=0.02, max=0.5),
            retry=tenacity.retry_if_result(lambda ready: not ready),
            retry_error_callback=lambda _state: False,
        )
        def ready() -> bool:
            self.container.reload()
            if self.container.status not in ("created", "running"):
                raise NodeError(
                    f"medium {self.name}: relay exited ({self.container.status}); "
                    f"its log: {self.log(tail=20).strip()!r}"
                )
            return "medium ready" in self.log(tail=20)

        if not ready():
            raise WaitTimeout(
                f"medium {self.name}: relay not serving {SOCKET} after {START_TIMEOUT_S:.0f} s",
                log=self.log(),
            )

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def remove(self) -> None:
        """Remove the relay container (its endpoints vanish with it) and its volume."""
        self._close_session()
        if self.container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self.container.remove(force=True)
            self.container = None
        if self.volume is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self.volume.remove(force=True)
            self.volume = None

    def __enter__(self) -> MediumContainer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.remove()

    def log(self, tail: int | str = 200) -> str:
        if self.container is None:
            return ""
        try:
            return self.container.logs(tail=tail).decode(errors="replace")
        except docker.errors.NotFound:
            return ""

    # --- endpoints ------------------------------------------------------------------

    def attach(
        self,
        node: Any,
        endpoint: str,
        *,
        ifname: str = "wlan0",
        position: Iterable[float] = (0.0, 0.0, 0.0),
        carrier: bool = True,
        addresses: Iterable[str] = (),
        mac: str | None = None,
        wired: bool = False,
    ) -> None:
        """Give ``node`` (a running container or its id) an interface on this medium.

        ``wired``: put the medium in the middle of the node's existing LAN interface
        ``ifname`` instead (endpoints ``endpoint`` and ``endpoint.lan``, see
        radios/endpoint.py); the helper also needs NET_RAW for its packet socket.

        Bad arguments raise SpecError before anything is created; a node that cannot take
        the interface raises NodeError, and the interface is not left behind."""
        node_id = getattr(node, "id", node)
        where = f"medium {self.name}: attaching {endpoint!r}"
        if not endpoint or not IFNAME.fullmatch(endpoint):
            raise errors.SpecError(f"{where}: endpoint names use letters, digits, '.', '_', '-'")
        if not IFNAME.fullmatch(ifname) or len(ifname) > 15:
            raise errors.SpecError(f"{where}: ifname {ifname!r} is not a Linux interface name")
        position = list(position)
        if len(position) not in (2, 3):
            raise errors.SpecError(f"{where}: position must be 2 or 3 numbers (metres)")
        if self.container is None:
            raise NodeError(f"{where}: the medium is not running; start() it first")
        command = ["python3", "-m", "pytest_cirque.radios.relay.endpoint", "--name", endpoint]
        command += ["--ifname", ifname, "--socket", SOCKET, "--carrier", "on" if carrier else "off"]
        command += ["--position", ",".join(str(float(c)) for c in position)]
        for address in addresses:
            command += ["--address", address]
        if mac:
            command += ["--mac", mac]
        sysctls = None
        if wired:
            command.append("--wired")
            if self._has_ipv6(node_id):
                # The TAP that becomes eth0 takes the namespace's default, which Docker
                # leaves at "IPv6 disabled" (it enables IPv6 on eth0 alone). Only runc, as
                # the helper starts, may write it: the helper's /proc/sys is read-only.
                sysctls = {"net.ipv6.conf.default.disable_ipv6": "0"}
        try:
            helper = self.client.containers.create(
                self.image,
                command=command,
                name=f"{self.name}-attach-{endpoint}",
                labels={**self.labels, identity.ROLE: identity.ROLE_MEDIUM_ENDPOINT},
                network_mode=f"container:{node_id}",
                cap_drop=["ALL"],
                cap_add=["NET_ADMIN", "NET_RAW"] if wired else ["NET_ADMIN"],
                sysctls=sysctls,
                devices=["/dev/net/tun:/dev/net/tun:rwm"],
                security_opt=["no-new-privileges"],
                environment={"PYTHONPATH": CODE_DIR, "PYTHONDONTWRITEBYTECODE": "1"},
                volumes={self.volume.name: {"bind": RUN_DIR, "mode": "rw"}},
            )
        except docker.errors.APIError as exc:
            raise NodeError(f"{where}: {exc.explanation or exc}") from None
        try:
            helper.put_archive("/", _code_archive())
            try:
                helper.start()
            except docker.errors.APIError as exc:
                raise NodeError(f"{where}: is the node running? ({exc.explanation})") from None
            try:
                status = helper.wait(timeout=ATTACH_TIMEOUT_S)
            except requests.exceptions.RequestException as exc:  # the helper hung
                raise WaitTimeout(
                    f"medium {self.name}: attaching {endpoint} did not finish within "
                    f"{ATTACH_TIMEOUT_S:.0f} s",
                    log=self.log(),
                ) from exc
            if status.get("StatusCode") != 0:
                output = helper.logs().decode(errors="replace").strip().splitlines()
                reason = output[-1] if output else f"exit status {status.get('StatusCode')}"
                raise NodeError(f"medium {self.name}: cannot attach {endpoint}: {reason}")
        finally:
            helper.remove(force=True)

    def claim_subnet(
        self,
        owner: str,
        wanted: str | None,
        pool: ipaddress.IPv4Network,
        first: int,
    ) -> str:
        """A subnet for ``owner`` (an AP's wlan0) that no other owner on this medium has:
        ``wanted`` when given, else the ``first``-th /24 of ``pool`` or the next free one."""
        with self._subnets_lock:
            taken = {net for name, net in self._subnets.items() if name != owner}
            if wanted is not None:
                network = ipaddress.ip_network(wanted)
                clash = next((t for t in taken if t.overlaps(network)), None)
                if clash is not None:
                    raise errors.SpecError(
                        f"medium {self.name}: subnet {wanted} of {owner} overlaps {clash} of "
                        "another access point; give each AP its own subnet"
                    )
            else:
                candidates = list(pool.subnets(new_prefix=24))[first:]
                network = next(c for c in candidates if not any(c.overlaps(t) for t in taken))
            self._subnets[owner] = network
            return str(network)

    def _has_ipv6(self, node_id: str) -> bool:
        """Whether the node has an IPv6 address on one of its Docker networks."""
        try:
            networks = self.client.api.inspect_container(node_id)["NetworkSettings"]["Networks"]
        except (docker.errors.APIError, KeyError, TypeError):
            return False
        return any((net or {}).get("GlobalIPv6Address") for net in (networks or {}).values())

    def detach(self, endpoint: str) -> None:
        """Remove the endpoint's interface from its node."""
        self.request("detach", name=endpoint)

    # --- runtime changes ------------------------------------------------------------

    def request(self, op: str, **arguments: Any) -> dict[str, Any]:
        """Send one control request; a refused one raises the error class it names."""
        if self.container is None:
            raise NodeError(f"medium {self.name}: not running; start() it first")
        message = json.dumps({"op": op, **arguments})
        with self._session_lock:
            try:
                if self._session is None:
                    self._session = ControlSession(self.client, self.container.id)
                output = self._session.ask(message)
            except (OSError, docker.errors.APIError) as exc:
                self._close_session()
                raise NodeError(
                    f"medium {self.name}: control request {op} got no answer ({exc}); "
                    "is the medium container still running?"
                ) from None
        try:
            reply = json.loads(output.splitlines()[-1])
        except (ValueError, IndexError):
            raise NodeError(
                f"medium {self.name}: control request {op} failed: {output[-500:]!r}"
            ) from None
        if not reply.pop("ok", False):
            kind = getattr(errors, str(reply.get("kind")), NodeError)
            if not (isinstance(kind, type) and issubclass(kind, errors.CirqueError)):
                kind = NodeError
            raise kind(reply.get("error", f"medium {self.name}: {op} refused"))
        return reply

    def topology_lines(self, kind: str) -> list[str]:
        """This medium in a home's topology summary: its endpoints, and for WiFi each
        access point and station with its state."""
        try:
            status = self.status()
            endpoints = ", ".join(sorted(status["endpoints"])) or "-"
            lines = [f"  medium {kind} ({self.phy}): {endpoints}"]
            if self.wifi:
                wifi = self.request("wifi_status")
                for name, ap in wifi["aps"].items():
                    lines.append(
                        f"    ap {name}: {ap['ssid']!r} {ap['security']} channel "
                        f"{ap['channel']} bssid {ap['bssid']}"
                    )
                for name, station in wifi["stations"].items():
                    joined = ""
                    if station["bssid"]:
                        joined = f" to {station['ssid']!r} ({station['bssid']})"
                    address = f" {station['ip_address']}" if station["ip_address"] else ""
                    lines.append(f"    station {name}: {station['wpa_state']}{joined}{address}")
        except errors.CirqueError as exc:
            return [f"  medium {kind}: (unavailable: {exc})"]
        return lines

    def move(self, endpoint: str, position: Iterable[float]) -> None:
        self.request("move", name=endpoint, position=[float(c) for c in position])

    def set_node(self, endpoint: str, **impairment: Any) -> None:
        """Loss, latency_ms, jitter_ms, rate_kbit of what ``endpoint`` sends."""
        self.request("node", name=endpoint, **impairment)

    def set_link(self, a: str, b: str, **changes: Any) -> None:
        """cut, symmetric, loss, latency_ms, jitter_ms, rate_kbit of the link a-b."""
        self.request("link", a=a, b=b, **changes)

    def cut(self, a: str, b: str) -> None:
        self.set_link(a, b, cut=True)

    def restore(self, a: str, b: str) -> None:
        self.set_link(a, b, cut=False)

    def set_medium(self, **changes: Any) -> None:
        """airtime, queue_ms, phy or PHY fields such as data_rate_mbps."""
        self.request("medium", **changes)

    def carrier(self, endpoint: str, on: bool) -> None:
        self.request("carrier", name=endpoint, on=on)

    def reset(self) -> None:
        """Back to the medium as attached (positions, carriers, no impairment, no capture)."""
        self.request("reset")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    # --- capture --------------------------------------------------------------------

    def start_capture(self, name: str = "capture.pcap") -> str:
        """Start writing every frame on the air to a pcap file; returns its path inside."""
        path = str(PurePosixPath(RUN_DIR) / name)
        self.request("capture_start", path=path)
        return path

    def stop_capture(self) -> int:
        """Stop the capture; returns how many frames it holds."""
        return int(self.request("capture_stop").get("frames") or 0)

    def fetch(self, path: str, destination: str | Path) -> Path:
        """Copy a file (e.g. a capture) out of the medium container to ``destination``."""
        stream, _stat = self.container.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.getmembers()[0]
            data = tar.extractfile(member)
            target = Path(destination)
            target.write_bytes(data.read() if data else b"")
        return target

    def save_capture(self, destination: str | Path) -> Path | None:
        """Copy the running capture to ``destination`` and go on capturing (into a new
        file): a failing test keeps what was on the air up to now. None without one."""
        path = self.status().get("capture")
        if not path:
            return None
        self.stop_capture()
        try:
            return self.fetch(path, destination)
        finally:
            self._captures += 1
            self.start_capture(f"air-{self._captures}.pcap")

    def read_capture(self, path: str, expression: str = "") -> str:
        """A capture decoded by tcpdump in place (one line per frame)."""
        # As nobody: root in this capability-less container cannot switch users, which
        # tcpdump tries when started as root.
        command = ["tcpdump", "-n", "-r", path, *expression.split()]
        result = self.container.exec_run(command, user="nobody")
        output = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise NodeError(f"medium {self.name}: tcpdump cannot read {path}: {output.strip()}")
        return output
