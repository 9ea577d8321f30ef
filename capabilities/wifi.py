"""WiFi: the node's slot on a simulated WiFi medium (filled by the radio media work).

A WiFi node will see a standard ``wlan0`` and the wpa_supplicant control socket, so any
image's own software drives it as on real hardware. This version has no radio media:
asking for WiFi fails when the spec is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_cirque.capabilities.base import Capability, register, subject
from pytest_cirque.errors import CapabilityUnavailable

#: The one line every radio capability fails with until the media exist.
RADIO_UNAVAILABLE = (
    "{subject} needs the simulated {medium} radio medium, which is not "
    "available in this version of pytest-cirque; remove {name} from the node (use LanAccess "
    "for a wired LAN between nodes)"
)


@register
class WiFi(Capability):
    """Station or access point on a simulated WiFi BSS."""

    name = "WiFi"
    medium = "wifi"
    #: The node-side network device the medium provides.
    interface: ClassVar[str] = "wlan0"
    #: The wpa_supplicant control interface the node's software (wpa_cli) talks to.
    control_socket: ClassVar[str] = "/var/run/wpa_supplicant/wlan0"

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> WiFi:
        raise CapabilityUnavailable(
            RADIO_UNAVAILABLE.format(subject=subject(where, cls.name), name=cls.name, medium="WiFi")
        )
