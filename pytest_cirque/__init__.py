"""pytest-cirque: virtual homes of Docker device nodes for pytest, and a device-model simulator.

The public API, importable from here: ``Home``, ``Node``, ``ExecResult``, the errors
(``CirqueError`` and its family), ``Cirque`` (the per-process service behind the
fixtures) and the ``wifi`` helpers. They load on first use, so that importing the plugin
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_cirque.version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    "Home": "pytest_cirque.homes.home",
    "Node": "pytest_cirque.homes.node",
    "Cirque": "pytest_cirque.homes.session",
    "ExecResult": "pytest_cirque.core.docker_backend",
    "BackgroundExec": "pytest_cirque.core.docker_backend",
    "HomeSpec": "pytest_cirque.spec",
    "NodeSpec": "pytest_cirque.spec",
    "wait_until": "pytest_cirque.core.waiting",
    "home_fixture": "pytest_cirque.plugin",
    **{
        name: "pytest_cirque.core.errors"
        for name in (
            "CirqueError",
            "SpecError",
            "CapabilityUnavailable",
            "DockerUnavailable",
            "ImageError",
            "NodeError",
            "ExecTimeout",
            "WaitTimeout",
            "DeviceModelError",
            "ScriptError",
            "TransportError",
        )
    },
}
#: Public modules.
_MODULES = {"wifi": "pytest_cirque.wifi"}

__all__ = [
    "BackgroundExec",
    "CapabilityUnavailable",
    "Cirque",
    "CirqueError",
    "DeviceModelError",
    "DockerUnavailable",
    "ExecResult",
    "ExecTimeout",
    "Home",
    "HomeSpec",
    "ImageError",
    "Node",
    "NodeError",
    "NodeSpec",
    "ScriptError",
    "SpecError",
    "TransportError",
    "WaitTimeout",
    "__version__",
    "home_fixture",
    "wait_until",
    "wifi",
]

if TYPE_CHECKING:
    from pytest_cirque import wifi
    from pytest_cirque.core.docker_backend import BackgroundExec, ExecResult
    from pytest_cirque.core.errors import (
        CapabilityUnavailable,
        CirqueError,
        DeviceModelError,
        DockerUnavailable,
        ExecTimeout,
        ImageError,
        NodeError,
        ScriptError,
        SpecError,
        TransportError,
        WaitTimeout,
    )
    from pytest_cirque.core.waiting import wait_until
    from pytest_cirque.homes.home import Home
    from pytest_cirque.homes.node import Node
    from pytest_cirque.homes.session import Cirque
    from pytest_cirque.plugin import home_fixture
    from pytest_cirque.spec import HomeSpec, NodeSpec


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pytest_cirque' has no attribute {name!r}")
