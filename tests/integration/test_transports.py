"""Transports against real peers: mosquitto, RabbitMQ and a local HTTP server.

Every test checks what the peer received and that the counts add up: each message sent
is delivered or counted failed, never lost without a trace.
"""

from __future__ import annotations

import asyncio
import json

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pytest_cirque.core.errors import TransportError
from pytest_cirque.device_models.brokers import (
    MosquittoProcess,
    RabbitMQProcess,
    free_port,
    start_amqp_broker,
)
from pytest_cirque.device_models.recorders import HttpEndpoint, MqttRecorder
from pytest_cirque.device_models.transports.base import Message, make_transport

from .conftest import until

SCHEMA = "test-reading;v1"


def message(device_id: str, n: int) -> Message:
    return Message(
        device_id=device_id,
        schema=SCHEMA,
        content_type="application/json",
        created=f"2026-01-01T00:00:{n % 60:02d}.000+00:00",
        body=json.dumps({"n": n, "device": device_id}).encode(),
        model_id="test-model",
    )


@pytest.fixture
def private_mosquitto():
    """A mosquitto of this test alone, for tests that stop and restart it."""
    broker = MosquittoProcess()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


# --- MQTT --------------------------------------------------------------------------------


@pytest.mark.parametrize("pooled", [False, True], ids=["per-device", "pooled"])
def test_mqtt_delivers_every_message_with_metadata(mqtt_broker, telemetry, pooled):
    devices = [f"mqtt-meta-{pooled}-{i}" for i in range(5)]

    async def run():
        transport = make_transport("MQTT", mqtt_broker.url, pooled=pooled, pool_size=2)
        await transport.start(devices)
        for n in range(20):
            for device in devices:
                await transport.send(message(device, n))
        await transport.stop()
        return transport.counts

    counts = asyncio.run(run())
    assert (counts.sent, counts.delivered, counts.failed) == (100, 100, 0)
    arrived = telemetry.wait_for(100, schema=SCHEMA, where=lambda body: body["device"] in devices)
    first = telemetry.wait_for(1, device=devices[3], where={"n": 7})[0]
    assert first.where == f"devices/{devices[3]}/messages/events"
    assert first.content_type == "application/json"
    assert first.created == "2026-01-01T00:00:07.000+00:00"
    assert {m.json["n"] for m in arrived if m.device_id == devices[0]} == set(range(20))


def test_mqtt_topics_are_configurable(mqtt_broker):
    recorder = MqttRecorder(mqtt_broker.url, topic_filter="plant/#")
    try:

        async def run():
            transport = make_transport(
                "mqtt", mqtt_broker.url, telemetry_topic="plant/{device_id}/telemetry"
            )
            await transport.start(["custom-topic-1"])
            await transport.send(message("custom-topic-1", 1))
            await transport.stop()

        asyncio.run(run())
        got = recorder.wait_for(1, kind="other", device="custom-topic-1")
        assert got[0].where == "plant/custom-topic-1/telemetry"
    finally:
        recorder.close()


@pytest.mark.parametrize("pooled", [False, True], ids=["per-device", "pooled"])
def test_mqtt_methods_are_answered_with_status_and_payload(mqtt_broker, telemetry, pooled):
    device = f"method-device-{pooled}"
    calls = []

    async def handler(device_id, method, payload):
        calls.append((device_id, method, payload))
        if method == "Fail":
            raise RuntimeError("boom")
        return 200, {"echo": payload, "method": method}

    async def run():
        transport = make_transport("mqtt", mqtt_broker.url, pooled=pooled)
        transport.on_method(handler)
        await transport.start([device])
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, telemetry.call_method, device, "Go", {"speed": 3})
        failed = await loop.run_in_executor(None, telemetry.call_method, device, "Fail", {})
        await transport.stop()
        return ok, failed

    ok, failed = asyncio.run(run())
    assert ok == (200, {"echo": {"speed": 3}, "method": "Go"})
    assert failed[0] == 500 and "boom" in failed[1]["error"]
    assert calls[0] == (device, "Go", {"speed": 3})


def test_mqtt_properties_are_reported_retained(mqtt_broker):
    device = "retained-props-1"

    async def run():
        transport = make_transport("mqtt", mqtt_broker.url)
        await transport.start([device])
        await transport.report_properties(device, {"Firmware": "1.0"})
        await transport.report_properties(device, {"Firmware": "2.0"})
        await until(lambda: transport.property_counts.delivered == 2)
        await transport.stop()

    asyncio.run(run())
    late = MqttRecorder(mqtt_broker.url)  # subscribes after the reports: sees the retained one
    try:
        got = late.wait_for(1, kind="properties", device=device)
        assert got[0].retained and got[0].json == {"Firmware": "2.0"}
    finally:
        late.close()


