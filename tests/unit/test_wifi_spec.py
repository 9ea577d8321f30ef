"""WiFi in specs: access point and station parameters, and which homes have a medium.

Every bad value is refused when the spec is parsed, in one line naming the node, the
capability and the field, so nothing is created for it."""

from __future__ import annotations

import pytest

from pytest_cirque.core.errors import SpecError
from pytest_cirque.spec import HomeSpec


def ap(**settings):
    return {"image": "wifi-ap", "capabilities": [{"WiFiAP": {"ssid": "home", **settings}}]}


def refused(spec) -> str:
    with pytest.raises(SpecError) as error:
        HomeSpec.parse(spec, where="t.py").check_media()
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"psk": "short"}, "field 'psk'"),
        ({"psk": "x" * 64}, "field 'psk'"),  # 64 characters must be hex (a raw PSK)
        ({"psk": "x" * 65}, "field 'psk'"),
        ({"ssid": "s" * 33}, "field 'ssid'"),
        ({"ssid": "é" * 17}, "field 'ssid'"),  # 34 bytes in UTF-8
        ({"ssid": ""}, "field 'ssid'"),
        ({"channel": 0}, "field 'channel'"),
        ({"channel": "6"}, "field 'channel'"),
        ({"mode": "mesh"}, "field 'mode'"),
        ({"subnet": "10.0.0.1/24"}, "field 'subnet'"),
        ({"subnet": "10.0.0.0/30"}, "field 'subnet'"),
        ({"position": [1]}, "field 'position'"),
        ({"mac": "01:00:00:00:00:01"}, "field 'mac'"),
        ({"mac": "nope"}, "field 'mac'"),
        ({"pskk": "password1"}, "unknown field(s) pskk"),
    ],
)
def test_bad_access_point_settings_are_refused_in_one_line(settings, expected):
    message = refused({"ap": ap(**settings)})
    assert "node ap" in message and "WiFiAP" in message and expected in message


def test_an_ssid_is_required():
    message = refused({"ap": {"capabilities": [{"WiFiAP": {"psk": "password1"}}]}})
    assert "field 'ssid': is required" in message


@pytest.mark.parametrize("psk", [None, "12345678", "p" * 63, "ab" * 32])
def test_good_passphrases_and_open_networks_are_accepted(psk):
    spec = HomeSpec.parse({"ap": ap(psk=psk) if psk else ap()})
    (capability,) = spec.nodes["ap"].capabilities
    assert capability.psk == psk
    assert capability.describe()["security"] == ("WPA2-PSK" if psk else "open")
    assert "psk" not in capability.describe()  # the secret stays out of listings


def test_a_station_needs_a_home_with_a_wifi_medium():
    message = refused({"sta": {"capabilities": ["WiFi"]}})
    assert message.startswith("t.py node sta: capability WiFi needs the home's wifi medium")
    assert "WiFiAP" in message and "@pytest.mark.wifi" in message


def test_an_access_point_brings_the_medium_and_a_declared_medium_is_enough():
    HomeSpec.parse({"ap": ap(psk="password1"), "sta": {"capabilities": ["WiFi"]}}).check_media()
    declared = HomeSpec.parse({"sta": {"capabilities": ["WiFi"]}})
    declared.media.add("wifi")
    declared.check_media()


def test_two_access_points_may_share_an_ssid_with_different_keys():
    spec = HomeSpec.parse({"ap1": ap(psk="password1"), "ap2": ap(psk="password2")})
    assert [n.capabilities[0].psk for n in spec.nodes.values()] == ["password1", "password2"]


def test_a_station_leaves_the_wired_lan_unless_asked():
    from pytest_cirque.capabilities.model.base import ContainerConfig

    for params, segment in (({}, None), ({"lan": True}, "lan")):
        spec = HomeSpec.parse({"ap": ap(), "sta": {"capabilities": [{"WiFi": params}]}})
        config = ContainerConfig()
        spec.nodes["sta"].capabilities[0].configure(config, "sta")
        assert config.lan_segment == segment
        assert "NET_ADMIN" in config.cap_add  # its own DHCP client configures wlan0
