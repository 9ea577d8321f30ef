"""The MQTT transport's fast path against a real mosquitto.

The transport's paho client joins queued packets into one write, serves paho's reads
from one large read, decodes plain PUBACKs itself and counts a QoS 0 message delivered
once its write finishes; ``send_now`` publishes without a task per message. These tests
push bursts through that path and check what a subscriber received and that the counts
add up: ``sent == delivered + failed``, nothing lost without a trace.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import pytest

from pytest_cirque.device_models.brokers import MosquittoProcess
from pytest_cirque.device_models.recorders import MqttRecorder
from pytest_cirque.device_models.transports.base import Message, make_transport
from pytest_cirque.device_models.transports.mqtt import _COALESCE_BYTES, _RECEIVE_BYTES

from .conftest import until

SCHEMA = "fast-path;v1"


def message(device_id: str, n: int, padding: str = "") -> Message:
    body = {"n": n, "device": device_id, "padding": padding}
    return Message(
        device_id=device_id,
        schema=SCHEMA,
        content_type="application/json",
        created="2026-01-01T00:00:00.000+00:00",
        body=json.dumps(body).encode(),
        model_id="fast-path-model",
    )


def fleet(name: str, count: int) -> list[str]:
    """Device ids of this test alone: the session broker and recorder are shared."""
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}-{i}" for i in range(count)]




def numbers_by_device(recorder: MqttRecorder, devices: list[str]) -> dict[str, list[int]]:
    """The ``n`` of each device's messages in the order the subscriber received them."""
    wanted = set(devices)
    got: dict[str, list[int]] = {d: [] for d in devices}
    for received in recorder.select(schema=SCHEMA, where=lambda b: b["device"] in wanted):
        got[received.device_id].append(received.json["n"])
    return got


@pytest.mark.parametrize("qos", [1, 0], ids=["qos1", "qos0"])
def test_burst_over_pooled_connections_arrives_complete_and_in_order(mqtt_broker, telemetry, qos):
    devices = fleet(f"burst-q{qos}", 8)
    per_device = 250  # 2,000 messages, queued faster than any single write drains them

    async def run():
        transport = make_transport("mqtt", mqtt_broker.url, pooled=True, pool_size=3, qos=qos)
        await transport.start(devices)
        for n in range(per_device):
            for device in devices:
                assert transport.send_now(message(device, n)) is True
        await transport.stop()
        return transport.counts

    counts = asyncio.run(run())
    total = len(devices) * per_device
    assert (counts.sent, counts.delivered, counts.failed) == (total, total, 0)
    wanted = set(devices)
    telemetry.wait_for(total, schema=SCHEMA, where=lambda b: b["device"] in wanted, timeout=60)
    got = numbers_by_device(telemetry, devices)
    for device in devices:
        assert got[device] == list(range(per_device)), f"{device} arrived as {got[device]}"


@pytest.mark.parametrize("qos", [1, 0], ids=["qos1", "qos0"])
def test_messages_larger_than_a_read_or_a_joined_write_arrive_intact(mqtt_broker, telemetry, qos):
    devices = fleet(f"large-q{qos}", 2)
    # Small ones joined with large ones, through a small socket send buffer: most writes
    # stop part-way through a packet, and the next joined write must resume it exactly.
    sizes = [10, _RECEIVE_BYTES + 1000, 50, _COALESCE_BYTES + 5000, 3 * _RECEIVE_BYTES, 20] * 8
    paddings = [f"{i}".ljust(size, chr(ord("a") + i % 26)) for i, size in enumerate(sizes)]

    async def run():
        transport = make_transport("mqtt", mqtt_broker.url, pooled=True, pool_size=1, qos=qos)
        await transport.start(devices)
        for connection in transport._connections():
            connection.client.socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        for n, padding in enumerate(paddings):
            for device in devices:
                transport.send_now(message(device, n, padding))
        await transport.stop()
        return transport.counts

    counts = asyncio.run(run())
    total = len(devices) * len(sizes)
    assert (counts.sent, counts.delivered, counts.failed) == (total, total, 0)
    for device in devices:
        got = telemetry.wait_for(len(sizes), schema=SCHEMA, device=device, timeout=60)
        assert [m.json["n"] for m in got] == list(range(len(sizes)))
        for received, padding in zip(got, paddings, strict=True):
            assert received.json["padding"] == padding, f"message {received.json['n']} changed"


def test_method_request_larger_than_a_read_reaches_the_handler_intact(mqtt_broker, telemetry):
    device = fleet("large-method", 1)[0]
    payload = {"blob": "x" * (2 * _RECEIVE_BYTES + 123), "tail": "end"}
    seen = []

    async def handler(device_id, method, arguments):
        seen.append(arguments)
        return 200, {"length": len(arguments["blob"]), "tail": arguments["tail"]}

    async def run():
        transport = make_transport("mqtt", mqtt_broker.url, pooled=True, pool_size=1)
        transport.on_method(handler)
        await transport.start([device])
        loop = asyncio.get_running_loop()
        # Telemetry going out at the same time keeps PUBACKs arriving beside the request.
        for n in range(500):
            transport.send_now(message(device, n))
        answer = await loop.run_in_executor(None, telemetry.call_method, device, "Echo", payload)
        await transport.stop()
        return answer, transport.counts

    (status, response), counts = asyncio.run(run())
    assert (status, response) == (200, {"length": len(payload["blob"]), "tail": "end"})
    assert seen == [payload]
    assert (counts.sent, counts.delivered, counts.failed) == (500, 500, 0)


@pytest.fixture
def private_mosquitto():
    """A mosquitto of this test alone, for tests that stop it."""
    broker = MosquittoProcess()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def test_broker_stopped_mid_burst_at_qos0_counts_every_message(private_mosquitto):
    broker = private_mosquitto
    devices = fleet("outage-q0", 6)
    per_device = 2000  # 12,000 messages: the broker goes while many are still queued

    async def run():
        transport = make_transport(
            "mqtt",
            broker.url,
            pooled=True,
            pool_size=3,
            qos=0,
            message_timeout=2,
            flush_timeout=2,
        )
        await transport.start(devices)
        for n in range(per_device // 2):
            for device in devices:
                transport.send_now(message(device, n))
        await asyncio.sleep(0)  # let some writes happen, not all: one turn of the loop
        broker.stop()
        for n in range(per_device // 2, per_device):
            for device in devices:
                transport.send_now(message(device, n))
        await until(lambda: transport.connected_devices == 0, "every connection to drop")
        await until(lambda: transport.counts.pending == 0, "nothing pending (expired)")
        await transport.stop()
        return transport.counts

    counts = asyncio.run(run())
    total = len(devices) * per_device
    assert counts.sent == total
    assert counts.sent == counts.delivered + counts.failed, counts
    assert counts.failed > 0, counts  # what was sent after the stop cannot be delivered
    assert counts.delivered > 0, counts  # what was written before the stop is delivered
