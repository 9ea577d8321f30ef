"""A home's networks: LAN segments and the ``docker_network`` variants.

Each home has, per variant its nodes ask for, up to two segments:

* ``lan``: a bridge with inter-container traffic off (enable_icc=false). Its nodes reach
  only the gateway (and the outside, unless the variant is internal); over IPv6, where
  the engine does not apply that switch, each node's guard sees to it (lan_ipv6_guard).
  Every node without LanAccess joins it.
* ``lan-access``: made when the first LanAccess node arrives, icc on: its nodes reach
  each other and the gateway (Cirque's LanAccess).

Variants: ``default`` (NAT to the outside), ``internal`` (no way out), ``ipv6`` (adds a
ULA /64) and ``ipvlan`` (hybrid with real devices on the host's LAN: this kernel has no
ipvlan, so macvlan on the default-route interface; both segments are that one network).

IPv4 subnets come from a project pool (CIRQUE_SUBNET_POOL, default 10.213.0.0/16, in
/24 steps). Concurrent runs pick different start points and skip subnets Docker already
uses; a race that still collides gets Docker's overlap error and tries the next one.

Segments are kept apart in each node as well (``segment_guard``): Docker 20.10 isolates
bridges through a jump from FORWARD to DOCKER-ISOLATION-STAGE-1 that it deletes and inserts
again on every network creation on the engine, by anyone; in between, traffic routed from
one bridge to another is accepted, so a node could reach another segment for a moment.
Each node gets its guard from a short-lived helper in its own network namespace that
holds NET_ADMIN alone (``Node.guard_segment``): nothing shares the host's pid namespace.
A node that holds NET_ADMIN itself (WiFi, Thread, a user's own cap_add) can remove its
guard: that isolation depends on the node's cooperation (README, "Isolation").
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import threading
import warnings
from dataclasses import dataclass

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, ParentInUse, StaleNetwork, SubnetTaken
from pytest_cirque.core.errors import CirqueError, SpecError
from pytest_cirque.spec import (
    NETWORK_DEFAULT,
    NETWORK_INTERNAL,
    NETWORK_IPV6,
    NETWORK_IPVLAN,
)

log = logging.getLogger(__name__)

SEGMENT_LAN = "lan"
SEGMENT_LAN_ACCESS = "lan-access"
SEGMENTS = (SEGMENT_LAN, SEGMENT_LAN_ACCESS)

DEFAULT_POOL = "10.213.0.0/16"
SUBNET_PREFIX = 24
#: Where the ipv6 variant's /64s come from (ula_subnet).
ULA_RANGE = "fd00::/8"
#: The ip6tables chain of lan_ipv6_guard in a node's namespace.
LAN_IPV6_CHAIN = "CIRQUE-LAN6"
#: What a node on a LAN segment may send to any address there: router and neighbour
#: solicitations and advertisements.
NEIGHBOUR_DISCOVERY = ("router-solicitation", "neighbour-solicitation", "neighbour-advertisement")
#: Link-local unicast and every multicast: the ways to a neighbour besides its subnet.
LINK = ("fe80::/10", "ff00::/8")


@dataclass
class Network:
    """One Docker network of a home."""

    name: str
    id: str
    variant: str
    segment: str
    subnet: str
    gateway: str
    ipv6_subnet: str = ""
    driver: str = "bridge"

    @property
    def ipv6_gateway(self) -> str:
        """The bridge's address in the IPv6 subnet (its first), or "" without IPv6."""
        return ipv6_gateway(self.ipv6_subnet) if self.ipv6_subnet else ""

    def describe(self) -> dict[str, str]:
        info = {
            "name": self.name,
            "variant": self.variant,
            "segment": self.segment,
            "driver": self.driver,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "isolated": str(self.segment == SEGMENT_LAN and self.driver == "bridge").lower(),
        }
        if self.ipv6_subnet:
            info["ipv6_subnet"] = self.ipv6_subnet
        return info


