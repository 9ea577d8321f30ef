"""Thread on a running node: its radio on the home's Thread medium, ot-daemon over it, and
the home's dataset. See capabilities/model/thread.py for what can be asked for.

Start: ``ot-radio0`` is attached to the medium, which gives the node its radio id; then
ot-daemon runs in the node (from the home's read-only Thread volume) with the simulated
radio ``ot-rcp`` on ``ot-radio0``, and once ``ot-ctl state`` answers, the node is
commissioned: the home's dataset, a router selection jitter of 1 s (multi-hop forms in
seconds) and its link mode. Thread itself is not started: that is the test's (or the
node's software's) ``ifconfig up`` and ``thread start``.

OpenThread keeps its settings in /var/lib/openthread of the node, which survives a restart
as a device's flash does: a restarted node gets its radio and daemon back, with the
network it had.
"""

from __future__ import annotations

import contextlib
import shlex
from typing import Any, Protocol, cast

from pytest_cirque.capabilities.model.thread import Thread
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

#: OpenThread's settings (its "flash"): kept in the node's own filesystem.
SETTINGS_DIR = "/var/lib/openthread"
#: How long ot-daemon and its radio may take to answer ot-ctl.
DAEMON_START_TIMEOUT_S = 30.0
#: How long the radio interface may take to get its IPv6 link-local address.
RADIO_READY_TIMEOUT_S = 10.0
#: A sleepy end device's poll period: short, so it answers within a second.
SLEEPY_POLL_PERIOD_MS = 500


class _ThreadNode(NodeRuntime, Protocol):
    """What the driver uses of a node beyond NodeRuntime (the home's Node has it)."""

    def exec_background(self, cmd: str | list[str]) -> Any: ...


def daemon_command(node_id: int) -> list[str]:
    """The command that runs ot-daemon for wpan0 over the node's simulated radio."""
    radio = (
        f"spinel+hdlc+forkpty://{THREAD_BIN_DIR}/ot-rcp"
        f"?forkpty-arg=-L{THREAD_RADIO_INTERFACE}&forkpty-arg={node_id}"
    )
    # The posix platform keeps its settings under its working directory. The shell stays
    # as ot-daemon's parent (no exec): ot-daemon ends itself when its parent goes, and the
    # process that starts an exec in a container goes right after starting it.
    script = (
        f"mkdir -p {SETTINGS_DIR} && cd {SETTINGS_DIR} && "
        f"{THREAD_BIN_DIR}/ot-daemon -I {THREAD_INTERFACE} {shlex.quote(radio)}; exit $?"
    )
    return ["sh", "-c", script]


@drives(Thread)
class ThreadDriver(Driver[Thread]):
    """A Thread node: its radio on the medium, ot-daemon, and the home's dataset."""

    def __init__(self, capability: Thread) -> None:
        super().__init__(capability)
        #: The node's radio id on the medium (1..128), kept across restarts.
        self.node_id: int | None = None
        #: The running ot-daemon (an exec), while it runs.
        self.daemon: Any = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "node_id": self.node_id}

    def start(self, node: NodeRuntime) -> None:
        self._bring_up(node)
        if self.capability.commissioned:
            dataset = self.capability.dataset_for(node.medium(THREAD_MEDIUM).as_thread().dataset())
            self.ctl(node, "dataset", "set", "active", dataset_tlvs(dataset))
        self._settings(node)

    def _bring_up(self, node: NodeRuntime) -> None:
        """Attach the radio and run ot-daemon until ot-ctl answers."""
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
        self.daemon = cast(_ThreadNode, node).exec_background(daemon_command(self.node_id))
        self._wait(
            node,
            medium,
            self._daemon_answers,
            "ot-daemon to answer `ot-ctl state`",
            DAEMON_START_TIMEOUT_S,
        )

    def _wait(
        self, node: NodeRuntime, medium: Any, predicate: Any, what: str, timeout: float
    ) -> None:
        wait_until(
            lambda: predicate(node),
            f"node {node.name}: {what}",
            timeout,
            log=lambda: self._daemon_output() + medium.log(tail=20),
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

    def _daemon_answers(self, node: NodeRuntime) -> bool:
        if self.daemon is not None and not self.daemon.running:
            raise NodeError(
                f"node {node.name}: ot-daemon exited ({self.daemon.wait(5).exit_code}): "
                f"{self._daemon_output().strip()[-300:]!r}; "
                f"check that {THREAD_BIN_DIR} holds OpenThread and the node has /dev/net/tun"
            )
        result = node.exec([f"{THREAD_BIN_DIR}/ot-ctl", "state"], timeout=10)
        return result.exit_code == 0 and "Done" in result.stdout

    def _daemon_output(self) -> str:
        if self.daemon is None:
            return ""
        return f"{self.daemon.stdout}{self.daemon.stderr}"

    def _settings(self, node: NodeRuntime) -> None:
        """What OpenThread does not keep in its settings: set again after every start."""
        self.ctl(node, "routerselectionjitter", "1")
        self.ctl(node, "mode", self.capability.mode)
        if self.capability.mode == "-":
            self.ctl(node, "pollperiod", str(SLEEPY_POLL_PERIOD_MS))

    def ctl(self, node: NodeRuntime, *args: str) -> str:
        """One ot-ctl command in the node; its output, or NodeError with OpenThread's words."""
        result = node.exec([f"{THREAD_BIN_DIR}/ot-ctl", *args], timeout=30)
        output = (result.stdout + result.stderr).strip()
        if result.exit_code != 0 or "Error" in output:
            raise NodeError(
                f"node {node.name}: `ot-ctl {' '.join(args)[:80]}` failed: "
                f"{output.splitlines()[-1] if output else f'exit {result.exit_code}'}"
            )
        return output

    def stop(self, node: NodeRuntime) -> None:
        if self.daemon is not None:
            with contextlib.suppress(Exception):
                self.daemon.kill()
            self.daemon = None
        # The node may be gone, and the medium with it: nothing is left to undo then.
        with contextlib.suppress(CirqueError):
            node.medium(THREAD_MEDIUM).detach(node.name)

    def restarted(self, node: NodeRuntime) -> None:
        # A new network namespace: no ot-radio0, no wpan0, no ot-daemon. OpenThread's
        # settings are still in the node's filesystem: the dataset is not given again.
        self.stop(node)
        self._bring_up(node)
        self._settings(node)