@pytest.mark.parametrize("pooled", [False, True], ids=["per-device", "pooled"])
def test_mqtt_broker_unreachable_is_one_clear_line(pooled):
    url = f"mqtt://127.0.0.1:{free_port()}"

    async def run():
        transport = make_transport("mqtt", url, connect_timeout=1, pooled=pooled)
        with pytest.raises(TransportError) as error:
            await transport.start(["lonely-1", "lonely-2"])
        left_running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return transport, str(error.value), left_running

    transport, text, left_running = asyncio.run(run())
    assert "\n" not in text
    assert url in text and "unreachable" in text and "start the broker" in text
    assert transport.counts.sent == 0
    assert left_running == []  # nothing keeps running after a failed start


def test_mqtt_broker_restart_mid_run_loses_nothing(private_mosquitto):
    broker = private_mosquitto
    devices = ["restart-a", "restart-b", "restart-c"]
    recorder = MqttRecorder(broker.url)
    try:

        async def run():
            transport = make_transport("mqtt", broker.url)
            await transport.start(devices)
            for n in range(10):
                for device in devices:
                    await transport.send(message(device, n))
            await until(lambda: transport.counts.delivered == 30)
            broker.stop()
            await until(lambda: transport.connected_devices == 0)
            for n in range(10, 20):  # sent while the broker is down
                for device in devices:
                    await transport.send(message(device, n))
            assert transport.counts.delivered == 30
            broker.start()
            await until(lambda: transport.counts.delivered == 60)
            await transport.stop()
            return transport.counts

        counts = asyncio.run(run())
        assert (counts.sent, counts.delivered, counts.failed) == (60, 60, 0)
        assert counts.reconnects >= len(devices)
        # The recorder's session outlived the restart (a persistent broker queued for it);
        # QoS 1 is at least once, so a message in flight at the stop may come twice.
        for device in devices:
            for n in range(20):
                recorder.wait_for(1, device=device, where={"n": n})
    finally:
        recorder.close()


def test_mqtt_broker_gone_for_good_counts_failures(private_mosquitto):
    broker = private_mosquitto

    async def run():
        transport = make_transport("mqtt", broker.url, message_timeout=1, flush_timeout=1)
        await transport.start(["gone-1"])
        await transport.send(message("gone-1", 0))
        await until(lambda: transport.counts.delivered == 1)
        broker.stop()
        await until(lambda: transport.connected_devices == 0)
        for n in range(1, 6):
            await transport.send(message("gone-1", n))
        await until(lambda: transport.counts.failed == 5)
        error = transport.last_error
        transport.message_timeout = 600
        await transport.send(message("gone-1", 6))  # still waiting when stop gives up
        await transport.stop()
        return transport.counts, error, transport.last_error

    counts, error, at_stop = asyncio.run(run())
    assert (counts.sent, counts.delivered, counts.failed) == (7, 1, 6)
    assert "not acknowledged" in error and broker.url in error and "\n" not in error
    assert "1 message(s) not acknowledged by the broker when the transport stopped" in at_stop


def test_mqtt_misuse_raises_transport_error(mqtt_broker):
    async def run():
        transport = make_transport("mqtt", mqtt_broker.url)
        with pytest.raises(TransportError, match="call start"):
            await transport.send(message("x", 0))
        await transport.start(["known"])
        with pytest.raises(TransportError, match="'unknown' is not connected"):
            await transport.send(message("unknown", 0))
        await transport.stop()

    asyncio.run(run())


def test_mqtt_add_and_remove_devices_while_running(mqtt_broker, telemetry):
    async def run():
        transport = make_transport("mqtt", mqtt_broker.url)
        await transport.start(["grow-1"])
        await transport.add_devices(["grow-2"])
        await transport.send(message("grow-2", 1))
        await transport.send(message("grow-1", 1))
        await transport.remove_devices(["grow-1"])  # flushed before its connection closes
        with pytest.raises(TransportError):
            await transport.send(message("grow-1", 2))
        await transport.stop()
        return transport.counts

    counts = asyncio.run(run())
    assert (counts.sent, counts.delivered, counts.failed) == (2, 2, 0)
    telemetry.wait_for(1, device="grow-2")
    telemetry.wait_for(1, device="grow-1")


