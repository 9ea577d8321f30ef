"""A home's networks on real Docker: LAN isolation, the LanAccess segment, the
docker_network variants, and subnets chosen without collision."""

from __future__ import annotations

import concurrent.futures
import io
import ipaddress
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, BackgroundExec
from pytest_cirque.core.errors import CirqueError
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes import networks
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque

from .conftest import run_objects

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
#: Networks created (and removed) while the segments ping each other.
CHURNED_NETWORKS = 10


def reaches(node: Node, address: str) -> bool:
    flag = "-6 " if ":" in address else ""
    return node.exec(f"ping {flag}-c1 -W1 {address}", timeout=15).exit_code == 0


def outside_address() -> str:
    """The host's own default gateway: beyond the host, reached only through its NAT."""
    route = networks.default_route_interface()
    assert route is not None, "the host has no default route"
    return route[2]


@pytest.fixture(scope="module")
def lan_home() -> Iterator[Home]:
    svc = Cirque(worker=WORKER)
    try:
        yield svc.create_home(
            {
                "plain1": {},
                "plain2": {},
                "open1": {"capabilities": ["LanAccess"]},
                "open2": {"capabilities": ["LanAccess"]},
            }
        )
    finally:
        svc.close()
        assert run_objects(svc) == []


def test_two_segments_with_their_own_subnets(lan_home: Home) -> None:
    segments = {n["segment"]: n for n in lan_home.describe()["networks"]}
    assert set(segments) == {"lan", "lan-access"}
    lan, access = (ipaddress.ip_network(segments[s]["subnet"]) for s in ("lan", "lan-access"))
    assert not lan.overlaps(access)
    assert segments["lan"]["isolated"] == "true" and segments["lan-access"]["isolated"] == "false"
    assert ipaddress.ip_address(lan_home["plain1"].ip) in lan
    assert ipaddress.ip_address(lan_home["open1"].ip) in access


def test_plain_nodes_reach_only_the_gateway(lan_home: Home) -> None:
    plain1, plain2 = lan_home["plain1"], lan_home["plain2"]
    assert reaches(plain1, plain1.network.gateway)
    assert not reaches(plain1, plain2.ip)
    assert not reaches(plain2, plain1.ip)
    assert not reaches(plain1, lan_home["open1"].ip)


def test_lan_access_nodes_reach_each_other_by_address_and_name(lan_home: Home) -> None:
    open1, open2 = lan_home["open1"], lan_home["open2"]
    assert reaches(open1, open2.ip)
    assert reaches(open2, "open1")
    assert reaches(open1, open1.network.gateway)
    assert not reaches(open1, lan_home["plain1"].ip)


def start_pinging(node: Node, address: str) -> BackgroundExec:
    """Ping ``address`` every 2 ms until stop_pinging (or until ping gives up)."""
    pidfile = f"/tmp/ping-{address}.pid"
    return node.exec_background(
        f"ping -n -q -i 0.002 -W 1 {address} & echo $! > {pidfile}; wait $!"
    )


def stop_pinging(node: Node, address: str, ping: BackgroundExec) -> tuple[int, int]:
    """Stop the pings (SIGINT: ping prints its summary); (sent, received). A ping that
    ended by itself (no route to the address) sent nothing."""
    pidfile = f"/tmp/ping-{address}.pid"
    node.wait_until(
        lambda: node.exec(f"test -s {pidfile}").exit_code == 0, f"ping to {address} started"
    )
    node.exec(f'kill -INT "$(cat {pidfile})" 2>/dev/null')
    result = ping.wait(timeout=30)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def test_segments_stay_apart_while_networks_are_created(service: Cirque) -> None:
    """Docker 20.10 takes its inter-bridge isolation jump out of FORWARD and puts it back
    on every network creation; pings between the segments during that churn must still
    all be lost (about one in twenty came back before each node had its segment guard)."""
    home = service.create_home({"plain": {}, "open": {"capabilities": ["LanAccess"]}})
    plain, open_ = home["plain"], home["open"]
    pings = {
        (plain, open_.ip): start_pinging(plain, open_.ip),
        (open_, plain.ip): start_pinging(open_, plain.ip),
    }
    backend = service.backend
    labels = service.identity.labels(home.name, identity.ROLE_NETWORK)
    for n in range(CHURNED_NETWORKS):
        name = identity.object_name(home.name, f"churn{n}")
        backend.remove_network(backend.create_network(name, labels=labels))
    for (node, address), ping in pings.items():
        sent, received = stop_pinging(node, address, ping)
        assert received == 0, f"{node.name} reached {address}: {received} of {sent} pings"
        no_route = node.exec(f"ip route get {address}").exit_code != 0
        assert sent > 0 or no_route, f"{node.name} never tried to reach {address}"
    assert reaches(plain, plain.network.gateway) and reaches(open_, open_.network.gateway)
    assert reaches(plain, outside_address())


