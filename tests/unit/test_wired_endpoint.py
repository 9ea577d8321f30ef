"""The wired attach helper's pure parts: which addresses and routes of Docker's ``eth0``
(as ``ip -j`` prints them) the TAP that takes its place gets, and the names it uses.

The plumbing itself runs in a node's namespace: tests/integration/test_capabilities.py.
"""

from __future__ import annotations

from pytest_cirque.radios.relay.endpoint import (
    IFNAMSIZ,
    PEER_SUFFIX,
    address_args,
    lan_name,
    mute_rules,
    route_args,
)


def test_the_real_interface_takes_a_name_that_fits() -> None:
    assert lan_name("eth0") == "eth0-lan"
    long = lan_name("enp0s31f6abcdef")
    assert len(long) == IFNAMSIZ - 1 and long.endswith("-lan")
    assert "." in PEER_SUFFIX  # node names have no dot: never another node's endpoint


def test_docker_addresses_move_and_kernel_made_ones_do_not() -> None:
    ipv4 = {
        "family": "inet",
        "local": "10.213.7.2",
        "prefixlen": 24,
        "broadcast": "10.213.7.255",
        "scope": "global",
        "label": "eth0",
    }
    ula = {"family": "inet6", "local": "fd3c:1::2", "prefixlen": 64, "scope": "global"}
    link_local = {
        "family": "inet6",
        "local": "fe80::42:aff:fed5:702",
        "prefixlen": 64,
        "scope": "link",
    }
    autoconfigured = {**ula, "local": "fd3c:1::42:aff:fed5:702", "dynamic": True}
    assert address_args(ipv4) == ["10.213.7.2/24", "broadcast", "10.213.7.255"]
    assert address_args(ula) == ["fd3c:1::2/64", "nodad"]
    assert address_args(link_local) is None  # the TAP makes it again from the same MAC
    assert address_args(autoconfigured) is None
    assert address_args(
        {"family": "inet", "local": "10.0.0.1", "prefixlen": 8, "scope": "host"}
    ) == ["10.0.0.1/8", "scope", "host"]


def test_the_default_route_moves_and_the_kernels_own_routes_do_not() -> None:
    routes_v4 = [
        {"dst": "default", "gateway": "10.213.7.1", "flags": []},
        {
            "dst": "10.213.7.0/24",
            "protocol": "kernel",
            "scope": "link",
            "prefsrc": "10.213.7.2",
            "flags": [],
        },
        {
            "dst": "192.168.5.0/24",
            "gateway": "10.213.7.9",
            "metric": 5,
            "protocol": "static",
            "flags": ["onlink"],
        },
    ]
    assert [route_args(r) for r in routes_v4] == [
        ["default", "via", "10.213.7.1"],
        None,
        ["192.168.5.0/24", "via", "10.213.7.9", "metric", "5", "proto", "static", "onlink"],
    ]
    routes_v6 = [
        {"dst": "fd3c:1::/64", "protocol": "kernel", "metric": 256, "pref": "medium"},
        {"dst": "fe80::/64", "metric": 256, "pref": "medium"},
        {"dst": "default", "gateway": "fd3c:1::1", "metric": 1024, "flags": [], "pref": "medium"},
    ]
    assert [route_args(r) for r in routes_v6] == [
        None,
        None,
        ["default", "via", "fd3c:1::1", "metric", "1024"],
    ]


def test_the_real_interface_is_muted_for_both_ip_versions_and_unmuted_alike() -> None:
    added = mute_rules("eth0-lan", "-I")
    assert [rule[0] for rule in added] == ["iptables", "ip6tables"]
    assert all(
        rule[1:] == ["-w", "-t", "raw", "-I", "PREROUTING", "-i", "eth0-lan", "-j", "DROP"]
        for rule in added
    )
    deleted = mute_rules("eth0-lan", "-D")
    assert [r[:4] + r[5:] for r in deleted] == [r[:4] + r[5:] for r in added]
