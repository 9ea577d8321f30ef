"""XVNC: a virtual display for the node, seen through VNC on the host's loopback.

Two sidecars from the ``xvnc`` image, both removed with the node:

- "xvnc" shares the node's network namespace and runs Xvfb (display ``:N``, black root
  window) and x11vnc (port 5900+N). X clients in the node reach the display on its abstract
  socket, which lives in the network namespace, so the node needs only ``DISPLAY=:N`` and
  any image that is an X client works, with nothing mounted.
- "vnc-forward" runs in the host's network namespace and publishes the VNC port on a port
  of 127.0.0.1 the kernel picks (free by construction), relaying to the node's LAN address.

``describe()`` reports the VNC address; ``screenshot(node)`` returns a PNG of the display
(``Node.screenshot()`` delegates here).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

from pytest_cirque.capabilities.base import (
    Capability,
    ContainerConfig,
    NodeRuntime,
    Params,
    register,
)
from pytest_cirque.core.errors import NodeError, WaitTimeout

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


@register
class XVNC(Capability):
    """Virtual X display ``:display`` for the node, VNC on the host's loopback, screenshots."""

    name = "XVNC"

    def __init__(
        self, display: int = 0, geometry: str = "1280x800", depth: int = 24, localhost: bool = True
    ) -> None:
        super().__init__(display=display, geometry=geometry, depth=depth, localhost=localhost)
        self.display = display
        self.geometry = geometry
        self.depth = depth
        self.localhost = localhost
        #: Node name -> "host:port" of its published VNC server, once started.
        self.vnc_addresses: dict[str, str] = {}

    @classmethod
    def params_from_cirque(cls, node_config: Mapping[str, Any]) -> dict[str, Any]:
        # Cirque told the host's display (display_id) from the one the node used
        # (docker_display_id); here the node's display is the one shown, so they are one
        # number: either key gives it, both must agree.
        keys = {"xvnc_localhost": "localhost", "display_id": "display"}
        params = {
            ours: node_config[theirs] for theirs, ours in keys.items() if theirs in node_config
        }
        other = node_config.get("docker_display_id")
        if other is not None and other != params.get("display"):
            params["docker_display_id"] = other  # alone: the display; differing: refused
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> XVNC:
        reader = Params(params, where, cls.name)
        display = reader.integer(
            "display",
            default=0,
            minimum=0,
            maximum=99,
            aliases=("display_id", "docker_display_id"),
        )
        geometry = reader.text("geometry", default="1280x800")
        depth = reader.integer("depth", default=24)
        localhost = reader.boolean("localhost", default=True, aliases=("xvnc_localhost",))
        reader.done()
        match = re.fullmatch(r"(\d+)x(\d+)", geometry or "")
        if not match or not (64 <= int(match[1]) <= 8192 and 64 <= int(match[2]) <= 8192):
            raise reader.error(
                "geometry",
                f"must be WIDTHxHEIGHT between 64 and 8192, e.g. 1280x800 (got {geometry!r})",
            )
        if depth not in (8, 16, 24):
            raise reader.error("depth", f"must be 8, 16 or 24 (got {depth!r})")
        return cls(display=display, geometry=geometry, depth=depth, localhost=localhost)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.environment["DISPLAY"] = f":{self.display}"

    def start(self, node: NodeRuntime) -> None:
        if not node.ip:
            raise NodeError(
                f"node {node.name}: XVNC needs the node's LAN address to publish VNC, and it has "
                "none; give the node a LAN network"
            )
        node.start_sidecar(
            "xvnc",
            IMAGE,
            network_mode=f"container:{node.container_id}",
            command=["cirque-display", str(self.display), f"{self.geometry}x{self.depth}"],
        )
        listen_host = "127.0.0.1" if self.localhost else "0.0.0.0"
        node.start_sidecar(
            "vnc-forward",
            IMAGE,
            network_mode="host",
            command=[
                "cirque-vnc-forward",
                listen_host,
                node.ip,
                str(VNC_BASE_PORT + self.display),
                PORT_FILE,
            ],
        )
        self._wait(node, "xvnc", f"xdpyinfo -display :{self.display} >/dev/null", "X display")
        port = self._wait(node, "vnc-forward", f"cat {PORT_FILE}", "VNC port on the host")
        self.vnc_addresses[node.name] = f"{listen_host}:{int(port)}"

    def restarted(self, node: NodeRuntime) -> None:
        # The sidecars still sit in the node's old network namespace, and the node's LAN
        # address may have changed: start both afresh (the host port changes too).
        for role in ("vnc-forward", "xvnc"):
            node.remove_sidecar(role)
        self.vnc_addresses.pop(node.name, None)
        self.start(node)

    def _wait(self, node: NodeRuntime, role: str, script: str, what: str) -> str:
        """Run ``script`` in the sidecar until it succeeds; its stdout, or WaitTimeout."""
        attempts = Retrying(
            stop=stop_after_delay(READY_TIMEOUT),
            wait=wait_exponential(multiplier=0.05, max=1),
            retry=retry_if_result(lambda result: result.exit_code != 0),
            retry_error_callback=lambda state: state.outcome.result(),
        )
        result = attempts(node.sidecar_exec, role, ["sh", "-c", script])
        if result.exit_code != 0:
            said = (result.stderr or result.stdout).strip()[-200:]
            log = node.sidecar_exec("xvnc", ["sh", "-c", f"cat {DISPLAY_LOG}; true"])
            raise WaitTimeout(
                f"node {node.name}: XVNC {what} not ready within {READY_TIMEOUT:g}s "
                f"({script!r} in sidecar {role} said: {said or 'nothing'})",
                log=log.stdout,
            )
        return result.stdout.strip()

    def vnc_address(self, node: NodeRuntime) -> str:
        """``host:port`` of the node's VNC server on the host."""
        try:
            return self.vnc_addresses[node.name]
        except KeyError:
            raise NodeError(
                f"node {node.name}: XVNC has not started; start the node first"
            ) from None

    def screenshot(self, node: NodeRuntime) -> bytes:
        """A PNG of the node's display."""
        script = (
            f"set -o pipefail; xwd -root -silent -display :{self.display} "
            "| xwdtopnm 2>/dev/null | pnmtopng 2>/dev/null | base64 -w0"
        )
        result = node.sidecar_exec("xvnc", ["bash", "-c", script], timeout=60)
        png = base64.b64decode(result.stdout or b"")
        if result.exit_code != 0 or not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise NodeError(
                f"node {node.name}: XVNC screenshot of display :{self.display} failed "
                f"(exit code {result.exit_code}: {result.stderr.strip()[-200:]}); "
                "is the node running?"
            )
        return png

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        description.pop("localhost")
        if len(self.vnc_addresses) == 1:
            description["vnc"] = next(iter(self.vnc_addresses.values()))
        elif self.vnc_addresses:
            description["vnc"] = dict(self.vnc_addresses)
        return description
