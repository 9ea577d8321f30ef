"""WiFi: a node's radio on the home's simulated WiFi medium, as a station or an AP.

``WiFi`` makes the node a station: it gets a ``wlan0`` with no carrier and the
wpa_supplicant control interface at /var/run/wpa_supplicant/wlan0, so the node's own
software (wpa_cli, wpa_ctrl) scans, associates and reconnects as on real hardware; the
carrier comes up once associated, and the node's own DHCP client takes a lease from the
AP. A WiFi device has no Ethernet: the node leaves the home's wired LAN unless
``lan: true``. Parameters: ``position`` (metres, [x, y] or [x, y, z]), ``mac``, ``lan``.

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

import contextlib
import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_cirque.capabilities.base import (
    Capability,
    ContainerConfig,
    NodeRuntime,
    Params,
    register,
)
from pytest_cirque.core.errors import CirqueError, NodeError, SpecError
from pytest_cirque.radios.relay.endpoint import mac_for
from pytest_cirque.radios.relay.wifi import ap_problem, mac_bytes

#: The medium every WiFi node of a home shares.
MEDIUM = "wifi"
INTERFACE = "wlan0"
CONTROL_SOCKET = f"/var/run/wpa_supplicant/{INTERFACE}"
#: Where an AP's subnet is taken from when the spec gives none: 192.168.50.0/24, .51, ...
AUTO_SUBNETS = ipaddress.ip_network("192.168.0.0/16")
FIRST_AUTO_SUBNET = 50
DNSMASQ_LOG = "/var/log/cirque-dnsmasq.log"
MODES = ("router", "bridge")
BRIDGE = "br-wifi"


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


class _Radio(Capability):
    """What stations and APs share: a place on the medium and an interface on it."""

    medium: ClassVar[str | None] = MEDIUM
    interface: ClassVar[str] = INTERFACE

    def __init__(self, position: list[float], mac: str | None, **params: Any) -> None:
        super().__init__(position=position, mac=mac, **params)
        self.position = position
        self.mac = mac

    def mac_of(self, node: NodeRuntime) -> str:
        return self.mac or mac_for(f"{node.container_id[:12]}-{node.name}")

    def attach(
        self, node: NodeRuntime, carrier: bool, addresses: list[str] | None = None
    ) -> tuple[Any, str]:
        """Give the node its wlan0 on the home's WiFi medium; returns the medium and the
        interface's MAC address."""
        medium = node.medium(MEDIUM)
        mac = self.mac_of(node)
        medium.attach(
            node.container_id,
            node.name,
            ifname=INTERFACE,
            position=self.position,
            carrier=carrier,
            addresses=addresses or [],
            mac=mac,
        )
        return medium, mac

    def stop(self, node: NodeRuntime) -> None:
        # The node may be gone, and the medium with it: nothing is left to undo then.
        with contextlib.suppress(CirqueError):
            node.medium(MEDIUM).detach(node.name)

    def restarted(self, node: NodeRuntime) -> None:
        # The new network namespace has no wlan0: the old endpoint is dead.
        self.stop(node)
        self.start(node)


@register
class WiFi(_Radio):
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
        if not self.lan:
            config.lan_segment = None

    def start(self, node: NodeRuntime) -> None:
        medium, mac = self.attach(node, carrier=False)
        medium.request("wifi_station", name=node.name, mac=mac, pid=node.host_pid())


