"""Pure parts of the transports: MQTT property encoding, topics, URLs, metadata."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pytest_cirque.core.errors import TransportError
from pytest_cirque.device_models.transports.base import DeliveryCounts, Message, metadata
from pytest_cirque.device_models.transports.mqtt import (
    METHOD_TOPIC,
    PackedProperties,
    _subscription,
    _topic_pattern,
    parse_mqtt_url,
)


def test_packed_properties_encode_exactly_as_paho_does():
    user = {"schema": "elevator;v1", "created": "2026-01-01T00:00:00.000+00:00", "é": "ü"}
    reference = Properties(PacketTypes.PUBLISH)
    reference.ContentType = "application/json"
    reference.UserProperty = list(user.items())
    assert PackedProperties("application/json", user).pack() == reference.pack()


def test_packed_properties_decode_back():
    packed = PackedProperties("text/plain", {"a": "1", "b": "2"}).pack()
    decoded = Properties(PacketTypes.PUBLISH)
    decoded.unpack(packed)
    assert decoded.ContentType == "text/plain"
    assert decoded.UserProperty == [("a", "1"), ("b", "2")]


def test_long_property_blocks_use_a_multi_byte_length():
    packed = PackedProperties("application/json", {"k": "x" * 300}).pack()
    decoded = Properties(PacketTypes.PUBLISH)
    decoded.unpack(packed)
    assert decoded.UserProperty == [("k", "x" * 300)]


def test_method_topics_parse_and_subscribe():
    pattern = _topic_pattern(METHOD_TOPIC)
    match = pattern.match("devices/elevator.3/methods/StopElevator/abc123")
    assert match and match["device_id"] == "elevator.3" and match["method"] == "StopElevator"
    assert pattern.match("devices/elevator.3/methods/res/200/abc123") is None
    assert _subscription(METHOD_TOPIC, "elevator.3") == "devices/elevator.3/methods/+/+"


@pytest.mark.parametrize(
    ("url", "expected"),
    [("mqtt://127.0.0.1", ("127.0.0.1", 1883)), ("mqtt://broker:8883", ("broker", 8883))],
)
def test_mqtt_urls(url, expected):
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize("url", ["tcp://x:1", "mqtt://", "mqtt://x:notaport"])
def test_bad_mqtt_urls_say_how_to_write_them(url):
    with pytest.raises(TransportError, match="bad MQTT broker URL"):
        parse_mqtt_url(url)


def test_metadata_names_are_shared_by_every_transport():
    message = Message("d1", "s;v1", "application/json", "2026-01-01T00:00:00Z", b"{}", "m1")
    assert metadata(message) == {
        "schema": "s;v1",
        "created": "2026-01-01T00:00:00Z",
        "device-id": "d1",
        "model-id": "m1",
    }


def test_pending_is_what_is_neither_delivered_nor_failed():
    assert DeliveryCounts(sent=10, delivered=6, failed=3).pending == 1
