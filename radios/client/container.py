"""Run a medium in a helper container and attach nodes to it (the Docker side of radios).

Least privilege, measured on Docker 20.10:

- the medium container has no network, drops every capability and gets no device: it
  only holds TAP descriptors it is handed and serves a Unix socket on a volume;
- attaching a node runs a short-lived endpoint container in the node's network
  namespace (``network_mode=container:<node>``) with NET_ADMIN and /dev/net/tun: it
  creates ``wlan0`` there and hands its descriptor to the medium over that socket;
- nothing privileged, nothing on the host outside Docker, no host namespace. A WiFi
  medium is no different: each station's wpa_supplicant control socket is served inside
  its node by a small relay the node runs itself (cirque-wpa-ctrl, no capability), which
  reaches the medium over ``stations.sock`` on the home's radio volume (read-write here,
  read-only in the station nodes) and must present that station's token.

``relay_security_options`` is that list, as the relay container is created with it, and
``endpoint_security_options`` the attach helper's.

The relay package (radios/relay/) is copied whole into the containers at creation, so
any image with python3 and iproute2 can serve, and no host path is bind-mounted.

Control requests are the typed requests of ``radios.relay.protocol``; they go through
one long-lived exec session into the medium container
(``python3 -m pytest_cirque.radios.relay.medium session``), which forwards each JSON line
to the relay's control socket. Every Docker call goes through ``core.docker_backend``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_cirque.core import errors, identity
from pytest_cirque.core.docker_backend import Backend, DockerObject, ExecSession
from pytest_cirque.core.errors import ImageError, NodeError, SpecError, WaitTimeout
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.radios.relay.link_model import PHYS
from pytest_cirque.radios.relay.pcap import PcapStream, complete_records
from pytest_cirque.radios.relay.protocol import (
    KEEP,
    STATIONS_DIR,
    THREAD_DIR,
    WIFI_INTERFACE,
    CaptureStart,
    CaptureStop,
    Carrier,
    Detach,
    Keep,
    MediumStatus,
    Move,
    Ping,
    Reply,
    Request,
    Reset,
    SetLink,
    SetMedium,
    SetNode,
    Status,
    make_request,
)

if TYPE_CHECKING:
    from pytest_cirque.radios.client.thread import ThreadClient
    from pytest_cirque.radios.client.wifi import WifiClient

R = TypeVar("R", bound=Reply)

#: Where the volume with the control socket and captures is mounted in the helpers.
RUN_DIR = "/run/cirque-medium"
SOCKET = f"{RUN_DIR}/control.sock"
CODE_DIR = "/opt/cirque"
#: Packages whose __init__ the containers get empty: the relay imports nothing above them.
_PARENT_PACKAGES = ("pytest_cirque", "pytest_cirque.core", "pytest_cirque.radios")
RELAY_MODULE = "pytest_cirque.radios.relay.medium"
START_TIMEOUT_S = 30.0
#: Endpoint and interface names: what Docker names and Linux interfaces both accept.
IFNAME = re.compile(r"[A-Za-z0-9_.-]+")
ATTACH_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
TCPDUMP_TIMEOUT_S = 60.0
_ENVIRONMENT = {"PYTHONPATH": CODE_DIR, "PYTHONDONTWRITEBYTECODE": "1"}


def run_volume(medium: str) -> str:
    """The volume of a medium's control socket and captures."""
    return f"{medium}-run"


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


def _code_files() -> dict[str, bytes]:
    return {f"{CODE_DIR}/{path}": data for path, data in relay_code().items()}


def relay_security_options(wifi: bool) -> dict[str, Any]:
    """Exactly the security-relevant options the relay container is created with, so a
    check of the host can test what the medium really gets. A WiFi medium gets the same
    as any: it only holds descriptors it is handed and serves Unix sockets on volumes."""
    del wifi  # the same for every medium: no kind of medium needs a power of its own
    return {
        "privileged": False,
        "network_mode": "none",
        "pid_mode": None,
        "cap_drop": ["ALL"],
        "cap_add": [],
        "devices": [],
        "security_opt": ["no-new-privileges"],
    }


def endpoint_security_options(wired: bool) -> dict[str, Any]:
    """The security-relevant options of an attach helper (besides the node's network
    namespace it joins), so tests can start one exactly as attach() does."""
    return {
        "cap_drop": ["ALL"],
        # NET_ADMIN: create the TAP and configure it in the node's network namespace.
        # NET_RAW: a wired endpoint's packet socket on the node's real LAN interface.
        "cap_add": ["NET_ADMIN", "NET_RAW"] if wired else ["NET_ADMIN"],
        "devices": ["/dev/net/tun:/dev/net/tun:rwm"],
        "security_opt": ["no-new-privileges"],
    }