@register
class WiFiAP(_Radio):
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
        #: The wlan0 network chosen at start, and the AP's address on it.
        self.network: ipaddress.IPv4Network | None = None
        self.address: str | None = None

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
        return {**super().describe(), "security": security, "address": self.address}

    def configure(self, config: ContainerConfig, node_name: str) -> None:
        config.cap_add += ["NET_ADMIN", "NET_RAW"]
        config.sysctls["net.ipv4.ip_forward"] = "1"

    def start(self, node: NodeRuntime) -> None:
        addresses = []
        if self.mode == "router":
            medium = node.medium(MEDIUM)
            self.network = ipaddress.ip_network(
                medium.claim_subnet(node.name, self.subnet, AUTO_SUBNETS, FIRST_AUTO_SUBNET)
            )
            self.address = str(self.network.network_address + 1)
            addresses = [f"{self.address}/{self.network.prefixlen}"]
        medium, mac = self.attach(node, carrier=True, addresses=addresses)
        medium.request(
            "wifi_ap",
            name=node.name,
            mac=mac,
            ssid=self.ssid,
            psk=self.psk,
            channel=self.channel,
            hidden=self.hidden,
        )
        script = self._router_script() if self.mode == "router" else self._bridge_script(node)
        result = node.exec(["sh", "-c", script], timeout=30)
        if result.exit_code != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise NodeError(
                f"node {node.name}: WiFiAP could not start DHCP and "
                f"{'routing' if self.mode == 'router' else 'bridging'}: "
                f"{output[-1] if output else f'exit {result.exit_code}'}"
            )

    def _dnsmasq(self, interface: str, first: str, last: str, netmask: str, router: str) -> str:
        options = [
            "--conf-file=/dev/null",
            f"--interface={interface}",
            "--bind-interfaces",
            "--user=root",
            f"--dhcp-range={first},{last},{netmask},12h",
            f"--dhcp-option=option:router,{router}",
            "--dhcp-authoritative",
            # dnsmasq pings an address for 3 s before offering it; nobody else takes
            # addresses on this subnet, so the wait would only slow every join down.
            "--no-ping",
            "--log-dhcp",
            f"--log-facility={DNSMASQ_LOG}",
            "--pid-file=/run/cirque-dnsmasq.pid",
            "--dhcp-leasefile=/run/cirque-dnsmasq.leases",
        ]
        return (
            "command -v dnsmasq >/dev/null || { echo 'WiFiAP needs dnsmasq in the node image "
            "(use image wifi-ap)' >&2; exit 3; }\n"
            "[ -f /run/cirque-dnsmasq.pid ] && kill $(cat /run/cirque-dnsmasq.pid) 2>/dev/null\n"
            # Double quotes: the bridge script passes shell variables ($1...) for the range.
            "dnsmasq " + " ".join('"' + option + '"' for option in options) + "\n"
        )

    def _router_script(self) -> str:
        assert self.network is not None and self.address is not None
        hosts = list(self.network.hosts())
        first, last = hosts[min(9, len(hosts) - 2)], hosts[-1]
        subnet = str(self.network)
        return (
            "set -e\n"
            + self._dnsmasq(
                INTERFACE, str(first), str(last), str(self.network.netmask), self.address
            )
            + "command -v iptables >/dev/null || "
            "{ echo 'router mode needs iptables in the node image' >&2; exit 3; }\n"
            f"iptables -t nat -C POSTROUTING -s {subnet} ! -d {subnet} -j MASQUERADE 2>/dev/null"
            f" || iptables -t nat -A POSTROUTING -s {subnet} ! -d {subnet} -j MASQUERADE\n"
        )

    def _bridge_script(self, node: NodeRuntime) -> str:
        """wlan0 and eth0 in one bridge that takes over eth0's address and routes; DHCP in
        the top eighth of the LAN's subnet, which Docker's own allocation (from the bottom)
        does not reach in a home of usual size."""
        return (
            "set -e\n"
            "lan=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | head -n1)\n"
            "gateway=$(ip -4 route show default | awk '{print $3}' | head -n1)\n"
            '[ -n "$lan" ] || { echo "bridge mode needs the AP on the home LAN (eth0)" >&2; '
            "exit 3; }\n"
            f"ip link add {BRIDGE} type bridge 2>/dev/null || true\n"
            f"ip link set {BRIDGE} address $(cat /sys/class/net/eth0/address)\n"
            f"ip link set {BRIDGE} up\n"
            'ip addr del "$lan" dev eth0\n'
            f"ip link set eth0 master {BRIDGE}\n"
            f"ip link set {INTERFACE} master {BRIDGE}\n"
            f'ip addr add "$lan" dev {BRIDGE}\n'
            f'[ -z "$gateway" ] || ip route replace default via "$gateway" dev {BRIDGE}\n'
            "set -- $(python3 -c 'import ipaddress,sys; n=ipaddress.ip_interface(sys.argv[1])"
            ".network; h=list(n.hosts()); k=len(h)//8; print(h[-k], h[-1], n.netmask)' \"$lan\")\n"
            + self._dnsmasq(BRIDGE, "$1", "$2", "$3", "$gateway")
        )
