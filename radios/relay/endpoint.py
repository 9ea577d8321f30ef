"""Create a node's radio interface and hand it to the medium.

Runs in a short-lived helper container that shares the node's network namespace and
holds NET_ADMIN there, nothing more: it creates a TAP device under the node's interface
name (``wlan0``), sets its MAC address and brings it up, then passes the device's file
descriptor to the medium over the medium's control socket and exits. From then on the
medium alone owns the device; when the medium closes it, the interface disappears.

The medium itself needs no capability and no access to other namespaces: this
hand-over is why a home's radios need nothing from the pytest process but the Docker
socket. Stdlib and iproute2 only.

With ``--wired`` it puts the medium in the middle of the node's existing LAN interface
instead (TrafficControl): Docker's veth ``eth0`` becomes ``eth0-lan``, a TAP takes the
name ``eth0`` with the veth's MAC address, MTU, addresses and routes, and the medium gets
both the TAP and a packet socket on ``eth0-lan`` as a pair. The node keeps its name for
the interface, its addresses, its default route and Docker's DNS; every frame now crosses
the medium. ``eth0-lan`` itself is mute: no ARP, no IPv6 address, and a raw-table DROP for
everything arriving on it, so the node's stack never answers there or takes a packet
there, only the relay sees what arrives (packet sockets read before netfilter). This needs
NET_RAW besides NET_ADMIN, and iptables; on an IPv6 LAN the helper must start with
net.ipv6.conf.default.disable_ipv6=0, or the TAP could not take eth0's IPv6 addresses
(MediumContainer.attach sees to both).

    python3 -m pytest_cirque.radios.relay.endpoint --name sta1 --ifname wlan0 --socket ...
    python3 -m pytest_cirque.radios.relay.endpoint --name n1 --ifname eth0 --wired --socket ...
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from pytest_cirque.core.errors import CirqueError
from pytest_cirque.radios.relay.medium import DEFAULT_SOCKET, request
from pytest_cirque.radios.relay.protocol import WIFI_INTERFACE, Attach

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
#: linux/if_packet.h and linux/if_ether.h (Python's socket module lacks them).
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
#: What a wired node's real LAN interface is renamed to: ``eth0`` -> ``eth0-lan``.
LAN_SUFFIX = "-lan"
#: The medium's name for the packet-socket half of a wired pair: ``<node>.lan`` (a dot
#: cannot occur in a node name, so it never meets another node's endpoint).
PEER_SUFFIX = ".lan"
IFNAMSIZ = 16


def mac_for(name: str) -> str:
    """A stable, locally administered unicast MAC address derived from a node's name."""
    digest = bytearray(hashlib.sha256(name.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def create_tap(ifname: str) -> int:
    """A TAP device named ``ifname`` in this network namespace; returns its descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def run(*command: str) -> str:
    result = subprocess.run(list(command), capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"{' '.join(command)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def ip(*args: str) -> str:
    return run("ip", *args)


# --- wired: the medium in the middle of the node's LAN interface --------------------------


def lan_name(ifname: str) -> str:
    """The name the real interface takes: ``eth0-lan`` (shortened to fit IFNAMSIZ)."""
    return ifname[: IFNAMSIZ - 1 - len(LAN_SUFFIX)] + LAN_SUFFIX


def address_args(info: dict[str, Any]) -> list[str] | None:
    """``ip address add`` arguments that give an address of ``ip -j address`` to another
    interface; None for what the kernel makes itself (IPv6 link-local, autoconfigured)."""
    if info.get("family") not in ("inet", "inet6") or "local" not in info:
        return None
    if info["family"] == "inet6" and (info.get("scope") == "link" or info.get("dynamic")):
        return None
    args = [f"{info['local']}/{info['prefixlen']}"]
    if info.get("broadcast"):
        args += ["broadcast", info["broadcast"]]
    if info.get("scope") not in (None, "global"):
        args += ["scope", str(info["scope"])]
    if info["family"] == "inet6":
        args.append("nodad")  # already checked on the LAN: usable at once
    return args


def route_args(route: dict[str, Any]) -> list[str] | None:
    """``ip route add`` arguments (without ``dev``) for a route of ``ip -j route show dev``;
    None for what the kernel makes itself (on-link prefixes, link-local, multicast)."""
    destination = str(route.get("dst", ""))
    if not destination or route.get("protocol") == "kernel":
        return None
    if destination.startswith(("fe80:", "ff00:")):
        return None
    args = [destination]
    for key, word in (("gateway", "via"), ("metric", "metric"), ("prefsrc", "src")):
        if route.get(key) not in (None, ""):
            args += [word, str(route[key])]
    if route.get("protocol") not in (None, "boot"):
        args += ["proto", str(route["protocol"])]
    if route.get("scope") not in (None, "global"):
        args += ["scope", str(route["scope"])]
    if "onlink" in route.get("flags", []):
        args.append("onlink")
    return args


@dataclass
class Interface:
    """What the node's LAN interface has, to be given to the TAP that takes its place."""

    name: str
    mac: str
    mtu: int
    kind: str
    addresses: list[list[str]] = field(default_factory=list)
    #: (ip family option, route arguments)
    routes: list[tuple[str, list[str]]] = field(default_factory=list)

    @classmethod
    def read(cls, ifname: str) -> Interface:
        try:
            link = json.loads(ip("-j", "-d", "link", "show", "dev", ifname))[0]
        except OSError:
            raise OSError(f"the node has no interface {ifname} (no wired LAN?)") from None
        info = json.loads(ip("-j", "address", "show", "dev", ifname))[0].get("addr_info", [])
        interface = cls(
            ifname,
            link["address"],
            int(link["mtu"]),
            str((link.get("linkinfo") or {}).get("info_kind", "")),
        )
        interface.addresses = [a for a in map(address_args, info) if a]
        for family in ("-4", "-6"):
            for route in json.loads(ip("-j", family, "route", "show", "dev", ifname) or "[]"):
                args = route_args(route)
                if args:
                    interface.routes.append((family, args))
        return interface

    def configure(self, ifname: str) -> None:
        """Give ``ifname`` this interface's MAC, MTU, addresses and routes, and bring it up."""
        ip("link", "set", "dev", ifname, "address", self.mac, "mtu", str(self.mtu))
        for address in self.addresses:
            ip("address", "add", *address, "dev", ifname)
        ip("link", "set", "dev", ifname, "up")
        for family, route in self.routes:
            ip(family, "route", "replace", *route, "dev", ifname)


def mute_rules(lan: str, action: str) -> list[list[str]]:
    """iptables commands (``-I`` adds, ``-D`` deletes) that keep the node's stack from
    taking any packet arriving on ``lan``."""
    return [
        [tool, "-w", "-t", "raw", action, "PREROUTING", "-i", lan, "-j", "DROP"]
        for tool in ("iptables", "ip6tables")
    ]


def open_packet_socket(ifname: str) -> socket.socket:
    """A raw packet socket on ``ifname`` that reads what arrives there (with virtio-net
    headers, so offloaded checksums can be completed) and not what is sent from it."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.bind((ifname, ETH_P_ALL))
    except OSError:
        sock.close()
        raise
    return sock


def wire(name: str, ifname: str, socket_path: str) -> dict[str, Any]:
    """Put the medium at ``socket_path`` in the middle of ``ifname``: see the module
    docstring. On failure the interface is given back as it was."""
    interface = Interface.read(ifname)
    lan = lan_name(ifname)
    if interface.kind == "tun":
        raise OSError(f"{ifname} is a TAP already: the node is wired to a medium")
    undo: list[list[str]] = []
    fds: list[int] = []
    try:
        ip("link", "set", "dev", ifname, "down")
        ip("link", "set", "dev", ifname, "name", lan)
        undo.append(["ip", "link", "set", "dev", lan, "name", ifname])
        ip("link", "set", "dev", lan, "arp", "off")
        ip("link", "set", "dev", lan, "addrgenmode", "none")
        ip("address", "flush", "dev", lan)
        for rule in mute_rules(lan, "-I"):
            run(*rule)
            undo.append([*rule[:4], "-D", *rule[5:]])
        ip("link", "set", "dev", lan, "up")
        packet = open_packet_socket(lan)
        fds.append(packet.detach())
        fds.insert(0, create_tap(ifname))
        interface.configure(ifname)
        peer = name + PEER_SUFFIX
        try:
            request(socket_path, Attach(name=name, peer=peer), fds)
        except CirqueError as exc:
            raise OSError(str(exc)) from None
    except BaseException:
        for fd in fds:
            os.close(fd)  # the TAP goes with its last descriptor
        restore(interface, lan, undo)
        raise
    for fd in fds:
        os.close(fd)  # the medium holds its own copies now
    return {"attached": name, "peer": peer, "ifname": ifname, "lan": lan}


def restore(interface: Interface, lan: str, undo: list[list[str]]) -> None:
    """Give the real interface its name and configuration back, step by step, whatever
    went wrong (best effort: the error that led here is the one reported)."""
    name = interface.name
    commands = [["ip", "link", "set", "dev", lan, "down"], *reversed(undo)]
    commands += [
        ["ip", "link", "set", "dev", name, "arp", "on"],
        ["ip", "link", "set", "dev", name, "addrgenmode", "eui64"],
        ["ip", "link", "set", "dev", name, "address", interface.mac],
        *(["ip", "address", "add", *address, "dev", name] for address in interface.addresses),
        ["ip", "link", "set", "dev", name, "up"],
        *(["ip", family, "route", "replace", *r, "dev", name] for family, r in interface.routes),
    ]
    for command in commands:
        subprocess.run(command, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="endpoint", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the endpoint's name on the medium")
    parser.add_argument("--ifname", default=WIFI_INTERFACE)
    parser.add_argument("--mac", help="default: derived from --name")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--address", action="append", default=[], help="e.g. 10.7.0.2/24")
    parser.add_argument("--position", default="0,0,0", help="x,y[,z] in metres")
    parser.add_argument("--carrier", choices=("on", "off"), default="on")
    parser.add_argument("--socket", default=DEFAULT_SOCKET)
    parser.add_argument(
        "--wired", action="store_true", help="take over the existing --ifname (see above)"
    )
    args = parser.parse_args(argv)
    where = f"endpoint {args.name} ({args.ifname})"
    if args.wired:
        try:
            print(json.dumps(wire(args.name, args.ifname, args.socket)))
        except (OSError, ValueError, KeyError) as exc:
            print(f"{where}: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        fd = create_tap(args.ifname)
        ip("link", "set", "dev", args.ifname, "address", args.mac or mac_for(args.name))
        ip("link", "set", "dev", args.ifname, "mtu", str(args.mtu))
        for address in args.address:
            ip("address", "add", address, "dev", args.ifname)
        ip("link", "set", "dev", args.ifname, "up")
        position = [float(c) for c in args.position.split(",")]
        message = Attach(name=args.name, position=position, carrier=args.carrier == "on")
        request(args.socket, message, [fd])
    except (OSError, ValueError, CirqueError) as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"attached": args.name, "ifname": args.ifname}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
