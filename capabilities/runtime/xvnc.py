"""XVNC on a running node: the display and forwarder sidecars, the VNC address the node
got, and screenshots (see capabilities/model/xvnc.py for what can be asked for)."""

from __future__ import annotations

import base64
import secrets
import string
from typing import Any

from pytest_cirque.capabilities.model.xvnc import XVNC
from pytest_cirque.capabilities.runtime.base import Driver, NodeRuntime, drives
from pytest_cirque.core.errors import NodeError
from pytest_cirque.core.waiting import wait_until

#: The project image both sidecars run (images/xvnc).
IMAGE = "xvnc"
#: VNC port of display :N inside the node's network namespace is VNC_BASE_PORT + N.
VNC_BASE_PORT = 5900
#: Where the forwarder writes the host port it listens on.
PORT_FILE = "/tmp/cirque-vnc-port"
#: Where the display sidecar logs Xvfb and x11vnc (read into a failed wait).
DISPLAY_LOG = "/tmp/cirque-display.log"
#: How long the display and the forwarder may take to come up.
READY_TIMEOUT = 30.0
#: The environment variable that hands the VNC password to cirque-display.
PASSWORD_ENV = "CIRQUE_VNC_PASSWORD"
#: VNC authentication keys DES with the first 8 bytes of the password and ignores the rest.
PASSWORD_LENGTH = 8
#: Letters and digits only: x11vnc's password file gives "#" and "__" words a meaning.
PASSWORD_ALPHABET = string.ascii_letters + string.digits


def new_password() -> str:
    """A random VNC password: 8 letters or digits, about 47 bits."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


@drives(XVNC)
class XvncDriver(Driver[XVNC]):
    """The node's virtual display: two sidecars, and the host address VNC is published on."""

    def __init__(self, capability: XVNC) -> None:
        super().__init__(capability)
        #: "host:port" of the node's published VNC server, once started.
        self.address: str | None = None
        #: The password VNC clients must give (None with ``password: false``). Made once per
        #: node and kept across restarts, so a client that was told it stays told.
        self.password: str | None = new_password() if capability.password else None

    def start(self, node: NodeRuntime) -> None:
        wanted = self.capability
        if not node.ip:
            raise NodeError(
                f"node {node.name}: XVNC needs the node's LAN address to publish VNC, and it has "
                "none; give the node a LAN network"
            )
        # The password goes in the sidecar's environment, not its command line: a command
        # line shows in every host user's `ps`, a process's environment only to its owner
        # (root here) and the container's configuration only to those who can run Docker.
        # cirque-display writes it to a file x11vnc reads and removes.
        auth = "password" if self.password is not None else "none"
        node.start_sidecar(
            "xvnc",
            IMAGE,
            network_mode=f"container:{node.container_id}",
            command=[
                "cirque-display",
                str(wanted.display),
                f"{wanted.geometry}x{wanted.depth}",
                auth,
            ],
            environment={PASSWORD_ENV: self.password} if self.password is not None else {},
        )
        listen_host = "127.0.0.1" if wanted.localhost else "0.0.0.0"
        node.start_sidecar(
            "vnc-forward",
            IMAGE,
            network_mode="host",
            command=[
                "cirque-vnc-forward",
                listen_host,
                node.ip,
                str(VNC_BASE_PORT + wanted.display),
                PORT_FILE,
            ],
        )
        self._wait(node, "xvnc", f"xdpyinfo -display :{wanted.display} >/dev/null", "X display")
        # Listening, so a client that connects once start() returns meets the VNC server
        # (and its password check) rather than a forwarder with nothing behind it.
        listening = f":{VNC_BASE_PORT + wanted.display:04X} [0-9A-F]+:0000 0A "
        self._wait(
            node, "xvnc", f"grep -qsE '{listening}' /proc/net/tcp /proc/net/tcp6", "VNC server"
        )
        port = self._wait(node, "vnc-forward", f"cat {PORT_FILE}", "VNC port on the host")
        self.address = f"{listen_host}:{int(port)}"

    def restarted(self, node: NodeRuntime) -> None:
        # The sidecars still sit in the node's old network namespace, and the node's LAN
        # address may have changed: start both afresh (the host port changes too; the
        # password stays the node's).
        for role in ("vnc-forward", "xvnc"):
            node.remove_sidecar(role)
        self.address = None
        self.start(node)

    def _wait(self, node: NodeRuntime, role: str, script: str, what: str) -> str:
        """Run ``script`` in the sidecar until it succeeds; its stdout, or WaitTimeout with
        what the sidecar said last and the display's log."""

        def succeeded() -> str | None:
            result = node.sidecar_exec(role, ["sh", "-c", script])
            if result.exit_code != 0:
                said = (result.stderr or result.stdout).strip()[-200:] or "nothing"
                raise NodeError(f"{script!r} in sidecar {role} said: {said}")
            return result.stdout.strip() or " "

        def display_log() -> str:
            return node.sidecar_exec("xvnc", ["sh", "-c", f"cat {DISPLAY_LOG}; true"]).stdout

        return wait_until(
            succeeded,
            f"node {node.name}: XVNC {what}",
            READY_TIMEOUT,
            log=display_log,
            ignore=(NodeError,),
            max_interval=1.0,
        ).strip()

    def vnc_address(self, node: NodeRuntime) -> str:
        """``host:port`` of the node's VNC server on the host."""
        if self.address is None:
            raise NodeError(f"node {node.name}: XVNC has not started; start the node first")
        return self.address

    def screenshot(self, node: NodeRuntime) -> bytes:
        """A PNG of the node's display."""
        display = self.capability.display
        script = (
            f"set -o pipefail; xwd -root -silent -display :{display} "
            "| xwdtopnm 2>/dev/null | pnmtopng 2>/dev/null | base64 -w0"
        )
        result = node.sidecar_exec("xvnc", ["bash", "-c", script], timeout=60)
        png = base64.b64decode(result.stdout or b"")
        if result.exit_code != 0 or not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise NodeError(
                f"node {node.name}: XVNC screenshot of display :{display} failed "
                f"(exit code {result.exit_code}: {result.stderr.strip()[-200:]}); "
                "is the node running?"
            )
        return png

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        if self.address is not None:
            description["vnc"] = self.address
        if self.password is not None:
            description["vnc_password"] = self.password
        return description