def test_default_network_has_a_way_out(lan_home: Home) -> None:
    assert reaches(lan_home["plain1"], outside_address())


def test_internal_network_has_no_way_out(service: Cirque) -> None:
    home = service.create_home(
        {
            "sealed": {"docker_network": "internal", "capabilities": ["LanAccess"]},
            "peer": {"docker_network": "internal", "capabilities": ["LanAccess"]},
        }
    )
    sealed = home["sealed"]
    assert sealed.network.variant == "internal"
    assert reaches(sealed, home["peer"].ip)
    assert not reaches(sealed, outside_address())


def test_ipv6_network(service: Cirque) -> None:
    home = service.create_home(
        {
            "six1": {"docker_network": "ipv6", "capabilities": ["LanAccess"]},
            "six2": {"docker_network": "ipv6", "capabilities": ["LanAccess"]},
        }
    )
    six1, six2 = home["six1"], home["six2"]
    subnet = ipaddress.IPv6Network(six1.network.ipv6_subnet)
    assert subnet.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert len(six1.ipv6) == 1 and ipaddress.IPv6Address(six1.ipv6[0]) in subnet
    assert six1.ipv6[0] in six1.exec("ip -6 addr show eth0").stdout
    assert reaches(six1, six2.ipv6[0])
    assert six1.ip  # IPv4 as well


def test_ipv6_segments_stay_apart(service: Cirque) -> None:
    home = service.create_home(
        {
            "plain": {"docker_network": "ipv6"},
            "open1": {"docker_network": "ipv6", "capabilities": ["LanAccess"]},
            "open2": {"docker_network": "ipv6", "capabilities": ["LanAccess"]},
        }
    )
    plain, open1, open2 = home["plain"], home["open1"], home["open2"]
    assert reaches(open1, open2.ipv6[0])
    assert not reaches(plain, open1.ipv6[0])
    assert not reaches(open1, plain.ipv6[0])
    assert not reaches(plain, open1.ip) and not reaches(open1, plain.ip)


def test_ipv6_lan_nodes_reach_their_gateway_but_not_each_other(service: Cirque) -> None:
    """The lan segment keeps its nodes apart over IPv6 as over IPv4: not at the
    neighbour's unique-local address, its link-local one, or all nodes' multicast."""
    home = service.create_home({"a": {"docker_network": "ipv6"}, "b": {"docker_network": "ipv6"}})
    a, b = home["a"], home["b"]
    assert a.network is not None
    gateway = a.network.ipv6_gateway
    # The bridge's new address answers once the host's duplicate detection is done.
    wait_until(lambda: reaches(a, gateway), f"node a to reach its gateway {gateway}", 30)
    assert not reaches(a, b.ipv6[0]) and not reaches(b, a.ipv6[0])
    link_local = b.exec("ip -6 -o addr show dev eth0 scope link", check=True).stdout.split()[3]
    assert link_local.startswith("fe80:")
    assert not reaches(a, f"{link_local.split('/')[0]}%eth0")
    assert not reaches(a, "ff02::1%eth0")  # every node on the link would answer
    assert not reaches(a, b.ip)


def prohibited(node: Node) -> str:
    """The node's prohibit routes, read from a NET_ADMIN helper in its namespace (so the
    node's image needs no ip)."""
    return node.run_netadmin("ip route show type prohibit").stdout


@pytest.fixture
def image_without_ip(service: Cirque) -> Iterator[str]:
    """The project base image with iproute2's ip removed, built for this test only."""
    tag = f"cirque-test/no-ip:{service.run_id}"
    dockerfile = (
        f"FROM {service.resolve_image('base')}\n"
        "RUN rm -f /usr/bin/ip /usr/sbin/ip /bin/ip /sbin/ip && ! command -v ip\n"
    )
    labels = service.identity.labels("", "test-image")
    try:
        service.client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, labels=labels, pull=False, rm=True
        )
        yield tag
    finally:
        if service.client.images.list(name=tag):
            service.client.images.remove(tag, force=True)


def test_node_from_an_image_without_ip_gets_its_guard(
    service: Cirque, image_without_ip: str
) -> None:
    home = service.create_home({"bare": {"image": image_without_ip}})
    bare = home["bare"]
    assert bare.exec("command -v ip").exit_code != 0
    assert str(networks.subnet_pool()) in prohibited(bare)