@contextlib.contextmanager
def _where(where: str) -> Iterator[None]:
    """The backend's one-line refusals, prefixed with what was being done and to what."""
    try:
        yield
    except (NodeError, ImageError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


class MediumContainer:
    """One medium of a home, run by a helper container, controlled from the test process.

    ``labels`` must carry at least io.cirque.run, io.cirque.home and io.cirque.owner; the
    medium adds io.cirque.role and io.cirque.medium to everything it creates, and
    ``remove()`` removes exactly that.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        name: str,
        image: str,
        labels: Mapping[str, str],
        phy: str = "802.11g",
        airtime: bool = True,
        wifi: bool = False,
        stations_volume: str | None = None,
        thread: bool = False,
        thread_volume: str | None = None,
    ) -> None:
        """``stations_volume``: with ``wifi``, the home's radio volume, where the station
        nodes (which mount it read-only) find the relay program and the stations socket.
        ``thread_volume``: with ``thread`` (an image with OpenThread: ``thread``), the home's
        Thread volume, into which the medium copies OpenThread for its nodes."""
        missing = set(identity.OWNERSHIP) - set(labels)
        if missing:
            raise SpecError(f"medium {name}: labels lack {', '.join(sorted(missing))}")
        if phy not in PHYS:
            raise SpecError(f"medium {name}: unknown phy {phy!r}; known: {', '.join(PHYS)}")
        self.backend = backend
        self.name = name
        self.image = image
        self.phy = phy
        self.airtime = airtime
        self.wifi = wifi
        self.stations_volume = stations_volume if wifi else None
        self.thread = thread
        self.thread_volume = thread_volume if thread else None
        self.labels = {**labels, identity.MEDIUM: name}
        self.container_id: str | None = None
        self.volume: str | None = None
        self._session: ExecSession | None = None
        self._session_lock = threading.Lock()
        #: Subnets handed out by claim_subnet, by owner.
        self._subnets_lock = threading.Lock()
        self._subnets: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}

    @classmethod
    def of_container(cls, backend: Backend, container: DockerObject) -> MediumContainer:
        """The medium a running relay container serves, found by its labels (as the CLI
        finds a home's media): requests and captures work; it was not started here."""
        labels = container.labels
        name = labels.get(identity.MEDIUM, container.name)
        medium = cls(backend, name=name, image="", labels=labels)
        medium.container_id = container.id
        medium.volume = run_volume(name)
        return medium

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> MediumContainer:
        """Create the volume and the relay container, and wait until it serves."""
        labels = {**self.labels, identity.ROLE: identity.ROLE_MEDIUM}
        volume = run_volume(self.name)
        try:
            with _where(f"medium {self.name}"):
                found = self.backend.create_labelled_volume(volume, labels)
            if found != labels:  # an existing volume of that name
                raise NodeError(f"medium {self.name}: volume {volume} exists and is not ours")
            self.volume = volume
            command = ["python3", "-m", RELAY_MODULE, "serve", "--socket", SOCKET]
            command += ["--phy", self.phy]
            if not self.airtime:
                command.append("--no-airtime")
            if self.wifi:
                command.append("--wifi")
            volumes: dict[str, str] = {}
            if self.stations_volume is not None:
                command += ["--stations-dir", STATIONS_DIR]
                volumes[self.stations_volume] = STATIONS_DIR
            if self.thread:
                command.append("--thread")
            if self.thread_volume is not None:
                command += ["--thread-dir", THREAD_DIR]
                volumes[self.thread_volume] = THREAD_DIR
            with _where(f"medium {self.name}"):
                self.container_id = self.backend.create_helper(
                    self.name,
                    self.image,
                    labels=labels,
                    command=command,
                    volume=volume,
                    mount=RUN_DIR,
                    volumes=volumes,
                    environment=_ENVIRONMENT,
                    init=True,
                    **relay_security_options(self.wifi),
                )
                self.backend.put_files(self.container_id, _code_files())
                self.backend.start_helper(self.container_id)
            self._wait_ready()
        except ImageError as exc:
            self.remove()
            raise ImageError(f"{exc}; pass ensure_image(client, 'medium')") from None
        except BaseException:
            self.remove()
            raise
        return self

    def _wait_ready(self) -> None:
        def serving() -> bool:
            info = self.backend.inspect(self.container_id or "") or {}
            state = (info.get("State") or {}).get("Status", "gone")
            if state not in ("created", "running"):
                raise NodeError(
                    f"medium {self.name}: relay exited ({state}); "
                    f"its log: {self.log(tail=20).strip()!r}"
                )
            return "medium ready" in self.log(tail=20)

        wait_until(
            serving,
            f"medium {self.name}'s relay to serve {SOCKET}",
            START_TIMEOUT_S,
            log=self.log,
            ignore=(),
        )

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def remove(self) -> None:
        """Remove the relay container (its endpoints vanish with it) and its volume."""
        self._close_session()
        if self.container_id is not None:
            self.backend.remove_container(self.container_id)
            self.container_id = None
        if self.volume is not None:
            self.backend.remove_volume(self.volume)
            self.volume = None

    def __enter__(self) -> MediumContainer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.remove()

    def log(self, tail: int | str = 200) -> str:
        if self.container_id is None:
            return ""
        return self.backend.logs(self.container_id, tail=tail)

    # --- endpoints ------------------------------------------------------------------

    def attach(
        self,
        node: Any,
        endpoint: str,
        *,
        ifname: str = WIFI_INTERFACE,
        position: Iterable[float] = (0.0, 0.0, 0.0),
        carrier: bool = True,
        addresses: Iterable[str] = (),
        mac: str | None = None,
        wired: bool = False,
    ) -> None:
        """Give ``node`` (a running container or its id) an interface on this medium.

        ``wired``: put the medium in the middle of the node's existing LAN interface
        ``ifname`` instead (endpoints ``endpoint`` and ``endpoint.lan``, see
        radios/relay/endpoint.py); the helper also needs NET_RAW for its packet socket.

        Bad arguments raise SpecError before anything is created; a node that cannot take
        the interface raises NodeError, and the interface is not left behind."""
        node_id = str(getattr(node, "id", node))
        where = f"medium {self.name}: attaching {endpoint!r}"
        if not endpoint or not IFNAME.fullmatch(endpoint):
            raise SpecError(f"{where}: endpoint names use letters, digits, '.', '_', '-'")
        if not IFNAME.fullmatch(ifname) or len(ifname) > 15:
            raise SpecError(f"{where}: ifname {ifname!r} is not a Linux interface name")
        position = list(position)
        if len(position) not in (2, 3):
            raise SpecError(f"{where}: position must be 2 or 3 numbers (metres)")
        if self.container_id is None or self.volume is None:
            raise NodeError(f"{where}: the medium is not running; start() it first")
        command = ["python3", "-m", "pytest_cirque.radios.relay.endpoint", "--name", endpoint]
        command += ["--ifname", ifname, "--socket", SOCKET, "--carrier", "on" if carrier else "off"]
        # One word: a negative first coordinate would read as an option otherwise.
        command.append("--position=" + ",".join(str(float(c)) for c in position))
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
        with _where(where):
            helper = self.backend.create_helper(
                f"{self.name}-attach-{endpoint}",
                self.image,
                labels={**self.labels, identity.ROLE: identity.ROLE_MEDIUM_ENDPOINT},
                command=command,
                volume=self.volume,
                mount=RUN_DIR,
                network_mode=f"container:{node_id}",
                sysctls=sysctls,
                environment=_ENVIRONMENT,
                **endpoint_security_options(wired),
            )
        try:
            with _where(where):
                self.backend.put_files(helper, _code_files())
            try:
                self.backend.start_helper(helper)
            except NodeError as exc:
                raise NodeError(f"{where}: is the node running? ({exc})") from None
            status = self.backend.wait_helper(helper, ATTACH_TIMEOUT_S)
            if status is None:  # the helper hung
                raise WaitTimeout(
                    f"medium {self.name}: attaching {endpoint} did not finish within "
                    f"{ATTACH_TIMEOUT_S:.0f} s",
                    log=self.log(),
                )
            if status != 0:
                output = self.backend.logs(helper).strip().splitlines()
                reason = output[-1] if output else f"exit status {status}"
                raise NodeError(f"medium {self.name}: cannot attach {endpoint}: {reason}")
        finally:
            self.backend.remove_container(helper)

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
                    raise SpecError(
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
            info = self.backend.inspect(node_id) or {}
            networks = info["NetworkSettings"]["Networks"]
        except (errors.CirqueError, KeyError, TypeError):
            return False
        return any((net or {}).get("GlobalIPv6Address") for net in (networks or {}).values())

    def detach(self, endpoint: str) -> None:
        """Remove the endpoint's interface from its node."""
        self.request(Detach(name=endpoint))

    # --- control requests -----------------------------------------------------------

    def request(self, message: Request[R]) -> R:
        """Send one typed control request; its typed reply. A refused one raises the
        error class the relay names."""
        if self.container_id is None:
            raise NodeError(f"medium {self.name}: not running; start() it first")
        with self._session_lock:
            try:
                if self._session is None:
                    self._session = self.backend.open_session(
                        self.container_id,
                        ["python3", "-m", RELAY_MODULE, "session", "--socket", SOCKET],
                        environment={"PYTHONPATH": CODE_DIR},
                        timeout=REQUEST_TIMEOUT_S,
                    )
                output = self._session.ask(message.encode())
            except (OSError, NodeError) as exc:
                self._close_session()
                raise NodeError(
                    f"medium {self.name}: control request {message.OP} got no answer ({exc}); "
                    "is the medium container still running?"
                ) from None
        try:
            reply = json.loads(output)
        except ValueError:
            raise NodeError(
                f"medium {self.name}: control request {message.OP} failed: {output[-500:]!r}"
            ) from None
        return message.decode_reply(reply)

    def as_wifi(self) -> WifiClient:
        """This medium's WiFi ops (access points, stations), typed; SpecError when the
        medium was not started with ``wifi=True``."""
        from pytest_cirque.radios.client.wifi import WifiClient

        return WifiClient(self)

    def as_thread(self) -> ThreadClient:
        """This medium's Thread ops (radio ids, the home's dataset), typed; SpecError when
        the medium was not started with ``thread=True``."""
        from pytest_cirque.radios.client.thread import ThreadClient

        return ThreadClient(self)

    def topology_lines(self, kind: str) -> list[str]:
        """This medium in a home's topology summary: its endpoints, and for WiFi each
        access point and station with its state."""
        try:
            status = self.status()
            endpoints = ", ".join(sorted(status.endpoints)) or "-"
            lines = [f"  medium {kind} ({self.phy}): {endpoints}"]
            if self.wifi:
                wifi = self.as_wifi().status()
                lines += [f"    ap {name}: {ap.summary()}" for name, ap in wifi.aps.items()]
                lines += [
                    f"    station {name}: {station.summary()}"
                    for name, station in wifi.stations.items()
                ]
        except errors.CirqueError as exc:
            return [f"  medium {kind}: (unavailable: {exc})"]
        return lines

    # --- runtime changes ------------------------------------------------------------

    def ping(self) -> list[str]:
        """The endpoints the relay holds (it answers: it is serving)."""
        return self.request(Ping()).endpoints

    def move(self, endpoint: str, position: Iterable[float]) -> None:
        self.request(Move(name=endpoint, position=[float(c) for c in position]))

    def set_node(
        self,
        endpoint: str,
        *,
        loss: float | Keep = KEEP,
        latency_ms: float | Keep = KEEP,
        jitter_ms: float | Keep = KEEP,
        rate_kbit: float | Keep | None = KEEP,
    ) -> None:
        """Loss (0..1), latency_ms, jitter_ms, rate_kbit (None: unlimited) of what
        ``endpoint`` sends; what is not given stays."""
        self.request(
            SetNode(
                name=endpoint,
                loss=loss,
                latency_ms=latency_ms,
                jitter_ms=jitter_ms,
                rate_kbit=rate_kbit,
            )
        )

    def set_link(
        self,
        a: str,
        b: str,
        *,
        cut: bool | None = None,
        symmetric: bool = True,
        loss: float | Keep = KEEP,
        latency_ms: float | Keep = KEEP,
        jitter_ms: float | Keep = KEEP,
        rate_kbit: float | Keep | None = KEEP,
    ) -> None:
        """Cut or restore the link a-b, or change its loss, latency_ms, jitter_ms,
        rate_kbit; in both directions unless ``symmetric`` is false."""
        self.request(
            SetLink(
                a=a,
                b=b,
                cut=cut,
                symmetric=symmetric,
                loss=loss,
                latency_ms=latency_ms,
                jitter_ms=jitter_ms,
                rate_kbit=rate_kbit,
            )
        )

    def cut(self, a: str, b: str) -> None:
        self.set_link(a, b, cut=True)

    def restore(self, a: str, b: str) -> None:
        self.set_link(a, b, cut=False)

    def set_medium(self, **changes: Any) -> None:
        """airtime, queue_ms, phy or PHY fields such as data_rate_mbps (SetMedium)."""
        self.request(make_request(SetMedium, changes))

    def carrier(self, endpoint: str, on: bool) -> None:
        self.request(Carrier(name=endpoint, on=on))

    def reset(self) -> None:
        """Back to the medium as attached (positions, carriers, no impairment, no capture)."""
        self.request(Reset())

    def status(self) -> MediumStatus:
        return self.request(Status())

    # --- capture --------------------------------------------------------------------

    def start_capture(self, name: str = "capture.pcap") -> str:
        """Start writing every frame on the air to a pcap file; returns its path inside."""
        path = str(PurePosixPath(RUN_DIR) / name)
        self.request(CaptureStart(path=path))
        return path

    def stop_capture(self) -> int:
        """Stop the capture; returns how many frames it holds."""
        return self.request(CaptureStop()).frames

    def fetch(self, path: str, destination: str | Path) -> Path:
        """Copy a file (e.g. a capture) out of the medium container to ``destination``."""
        target = Path(destination)
        target.write_bytes(self._read(path))
        return target

    def _read(self, path: str) -> bytes:
        if self.container_id is None:
            raise NodeError(f"medium {self.name}: not running; start() it first")
        data = self.backend.get_file(self.container_id, path)
        if data is None:
            raise NodeError(f"medium {self.name}: no file {path} in the medium container")
        return data

    def save_capture(self, destination: str | Path) -> Path | None:
        """Copy the running capture, the whole air since it started, to ``destination``
        while it goes on (a last record being written is left out): a failing test keeps
        everything up to now in one file, and a later save holds this one's frames too.
        None without a capture."""
        path = self.status().capture
        if not path:
            return None
        target = Path(destination)
        target.write_bytes(complete_records(self._read(path)))
        return target

    def follow_capture(self) -> Generator[bytes, None, None]:
        """The running capture from its first frame, then each frame as the medium writes
        it (pcap bytes cut at whole records), for as long as the caller iterates: closing
        the iterator ends the follower in the container. With no capture running, one is
        started for that long."""
        if self.container_id is None:
            raise NodeError(f"medium {self.name}: not running; start() it first")
        path = self.status().capture
        started = None
        if not path:
            path = started = self.start_capture(f"follow-{secrets.token_hex(4)}.pcap")
        records = PcapStream()
        # tail follows the file as it grows (inotify): no polling here or in the relay.
        chunks = self.backend.exec_stream(
            self.container_id, ["tail", "-c", "+1", "-f", path], node=f"medium {self.name}"
        )
        try:
            for chunk in chunks:
                whole = records.feed(chunk)
                if whole:
                    yield whole
        finally:
            chunks.close()
            if started is not None and self.status().capture == started:
                self.stop_capture()

    def cpu_seconds(self) -> float:
        """CPU time the relay's container has used so far (its cgroup's count), for
        benchmarks and the medium's own report."""
        if self.container_id is None:
            raise NodeError(f"medium {self.name}: not running; start() it first")
        script = (
            "cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null"
            " || awk '/usage_usec/ {print $2 * 1000}' /sys/fs/cgroup/cpu.stat"
        )
        result = self.backend.exec(
            self.container_id, ["sh", "-c", script], node=f"medium {self.name}", timeout=10
        )
        try:
            return int(result.stdout.strip()) / 1e9
        except ValueError:
            raise NodeError(
                f"medium {self.name}: cannot read the container's CPU time: "
                f"{result.output.strip()[-200:]!r}"
            ) from None

    def read_capture(self, path: str, expression: str = "") -> str:
        """A capture decoded by tcpdump in place (one line per frame)."""
        if self.container_id is None:
            raise NodeError(f"medium {self.name}: not running; start() it first")
        # As nobody: root in this capability-less container cannot switch users, which
        # tcpdump tries when started as root.
        command = ["tcpdump", "-n", "-r", path, *expression.split()]
        result = self.backend.exec(
            self.container_id,
            command,
            node=f"medium {self.name}",
            user="nobody",
            timeout=TCPDUMP_TIMEOUT_S,
        )
        if result.exit_code != 0:
            raise NodeError(
                f"medium {self.name}: tcpdump cannot read {path}: {result.output.strip()}"
            )
        return result.stdout


class MediumClient:
    """The typed ops of one kind of medium (WiFi, Thread, ...) over a MediumContainer:
    a subclass names the flag its medium must have been started with."""

    #: The MediumContainer attribute that says the medium runs this kind's layer.
    LAYER = ""

    def __init__(self, medium: MediumContainer) -> None:
        if self.LAYER and not getattr(medium, self.LAYER, False):
            raise SpecError(
                f"medium {medium.name}: it runs no {self.LAYER} layer; "
                f"start it with {self.LAYER}=True for {type(self).__name__}"
            )
        self.medium = medium

    def request(self, message: Request[R]) -> R:
        return self.medium.request(message)