@pytest.mark.parametrize(
    ("protocol", "url", "text"),
    [
        ("CoAP", "coap://127.0.0.1:5683", "unknown protocol 'CoAP'"),
        ("MQTT", "http://127.0.0.1:1883", "does not match protocol MQTT"),
        ("mqtt", "mqtt://:1883", "bad MQTT broker URL"),
    ],
)
def test_make_transport_rejects_bad_input(protocol, url, text):
    with pytest.raises(TransportError, match=text):
        make_transport(protocol, url)


# --- HTTP --------------------------------------------------------------------------------


def test_http_posts_each_message_with_headers(http_endpoint):
    async def run():
        transport = make_transport("HTTP", http_endpoint.url)
        await transport.start(["http-1", "http-2"])
        await asyncio.gather(
            *(transport.send(message(d, n)) for n in range(10) for d in ("http-1", "http-2"))
        )
        await transport.report_properties("http-1", {"Firmware": "1.0"})
        await transport.stop()
        return transport

    transport = asyncio.run(run())
    assert (transport.counts.sent, transport.counts.delivered, transport.counts.failed) == (
        20,
        20,
        0,
    )
    got = http_endpoint.wait_for(20, schema=SCHEMA)
    one = next(m for m in got if m.device_id == "http-2" and m.json["n"] == 4)
    assert one.where == "POST /devices/http-2/messages/events"
    assert one.content_type == "application/json"
    assert http_endpoint.wait_for(1, kind="properties", device="http-1")[0].json == {
        "Firmware": "1.0"
    }


def test_http_retries_server_errors_and_counts_rejections(http_endpoint):
    async def run():
        transport = make_transport("http", http_endpoint.url + "/ingest/{device_id}")
        await transport.start(["retry-1"])
        http_endpoint.fail_next(2, status=503)
        await transport.send(message("retry-1", 1))  # retried twice, then delivered
        http_endpoint.fail_next(1, status=400)
        await transport.send(message("retry-1", 2))  # rejected: counted failed
        await transport.stop()
        return transport

    transport = asyncio.run(run())
    counts = transport.counts
    assert (counts.sent, counts.delivered, counts.failed, counts.reconnects) == (2, 1, 1, 2)
    assert "answered 400" in transport.last_error
    assert http_endpoint.wait_for(1)[0].where == "POST /ingest/retry-1"


def test_http_stop_counts_what_is_still_retrying_as_failed(http_endpoint):
    async def run():
        transport = make_transport("http", http_endpoint.url, flush_timeout=1)
        await transport.start(["stuck-1"])
        http_endpoint.fail_next(10_000, status=503)  # the endpoint never recovers
        sends = [asyncio.create_task(transport.send(message("stuck-1", n))) for n in range(3)]
        await until(lambda: transport.counts.sent == 3 and transport.counts.reconnects >= 3)
        await transport.stop()
        await asyncio.gather(*sends)
        return transport.counts

    counts = asyncio.run(run())
    assert (counts.sent, counts.delivered, counts.failed) == (3, 0, 3)


def test_http_endpoint_unreachable_counts_failed():
    url = f"http://127.0.0.1:{free_port()}"

    async def run():
        transport = make_transport("http", url, message_timeout=1)
        await transport.start(["nowhere-1"])
        await transport.send(message("nowhere-1", 1))
        await transport.stop()
        return transport

    transport = asyncio.run(run())
    assert (transport.counts.sent, transport.counts.failed) == (1, 1)
    assert "gave up" in transport.last_error and url in transport.last_error


# --- AMQP --------------------------------------------------------------------------------


def test_amqp_delivers_with_confirms_and_headers(amqp_broker, amqp_telemetry):
    async def run():
        transport = make_transport("AMQP", amqp_broker.url)
        await transport.start(["amqp-1", "amqp-2"])
        await asyncio.gather(
            *(transport.send(message(d, n)) for n in range(25) for d in ("amqp-1", "amqp-2"))
        )
        await transport.stop()
        return transport.counts

    counts = asyncio.run(run())
    assert (counts.sent, counts.delivered, counts.failed) == (50, 50, 0)
    got = amqp_telemetry.wait_for(50, schema=SCHEMA)
    one = next(m for m in got if m.device_id == "amqp-2" and m.json["n"] == 3)
    assert one.where == "devices.amqp-2.messages.events"
    assert one.content_type == "application/json" and one.created.endswith("03.000+00:00")


