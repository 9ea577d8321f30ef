"""Thread: the node's slot on a simulated Thread (802.15.4) medium (filled by the radio work).

A Thread node will see a standard ``wpan0`` and the OpenThread daemon socket that ``ot-ctl``
uses, so any image's own software drives it as on real hardware. This version has no radio
media: asking for Thread fails when the spec is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_cirque.capabilities.model.base import Capability, register, subject
from pytest_cirque.core.errors import CapabilityUnavailable

RADIO_UNAVAILABLE = (
    "{subject} needs the simulated {medium} radio medium, which is not available in this "
    "version of pytest-cirque; remove {name} from the node (WiFi and LanAccess are available)"
)


@register
class Thread(Capability):
    """Node on a simulated Thread PAN."""

    name = "Thread"
    medium = "thread"
    #: The node-side network device the medium provides.
    interface: ClassVar[str] = "wpan0"
    #: The OpenThread daemon's control socket (ot-ctl connects to it).
    control_socket: ClassVar[str] = "/run/openthread-wpan0.sock"

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> Thread:
        raise CapabilityUnavailable(
            RADIO_UNAVAILABLE.format(
                subject=subject(where, cls.name), name=cls.name, medium="Thread"
            )
        )