def test_guards_come_from_helpers_without_host_powers(
    service: Cirque, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each node's guard comes from a helper in that node's own network namespace holding
    NET_ADMIN alone: no helper shares the host's pid namespace or holds SYS_ADMIN or
    SYS_PTRACE, and none outlives its work."""
    created: list[dict[str, Any]] = []
    original = Backend.create_container

    def record(self: Backend, name: str, image: str, **options: Any) -> str:
        created.append({"name": name, **options})
        return original(self, name, image, **options)

    monkeypatch.setattr(Backend, "create_container", record)
    home = service.create_home({"a": {}, "b": {"docker_network": "ipv6"}})
    helpers = [c for c in created if c["labels"][identity.ROLE] == identity.ROLE_NETADMIN]
    assert {c["network_mode"] for c in helpers} == {
        f"container:{home['a'].container_id}",
        f"container:{home['b'].container_id}",
    }
    for options in created:
        assert options.get("pid_mode") != "host", options["name"]
        assert not {"SYS_ADMIN", "SYS_PTRACE"} & set(options.get("cap_add") or ()), options["name"]
    for helper in helpers:
        assert helper["cap_drop"] == ["ALL"] and helper["cap_add"] == ["NET_ADMIN"]
        assert helper["read_only"] and helper["security_opt"] == ["no-new-privileges"]
    assert str(networks.subnet_pool()) in prohibited(home["a"])
    assert "prohibit" in home["b"].exec("ip -6 route show type prohibit").stdout
    left = service.backend.find([f"{identity.HOME}={home.name}", f"{identity.ROLE}=netadmin"])
    assert left == []


def hybrid_home(service: Cirque) -> Home:
    """A home with one hybrid node. The engine allows one macvlan network per host
    interface, so while another session's hybrid home holds it, wait for it to go."""

    def created() -> Home | None:
        try:
            return service.create_home({"hybrid": {"docker_network": "ipvlan"}})
        except CirqueError as exc:
            if "only one ipvlan home" in str(exc):
                return None  # another session's hybrid home holds the interface
            raise

    return wait_until(created, "the host's one macvlan network to be free", 300, ignore=())


def test_ipvlan_is_macvlan_on_the_host_lan(
    service: Cirque, monkeypatch: pytest.MonkeyPatch
) -> None:
    if networks.kernel_has_ipvlan():
        pytest.skip("this kernel has ipvlan: the macvlan fallback is not used here")
    monkeypatch.setattr(networks, "_ipvlan_notice_given", False)
    with pytest.warns(RuntimeWarning, match="no ipvlan; using macvlan"):
        home = hybrid_home(service)
    node = home["hybrid"]
    route = networks.default_route_interface()
    assert route is not None
    assert node.network.driver == "macvlan"
    assert ipaddress.ip_address(node.ip) in route[1].network
    assert node.ip in node.exec("ip -4 addr show eth0").stdout
    info = service.client.api.inspect_network(node.network.id)
    assert info["Driver"] == "macvlan" and info["Options"]["parent"] == route[0]


def test_exhausted_pool_is_one_line_and_leaves_nothing(
    service: Cirque, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pool of two /24s that no other test uses: one home with both segments fills it.
    monkeypatch.setenv("CIRQUE_SUBNET_POOL", "10.214.250.0/23")
    if networks.candidate_subnets(networks.subnet_pool(), service.backend.used_subnets(), "x"):
        first = service.create_home({"a": {}, "b": {"capabilities": ["LanAccess"]}})
    else:
        first = None
    before = run_objects(service)
    with pytest.raises(CirqueError) as exc:
        service.create_home({"c": {}}, name="overflow")
    text = str(exc.value)
    assert "no free /24" in text and "CIRQUE_SUBNET_POOL" in text and "\n" not in text
    assert run_objects(service) == before
    if first is not None:
        first.destroy()


def test_concurrent_homes_get_distinct_subnets() -> None:
    services = [Cirque(worker=WORKER) for _ in range(3)]
    try:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            homes = list(
                pool.map(
                    lambda i: services[i % 3].create_home(
                        {"a": {}, "b": {"capabilities": ["LanAccess"]}}
                    ),
                    range(6),
                )
            )
        subnets = [net.subnet for home in homes for net in home.networks.networks.values()]
        assert len(subnets) == 12 == len(set(subnets))
    finally:
        for svc in services:
            svc.close()
    for svc in services:
        assert run_objects(svc) == []
