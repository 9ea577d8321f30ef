"""A node: one device of a home, one container, with its capabilities.

Lifecycle (driven by the home): ``prepare`` (capabilities configure the container's
creation) -> ``create`` -> ``start`` -> ``post_start`` (each capability's driver acts on
the running container) ... ``remove`` (drivers stop in reverse, then sidecars, then the
container). A Node is also the ``NodeRuntime`` drivers act through.

A node depends on a small ``NodeContext`` (backend, identity, images, media), not on its
Home; what it got from its capabilities lives in its drivers.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_cirque.capabilities.model.base import Capability, ContainerConfig
from pytest_cirque.capabilities.runtime.base import Driver, ScreenSource, driver_for
from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, BackgroundExec, ExecResult
from pytest_cirque.core.errors import CirqueError, ExecTimeout, NodeError
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.networks import segment_guard
from pytest_cirque.spec import NodeSpec

if TYPE_CHECKING:
    from pytest_cirque.homes.networks import Network
    from pytest_cirque.radios.client.container import MediumContainer

__all__ = ["BackgroundExec", "ExecResult", "Node"]

#: Commands kept per node for failure reports, and lines of output kept per command.
EXEC_HISTORY = 20
EXEC_OUTPUT_TAIL = 3
#: Lines of a node's log searched by wait_for_log.
LOG_SEARCH_TAIL = 2000
#: Lines of a node's log attached to a failed wait.
WAIT_LOG_TAIL = 50
#: Image of the short-lived NET_ADMIN helper (has ip, tc, iptables).
NETADMIN_IMAGE = "base"
#: Command that keeps a node whose image has none alive (with Docker's init as PID 1).
IDLE_COMMAND = ["sleep", "infinity"]


C = TypeVar("C", bound=Capability)


@dataclass(frozen=True)
class NodeContext:
    """What a node needs from the home it belongs to, and nothing more."""

    backend: Backend
    identity: identity.RunIdentity
    #: The home's id: its io.cirque.home label and the stem of its objects' names.
    home_id: str
    #: A spec's image name -> the image reference to run.
    resolve_image: Callable[[str], str]
    #: The home's medium of a kind ("wifi", "lan"), started on first use.
    medium: Callable[[str], MediumContainer]
    #: Told when a node's network namespace was set up again (a restart), so the home
    #: redoes what it wires between nodes (routes to a Thread border router's prefix).
    rewire: Callable[[Node], None] | None = None


@dataclass(frozen=True)
class ExecRecord:
    """One command a test ran in a node: what, how it ended, how long it took."""

    command: str
    exit_code: int | None  # None: timed out
    duration_s: float
    output_tail: str

    def __str__(self) -> str:
        ended = "timed out" if self.exit_code is None else f"exit {self.exit_code}"
        tail = f": {self.output_tail}" if self.output_tail else ""
        return f"$ {self.command}  ({ended}, {self.duration_s:.2f} s){tail}"


def _command_text(cmd: str | list[str]) -> str:
    return cmd if isinstance(cmd, str) else " ".join(cmd)


def listening_ports(proc_net_tcp: str) -> set[int]:
    """The TCP ports in LISTEN state in /proc/net/tcp and tcp6 text (state 0A; the local
    address's port is the hex after the colon). Lines that are not table rows are skipped."""
    ports = set()
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            with contextlib.suppress(ValueError):
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _tail(text: str, lines: int = 5) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


class Node:
    """One device of a home. Create nodes through ``Home``, not directly."""

    def __init__(self, context: NodeContext, spec: NodeSpec, image: str) -> None:
        self.context = context
        self.spec = spec
        self.name = spec.name
        self.image = image
        #: What the node asked for, and the drivers that act for it (same order).
        self.capabilities: list[Capability] = list(spec.capabilities)
        self.drivers: list[Driver[Any]] = [driver_for(c) for c in self.capabilities]
        self.container_name = identity.object_name(context.home_id, spec.name)
        self.container_id = ""
        self.config = ContainerConfig()
        self.network: Network | None = None
        #: role -> container id of this node's sidecars, in start order.
        self.sidecars: dict[str, str] = {}
        self._started: list[Driver[Any]] = []
        #: The last commands run through ``exec``, for failure reports.
        self.history: collections.deque[ExecRecord] = collections.deque(maxlen=EXEC_HISTORY)
        self._backend = context.backend

    def __repr__(self) -> str:
        return f"<Node {self.name} of {self.context.home_id}>"

    # ---- lifecycle (called by the home) ---------------------------------------------

    def prepare(self) -> None:
        """Let every capability check the node and add to the container's creation options."""
        for capability in self.capabilities:
            where = f"{self.spec.where or f'node {self.name}'} capability {capability.name}"
            capability.check_node(where, self.spec.image, self.spec.docker_network)
            capability.configure(self.config, self.name)

    def create(self, network: Network | None, idle_command: bool) -> None:
        """Create the container on its LAN segment, or with no network at all when it has
        none (a WiFi-only device); not started."""
        self.network = network
        config = self.config
        labels = self.context.identity.labels(self.context.home_id, identity.ROLE_NODE, self.name)
        labels.update({_label_key(k): str(v) for k, v in config.labels.items()})
        labels[identity.IMAGE] = self.spec.image
        if self.capabilities:
            labels[identity.CAPABILITIES] = ",".join(c.name for c in self.capabilities)
        command = self.spec.command
        if command is None and idle_command:
            command = IDLE_COMMAND
        binds = {
            m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
            for m in config.mounts
        }
        for logical, (target, read_only) in config.home_volumes.items():
            volume = home_volume_name(self.context.home_id, logical)
            binds[volume] = {"bind": target, "mode": "ro" if read_only else "rw"}
        self.container_id = self._backend.create_container(
            self.container_name,
            self.image,
            labels=labels,
            command=command,
            environment={**self.spec.env, **config.environment},
            hostname=self.name,
            network=network.name if network else None,
            network_mode=None if network else "none",
            aliases=[self.name],
            cap_add=config.cap_add,
            devices=config.devices,
            sysctls=config.sysctls,
            binds=binds,
            stdin_open=config.stdin_open,
            tty=config.tty,
            init=command is IDLE_COMMAND,
        )

    def post_start(self) -> None:
        """Start each capability's driver on the running container, in spec order."""
        for driver in self.drivers:
            try:
                driver.start(self)
            except CirqueError:
                raise
            except Exception as exc:
                raise NodeError(
                    f"node {self.name} of home {self.context.home_id}: capability "
                    f"{driver.name} failed to start ({type(exc).__name__}: {exc})"
                ) from exc
            self._started.append(driver)

    def remove(self) -> list[BaseException]:
        """Stop capabilities in reverse, remove sidecars and the container. Every step is
        attempted; problems are returned so the home can finish tearing down first. A
        Ctrl-C during a step is held until every step was attempted, then raised."""
        errors: list[BaseException] = []
        interrupted = False

        def attempt(step: Callable[[], Any], what: str) -> None:
            nonlocal interrupted
            try:
                step()
            except KeyboardInterrupt:
                interrupted = True
            except Exception as exc:
                errors.append(NodeError(f"node {self.name}: {what}: {exc}"))

        for driver in reversed(self._started):
            attempt(functools.partial(driver.stop, self), f"capability {driver.name} stop")
        self._started.clear()
        for role, container in reversed(list(self.sidecars.items())):
            attempt(
                functools.partial(self._backend.remove_container, container),
                f"removing sidecar {role}",
            )
        self.sidecars.clear()
        if self.container_id:
            attempt(lambda: self._backend.remove_container(self.container_id), "removing it")
        if interrupted:
            raise KeyboardInterrupt
        return errors

    # ---- commands -------------------------------------------------------------------

    def exec(
        self,
        cmd: str | list[str],
        timeout: float = 30,
        check: bool = False,
        *,
        environment: dict[str, str] | None = None,
        user: str = "",
        record: bool = True,
    ) -> ExecResult:
        """Run a command (a string runs through ``sh -c``). ``check=True`` raises NodeError
        on a non-zero exit; a timeout kills the command and raises ExecTimeout. Commands
        are kept in ``history`` for failure reports unless ``record=False`` (polling)."""
        started = time.monotonic()
        try:
            result = self._backend.exec(
                self.container_id,
                cmd,
                node=self.name,
                timeout=timeout,
                environment=environment,
                user=user,
            )
        except ExecTimeout:
            if record:
                self.history.append(ExecRecord(_command_text(cmd), None, timeout, "(timed out)"))
            raise
        if record:
            output = _tail(result.stderr or result.stdout, EXEC_OUTPUT_TAIL)
            duration = time.monotonic() - started
            self.history.append(ExecRecord(result.command, result.exit_code, duration, output))
        if check and result.exit_code != 0:
            raise NodeError(
                f"node {self.name}: command {result.command!r} exited with "
                f"{result.exit_code}: {_tail(result.stderr or result.stdout) or '(no output)'}"
            )
        return result

    def exec_background(self, cmd: str | list[str]) -> BackgroundExec:
        """Start a command that keeps running; ``.running``, ``.wait(timeout)``, ``.kill()``."""
        return self._backend.exec_background(self.container_id, cmd, node=self.name)

    def logs(self, tail: int = 100) -> str:
        """The container's recent output (stdout and stderr)."""
        if not self.container_id:
            return ""
        return self._backend.logs(self.container_id, tail=tail)

    # ---- files ----------------------------------------------------------------------

    def put_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Write a file in the node (its directory is made when missing)."""
        if not posixpath.isabs(path):
            raise NodeError(f"node {self.name}: put_file path {path!r} must be absolute")
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if self._backend.put_file(self.container_id, path, payload, mode):
            return
        self.exec(["mkdir", "-p", posixpath.dirname(path)], check=True)
        if not self._backend.put_file(self.container_id, path, payload, mode):
            raise NodeError(f"node {self.name}: cannot write {path}; is the node running?")

    def get_file(self, path: str) -> bytes:
        """Read a file of the node."""
        data = self._backend.get_file(self.container_id, path)
        if data is None:
            raise NodeError(f"node {self.name}: no file {path}; check the path (node.exec('ls'))")
        return data

    # ---- addresses and state --------------------------------------------------------

    def _inspect(self) -> dict[str, Any]:
        info = self._backend.inspect(self.container_id) if self.container_id else None
        return info or {}

    def _endpoint(self) -> dict[str, Any]:
        networks = self._inspect().get("NetworkSettings", {}).get("Networks") or {}
        if self.network is not None and self.network.name in networks:
            return networks[self.network.name] or {}
        return next(iter(networks.values()), {}) if networks else {}

    @property
    def ip(self) -> str | None:
        """IPv4 address on the home LAN, or None when the node is not running or has no
        wired LAN (a WiFi-only station: see ``wifi.wifi_address``)."""
        if self.network is None:
            return None
        return self._endpoint().get("IPAddress") or None

    @property
    def ipv6(self) -> list[str]:
        """Global and unique-local IPv6 addresses on the home LAN."""
        address = self._endpoint().get("GlobalIPv6Address")
        return [address] if address else []

    def host_pid(self) -> int:
        """The host pid of the node's main process (0 when it is not running)."""
        return int((self._inspect().get("State") or {}).get("Pid") or 0)

    @property
    def state(self) -> str:
        """Docker's state of the container: created, running, exited, ... or "removed"."""
        info = self._inspect()
        return (info.get("State") or {}).get("Status", "removed") if info else "removed"

    def stop(self, timeout: float = 10) -> None:
        self._backend.stop(self.container_id, timeout=timeout)

    def start(self) -> None:
        """Start a stopped node, then set up its network namespace again (see
        ``_started_again``). A running node is left as it is."""
        if self.state == "running":
            return
        self._backend.start(self.container_id)
        self._started_again()

    def restart(self, timeout: float = 10) -> None:
        """Stop and start the node, then set up its network namespace again."""
        self._backend.restart(self.container_id, timeout=timeout)
        self._started_again()

    def _started_again(self) -> None:
        """Docker gives a container that starts again a new network namespace: what was
        set up in the old one (the segment guard, capability rules, sidecars sharing it)
        is gone. Guard the segment first, then let each started capability redo its part."""
        self.guard_segment()
        for driver in self._started:
            try:
                driver.restarted(self)
            except CirqueError:
                raise
            except Exception as exc:
                raise NodeError(
                    f"node {self.name} of home {self.context.home_id}: capability "
                    f"{driver.name} failed to set up again after a restart "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        if self.context.rewire is not None:
            self.context.rewire(self)

    def wait_until(self, predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        """Poll ``predicate()`` (no arguments) until it returns something truthy, and
        return that. CirqueError and OSError it raises count as "not yet". At the
        deadline: WaitTimeout saying what was awaited, with the node's recent log."""
        return wait_until(
            predicate,
            f"{what} (node {self.name} of home {self.context.home_id})",
            timeout,
            log=lambda: self.logs(tail=WAIT_LOG_TAIL),
        )

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        """Wait until the node's log (its main process's stdout and stderr) has a line
        matching ``pattern`` (a regular expression, ^ and $ at line ends); the match.
        WaitTimeout with the log at the deadline."""
        # A string is matched line by line: ^ and $ anchor at each line of the log.
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, re.MULTILINE)
        return self.wait_until(
            lambda: regex.search(self.logs(tail=LOG_SEARCH_TAIL)),
            f"a log line matching {regex.pattern!r}",
            timeout,
        )

    def wait_for_port(self, port: int, timeout: float = 30) -> int:
        """Wait until something in the node listens on TCP ``port`` (IPv4 or IPv6), seen
        from inside the node through /proc, so any image works; the port. WaitTimeout with
        the node's log at the deadline."""
        if not 0 < port < 65536:
            raise NodeError(f"node {self.name}: wait_for_port({port!r}): not a TCP port")

        def listening() -> bool:
            tables = self.exec(
                ["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeout=10, record=False
            )
            return port in listening_ports(tables.stdout)

        self.wait_until(listening, f"a listener on TCP port {port}", timeout)
        return port

    def wait_for_healthy(self, timeout: float = 60) -> None:
        """Wait until the image's HEALTHCHECK reports the node healthy. NodeError at once
        when the image has none or the check reports unhealthy; WaitTimeout with the last
        check's output at the deadline."""

        def healthy() -> bool:
            health = (self._inspect().get("State") or {}).get("Health")
            if not health:
                raise NodeError(
                    f"node {self.name}: image {self.spec.image} has no HEALTHCHECK; wait for "
                    "a log line or a port instead"
                )
            if health.get("Status") == "unhealthy":
                last = (health.get("Log") or [{}])[-1].get("Output", "").strip()[-300:]
                raise NodeError(f"node {self.name}: HEALTHCHECK reports unhealthy: {last!r}")
            return bool(health.get("Status") == "healthy")

        wait_until(
            healthy,
            f"the HEALTHCHECK of node {self.name} to report healthy",
            timeout,
            log=lambda: self.logs(tail=WAIT_LOG_TAIL),
            ignore=(OSError,),
        )

    def wait_for_spec(self) -> None:
        """What the node spec's ``wait_for`` asks, before the home is handed over."""
        wanted = self.spec.wait_for
        if wanted is None:
            return
        if wanted.log is not None:
            self.wait_for_log(wanted.log, wanted.timeout)
        for port in wanted.ports:
            self.wait_for_port(port, wanted.timeout)
        if wanted.healthy:
            self.wait_for_healthy(wanted.timeout)

    def medium(self, kind: str) -> MediumContainer:
        """The home's medium of ``kind`` ("wifi", "lan"), started on first use."""
        return self.context.medium(kind)

    def driver(self, capability: type[C]) -> Driver[C] | None:
        """The driver of this node's capability of that class (what the running node got
        from it), or None when the node did not ask for it."""
        return next((d for d in self.drivers if isinstance(d.capability, capability)), None)

    def screenshot(self) -> bytes:
        """A PNG of the node's virtual display (needs the XVNC capability)."""
        for driver in self.drivers:
            if isinstance(driver, ScreenSource):
                return driver.screenshot(self)
        raise NodeError(
            f"node {self.name}: screenshot needs the XVNC capability; add it to the node spec"
        )

    def describe(self) -> dict[str, Any]:
        info = self._inspect()
        endpoint = self._endpoint()
        return {
            "name": self.name,
            "container": self.container_name,
            "state": (info.get("State") or {}).get("Status", "removed") if info else "removed",
            "image": self.image,
            "ip": endpoint.get("IPAddress") or None,
            "ipv6": [endpoint["GlobalIPv6Address"]] if endpoint.get("GlobalIPv6Address") else [],
            "network": self.network.name if self.network else None,
            "segment": self.config.lan_segment,
            "capabilities": [d.describe() for d in self.drivers],
            "sidecars": sorted(self.sidecars),
        }

    # ---- NodeRuntime: helpers for capabilities --------------------------------------

    def guard_segment(self) -> None:
        """Make the home's other LAN segments unreachable from this running node (see
        networks.segment_guard); nothing for a node whose network needs no guard."""
        script = segment_guard(self.network) if self.network is not None else ""
        if script:
            self.run_netadmin(script, output=False)

    def run_netadmin(
        self, script: str, timeout: float = 30, *, raw_sockets: bool = False, output: bool = True
    ) -> ExecResult:
        """Run a shell script as root in a short-lived helper container in this node's
        network namespace; NodeError when it fails.

        The helper holds NET_ADMIN alone (``raw_sockets`` adds NET_RAW, which iptables
        needs), no new privileges and a read-only root: it changes the node's network
        namespace and nothing else, and never sees the host's processes. ``output=False``
        reads the helper's output only when it fails: two engine calls fewer on the path
        every node of every home takes."""
        context = self.context
        image = context.resolve_image(NETADMIN_IMAGE)
        labels = context.identity.labels(context.home_id, identity.ROLE_NETADMIN, self.name)
        name = identity.object_name(context.home_id, self.name, f"netadmin-{_short_token()}")
        helper = self._backend.create_container(
            name,
            image,
            labels=labels,
            command=["sh", "-c", script],
            network_mode=f"container:{self.container_id}",
            cap_drop=["ALL"],
            # NET_ADMIN: routes, links, addresses and firewall rules of the node's namespace.
            # NET_RAW: the raw sockets iptables opens, only when asked for.
            cap_add=["NET_ADMIN", "NET_RAW"] if raw_sockets else ["NET_ADMIN"],
            security_opt=["no-new-privileges"],
            read_only=True,
        )
        try:
            self._backend.start(helper)
            try:
                code = self._backend.wait(helper, timeout=timeout)
            except Exception:
                raise ExecTimeout(
                    f"node {self.name}: network set-up script did not finish within "
                    f"{timeout:g} s: {_tail(script, 2)!r}"
                ) from None
            stdout, stderr = self._backend.split_logs(helper) if output or code else ("", "")
        finally:
            self._backend.remove_container(helper)
        result = ExecResult(code, stdout, stderr, script, self.name)
        if code != 0:
            raise NodeError(
                f"node {self.name}: network set-up script exited with {code}: "
                f"{_tail(stderr or stdout) or '(no output)'}"
            )
        return result

    def start_sidecar(self, role: str, image: str, **options: Any) -> str:
        """Start a labelled helper container owned by this node (removed with it). Options
        are container options: command, environment, network_mode, cap_add, devices, ...;
        ``share_network=True`` joins this node's network namespace."""
        if role in self.sidecars:
            raise NodeError(f"node {self.name}: a sidecar {role!r} is already running")
        if options.pop("share_network", False):
            options["network_mode"] = f"container:{self.container_id}"
        labels = self.context.identity.labels(
            self.context.home_id, identity.ROLE_SIDECAR, self.name
        )
        labels[identity.SIDECAR] = role
        labels.update(options.pop("labels", None) or {})
        container = self._backend.create_container(
            identity.object_name(self.context.home_id, self.name, role),
            self.context.resolve_image(image),
            labels=labels,
            **options,
        )
        self.sidecars[role] = container
        self._backend.start(container)
        return container

    def remove_sidecar(self, role: str) -> None:
        """Remove this node's sidecar of that role (nothing when there is none)."""
        container = self.sidecars.pop(role, None)
        if container:
            self._backend.remove_container(container)

    def sidecar_exec(self, role: str, cmd: str | list[str], timeout: float = 30) -> ExecResult:
        """Run a command in this node's sidecar of that role."""
        container = self.sidecars.get(role)
        if container is None:
            known = ", ".join(self.sidecars) or "none"
            raise NodeError(f"node {self.name}: no sidecar {role!r} (its sidecars: {known})")
        return self._backend.exec(container, cmd, node=f"{self.name}/{role}", timeout=timeout)


def home_volume_name(home_id: str, logical: str) -> str:
    """The Docker volume behind a home volume's logical name (ContainerConfig.home_volumes)."""
    return identity.object_name(home_id, f"_{logical}")


def _label_key(key: str) -> str:
    return key if key.startswith(identity.LABEL_PREFIX) else identity.LABEL_PREFIX + key


def _short_token() -> str:
    return identity.new_run_id()[:6]
