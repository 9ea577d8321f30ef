"""WiFi: a node's radio on the home's simulated WiFi medium, as a station or an AP.

``WiFi`` makes the node a station: it gets a ``wlan0`` with no carrier and the
wpa_supplicant control interface at /var/run/wpa_supplicant/wlan0 (served by a small relay
the node runs as its wpa_supplicant, from the home's radio volume mounted read-only at
/run/cirque-radio, whose bin folder comes first on the node's PATH with iw and iwlist),
so the node's own software (wpa_cli, wpa_ctrl, a restart with killall) scans, associates
and reconnects as on real hardware; the carrier comes up once associated, and the
node's own DHCP client (dhclient, dhcpcd) takes a lease from the AP. A WiFi device has
no Ethernet: the node leaves the home's wired LAN unless ``lan: true``. Parameters:
``position`` (metres, [x, y] or [x, y, z]), ``mac``, ``lan``.

``WiFiAP`` makes the node an access point: ``ssid``, ``psk`` (WPA2-PSK, 8..63
characters; none for an open network), ``channel``, ``hidden``, ``subnet`` (its wlan0
network; one per AP, chosen when not given), ``position``, ``mac`` and ``mode``:

- ``router`` (default): the AP's wlan0 is the gateway of its own subnet; dnsmasq hands out
  leases and answers DNS there, and the AP masquerades its stations to the home's LAN;
- ``bridge``: a bare AP; wlan0 joins a bridge with the AP's LAN interface, and stations
  take leases from dnsmasq on the AP in the upper part of the LAN's subnet.

Both need the node to run dnsmasq (the ``wifi-ap`` image has it). The radio itself (beacons,
association, WPA2's 4-way handshake, roaming) lives in the medium, outside the nodes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_cirque.capabilities.model.base import (
    Capability,
    ContainerConfig,
    Params,
    register,
)
from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.protocol import (
    STATIONS_DIR,
    STATIONS_VOLUME,
    WIFI_CONTROL_SOCKET,
    WIFI_INTERFACE,
    WIFI_MEDIUM,
)
from pytest_cirque.radios.relay.wifi import ap_problem, mac_bytes

#: The medium every WiFi node of a home shares.
MEDIUM = WIFI_MEDIUM
INTERFACE = WIFI_INTERFACE
CONTROL_SOCKET = WIFI_CONTROL_SOCKET
MODES = ("router", "bridge")
#: A Debian image's PATH, after which a station node finds its WiFi tools' directory.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where an AP's own subnet may lie: the private blocks of RFC 1918. Loopback, link-local
#: or public addresses on a home's WiFi would shadow the host's or the world's.
PRIVATE_BLOCKS = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def _position(params: Params) -> list[float]:
    name, value = params.raw("position")
    if value is None:
        return [0.0, 0.0, 0.0]
    if (
        not isinstance(value, (list, tuple))
        or len(value) not in (2, 3)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise params.error(name, f"must be [x, y] or [x, y, z] in metres (got {value!r})")
    return [float(v) for v in value] + [0.0] * (3 - len(value))


def _mac(params: Params) -> str | None:
    name, value = params.raw("mac")
    if value is None:
        return None
    try:
        address = mac_bytes(str(value), "mac")
    except SpecError:
        raise params.error(name, f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)") from None
    if address[0] & 1:
        raise params.error(name, f"{value!r} is a multicast address; give a unicast one")
    return str(value).lower()


class Radio(Capability):
    """What stations and APs share: a place on the medium and an interface on it."""

    medium: ClassVar[str | None] = MEDIUM
    interface: ClassVar[str] = INTERFACE

    def __init__(self, position: list[float], mac: str | None, **params: Any) -> None:
        super().__init__(position=position, mac=mac, **params)
        self.position = position
        self.mac = mac


@register
class WiFi(Radio):
    """A WiFi station: wlan0 and the wpa_supplicant control interface."""

    name = "WiFi"
    control_socket: ClassVar[str] = CONTROL_SOCKET

    def __init__(self, position: list[float], mac: str | None, lan: bool) -> None:
        super().__init__(position, mac, lan=lan)
        self.lan = lan

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> WiFi:
        read = Params(params, where, cls.name)
        position = _position(read)
        mac = _mac(read)
        lan = read.boolean("lan", default=False)
        read.done()
        return cls(position, mac, lan)

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        # The node's own DHCP client sets wlan0's address and routes.
        config.cap_add.append("NET_ADMIN")
        # Read-only: the relay program that serves the node's control socket and the
        # medium's stations socket it connects to (with the station's own token).
        config.home_volumes[STATIONS_VOLUME] = (STATIONS_DIR, True)
        # Its wpa_supplicant, iw and iwlist (the relay program under those names) come
        # before the image's own, which cannot drive a simulated radio; in front of what
        # another capability put first (Thread's ot-ctl), not instead of it.
        path = config.environment.get("PATH", DEFAULT_PATH)
        config.environment["PATH"] = f"{STATIONS_DIR}/bin:{path}"
        # dhcpcd wants promote_secondaries on its interface and writes it when it is off,
        # which a container's read-only /proc/sys refuses: wlan0 inherits it on instead.
        config.sysctls["net.ipv4.conf.default.promote_secondaries"] = "1"
        if not self.lan:
            config.lan_segment = None


@register
class WiFiAP(Radio):
    """A WiFi access point with DHCP (dnsmasq), routing or bridging to the home's LAN."""

    name = "WiFiAP"
    provides_medium = True

    def __init__(
        self,
        ssid: str,
        psk: str | None,
        channel: int,
        hidden: bool,
        mode: str,
        subnet: str | None,
        position: list[float],
        mac: str | None,
    ) -> None:
        super().__init__(
            position,
            mac,
            ssid=ssid,
            channel=channel,
            hidden=hidden,
            mode=mode,
            subnet=subnet,
        )
        self.ssid = ssid
        self.psk = psk
        self.channel = channel
        self.hidden = hidden
        self.mode = mode
        self.subnet = subnet

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, where: str) -> WiFiAP:
        read = Params(params, where, cls.name)
        ssid = read.required("ssid", read.raw("ssid")[1], "the network's name, e.g. 'home'")
        _, psk = read.raw("psk", aliases=("passphrase",))
        channel = read.integer("channel", default=6)
        hidden = read.boolean("hidden", default=False)
        mode = read.text("mode", default="router")
        if mode not in MODES:
            raise read.error("mode", f"must be one of {', '.join(MODES)} (got {mode!r})")
        _, subnet = read.raw("subnet")
        if subnet is not None:
            try:
                network = ipaddress.ip_network(str(subnet), strict=True)
            except ValueError as exc:
                raise read.error(
                    "subnet", f"{exc}; give a network such as 192.168.60.0/24"
                ) from None
            if network.version != 4 or network.prefixlen > 29:
                raise read.error("subnet", f"must be an IPv4 network of /29 or wider ({subnet})")
            if not any(network.subnet_of(block) for block in PRIVATE_BLOCKS):
                raise read.error(
                    "subnet",
                    f"{subnet} is not a private network for a home's WiFi; give one in "
                    "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                )
        position = _position(read)
        mac = _mac(read)
        read.done()
        problem = ap_problem(ssid, psk, channel if channel is not None else 6)
        if problem:
            raise read.error(*problem)
        return cls(
            ssid,
            psk,
            int(channel or 6),
            hidden,
            mode,
            None if subnet is None else str(subnet),
            position,
            mac,
        )

    def describe(self) -> dict[str, Any]:
        security = "WPA2-PSK" if self.psk is not None else "open"
        return {**super().describe(), "security": security}

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.cap_add += ["NET_ADMIN", "NET_RAW"]
        config.sysctls["net.ipv4.ip_forward"] = "1"