def test_amqp_broker_unreachable_is_one_clear_line():
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"

    async def run():
        transport = make_transport("amqp", url, connect_timeout=1)
        with pytest.raises(TransportError) as error:
            await transport.start(["x"])
        return str(error.value)

    text = asyncio.run(run())
    assert "unreachable" in text and "start the broker" in text and "\n" not in text
    assert "guest" not in text  # no credentials in messages


@pytest.mark.skipif(not RabbitMQProcess.available(), reason="rabbitmq-server not installed")
def test_amqp_broker_restart_mid_run_loses_nothing():
    broker = start_amqp_broker()
    try:

        async def run():
            transport = make_transport("amqp", broker.url, message_timeout=120)
            await transport.start(["rabbit-1"])
            for n in range(5):
                await transport.send(message("rabbit-1", n))
            broker.stop()
            later = [
                asyncio.create_task(transport.send(message("rabbit-1", n))) for n in range(5, 10)
            ]
            await until(lambda: transport.last_error != "")
            broker.start()
            await asyncio.gather(*later)
            await transport.stop()
            return transport.counts

        counts = asyncio.run(run())
        assert (counts.sent, counts.delivered, counts.failed) == (10, 10, 0)
        assert counts.reconnects >= 1
    finally:
        broker.close()


def test_http_endpoint_records_and_explains_what_arrived(http_endpoint):
    """The endpoint is a recorder: a failed wait says what arrived instead."""
    assert isinstance(http_endpoint, HttpEndpoint)

    async def run():
        transport = make_transport("http", http_endpoint.url)
        await transport.start(["explain-1"])
        await transport.send(message("explain-1", 1))
        await transport.stop()

    asyncio.run(run())
    with pytest.raises(Exception) as error:
        http_endpoint.wait_for(1, device="explain-1", where={"n": 99}, timeout=1)
    text = str(error.value)
    assert "waited 1 s for 1 telemetry message(s)" in text
    assert "arrived instead: 1 message(s): explain-1/test-reading;v1 x1" in text


def test_mqtt_connection_taken_over_before_its_suback_still_starts(mqtt_broker):
    """A connection the broker accepts and then drops before the SUBACK (another client
    took its id) has connected: start returns, and the reconnect carries the device on."""
    intruder = paho.Client(CallbackAPIVersion.VERSION2, client_id="suback-1")
    intruder.reconnect_delay_set(min_delay=3600, max_delay=3600)  # pushed off once, stays off
    host, port = mqtt_broker.url.removeprefix("mqtt://").split(":")

    async def run():
        transport = make_transport("mqtt", mqtt_broker.url)
        deliver_suback = transport._on_subscribe

        def take_over_before_suback(*args):
            # The first SUBACK is held back, and another client connects with the same
            # client id, as a second simulation would; later SUBACKs go through.
            transport._on_subscribe = deliver_suback
            intruder.connect(host, int(port))
            intruder.loop_start()

        transport._on_subscribe = take_over_before_suback
        await transport.start(["suback-1"])
        await until(lambda: transport.connected_devices == 1 and transport.counts.reconnects)
        await transport.send(message("suback-1", 1))
        await until(lambda: transport.counts.delivered == 1)
        await transport.stop()
        return transport.counts

    try:
        counts = asyncio.run(run())
    finally:
        intruder.loop_stop()
        intruder.disconnect()
    assert (counts.sent, counts.delivered, counts.failed) == (1, 1, 0)
    assert counts.reconnects == 1


def test_mqtt_client_id_taken_over_is_reported_not_fought_over(mqtt_broker):
    """Two transports with one client id push each other off the broker; one gives up
    with a clear line, the other keeps the connection."""

    async def run():
        pair = [make_transport("mqtt", mqtt_broker.url) for _ in range(2)]
        for transport in pair:
            await transport.start(["twin-1"])
        await until(lambda: any("taken over" in t.last_error for t in pair))
        loser = next(t for t in pair if "taken over" in t.last_error)
        winner = pair[1 - pair.index(loser)]
        await until(lambda: winner.connected_devices == 1)
        await winner.send(message("twin-1", 1))
        await until(lambda: winner.counts.delivered == 1)
        error, reconnects = loser.last_error, loser.counts.reconnects
        for transport in pair:
            await transport.stop()
        return error, reconnects

    error, reconnects = asyncio.run(run())
    assert "client id 'twin-1' was taken over" in error and "client_id_prefix" in error
    assert reconnects < 10
