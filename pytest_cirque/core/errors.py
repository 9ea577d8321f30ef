"""One exception hierarchy for the whole project.

Every message is one line: what is wrong, where (home, node, file:line, field) and
what to do. Spec and parameter errors are raised before anything is created.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


class CirqueError(Exception):
    """Base of every error pytest-cirque raises on purpose."""


class SpecError(CirqueError):
    """A home spec, node spec, marker or capability parameter is invalid (nothing was created)."""


class CapabilityUnavailable(SpecError):
    """A capability exists but cannot work on this host or in this version."""


class DockerUnavailable(CirqueError):
    """The Docker engine cannot be reached."""


class EngineError(CirqueError):
    """The Docker engine refused a request; the message is its explanation's first line."""


class SubnetTaken(EngineError):
    """Docker refused a subnet because it overlaps another network's (the caller tries
    another)."""


class ParentInUse(EngineError):
    """Docker refused a macvlan or ipvlan network because its parent interface is taken."""


class StaleNetwork(EngineError):
    """Docker keeps a network alive for an endpoint that no longer exists (an engine bug
    only a daemon restart clears)."""


class NotFound(CirqueError):
    """No such home or device (the service answers 404 / NOT_FOUND)."""


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


class ProvisioningError(WaitTimeout):
    """A WiFi or Thread provisioning step failed; ``step`` names it, ``capture`` is a pcap of
    the air."""

    def __init__(
        self, message: str, step: str, log: str = "", capture: os.PathLike[str] | None = None
    ) -> None:
        text = f"{message}; capture of the air: {capture}" if capture else message
        super().__init__(text, log=log)
        self.step = step
        self.capture = capture


class HandshakeError(CirqueError):
    """A WPA handshake frame that must be ignored or refused; the message says why."""


class TelemetryProblem(ValueError):
    """A message cannot be rendered or fails its schema; ``field`` names what is wrong.
    Caught where a device's telemetry is rendered and reported there with the device."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class DeviceModelError(CirqueError):
    """A device model file is invalid (model, file:line or field named)."""


class ScriptError(CirqueError):
    """A device script failed: syntax error, exception, time or memory limit (file:line, device)."""


class TransportError(CirqueError):
    """A telemetry transport could not deliver (broker unreachable, refused, closed)."""


def one_line(errors: list[BaseException]) -> str:
    """Several problems as one line: the first one's first line, then how many more and
    the first lines of the next few."""
    first = str(errors[0]).splitlines()[0] if str(errors[0]) else type(errors[0]).__name__
    if len(errors) == 1:
        return first
    others = "; ".join((str(e).splitlines() or [type(e).__name__])[0] for e in errors[1:4])
    return f"{first} (and {len(errors) - 1} more: {others})"


def did_you_mean(word: object, known: Iterable[object]) -> str:
    """" (did you mean X?)" naming the known name nearest a misspelled one, else ""."""
    names = {str(name).lower(): str(name) for name in known}
    close = difflib.get_close_matches(str(word).lower(), list(names), n=1, cutoff=0.6)
    return f" (did you mean {names[close[0]]}?)" if close else ""