def segment_guard(network: Network) -> str:
    """The script (run with NET_ADMIN in a node's namespace on ``network``) that makes every
    other segment of the subnet pool unreachable from the node: its own /24 stays reachable
    through the more specific on-link route, the outside through the default route. It
    does not depend on the host's iptables, which Docker rewrites non-atomically (see the
    module docstring). Empty for hybrid networks, whose subnet is the host's LAN.
    ``replace`` rather than ``add``: applying it twice (a retry, a start of a node that
    was running) is harmless.

    IPv6 segments get the same for all unique-local addresses: this engine installs no
    IPv6 isolation between bridges at all (ip6tables is off by default in Docker 20.10)."""
    if network.driver != "bridge":
        return ""
    script = f"ip route replace prohibit {subnet_pool()}\n"
    if network.ipv6_subnet:
        script += f"ip -6 route replace prohibit {ULA_RANGE}\n"
        if network.segment == SEGMENT_LAN:
            script += lan_ipv6_guard(network)
    return script


def lan_ipv6_guard(network: Network) -> str:
    """The script that keeps a node of an IPv6 ``lan`` segment from its neighbours over
    IPv6, as enable_icc=false keeps them apart over IPv4: this engine applies that switch
    through iptables alone, so without this the nodes reach each other at their
    unique-local, link-local and multicast addresses. On the LAN interface the node keeps
    the gateway (and what lies beyond it) and neighbour discovery; anything else to the
    LAN is refused at once, as a prohibit route refuses. ip6tables in the node's own
    namespace: NET_ADMIN is enough (nf_tables). Idempotent, like the routes."""
    subnet, chain = network.ipv6_subnet, LAN_IPV6_CHAIN
    rules = [f"-d {network.ipv6_gateway} -j RETURN"]
    rules += [f"-p ipv6-icmp --icmpv6-type {kind} -j RETURN" for kind in NEIGHBOUR_DISCOVERY]
    rules += [f"-d {lan} -j REJECT --reject-with adm-prohibited" for lan in (subnet, *LINK)]
    return (
        "set -e\n"
        f"dev=$(ip -6 -o route show exact {subnet} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')\n"
        f'[ -n "$dev" ] || {{ echo "no interface routes {subnet}" >&2; exit 3; }}\n'
        f"ip6tables -w -N {chain} 2>/dev/null || ip6tables -w -F {chain}\n"
        f'ip6tables -w -C OUTPUT -o "$dev" -j {chain} 2>/dev/null'
        f' || ip6tables -w -I OUTPUT -o "$dev" -j {chain}\n'
        + "".join(f"ip6tables -w -A {chain} {rule}\n" for rule in rules)
    )


def subnet_pool() -> ipaddress.IPv4Network:
    """The IPv4 range homes take their /24 subnets from (CIRQUE_SUBNET_POOL)."""
    text = os.environ.get("CIRQUE_SUBNET_POOL", DEFAULT_POOL)
    try:
        pool = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise SpecError(
            f"CIRQUE_SUBNET_POOL={text!r}: not an IPv4 network ({exc}); use e.g. {DEFAULT_POOL}"
        ) from None
    if pool.prefixlen > SUBNET_PREFIX:
        raise SpecError(f"CIRQUE_SUBNET_POOL={text!r}: must be /{SUBNET_PREFIX} or larger")
    return pool


def candidate_subnets(
    pool: ipaddress.IPv4Network, used: list[str], seed: str
) -> list[ipaddress.IPv4Network]:
    """The pool's /24s that overlap nothing in ``used``, rotated to a start point derived
    from ``seed`` so that concurrent runs rarely try the same one first. Pure."""
    taken = []
    for text in used:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if net.version == 4:
            taken.append(net)
    free = [
        s for s in pool.subnets(new_prefix=SUBNET_PREFIX) if not any(s.overlaps(t) for t in taken)
    ]
    if not free:
        return []
    start = random.Random(seed).randrange(len(free))
    return free[start:] + free[:start]


