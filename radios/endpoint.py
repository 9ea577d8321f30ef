"""Create a node's radio interface and hand it to the medium.

Runs in a short-lived helper container that shares the node's network namespace and
holds NET_ADMIN there, nothing more: it creates a TAP device under the node's interface
name (``wlan0``), sets its MAC address and brings it up, then passes the device's file
descriptor to the medium over the medium's control socket and exits. From then on the
medium alone owns the device; when the medium closes it, the interface disappears.

The medium itself needs no capability and no access to other namespaces: this
hand-over is why a home's radios need nothing from the pytest process but the Docker
socket. Stdlib and iproute2 only.

    python3 -m pytest_cirque.radios.endpoint --name sta1 --ifname wlan0 --socket ...
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import struct
import subprocess
import sys

from pytest_cirque.radios.medium import DEFAULT_SOCKET, request

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


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


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="endpoint", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the endpoint's name on the medium")
    parser.add_argument("--ifname", default="wlan0")
    parser.add_argument("--mac", help="default: derived from --name")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--address", action="append", default=[], help="e.g. 10.7.0.2/24")
    parser.add_argument("--position", default="0,0,0", help="x,y[,z] in metres")
    parser.add_argument("--carrier", choices=("on", "off"), default="on")
    parser.add_argument("--socket", default=DEFAULT_SOCKET)
    args = parser.parse_args(argv)
    where = f"endpoint {args.name} ({args.ifname})"
    try:
        fd = create_tap(args.ifname)
        ip("link", "set", "dev", args.ifname, "address", args.mac or mac_for(args.name))
        ip("link", "set", "dev", args.ifname, "mtu", str(args.mtu))
        for address in args.address:
            ip("address", "add", address, "dev", args.ifname)
        ip("link", "set", "dev", args.ifname, "up")
        position = [float(c) for c in args.position.split(",")]
        message = {
            "op": "attach",
            "name": args.name,
            "position": position,
            "carrier": args.carrier == "on",
        }
        reply = request(args.socket, message, [fd])
    except (OSError, ValueError) as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"{where}: {reply.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps({"attached": args.name, "ifname": args.ifname}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
