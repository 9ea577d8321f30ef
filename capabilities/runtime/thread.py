"""Thread on a running node: its radio on the home's Thread medium, the host that drives
it, and the home's dataset. See capabilities/model/thread.py for what can be asked for.

Start: ``ot-radio0`` is attached to the medium, which gives the node its radio id. Without
RCP mode, ot-daemon runs in the node (from the home's read-only Thread volume) with the
simulated radio ``ot-rcp`` on ``ot-radio0`` under it. In RCP mode, ``cirque-rcp-tty``
runs ``ot-rcp`` behind /dev/ttyUSB0, and ot-daemon runs on that line only where our host
drives it (``Thread.host``); otherwise the driver is done. Once ``ot-ctl state`` answers,
our host is commissioned: the home's dataset, a router selection jitter of 1 s (multi-hop
forms in seconds) and its link mode. Thread itself is not started: that is the test's (or
the node's software's) ``ifconfig up`` and ``thread start``, except on a border router,
which starts at once and publishes its prefix and LAN route when it leads or routes.

OpenThread keeps its settings in /var/lib/openthread of the node, which survives a restart
as a device's flash does: a restarted node gets its radio, serial line and daemon back,
with the network it had.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
from collections.abc import Callable
from typing import Any, Protocol, cast

from pytest_cirque.capabilities.model.thread import CIRQUE_HOST, RCP_TTY, Thread, omr_prefix
from pytest_cirque.capabilities.runtime.base import Driver, NodeRuntime, drives
from pytest_cirque.core.errors import CirqueError, NodeError
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.radios.relay.endpoint import mac_for
from pytest_cirque.radios.relay.protocol import (
    THREAD_BIN_DIR,
    THREAD_INTERFACE,
    THREAD_MEDIUM,
    THREAD_RADIO_INTERFACE,
)
from pytest_cirque.radios.relay.thread import dataset_tlvs
from pytest_cirque.spec import NodeSpec

#: OpenThread's settings (its "flash"): kept in the node's own filesystem.
SETTINGS_DIR = "/var/lib/openthread"
#: How long ot-daemon and its radio may take to answer ot-ctl.
DAEMON_START_TIMEOUT_S = 30.0
#: How long the radio interface may take to get its IPv6 link-local address.
RADIO_READY_TIMEOUT_S = 10.0
#: How long RCP mode's serial line may take to appear.
SERIAL_LINE_TIMEOUT_S = 10.0
#: How long a border router may take to lead or route once Thread is started: forming
#: takes seconds, attaching to an existing network and becoming a router some more.
BORDER_ROUTER_ATTACH_TIMEOUT_S = 120.0
#: A sleepy end device's poll period: short, so it answers within a second.
SLEEPY_POLL_PERIOD_MS = 500
#: The node's wired LAN interface (a node has one LAN network).
LAN_INTERFACE = "eth0"
#: The radio ot-daemon drives in RCP mode: the serial line, as on a device.
UART_RADIO = f"spinel+hdlc+uart://{RCP_TTY}"
#: Roles of a border router that can publish its prefix and route.
ROUTING_ROLES = ("leader", "router")


class _ThreadNode(NodeRuntime, Protocol):
    """What the driver uses of a node beyond NodeRuntime (the home's Node has it)."""

    spec: NodeSpec

    def exec_background(self, cmd: str | list[str]) -> Any: ...


def forkpty_radio(node_id: int) -> str:
    """ot-daemon's radio URL for ot-rcp on ``ot-radio0`` under a pseudo-terminal of its own."""
    return (
        f"spinel+hdlc+forkpty://{THREAD_BIN_DIR}/ot-rcp"
        f"?forkpty-arg=-L{THREAD_RADIO_INTERFACE}&forkpty-arg={node_id}"
    )


def daemon_command(radio: str) -> list[str]:
    """The command that runs ot-daemon for wpan0 over ``radio`` (a spinel radio URL)."""
    # The posix platform keeps its settings under its working directory. The shell stays
    # as ot-daemon's parent (no exec): ot-daemon ends itself when its parent goes, and the
    # process that starts an exec in a container goes right after starting it.
    script = (
        f"mkdir -p {SETTINGS_DIR} && cd {SETTINGS_DIR} && "
        f"{THREAD_BIN_DIR}/ot-daemon -I {THREAD_INTERFACE} {shlex.quote(radio)}; exit $?"
    )
    return ["sh", "-c", script]


def serial_line_command(node_id: int) -> list[str]:
    """The command that gives the node /dev/ttyUSB0 with its simulated RCP behind it."""
    return [
        f"{THREAD_BIN_DIR}/cirque-rcp-tty",
        RCP_TTY,
        f"{THREAD_BIN_DIR}/ot-rcp",
        f"-L{THREAD_RADIO_INTERFACE}",
        str(node_id),
    ]


def global_addresses(if_inet6: str, interface: str) -> list[ipaddress.IPv6Interface]:
    """The global-scope addresses of ``interface``, with their prefix lengths, from
    /proc/net/if_inet6 text (address, index, prefix length, scope, flags, name)."""
    found = []
    for fields in map(str.split, if_inet6.splitlines()):
        if len(fields) == 6 and fields[5] == interface and fields[3] == "00":
            with contextlib.suppress(ValueError):
                address = ipaddress.IPv6Address(int(fields[0], 16))
                found.append(ipaddress.IPv6Interface(f"{address}/{int(fields[2], 16)}"))
    return found


@drives(Thread)
class ThreadDriver(Driver[Thread]):
    """A Thread node: its radio on the medium, its host, and the home's dataset."""

    def __init__(self, capability: Thread) -> None:
        super().__init__(capability)
        #: The node's radio id on the medium (1..128), kept across restarts.
        self.node_id: int | None = None
        #: Who drives the radio: "cirque" or "image" (Thread.host), once started.
        self.host: str | None = None
        #: The running ot-daemon (an exec), while our host runs.
        self.daemon: Any = None
        #: The running cirque-rcp-tty and ot-rcp (an exec), in RCP mode.
        self.serial_line: Any = None
        #: A border router's LAN /64 and the off-mesh-routable prefix it publishes.
        self.lan_prefix: str | None = None
        self.omr_prefix: str | None = None

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), "node_id": self.node_id, "thread_host": self.host}
        if self.omr_prefix:
            info["omr_prefix"] = self.omr_prefix
        return info

    def start(self, node: NodeRuntime) -> None:
        self.host = self.capability.host(cast(_ThreadNode, node).spec.image)
        self._bring_up(node)
        if self.host != CIRQUE_HOST:
            return  # the image's own host drives /dev/ttyUSB0 and commissions itself
        if self.capability.commissioned:
            dataset = self.capability.dataset_for(node.medium(THREAD_MEDIUM).as_thread().dataset())
            self.ctl(node, "dataset", "set", "active", dataset_tlvs(dataset))
        self._settings(node)
        if self.capability.border_router:
            self._serve_as_border_router(node)

    def _bring_up(self, node: NodeRuntime) -> None:
        """Attach the radio, make the serial line in RCP mode, and run our ot-daemon until
        ot-ctl answers where our host drives the radio."""
        medium = node.medium(THREAD_MEDIUM)
        self.node_id = medium.as_thread().node_id(node.name)
        medium.attach(
            node.container_id,
            node.name,
            ifname=THREAD_RADIO_INTERFACE,
            position=self.capability.position,
            mac=mac_for(f"{node.container_id[:12]}-{node.name}-thread"),
        )
        self._wait(
            node,
            medium,
            self._radio_ready,
            "ot-radio0's IPv6 link-local address",
            RADIO_READY_TIMEOUT_S,
        )
        background = cast(_ThreadNode, node).exec_background
        radio = forkpty_radio(self.node_id)
        if self.capability.rcp_mode:
            self.serial_line = background(serial_line_command(self.node_id))
            what = f"RCP mode's serial line {RCP_TTY}"
            self._wait(node, medium, self._serial_line_ready, what, SERIAL_LINE_TIMEOUT_S)
            radio = UART_RADIO
        if self.host != CIRQUE_HOST:
            return
        self.daemon = background(daemon_command(radio))
        self._wait(
            node,
            medium,
            self._daemon_answers,
            "ot-daemon to answer `ot-ctl state`",
            DAEMON_START_TIMEOUT_S,
        )

    def _wait(
        self,
        node: NodeRuntime,
        medium: Any,
        predicate: Callable[[NodeRuntime], object],
        what: str,
        timeout: float,
    ) -> None:
        wait_until(
            lambda: predicate(node),
            f"node {node.name}: {what}",
            timeout,
            log=lambda: self.daemon_log() + medium.log(tail=20),
            ignore=(),
        )

    def _radio_ready(self, node: NodeRuntime) -> bool:
        # /proc/net/if_inet6: address, index, prefix length, scope (20: link), flags (0x40:
        # tentative, not yet usable), name.
        result = node.exec(["cat", "/proc/net/if_inet6"], timeout=10)
        return any(
            fields[3] == "20" and not int(fields[4], 16) & 0x40
            for fields in map(str.split, result.stdout.splitlines())
            if len(fields) == 6 and fields[5] == THREAD_RADIO_INTERFACE
        )

    def _serial_line_ready(self, node: NodeRuntime) -> bool:
        self._check_running(node, self.serial_line, "cirque-rcp-tty (RCP mode's serial line)")
        return node.exec(["test", "-c", RCP_TTY], timeout=10).exit_code == 0

    def _daemon_answers(self, node: NodeRuntime) -> bool:
        self._check_running(node, self.daemon, "ot-daemon")
        result = node.exec([f"{THREAD_BIN_DIR}/ot-ctl", "state"], timeout=10)
        return result.exit_code == 0 and "Done" in result.stdout

    def _check_running(self, node: NodeRuntime, process: Any, what: str) -> None:
        """NodeError with the process's last words when it ended while it was awaited."""
        if process is not None and not process.running:
            raise NodeError(
                f"node {node.name}: {what} exited ({process.wait(5).exit_code}): "
                f"{self.daemon_log().strip()[-300:]!r}; check that {THREAD_BIN_DIR} holds "
                "OpenThread and the node has /dev/net/tun (and runs as root in RCP mode)"
            )

    def daemon_log(self) -> str:
        """What the node's serial line and ot-daemon have printed so far (ot-rcp's log is
        the serial line's)."""
        return "".join(
            f"{process.stdout}{process.stderr}"
            for process in (self.serial_line, self.daemon)
            if process is not None
        )

    def _settings(self, node: NodeRuntime) -> None:
        """What OpenThread does not keep in its settings: set again after every start."""
        self.ctl(node, "routerselectionjitter", "1")
        self.ctl(node, "mode", self.capability.mode)
        if self.capability.mode == "-":
            self.ctl(node, "pollperiod", str(SLEEPY_POLL_PERIOD_MS))

    def _serve_as_border_router(self, node: NodeRuntime) -> None:
        """Start Thread (a border router is infrastructure), and once the node leads or
        routes, publish the off-mesh-routable prefix and the route to the LAN."""
        lan = self._lan_prefix(node)
        omr = omr_prefix(lan)
        self.ctl(node, "ifconfig", "up")
        self.ctl(node, "thread", "start")
        wait_until(
            lambda: (self.ctl(node, "state").split() or [""])[0] in ROUTING_ROLES,
            f"node {node.name}: the border router to lead or route (ot-ctl state: "
            f"{' or '.join(ROUTING_ROLES)})",
            BORDER_ROUTER_ATTACH_TIMEOUT_S,
            log=lambda: self.daemon_log()[-2000:],
        )
        # p: preferred, a: SLAAC, r: default route, o: on-mesh, s: stable.
        self.ctl(node, "prefix", "add", omr, "paros")
        self.ctl(node, "route", "add", lan, "s")
        self.ctl(node, "netdata", "register")
        self.lan_prefix, self.omr_prefix = lan, omr

    def _lan_prefix(self, node: NodeRuntime) -> str:
        """The /64 of the node's IPv6 LAN address (NodeError when it has none)."""
        result = node.exec(["cat", "/proc/net/if_inet6"], timeout=10)
        addresses = global_addresses(result.stdout, LAN_INTERFACE)
        if not addresses:
            raise NodeError(
                f"node {node.name}: a border router needs an IPv6 address on its LAN "
                f"({LAN_INTERFACE}) and has none; give it docker_network: ipv6"
            )
        return str(ipaddress.IPv6Interface(f"{addresses[0].ip}/64").network)

    def lan_routes(self) -> list[str]:
        return [self.omr_prefix] if self.omr_prefix else []

    def ctl(self, node: NodeRuntime, *args: str, record: bool = True) -> str:
        """One ot-ctl command in the node; its output, or NodeError with OpenThread's words.
        ``record=False`` keeps a poll out of the node's command history."""
        result = node.exec([f"{THREAD_BIN_DIR}/ot-ctl", *args], timeout=30, record=record)
        output = (result.stdout + result.stderr).strip()
        if result.exit_code != 0 or "Error" in output:
            raise NodeError(
                f"node {node.name}: `ot-ctl {' '.join(args)[:80]}` failed: "
                f"{output.splitlines()[-1] if output else f'exit {result.exit_code}'}"
            )
        return output

    def stop(self, node: NodeRuntime) -> None:
        for process in (self.daemon, self.serial_line):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.kill()
        self.daemon = self.serial_line = None
        # The node may be gone, and the medium with it: nothing is left to undo then.
        with contextlib.suppress(CirqueError):
            node.medium(THREAD_MEDIUM).detach(node.name)

    def restarted(self, node: NodeRuntime) -> None:
        # A new network namespace and a new /dev: no ot-radio0, no wpan0, no serial line,
        # no ot-daemon. OpenThread's settings are still in the node's filesystem: the
        # dataset is not given again.
        self.stop(node)
        self._bring_up(node)
        if self.host != CIRQUE_HOST:
            return
        self._settings(node)
        if self.capability.border_router:
            self._serve_as_border_router(node)
