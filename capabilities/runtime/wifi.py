"""WiFi on a running node: its wlan0 on the home's WiFi medium, as a station or an access
point, and what the node got (an AP's subnet and address). See capabilities/model/wifi.py
for what can be asked for; the radio itself lives in the medium, outside the nodes.

A station's control socket is served in its node by cirque-wpa-ctrl, run by the node
itself from the home's read-only radio volume under the name wpa_supplicant (as the
node's software starts and stops it): it binds /var/run/wpa_supplicant/wlan0 there,
relays to the medium's stations socket and gives the station the networks of
/etc/wpa_supplicant/wpa_supplicant.conf. It proves which station it serves with
a token the driver makes and writes into the node, readable by the node's root only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import posixpath
import secrets
from typing import Any, Protocol, cast

from pytest_cirque.capabilities.model.wifi import INTERFACE, MEDIUM, Radio, WiFi, WiFiAP
from pytest_cirque.capabilities.runtime.base import Driver, NodeRuntime, drives
from pytest_cirque.core.errors import CirqueError, NodeError
from pytest_cirque.radios.relay.endpoint import mac_for
from pytest_cirque.radios.relay.protocol import WPA_CTRL_DIR, WPA_CTRL_PROGRAM

#: Where an AP's subnet is taken from when the spec gives none: 192.168.50.0/24, .51, ...
AUTO_SUBNETS = ipaddress.ip_network("192.168.0.0/16")
FIRST_AUTO_SUBNET = 50
DNSMASQ_LOG = "/var/log/cirque-dnsmasq.log"
BRIDGE = "br-wifi"
#: Where a station's token lives in its node: a file (not the relay's environment), so the
#: node's own software can start the relay again after a restart without the test, and no
#: child process inherits it; mode 0600, so only the node's root reads it. Straight in
#: /var/lib, which images have: one copy into the node, no directory to make first.
TOKEN_FILE = f"/var/lib/cirque-wpa-ctrl-{INTERFACE}.token"
#: How long the node's wpa_supplicant may take to serve its socket and give the station
#: its networks.
RELAY_START_TIMEOUT_S = 30.0
#: The station's configuration file, as the original's nodes had it (update_config=1, so
#: SAVE_CONFIG writes it); the wpa_supplicant the driver starts reads it.
CONF_FILE = "/etc/wpa_supplicant/wpa_supplicant.conf"
DEFAULT_CONF = f"ctrl_interface={WPA_CTRL_DIR}\\nupdate_config=1\\n"
#: The node relay program under wpa_supplicant's name (a link in the radio volume).
WPA_SUPPLICANT = f"{posixpath.dirname(WPA_CTRL_PROGRAM)}/wpa_supplicant"


class _StationNode(NodeRuntime, Protocol):
    """What the station driver uses of a node beyond NodeRuntime (the home's Node has it)."""

    def put_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None: ...


class _RadioDriver(Driver[Any]):
    """What stations and APs share: an interface on the home's WiFi medium."""

    capability: Radio

    def mac_of(self, node: NodeRuntime) -> str:
        return self.capability.mac or mac_for(f"{node.container_id[:12]}-{node.name}")

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
            position=self.capability.position,
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


@drives(WiFi)
class StationDriver(_RadioDriver):
    """A WiFi station: wlan0 without carrier, the station in the medium, and the node's
    wpa_supplicant (the relay under that name) that serves its control socket."""

    capability: WiFi

    def __init__(self, capability: WiFi) -> None:
        super().__init__(capability)
        #: The station's secret, kept across restarts (the node keeps its file too).
        self.token = secrets.token_hex(16)

    def start(self, node: NodeRuntime) -> None:
        medium, mac = self.attach(node, carrier=False)
        station = cast(_StationNode, node)
        station.put_file(TOKEN_FILE, self.token + "\n", mode=0o600)
        medium.as_wifi().add_station(node.name, mac=mac, token=self.token, ifname=INTERFACE)
        # As a device's own init would: a configuration file (kept when the node has one)
        # and wpa_supplicant started on it, so the node's software may stop it with killall
        # and start it again. -B returns once it serves the control socket.
        script = (
            f"[ -e {CONF_FILE} ] || {{ mkdir -p {posixpath.dirname(CONF_FILE)} && "
            f"printf '{DEFAULT_CONF}' > {CONF_FILE}; }} && "
            f"exec {WPA_SUPPLICANT} -B -i {INTERFACE} -c {CONF_FILE} -C {WPA_CTRL_DIR}"
        )
        result = node.exec(["sh", "-c", script], timeout=RELAY_START_TIMEOUT_S)
        if result.exit_code != 0:
            said = (result.stderr or result.stdout).strip().splitlines()
            raise NodeError(
                f"node {node.name}: its wpa_supplicant ({WPA_SUPPLICANT}) did not start: "
                f"{said[-1] if said else f'exit {result.exit_code}'}; check the node's "
                f"{CONF_FILE} and the WiFi medium's log"
            )


@drives(WiFiAP)
class AccessPointDriver(_RadioDriver):
    """A WiFi access point: its BSS in the medium, and DHCP and routing or bridging in the
    node."""

    capability: WiFiAP

    def __init__(self, capability: WiFiAP) -> None:
        super().__init__(capability)
        #: The wlan0 network chosen at start, and the AP's address on it.
        self.network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self.address: str | None = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "address": self.address}

    def start(self, node: NodeRuntime) -> None:
        addresses = []
        if self.capability.mode == "router":
            medium = node.medium(MEDIUM)
            self.network = ipaddress.ip_network(
                medium.claim_subnet(
                    node.name, self.capability.subnet, AUTO_SUBNETS, FIRST_AUTO_SUBNET
                )
            )
            self.address = str(self.network.network_address + 1)
            addresses = [f"{self.address}/{self.network.prefixlen}"]
        medium, mac = self.attach(node, carrier=True, addresses=addresses)
        medium.as_wifi().add_access_point(
            node.name,
            mac=mac,
            ssid=self.capability.ssid,
            psk=self.capability.psk,
            channel=self.capability.channel,
            hidden=self.capability.hidden,
        )
        script = (
            self._router_script() if self.capability.mode == "router" else self._bridge_script(node)
        )
        result = node.exec(["sh", "-c", script], timeout=30)
        if result.exit_code != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise NodeError(
                f"node {node.name}: WiFiAP could not start DHCP and "
                f"{'routing' if self.capability.mode == 'router' else 'bridging'}: "
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
            '.network; h=list(n.hosts()); k=len(h)//8; print(h[-k], h[-1], n.netmask)\' "$lan")\n'
            + self._dnsmasq(BRIDGE, "$1", "$2", "$3", "$gateway")
        )
