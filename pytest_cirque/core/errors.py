"""One exception hierarchy for the whole project.

Every message is one line: what is wrong, where (home, node, file:line, field) and
what to do. Spec and parameter errors are raised before anything is created.
"""

from __future__ import annotations


class CirqueError(Exception):
    """Base of every error pytest-cirque raises on purpose."""


class SpecError(CirqueError):
    """A home spec, node spec, marker or capability parameter is invalid (nothing was created)."""


class CapabilityUnavailable(SpecError):
    """A capability exists but cannot work on this host or in this version."""


class DockerUnavailable(CirqueError):
    """The Docker engine cannot be reached."""


class ImageError(CirqueError):
    """An image is unknown, or building it failed."""


class NodeError(CirqueError):
    """An operation on a running node failed."""


class ExecTimeout(NodeError):
    """A command run in a node did not finish within its timeout."""


class WaitTimeout(CirqueError):
    """A wait on a condition reached its deadline; the message says what it waited for.

    ``log`` holds the recent log of the node concerned, when there is one.
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        text = super().__str__()
        if self.log:
            return f"{text}\n--- recent log ---\n{self.log.rstrip()}"
        return text


class DeviceModelError(CirqueError):
    """A device model file is invalid (model, file:line or field named)."""


class ScriptError(CirqueError):
    """A device script failed: syntax error, exception, time or memory limit (file:line, device)."""


class TransportError(CirqueError):
    """A telemetry transport could not deliver (broker unreachable, refused, closed)."""
