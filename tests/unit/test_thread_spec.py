"""The Thread capability's parameters: checked when the spec is parsed, one line each."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_cirque.capabilities.model.base import lookup
from pytest_cirque.capabilities.model.thread import Thread, check_mode
from pytest_cirque.capabilities.runtime.thread import daemon_command
from pytest_cirque.core.errors import SpecError
from pytest_cirque.radios.relay.thread import random_dataset
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
        ({"border_router": True}, "'border_router': not yet"),
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
    command = daemon_command(7)
    assert command[:2] == ["sh", "-c"]
    assert "cd /var/lib/openthread" in command[2]
    assert (
        "/opt/cirque-thread/bin/ot-daemon -I wpan0 'spinel+hdlc+forkpty:///opt/cirque-thread/"
        "bin/ot-rcp?forkpty-arg=-Lot-radio0&forkpty-arg=7'"
    ) in command[2]


def test_more_thread_nodes_than_a_medium_holds_are_refused_before_anything_is_made():
    from tests.unit.test_home_node import FakeBackend, make_home

    backend = FakeBackend()
    home, _ = make_home(backend, {f"n{i}": {"capabilities": ["Thread"]} for i in range(129)})
    with pytest.raises(SpecError) as error:
        home.build()
    message = str(error.value)
    assert "129 Thread nodes, and a Thread medium holds 128 radios" in message
    assert "\n" not in message
    assert backend.calls == [] and not backend.containers