def ipv6_gateway(subnet: str) -> str:
    """The gateway of an IPv6 subnet: its first address, which Docker gives the bridge."""
    return str(next(ipaddress.IPv6Network(subnet).hosts()))


def ula_subnet(seed: str) -> str:
    """A /64 in a unique-local (fd00::/8) prefix derived from the seed."""
    rnd = random.Random(seed)
    global_id = rnd.getrandbits(40)
    prefix = (0xFD << 120) | (global_id << 80) | (rnd.getrandbits(16) << 64)
    return str(ipaddress.IPv6Network((prefix, 64)))


def default_route_interface() -> tuple[str, ipaddress.IPv4Interface, str] | None:
    """(interface, its address, gateway) of the host's default IPv4 route, from /proc."""
    try:
        with open("/proc/net/route", encoding="ascii") as routes:
            next(routes)
            for line in routes:
                fields = line.split()
                if fields[1] == "00000000" and int(fields[3], 16) & 2:
                    iface = fields[0]
                    gateway = str(ipaddress.IPv4Address(bytes.fromhex(fields[2])[::-1]))
                    address = _interface_address(iface)
                    if address:
                        return iface, address, gateway
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None


def _interface_address(iface: str) -> ipaddress.IPv4Interface | None:
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = struct.pack("256s", iface.encode()[:15])
            addr = fcntl.ioctl(sock.fileno(), 0x8915, packed)[20:24]  # SIOCGIFADDR
            mask = fcntl.ioctl(sock.fileno(), 0x891B, packed)[20:24]  # SIOCGIFNETMASK
        except OSError:
            return None
    return ipaddress.IPv4Interface(f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}")


def kernel_has_ipvlan() -> bool:
    """Whether the running kernel can make ipvlan links (module loaded or loadable)."""
    if os.path.exists("/sys/module/ipvlan"):
        return True
    release = os.uname().release
    for base in (f"/lib/modules/{release}", f"/usr/lib/modules/{release}"):
        try:
            with open(f"{base}/modules.builtin", encoding="utf-8") as builtin:
                if any("ipvlan" in line for line in builtin):
                    return True
            with open(f"{base}/modules.dep", encoding="utf-8") as deps:
                if any("/ipvlan.ko" in line for line in deps):
                    return True
        except OSError:
            continue
    return False


_ipvlan_notice_given = False
_ipvlan_lock = threading.Lock()


def _ipvlan_driver() -> str:
    """ipvlan where the kernel has it, else macvlan, said once per process."""
    global _ipvlan_notice_given
    if kernel_has_ipvlan():
        return "ipvlan"
    with _ipvlan_lock:
        if not _ipvlan_notice_given:
            _ipvlan_notice_given = True
            message = (
                "docker_network ipvlan: this kernel has no ipvlan; using macvlan on the "
                "default-route interface instead (same hybrid LAN; the host itself cannot "
                "reach macvlan nodes directly)"
            )
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
    return "macvlan"


