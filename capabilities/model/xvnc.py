"""XVNC: a virtual display for the node, seen through VNC on the host's loopback.

Two sidecars from the ``xvnc`` image, both removed with the node:

- "xvnc" shares the node's network namespace and runs Xvfb (display ``:N``, black root
  window) and x11vnc (port 5900+N). X clients in the node reach the display on its abstract
  socket, which lives in the network namespace, so the node needs only ``DISPLAY=:N`` and
  any image that is an X client works, with nothing mounted.
- "vnc-forward" runs in the host's network namespace and publishes the VNC port on a port
  of 127.0.0.1 the kernel picks (free by construction), relaying to the node's LAN address.

The VNC server asks for a password, random per node and given by the driver's
``describe()`` (``vnc_password``): a loopback port is open to every local user of the host,
and the server's own port to every node of the home. ``password: false`` turns it off.

This module is what can be asked for; capabilities/runtime/xvnc.py starts the sidecars,
reports the VNC address and takes screenshots (``Node.screenshot()``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pytest_cirque.capabilities.model.base import (
    Capability,
    ContainerConfig,
    Params,
    register,
)


@register
class XVNC(Capability):
    """Virtual X display ``:display`` for the node, VNC on the host's loopback, screenshots."""

    name = "XVNC"

    def __init__(
        self,
        display: int = 0,
        geometry: str = "1280x800",
        depth: int = 24,
        localhost: bool = True,
        password: bool = True,
    ) -> None:
        super().__init__(
            display=display, geometry=geometry, depth=depth, localhost=localhost, password=password
        )
        self.display = display
        self.geometry = geometry
        self.depth = depth
        self.localhost = localhost
        #: Whether VNC clients must give the node's random password (VNC authentication).
        self.password = password

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
        _, password = reader.raw("password")
        reader.done()
        if password is None:
            password = True
        if not isinstance(password, bool):
            # A chosen password would sit in the spec, readable by whoever reads the tests.
            raise reader.error(
                "password",
                "must be true (a random password per node, given in describe()) or false "
                "(no password: any local user can connect); a fixed password is not "
                f"supported (got {password!r})",
            )
        match = re.fullmatch(r"(\d+)x(\d+)", geometry or "")
        if not match or not (64 <= int(match[1]) <= 8192 and 64 <= int(match[2]) <= 8192):
            raise reader.error(
                "geometry",
                f"must be WIDTHxHEIGHT between 64 and 8192, e.g. 1280x800 (got {geometry!r})",
            )
        if depth not in (8, 16, 24):
            raise reader.error("depth", f"must be 8, 16 or 24 (got {depth!r})")
        return cls(
            display=display,
            geometry=geometry,
            depth=depth,
            localhost=localhost,
            password=password,
        )

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.environment["DISPLAY"] = f":{self.display}"

    def describe(self) -> dict[str, Any]:
        description = super().describe()
        description.pop("localhost")
        return description
