"""The Thread capability's parameters: checked when the spec is parsed, one line each."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from pytest_cirque.capabilities.model.base import ContainerConfig, lookup
from pytest_cirque.capabilities.model.thread import Thread, check_mode, omr_prefix
from pytest_cirque.capabilities.runtime.thread import (
    UART_RADIO,
    daemon_command,
    forkpty_radio,
    global_addresses,
    serial_line_command,
)
from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.thread import BINARIES, random_dataset
from pytest_cirque.spec import HomeSpec

WHERE = "home.yaml:3 node 'sensor'"


def build(params: Any = None) -> Thread:
    capability = lookup("Thread", WHERE).from_params(params, WHERE)
    assert isinstance(capability, Thread)
    return capability


def refused(params: Any) -> str:
    with pytest.raises(SpecError) as error:
        build(params)
    message = str(error.value)
    assert "\n" not in message and message.startswith(WHERE)
    return message


def test_defaults_are_a_commissioned_router_eligible_node_at_the_origin():
    thread = build()
    assert (thread.position, thread.commissioned, thread.mode) == ([0.0, 0.0, 0.0], True, "rdn")
    assert (thread.rcp_mode, thread.thread_host, thread.border_router) == (False, None, False)


def test_the_nodes_own_dataset_fields_replace_the_homes():
    thread = build(
        {
            "channel": 20,
            "panid": "0x1234",
            "network_key": "0x00112233445566778899AABBCCDDEEFF",
            "extended_panid": "dead00beef00cafe",
            "network_name": "mine",
        }
    )
    home = random_dataset()
    dataset = thread.dataset_for(home)
    assert (dataset.channel, dataset.panid, dataset.network_name) == (20, 0x1234, "mine")
    assert dataset.network_key == "00112233445566778899aabbccddeeff"
    assert dataset.extended_panid == "dead00beef00cafe"
    assert dataset.mesh_local_prefix == home.mesh_local_prefix
    assert build({"panid": 0x1234}).dataset == {"panid": 0x1234}


def test_accepted_radio_parameters():
    assert build({"rcp_mode": True, "radio": "rcp", "mode": "-", "commissioned": False}).mode == "-"
    assert build({"position": [100, 0]}).position == [100.0, 0.0, 0.0]
    assert build({"border_router": False}).commissioned
    assert build({"radio": "rcp"}).rcp_mode
    assert build({"thread_host": "cirque"}).thread_host == "cirque"
    assert build({"border_router": True}).border_router


def test_our_host_drives_the_radio_unless_an_rcp_node_of_another_image_brings_its_own():
    assert build().host("my-sdk:1") == "cirque"  # without RCP mode: ours, over forkpty
    rcp = build({"rcp_mode": True})
    assert rcp.host("base") == "cirque"
    assert rcp.host("my-sdk:1") == rcp.host("wifi-ap") == "image"
    assert build({"rcp_mode": True, "thread_host": "cirque"}).host("my-sdk:1") == "cirque"
    assert build({"rcp_mode": True, "thread_host": "image"}).host("base") == "image"


def test_cirques_generic_node_image_is_ours():
    spec = HomeSpec.parse(
        {"n": {"type": "generic_node_image", "capabilities": [{"Thread": {"rcp_mode": True}}]}}
    )
    (thread,) = spec.nodes["n"].capabilities
    assert isinstance(thread, Thread) and thread.host(spec.nodes["n"].image) == "cirque"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"channel": 10}, "'channel': must be an 802.15.4 channel 11..26"),
        ({"channel": 27}, "'channel'"),
        ({"panid": 0x10000}, "'panid': must be a 16-bit PAN ID"),
        ({"panid": "0xffff"}, "'panid'"),
        ({"panid": "nope"}, "'panid'"),
        ({"network_key": "0011"}, "'network_key': must be 16 bytes of hex"),
        ({"network_key": "zz" * 16}, "'network_key'"),
        ({"extended_panid": "00" * 9}, "'extended_panid': must be 8 bytes of hex"),
        ({"mode": "router"}, "'mode': must be 'rdn'"),
        ({"mode": "rr"}, "'mode'"),
        ({"radio": "ncp"}, "'radio': must be 'rcp'"),
        ({"radio": "rcp", "rcp_mode": False}, "'radio': 'rcp' asks for RCP mode"),
        ({"rcp_mode": "yes"}, "'rcp_mode': must be true or false"),
        ({"commissioned": "no"}, "'commissioned': must be true or false"),
        ({"thread_host": "otbr"}, "'thread_host': must be 'cirque'"),
        ({"thread_host": "image"}, "'thread_host': 'image' needs rcp_mode: true"),
        ({"border_router": True, "commissioned": False}, "'border_router': a border router"),
        ({"border_router": True, "mode": "-"}, "'border_router': a border router must be able"),
        ({"border_router": "yes"}, "'border_router': must be true or false"),
        ({"network_name": "x" * 17}, "'network_name'"),
        ({"position": "here"}, "'position'"),
        ({"chanel": 15}, "unknown field(s) chanel"),
    ],
)
def test_bad_input_is_refused_in_one_line(params, words):
    assert words in refused(params)


def test_link_modes():
    assert all(check_mode(mode) for mode in ("rdn", "-", "rn", "r", "dn"))
    assert not any(check_mode(mode) for mode in ("", "x", "rr", "rdnx", "--"))


def test_a_home_of_thread_nodes_needs_no_access_point():
    spec = HomeSpec.parse({"n1": {"capabilities": ["Thread"]}, "n2": {"capabilities": ["Thread"]}})
    spec.check_media()


def test_ot_daemon_runs_its_radio_on_ot_radio0_with_the_node_id():
    command = daemon_command(forkpty_radio(7))
    assert command[:2] == ["sh", "-c"]
    assert "cd /var/lib/openthread" in command[2]
    assert (
        "/opt/cirque-thread/bin/ot-daemon -I wpan0 'spinel+hdlc+forkpty:///opt/cirque-thread/"
        "bin/ot-rcp?forkpty-arg=-Lot-radio0&forkpty-arg=7'"
    ) in command[2]


def test_in_rcp_mode_ot_rcp_runs_behind_the_serial_line_and_ot_daemon_on_it():
    assert serial_line_command(7) == [
        "/opt/cirque-thread/bin/cirque-rcp-tty",
        "/dev/ttyUSB0",
        "/opt/cirque-thread/bin/ot-rcp",
        "-Lot-radio0",
        "7",
    ]
    assert "ot-daemon -I wpan0 spinel+hdlc+uart:///dev/ttyUSB0;" in daemon_command(UART_RADIO)[2]
    assert "cirque-rcp-tty" in BINARIES  # the medium hands it to the nodes with OpenThread


def test_a_border_router_forwards_and_publishes_its_lans_sibling_prefix():
    config = ContainerConfig()
    build({"border_router": True}).configure(config, "br")
    assert config.sysctls["net.ipv6.conf.all.forwarding"] == "1"
    plain = ContainerConfig()
    build().configure(plain, "n")
    assert "net.ipv6.conf.all.forwarding" not in plain.sysctls

    lan = ipaddress.IPv6Network("fdc8:bfa9:e332:ce5c::/64")
    omr = ipaddress.IPv6Network(omr_prefix(str(lan)))
    assert omr.prefixlen == 64 and omr != lan and not omr.overlaps(lan)
    assert omr.supernet(new_prefix=48) == lan.supernet(new_prefix=48)  # the same ULA /48
    assert omr_prefix("fdc8:bfa9:e332:ce5c::2/64") == str(omr)  # from any LAN address
    assert ipaddress.IPv6Network(omr_prefix(str(omr))) == lan


def test_the_lan_address_is_read_from_proc():
    if_inet6 = (
        "fdc8bfa9e332ce5c0000000000000002 26 40 00 80     eth0\n"
        "fe80000000000000004202fffe0a0b0c 26 40 20 80     eth0\n"
        "fd7dce13dfbbac88000000fffe00fc00 03 40 00 80    wpan0\n"
    )
    assert global_addresses(if_inet6, "eth0") == [
        ipaddress.IPv6Interface("fdc8:bfa9:e332:ce5c::2/64")
    ]
    assert global_addresses(if_inet6, "lo") == []


@pytest.mark.parametrize(
    ("node", "words"),
    [
        (
            {"capabilities": [{"Thread": {"border_router": True}}]},
            "field 'border_router': routes between Thread and an IPv6 LAN, and the node's LAN "
            "('default') has no IPv6; give the node docker_network: ipv6",
        ),
        (
            {"docker_network": "internal", "capabilities": [{"Thread": {"border_router": True}}]},
            "('internal') has no IPv6",
        ),
        (
            {
                "image": "my-sdk:1",
                "docker_network": "ipv6",
                "capabilities": [{"Thread": {"border_router": True, "rcp_mode": True}}],
            },
            "field 'border_router': image 'my-sdk:1' drives /dev/ttyUSB0 with its own Thread "
            "host, and the home publishes a border router's prefix through ours; give "
            "thread_host: cirque",
        ),
        (
            {
                "image": "my-sdk:1",
                "capabilities": [{"Thread": {"radio": "rcp", "commissioned": True}}],
            },
            "field 'commissioned': image 'my-sdk:1' drives /dev/ttyUSB0 with its own Thread host",
        ),
    ],
)
def test_a_node_thread_cannot_serve_is_refused_before_anything_is_made(node, words):
    from .test_home_node import FakeBackend, make_home

    backend = FakeBackend()
    home, _ = make_home(backend, {"ok": {"capabilities": ["Thread"]}, "n": node})
    with pytest.raises(SpecError) as error:
        home.build()
    message = str(error.value)
    assert message.startswith("node n capability Thread field")
    assert words in message and "\n" not in message
    assert backend.calls == [] and not backend.containers


def test_nodes_thread_can_serve_pass_the_node_check():
    for image, network, params in (
        ("my-sdk:1", "default", {"rcp_mode": True}),
        ("my-sdk:1", "default", {"rcp_mode": True, "commissioned": False}),
        ("my-sdk:1", "ipv6", {"rcp_mode": True, "thread_host": "cirque", "border_router": True}),
        ("base", "ipv6", {"rcp_mode": True, "border_router": True}),
        ("my-sdk:1", "default", {"commissioned": True}),
    ):
        build(params).check_node(WHERE, image, network)


def test_more_thread_nodes_than_a_medium_holds_are_refused_before_anything_is_made():
    from .test_home_node import FakeBackend, make_home

    backend = FakeBackend()
    home, _ = make_home(backend, {f"n{i}": {"capabilities": ["Thread"]} for i in range(129)})
    with pytest.raises(SpecError) as error:
        home.build()
    message = str(error.value)
    assert "129 Thread nodes, and a Thread medium holds 128 radios" in message
    assert "\n" not in message
    assert backend.calls == [] and not backend.containers