class HomeNetworks:
    """The networks of one home, made on first use and removed with it."""

    def __init__(self, backend: Backend, ids: identity.RunIdentity, home_id: str) -> None:
        self._backend = backend
        self._ids = ids
        self._home_id = home_id
        self._lock = threading.Lock()
        self.networks: dict[tuple[str, str], Network] = {}

    def get(self, variant: str, segment: str) -> Network:
        """The network for a node of that variant and segment, created when missing."""
        if segment not in SEGMENTS:
            raise SpecError(
                f"home {self._home_id}: unknown LAN segment {segment!r}; use one of "
                f"{', '.join(SEGMENTS)}"
            )
        if variant == NETWORK_IPVLAN:
            segment = SEGMENT_LAN  # one hybrid network: no icc switch on macvlan
        key = (variant, segment)
        with self._lock:
            if key not in self.networks:
                self.networks[key] = self._create(variant, segment)
            return self.networks[key]

    def _name(self, variant: str, segment: str) -> str:
        part = segment if variant == NETWORK_DEFAULT else f"{variant}-{segment}"
        return identity.object_name(self._home_id, part)

    def _labels(self, variant: str, segment: str) -> dict[str, str]:
        labels = self._ids.labels(self._home_id, identity.ROLE_NETWORK)
        labels[identity.SEGMENT] = segment
        labels[identity.VARIANT] = variant
        return labels

    def _create(self, variant: str, segment: str) -> Network:
        if variant == NETWORK_IPVLAN:
            return self._create_hybrid(segment)
        name = self._name(variant, segment)
        ipv6 = ula_subnet(name) if variant == NETWORK_IPV6 else None
        candidates = candidate_subnets(subnet_pool(), self._backend.used_subnets(), name)
        for subnet in candidates:
            gateway = str(next(subnet.hosts()))
            try:
                net_id = self._backend.create_network(
                    name,
                    labels=self._labels(variant, segment),
                    subnet=str(subnet),
                    gateway=gateway,
                    ipv6_subnet=ipv6,
                    ipv6_gateway=ipv6_gateway(ipv6) if ipv6 else None,
                    internal=variant == NETWORK_INTERNAL,
                    icc=segment != SEGMENT_LAN,
                )
            except SubnetTaken:
                continue  # another run took it between our look and our create
            return Network(name, net_id, variant, segment, str(subnet), gateway, ipv6 or "")
        raise CirqueError(
            f"home {self._home_id}: no free /{SUBNET_PREFIX} left in the subnet pool "
            f"{subnet_pool()} for network {name}; destroy old homes (cirque ls, cirque reap) "
            "or set CIRQUE_SUBNET_POOL to a larger free range"
        )

    def _create_hybrid(self, segment: str) -> Network:
        route = default_route_interface()
        name = self._name(NETWORK_IPVLAN, segment)
        if route is None:
            raise CirqueError(
                f"home {self._home_id}: docker_network ipvlan needs a host default route "
                "interface, and none was found; use docker_network: default"
            )
        iface, address, gateway = route
        subnet = address.network
        ip_range = os.environ.get("CIRQUE_IPVLAN_RANGE") or _upper_quarter(subnet)
        driver = _ipvlan_driver()
        try:
            net_id = self._backend.create_network(
                name,
                labels=self._labels(NETWORK_IPVLAN, segment),
                subnet=str(subnet),
                gateway=gateway,
                ip_range=ip_range,
                driver=driver,
                parent=iface,
            )
        except (ParentInUse, SubnetTaken) as exc:
            raise CirqueError(
                f"home {self._home_id}: cannot make the hybrid network on {iface} ({exc}); "
                "only one ipvlan home per host interface at a time: destroy the other one"
            ) from None
        return Network(name, net_id, NETWORK_IPVLAN, segment, str(subnet), gateway, driver=driver)

    def remove_all(self) -> list[BaseException]:
        """Remove every network of the home (containers must be gone); returns errors."""
        errors: list[BaseException] = []
        for key in reversed(list(self.networks)):
            try:
                self._backend.remove_network(self.networks[key].id)
                del self.networks[key]
            except StaleNetwork as exc:
                warn_stale(f"home {self._home_id}: {exc}")
            except Exception as exc:
                errors.append(exc)
        return errors


def warn_stale(message: str) -> None:
    """A stale network is the engine's fault and cannot be fixed from here: say so, go on."""
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=2)


def _upper_quarter(subnet: ipaddress.IPv4Network) -> str:
    """The top quarter of the host's subnet, where DHCP servers rarely hand out leases;
    override with CIRQUE_IPVLAN_RANGE."""
    if subnet.prefixlen >= 30:
        return str(subnet)
    return str(list(subnet.subnets(prefixlen_diff=2))[-1])
