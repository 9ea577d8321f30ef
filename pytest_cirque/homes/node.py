"""A node: one device of a home, one container, with its capabilities.

Lifecycle (driven by the home): ``prepare`` (capabilities configure the container's
creation) -> ``create`` -> ``start`` -> ``post_start`` (capabilities act on the running
container) ... ``remove`` (capabilities stop in reverse, then sidecars, then the
container). A Node is also the ``NodeRuntime`` capabilities act through.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tenacity

from pytest_cirque.capabilities.base import Capability, ContainerConfig
from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import BackgroundExec, ExecResult
from pytest_cirque.core.errors import CirqueError, ExecTimeout, NodeError, WaitTimeout
from pytest_cirque.spec import NodeSpec

if TYPE_CHECKING:
    from pytest_cirque.homes.home import Home
    from pytest_cirque.homes.networks import Network
    from pytest_cirque.radios.client.container import MediumContainer

__all__ = ["BackgroundExec", "ExecResult", "Node"]

#: Lines of a node's log attached to a failed wait.
WAIT_LOG_TAIL = 50
#: Image of the short-lived NET_ADMIN helper (has ip, tc, iptables).
NETADMIN_IMAGE = "base"
#: Command that keeps a node whose image has none alive (with Docker's init as PID 1).
IDLE_COMMAND = ["sleep", "infinity"]


def _tail(text: str, lines: int = 5) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


class Node:
    """One device of a home. Create nodes through ``Home``, not directly."""

    def __init__(self, home: Home, spec: NodeSpec, image: str) -> None:
        self.home = home
        self.spec = spec
        self.name = spec.name
        self.image = image
        self.capabilities: list[Capability] = list(spec.capabilities)
        self.container_name = identity.object_name(home.name, spec.name)
        self.container_id = ""
        self.config = ContainerConfig()
        self.network: Network | None = None
        #: role -> container id of this node's sidecars, in start order.
        self.sidecars: dict[str, str] = {}
        self._started_capabilities: list[Capability] = []
        self._backend = home.backend

    def __repr__(self) -> str:
        return f"<Node {self.name} of {self.home.name}>"

    # ---- lifecycle (called by the home) ---------------------------------------------

    def prepare(self) -> None:
        """Let every capability add to the container's creation options."""
        for capability in self.capabilities:
            capability.configure(self.config, self.name)

    def create(self, network: Network | None, idle_command: bool) -> None:
        """Create the container on its LAN segment, or with no network at all when it has
        none (a WiFi-only device); not started."""
        self.network = network
        config = self.config
        labels = self.home.identity.labels(self.home.name, identity.ROLE_NODE, self.name)
        labels.update({_label_key(k): str(v) for k, v in config.labels.items()})
        labels["io.cirque.image"] = self.spec.image
        if self.capabilities:
            labels["io.cirque.capabilities"] = ",".join(c.name for c in self.capabilities)
        command = self.spec.command
        if command is None and idle_command:
            command = IDLE_COMMAND
        binds = {
            m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
            for m in config.mounts
        }
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
        """Start each capability on the running container, in spec order."""
        for capability in self.capabilities:
            try:
                capability.start(self)
            except CirqueError:
                raise
            except Exception as exc:
                raise NodeError(
                    f"node {self.name} of home {self.home.name}: capability {capability.name} "
                    f"failed to start ({type(exc).__name__}: {exc})"
                ) from exc
            self._started_capabilities.append(capability)

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

        for capability in reversed(self._started_capabilities):
            attempt(lambda c=capability: c.stop(self), f"capability {capability.name} stop")
        self._started_capabilities.clear()
        for role, container in reversed(list(self.sidecars.items())):
            attempt(
                lambda c=container: self._backend.remove_container(c), f"removing sidecar {role}"
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
    ) -> ExecResult:
        """Run a command (a string runs through ``sh -c``). ``check=True`` raises NodeError
        on a non-zero exit; a timeout kills the command and raises ExecTimeout."""
        result = self._backend.exec(
            self.container_id,
            cmd,
            node=self.name,
            timeout=timeout,
            environment=environment,
            user=user,
        )
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
        self.home.guard_segments([self])
        for capability in self._started_capabilities:
            try:
                capability.restarted(self)
            except CirqueError:
                raise
            except Exception as exc:
                raise NodeError(
                    f"node {self.name} of home {self.home.name}: capability {capability.name} "
                    f"failed to set up again after a restart ({type(exc).__name__}: {exc})"
                ) from exc

    def wait_until(self, predicate: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        """Poll ``predicate()`` until it returns something truthy, and return that. Errors
        it raises count as "not yet". At the deadline: WaitTimeout saying what was awaited,
        with the node's recent log."""
        last_error: list[BaseException] = []

        def attempt() -> Any:
            try:
                return predicate()
            except (CirqueError, OSError) as exc:
                last_error[:] = [exc]
                return None

        try:
            return tenacity.Retrying(
                stop=tenacity.stop_after_delay(timeout),
                wait=tenacity.wait_exponential(multiplier=0.02, max=0.5),
                retry=tenacity.retry_if_result(lambda value: not value),
            )(attempt)
        except tenacity.RetryError:
            detail = f" (last error: {last_error[0]})" if last_error else ""
            raise WaitTimeout(
                f"node {self.name} of home {self.home.name}: waited {timeout:g} s for "
                f"{what}{detail}",
                log=self.logs(tail=WAIT_LOG_TAIL),
            ) from None

    def medium(self, kind: str) -> MediumContainer:
        """The home's medium of ``kind`` ("wifi", "lan"), started on first use."""
        return self.home.medium(kind)

    def screenshot(self) -> bytes:
        """A PNG of the node's virtual display (needs the XVNC capability)."""
        for capability in self.capabilities:
            if capability.name.lower() == "xvnc" and hasattr(capability, "screenshot"):
                return capability.screenshot(self)
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
            "capabilities": [c.describe() for c in self.capabilities],
            "sidecars": sorted(self.sidecars),
        }

    # ---- NodeRuntime: helpers for capabilities --------------------------------------

    def run_netadmin(self, script: str, timeout: float = 30) -> ExecResult:
        """Run a shell script as root with NET_ADMIN in a short-lived helper container in
        this node's network namespace; NodeError when it fails."""
        image = self.home.resolve_image(NETADMIN_IMAGE)
        labels = self.home.identity.labels(self.home.name, identity.ROLE_NETADMIN, self.name)
        name = identity.object_name(self.home.name, self.name, f"netadmin-{_short_token()}")
        helper = self._backend.create_container(
            name,
            image,
            labels=labels,
            command=["sh", "-c", script],
            network_mode=f"container:{self.container_id}",
            cap_add=["NET_ADMIN", "NET_RAW"],
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
            stdout = self._backend.api.logs(helper, stdout=True, stderr=False).decode(
                "utf-8", errors="replace"
            )
            stderr = self._backend.api.logs(helper, stdout=False, stderr=True).decode(
                "utf-8", errors="replace"
            )
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
        labels = self.home.identity.labels(self.home.name, identity.ROLE_SIDECAR, self.name)
        labels["io.cirque.sidecar"] = role
        labels.update(options.pop("labels", None) or {})
        container = self._backend.create_container(
            identity.object_name(self.home.name, self.name, role),
            self.home.resolve_image(image),
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


def _label_key(key: str) -> str:
    return key if key.startswith(identity.LABEL_PREFIX) else identity.LABEL_PREFIX + key


def _short_token() -> str:
    return identity.new_run_id()[:6]
