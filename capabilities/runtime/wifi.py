"""WiFi on a running node: its wlan0 on the home's WiFi medium, as a station or an access
point, and what the node got (an AP's subnet and address). See capabilities/model/wifi.py
for what can be asked for; the radio itself lives in the medium, outside the nodes.

A station's control socket is served in its node by cirque-wpa-ctrl, run by the node
itself from the home's read-only radio volume: it binds /var/run/wpa_supplicant/wlan0
there and relays to the medium's stations socket. It proves which station it serves with
a token the driver makes and writes into the node, readable by the node's root only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
from typing import Any, Protocol, cast

from pytest_cirque.capabilities.model.wifi import INTERFACE, MEDIUM, Radio, WiFi, WiFiAP
from pytest_cirque.capabilities.runtime.base import Driver, NodeRuntime, drives
from pytest_cirque.core.errors import CirqueError, NodeError
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.radios.relay.endpoint import mac_for
from pytest_cirque.radios.relay.protocol import STATIONS_SOCKET, WPA_CTRL_DIR, WPA_CTRL_PROGRAM

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
#: How long the node's relay may take to bind its socket and be accepted by the medium.
RELAY_START_TIMEOUT_S = 30.0


class _StationNode(NodeRuntime, Protocol):
    """What the station driver uses of a node beyond NodeRuntime (the home's Node has it)."""

    def put_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None: ...

    def exec_background(self, cmd: str | list[str]) -> Any: ...


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
    """A WiFi station: wlan0 without carrier, the station in the medium, and the relay in
    the node that serves its control socket."""

    capability: WiFi

    def __init__(self, capability: WiFi) -> None:
        super().__init__(capability)
        #: The station's secret, kept across restarts (the node keeps its file too).
        self.token = secrets.token_hex(16)
        #: The node's relay process (an exec), while it runs.
        self.relay: Any = None

    def start(self, node: NodeRuntime) -> None:
        medium, mac = self.attach(node, carrier=False)
        station = cast(_StationNode, node)
        station.put_file(TOKEN_FILE, self.token + "\n", mode=0o600)
        medium.as_wifi().add_station(node.name, mac=mac, token=self.token, ifname=INTERFACE)
        self.relay = station.exec_background(
            [
                WPA_CTRL_PROGRAM,
                "-i",
                INTERFACE,
                "-C",
                WPA_CTRL_DIR,
                "--medium",
                STATIONS_SOCKET,
                "--token-file",
                TOKEN_FILE,
            ]
        )
        self._wait_for_relay(node, medium)

    def _wait_for_relay(self, node: NodeRuntime, medium: Any) -> None:
        """Until the relay serves the socket (the medium accepted its token); a relay that
        exits first is a NodeError with its own words."""
        relay = self.relay

        def serving() -> bool:
            if "serving" in relay.stdout:
                return True
            if not relay.running:
                said = (relay.stderr or relay.stdout).strip().splitlines()
                raise NodeError(
                    f"node {node.name}: the WiFi control socket relay ({WPA_CTRL_PROGRAM}) "
                    f"exited: {said[-1] if said else 'no output'}; check the node's "
                    f"/var/run/wpa_supplicant and the medium's log"
                )
            return False

        wait_until(
            serving,
            f"node {node.name}'s WiFi control socket relay to serve {WPA_CTRL_DIR}/{INTERFACE}",
            RELAY_START_TIMEOUT_S,
            log=lambda: medium.log(tail=20),
            ignore=(),
            # Its "serving" line is read locally as it comes: poll that often.
            max_interval=0.05,
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
