"""MQTT v5 transport: paho-mqtt driven by the simulator's asyncio loop, no thread per connection.

Each paho client's socket is registered with the event loop (paho's external-loop
callbacks), so thousands of connections share one thread. Devices get a connection
each (client id = device id) or share a small pool (``pooled=True``).

Delivery: telemetry is published at QoS 1 by default and counted delivered on PUBACK.
Each connection keeps at most ``max_inflight`` messages unacknowledged; the rest wait
in its backlog (our own queue, so paho never scans a long queue on every PUBACK), and
while a connection is down its messages wait there until the reconnect. A message not
acknowledged within ``message_timeout`` seconds, beyond ``max_queued`` waiting, or still
pending when ``stop`` gives up flushing, is counted failed. So ``sent == delivered +
failed`` once nothing is pending, and no message disappears without being counted.

Cost per message is what caps a simulator process, so the telemetry path is lean:
``send_now`` publishes without a task, PUBLISH properties are encoded by hand
(``PackedProperties``), and ``_Client`` writes everything queued in one ``send`` call
and decodes a plain PUBACK without building paho's reason and property objects.
QoS 1 is the default because only an acknowledged message can be counted delivered:
at QoS 0 "delivered" means "written to the socket", so a broker that drops a message
would go unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pytest_cirque.core.errors import TransportError, WaitTimeout
from pytest_cirque.core.waiting import wait_until_async

from .base import DeliveryCounts, Message, MethodHandler, Transport, metadata

TELEMETRY_TOPIC = "devices/{device_id}/messages/events"
PROPERTIES_TOPIC = "devices/{device_id}/properties/reported"
METHOD_TOPIC = "devices/{device_id}/methods/{method}/{request_id}"
METHOD_RESPONSE_TOPIC = "devices/{device_id}/methods/res/{status}/{request_id}"

#: Seconds between paho's housekeeping calls (keepalive pings) on each connection.
_HOUSEKEEPING_EVERY = 5

#: DISCONNECT reason code: another client connected with the same client id.
_SESSION_TAKEN_OVER = 0x8E
#: A connection dropped this many times within this many seconds of being accepted.
_SHORT_LIVED_LIMIT = 5
_SHORT_LIVED_SECONDS = 2.0

#: paho results that mean "queued, will go out once connected".
_QUEUED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://host[:port]`` URL (1883 by default)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "mqtt" or not parts.hostname:
        raise TransportError(f"bad MQTT broker URL {url!r}: write it as mqtt://HOST[:PORT]")
    try:
        port = parts.port or 1883
    except ValueError as exc:
        raise TransportError(f"bad MQTT broker URL {url!r}: {exc}") from None
    return parts.hostname, port


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


@functools.lru_cache(maxsize=64)
def _content_type_field(content_type: str) -> bytes:
    return b"\x03" + _utf8(content_type)


@functools.lru_cache(maxsize=64)
def _user_key_field(key: str) -> bytes:
    """A User Property's identifier and key (the value follows); keys are few and fixed."""
    return b"\x26" + _utf8(key)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Client(paho.Client):
    """A paho client with the hot spots of a busy publisher taken out.

    paho writes each queued packet with its own ``send`` system call, reads each
    incoming packet with three ``recv`` calls, and for every PUBACK builds two
    ReasonCode objects and a Properties object. These overrides keep paho's
    bookkeeping (``_out_packet``, ``_in_packet``, ``_out_messages``, ``on_publish``)
    as it is and only do the same work for less; anything unusual goes to paho's code.
    """

    _received = b""  # bytes read from the socket that paho has not asked for yet
    _received_at = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's small reads served from one large read of the socket."""
        start = self._received_at
        if start >= len(self._received):
            data = super()._sock_recv(_RECEIVE_BYTES)  # raises BlockingIOError when empty
            if len(data) <= bufsize:
                return data  # b"" (closed) included
            self._received, start = data, 0
        self._received_at = start + bufsize
        return self._received[start : start + bufsize]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's loop_read, repeated until nothing read is left unprocessed.

        paho stops after as many packets as it has messages outstanding; what it
        stopped at is already read here and would never make the socket readable again.
        """
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._received_at < len(self._received)
            and self._sock is not None
        ):
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._received, self._received_at = b"", 0  # never fed to the next connection
        super()._sock_close()

    def _packet_write(self) -> MQTTErrorCode:
        out = self._out_packet
        if len(out) > 1:
            _coalesce(out)
        head = out[0] if out else None
        rc = super()._packet_write()
        if head is not None and head["to_process"] == 0:
            for mid, info in _joined_qos0(head):  # what paho does once a QoS 0 PUBLISH is written
                self._qos0_written(mid, info)
        return rc

    def _qos0_written(self, mid: int, info: paho.MQTTMessageInfo | None) -> None:
        with self._callback_mutex:
            # This client is made with VERSION2 callbacks (paho casts the same way).
            on_publish = cast("paho.CallbackOnPublish_v2 | None", self.on_publish)
        if on_publish:
            with self._in_callback_mutex:
                on_publish(self, self._userdata, mid, _PUBACK_REASONS[0], _NO_PUBACK_PROPERTIES)
        if info is not None:
            info._set_as_published()

    def reconnect(self) -> MQTTErrorCode:
        for packet in self._out_packet:  # paho marks unwritten QoS 0 messages lost, so here
            for _mid, info in _joined_qos0(packet):
                if info is not None:
                    info.rc = MQTTErrorCode.MQTT_ERR_CONN_LOST
                    info._set_as_published()
        return super().reconnect()

    def _handle_pubackcomp(self, cmd):
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or not 2 <= len(packet) <= 3:  # properties: paho's decoder
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        reason = _PUBACK_REASONS.get(packet[2] if len(packet) == 3 else 0)
        if reason is None:
            return super()._handle_pubackcomp(cmd)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, reason, _NO_PUBACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS


#: PUBACK reason codes that mean the broker took the message (MQTT v5 3.4.2.1), shared:
#: on_publish callbacks only read them.
_PUBACK_REASONS = {code: ReasonCode(PacketTypes.PUBACK, identifier=code) for code in (0x00, 0x10)}
_NO_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)
#: Most bytes joined into one write; more waits for the next writable event anyway.
_COALESCE_BYTES = 256 * 1024
#: Bytes asked of the socket per read (many PUBACKs at once).
_RECEIVE_BYTES = 64 * 1024
_PUBLISH, _DISCONNECT = 0x30, 0xE0


def _joined_qos0(packet: Mapping[str, object]) -> list[tuple[int, paho.MQTTMessageInfo | None]]:
    """The (mid, info) of each QoS 0 PUBLISH that ``_coalesce`` joined into ``packet``;
    empty for paho's own packets, which have no ``qos0`` key."""
    qos0 = packet.get("qos0")
    return qos0 if isinstance(qos0, list) else []


def _coalesce(out: deque) -> None:
    """Join the leading queued packets into one, so one ``send`` writes them all.

    DISCONNECT is never joined (paho closes the socket once it is written). The QoS 0
    PUBLISHes joined are listed under ``qos0``: paho reports each as published once
    written, and ``_Client`` does so for them once the joined packet is written.
    """
    run, size, qos0 = [], 0, []
    for packet in out:
        command = packet["command"] & 0xF0
        if command == _DISCONNECT:
            break
        run.append(packet)
        if "qos0" in packet:  # joined before, partly written
            qos0 += packet["qos0"]
        elif command == _PUBLISH and packet["qos"] == 0:
            qos0.append((packet["mid"], packet["info"]))
        size += packet["to_process"]
        if size >= _COALESCE_BYTES:
            break
    if len(run) < 2:
        return
    for _ in run:
        out.popleft()
    joined = b"".join(p["packet"][p["pos"] :] for p in run)
    out.appendleft(
        {
            "command": 0x40,  # PUBACK: paho does nothing more once it is written
            "mid": 0,
            "qos": 1,
            "pos": 0,
            "to_process": len(joined),
            "packet": joined,
            "info": None,
            "qos0": qos0,
        }
    )


class PackedProperties(Properties):
    """PUBLISH properties encoded once, up front.

    paho's Properties costs tens of microseconds per message to build and pack, which
    caps a publisher at a few thousand messages per second; telemetry needs only a
    content type and user properties, so they are encoded here directly (MQTT v5
    section 3.3.2.3: 0x03 Content Type, 0x26 User Property). Only the encoding is kept
    per message; ContentType and UserProperty are read back from it when asked for.
    """

    packetType = PacketTypes.PUBLISH
    names: dict = {}  # paho reads it; never written here
    _packed: bytes  # set past Properties.__setattr__, which takes only property names

    def __init__(self, content_type: str, user_properties: dict[str, str]) -> None:
        parts = [_content_type_field(content_type)]
        for key, value in user_properties.items():
            parts.append(_user_key_field(key))
            data = value.encode()
            parts.append(len(data).to_bytes(2, "big"))
            parts.append(data)
        body = b"".join(parts)
        object.__setattr__(self, "_packed", _varint(len(body)) + body)

    def pack(self) -> bytes:
        return self._packed

    def _decoded(self) -> Properties:
        decoded = Properties(PacketTypes.PUBLISH)
        decoded.unpack(self._packed)
        return decoded

    @property
    def ContentType(self) -> str:
        return self._decoded().ContentType  # type: ignore[attr-defined]  # paho sets it, undeclared

    @property
    def UserProperty(self) -> list[tuple[str, str]]:
        return self._decoded().UserProperty  # type: ignore[attr-defined]  # paho sets it, undeclared

    def __str__(self) -> str:
        return f"[ContentType: {self.ContentType}, UserProperty: {self.UserProperty}]"


def _topic_pattern(template: str) -> re.Pattern[str]:
    """A regex that matches a topic built from ``template`` and captures its fields."""
    pattern = re.escape(template)
    for name in ("device_id", "method", "request_id"):
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>[^/]+)")
    return re.compile(f"^{pattern}$")


def _subscription(template: str, device_id: str) -> str:
    """The subscription filter for one device's method requests."""
    return template.replace("{device_id}", device_id).format(method="+", request_id="+")


@dataclass(eq=False)  # compared by identity
class _Connection:
    """One paho client with the devices it carries and its unacknowledged messages."""

    client: paho.Client
    label: str
    devices: set[str] = field(default_factory=set)
    inflight: dict[int, float] = field(default_factory=dict)  # mid -> monotonic send time
    backlog: deque[tuple[str, bytes, Properties, float]] = field(default_factory=deque)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    reconnecting: asyncio.Task | None = None
    closing: bool = False
    subscribing: list[asyncio.Future] = field(default_factory=list)
    connected_at: float = 0.0  # monotonic time of the last CONNACK
    short_lived: int = 0  # connections in a row that dropped right after being accepted
    last_error: str = ""


class MqttTransport(Transport):
    """Telemetry, reported properties and methods over MQTT v5."""

    def __init__(
        self,
        url: str,
        *,
        pooled: bool = False,
        pool_size: int = 4,
        qos: int = 1,
        telemetry_topic: str = TELEMETRY_TOPIC,
        properties_topic: str = PROPERTIES_TOPIC,
        method_topic: str = METHOD_TOPIC,
        method_response_topic: str = METHOD_RESPONSE_TOPIC,
        client_id_prefix: str = "",
        keepalive: int = 60,
        connect_timeout: float = 10.0,
        message_timeout: float = 60.0,
        flush_timeout: float = 10.0,
        max_inflight: int = 1000,
        max_queued: int = 100_000,
        connect_concurrency: int = 256,
    ) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.url = url
        if qos not in (0, 1):
            raise TransportError(f"MQTT qos {qos!r} not supported: use 0 or 1")
        if keepalive < 2 * _HOUSEKEEPING_EVERY:
            raise TransportError(
                f"MQTT keepalive {keepalive} s is too short: "
                f"use {2 * _HOUSEKEEPING_EVERY} s or more"
            )
        self.pooled = pooled
        self.pool_size = max(1, pool_size)
        self.qos = qos
        self.telemetry_topic = telemetry_topic
        self.properties_topic = properties_topic
        self.method_topic = method_topic
        self.method_response_topic = method_response_topic
        self._method_pattern = _topic_pattern(method_topic)
        self.client_id_prefix = client_id_prefix
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.message_timeout = message_timeout
        self.flush_timeout = flush_timeout
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.connect_concurrency = connect_concurrency
        self.counts = DeliveryCounts()
        #: Reported-property updates, counted apart from telemetry.
        self.property_counts = DeliveryCounts()
        self._routes: dict[str, _Connection] = {}
        self._pool: list[_Connection] = []
        self._handler: MethodHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._property_mids: dict[tuple[int, int], float] = {}
        self._suback: dict[tuple[int, int], asyncio.Future] = {}
        self._pool_tag = uuid.uuid4().hex[:8]
        self._stopped = False
        self._final_error = ""

    # --- what the simulator calls -------------------------------------------------

    @property
    def last_error(self) -> str:
        """The most recent connection problem, one line, or "" when all is well."""
        errors = [c.last_error for c in self._connections() if c.last_error]
        return errors[-1] if errors else self._final_error

    @property
    def connected_devices(self) -> int:
        return sum(len(c.devices) for c in self._connections() if c.connected.is_set())

    async def start(self, device_ids: Iterable[str]) -> None:
        """Connect every device (or the pool); on failure nothing stays open or running."""
        self._loop = asyncio.get_running_loop()
        self._ticker = asyncio.create_task(self._tick(), name="mqtt-housekeeping")
        try:
            if self.pooled:
                labels = [
                    f"{self.client_id_prefix}cirque-pool-{self._pool_tag}-{i}"
                    for i in range(self.pool_size)
                ]
                self._pool = [self._new_connection(label) for label in labels]
                await self._connect_all(self._pool)
            await self.add_devices(device_ids)
        except BaseException:
            await self.stop()
            raise

    async def add_devices(self, device_ids: Iterable[str]) -> None:
        self._require_started()
        new = [d for d in device_ids if d not in self._routes]
        if self.pooled:
            acks = []
            for device_id in new:
                connection = min(self._pool, key=lambda c: len(c.devices))
                acks += self._attach(connection, device_id)
            await self._subscribed(acks)
            return
        connections = []
        for device_id in new:
            connection = self._new_connection(self.client_id_prefix + device_id)
            self._attach(connection, device_id)
            connections.append(connection)
        await self._connect_all(connections)

    async def remove_devices(self, device_ids: Iterable[str]) -> None:
        """Detach devices; a device's own connection is flushed (bounded), then closed."""
        leaving = []
        for device_id in list(device_ids):
            connection = self._routes.pop(device_id, None)
            if connection is None:
                continue
            connection.devices.discard(device_id)
            if self.pooled:
                connection.client.unsubscribe(_subscription(self.method_topic, device_id))
            else:
                leaving.append(connection)
        if leaving:
            await self._flush(leaving)
            await asyncio.gather(*(self._close(c) for c in leaving))

    async def send(self, message: Message) -> None:
        self.send_now(message)

    def send_now(self, message: Message) -> bool:
        """Queue the message on its connection and publish what the window allows."""
        connection = self._route(message.device_id)
        properties = PackedProperties(message.content_type, metadata(message))
        topic = self.telemetry_topic.format(device_id=message.device_id)
        self.counts.sent += 1
        if len(connection.backlog) >= self.max_queued:
            self.counts.failed += 1
            connection.last_error = (
                f"{connection.label}: more than {self.max_queued} messages waiting for "
                f"{self.url}; counted failed"
            )
            return True
        connection.backlog.append((topic, message.body, properties, time.monotonic()))
        self._drain(connection)
        return True

    def _drain(self, connection: _Connection) -> None:
        """Publish from the backlog while connected and the in-flight window has room."""
        client = connection.client
        while (
            connection.backlog
            and connection.connected.is_set()
            and len(connection.inflight) < self.max_inflight
        ):
            topic, body, properties, _queued_at = connection.backlog.popleft()
            info = client.publish(topic, body, qos=self.qos, properties=properties)
            if info.rc in _QUEUED:
                if info.mid in connection.inflight:  # the id wrapped round to a lost message
                    self.counts.failed += 1
                connection.inflight[info.mid] = time.monotonic()  # PUBACK (QoS 0: written)
            else:
                self.counts.failed += 1
                connection.last_error = (
                    f"MQTT publish to {topic} refused: {paho.error_string(info.rc)}"
                )

    async def report_properties(self, device_id: str, properties: dict) -> None:
        """Publish the device's properties, retained, so a late subscriber sees the latest."""
        connection = self._route(device_id)
        topic = self.properties_topic.format(device_id=device_id)
        body = json.dumps(properties, separators=(",", ":"), sort_keys=True).encode()
        self.property_counts.sent += 1
        info = connection.client.publish(topic, body, qos=1, retain=True)
        if info.rc not in _QUEUED:
            self.property_counts.failed += 1
            return
        self._property_mids[(id(connection), info.mid)] = time.monotonic()

    def on_method(self, handler: MethodHandler) -> None:
        self._handler = handler

    async def stop(self) -> None:
        """Wait (at most ``flush_timeout``) for acknowledgements, count the rest failed, close."""
        if self._stopped:
            return
        self._stopped = True
        await self._flush(self._connections())
        await asyncio.gather(*(self._close(c) for c in self._connections()))
        self._final_error = self.last_error
        self._routes.clear()
        self._pool.clear()
        background = [*self._tasks, *([self._ticker] if self._ticker else [])]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    async def _flush(self, connections: list[_Connection]) -> None:
        """Wait, at most ``flush_timeout``, until the connections have nothing pending;
        silent at the deadline (``_close`` counts what is left as failed)."""
        with contextlib.suppress(WaitTimeout):
            await wait_until_async(
                lambda: not any(c.inflight or c.backlog for c in connections),
                "the last acknowledgements",
                self.flush_timeout,
                ignore=(),
                max_interval=0.2,
            )

    # --- connections ---------------------------------------------------------------

    def _require_started(self) -> None:
        if self._loop is None or self._stopped:
            raise TransportError(
                f"MQTT transport to {self.url} is not running: call start() before using it"
            )

    def _route(self, device_id: str) -> _Connection:
        self._require_started()
        try:
            return self._routes[device_id]
        except KeyError:
            raise TransportError(
                f"device {device_id!r} is not connected to {self.url}: add it first"
            ) from None

    def _connections(self) -> list[_Connection]:
        if self.pooled:
            return list(self._pool)
        return list({id(c): c for c in self._routes.values()}.values())

    def _attach(self, connection: _Connection, device_id: str) -> list[asyncio.Future]:
        self._routes[device_id] = connection
        connection.devices.add(device_id)
        if self.pooled and connection.connected.is_set():
            return self._subscribe(connection, [_subscription(self.method_topic, device_id)])
        return []

    def _subscribe(self, connection: _Connection, topics: list[str]) -> list[asyncio.Future]:
        """Subscribe (QoS 1), 100 filters a packet; futures done on SUBACK (True), or when
        the connection closes first (False)."""
        acks: list[asyncio.Future] = []
        for start in range(0, len(topics), 100):
            chunk = [(topic, 1) for topic in topics[start : start + 100]]
            _rc, mid = connection.client.subscribe(chunk)
            if mid is not None:
                ack = self._suback[(id(connection), mid)] = (
                    asyncio.get_running_loop().create_future()
                )
                acks.append(ack)
        connection.subscribing = [a for a in connection.subscribing if not a.done()] + acks
        return acks

    async def _subscribed(self, acks: list[asyncio.Future]) -> bool:
        """Wait for SUBACKs, so a method request right after start is never missed. False
        when the connection dropped first: its next CONNACK subscribes again."""
        if not acks:
            return True
        return all(await asyncio.wait_for(asyncio.gather(*acks), self.connect_timeout))

    def _new_connection(self, client_id: str) -> _Connection:
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        # Unlimited inside paho: the window is ours (see the module docstring).
        client.max_inflight_messages_set(0)
        connection = _Connection(client=client, label=client_id)
        loop = self._loop
        assert loop is not None

        def socket_open(_client, _userdata, sock):
            loop.add_reader(sock, client.loop_read)

        def socket_close(_client, _userdata, sock):
            loop.remove_reader(sock)
            loop.remove_writer(sock)

        def register_write(_client, _userdata, sock):
            loop.add_writer(sock, client.loop_write)

        def unregister_write(_client, _userdata, sock):
            loop.remove_writer(sock)

        client.on_socket_open = socket_open
        client.on_socket_close = socket_close
        client.on_socket_register_write = register_write
        client.on_socket_unregister_write = unregister_write
        client.on_connect = lambda *args: self._on_connect(connection, *args)
        client.on_disconnect = lambda *args: self._on_disconnect(connection, *args)
        client.on_publish = lambda *args: self._on_publish(connection, *args)
        client.on_message = lambda *args: self._on_message(connection, *args)
        client.on_subscribe = lambda *args: self._on_subscribe(connection, *args)
        return connection

    async def _connect_all(self, connections: list[_Connection]) -> None:
        """Open the connections, a bounded number at a time; raise one clear line on failure."""
        gate = asyncio.Semaphore(self.connect_concurrency)

        async def connect(connection: _Connection) -> None:
            async with gate:
                await self._connect(connection)

        results = await asyncio.gather(*(connect(c) for c in connections), return_exceptions=True)
        problems = [r for r in results if isinstance(r, BaseException)]
        if problems:
            for connection in connections:
                await self._close(connection)
                for device_id in connection.devices:
                    self._routes.pop(device_id, None)
            first = problems[0]
            raise TransportError(
                f"{first} ({len(problems)} of {len(connections)} connections failed)"
            ) from None

    async def _connect(self, connection: _Connection) -> None:
        """Connect and wait for CONNACK, retrying with backoff up to ``connect_timeout``."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.connect_timeout),
                wait=wait_exponential(multiplier=0.05, max=2),
                retry=retry_if_exception_type((OSError, TimeoutError)),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number == 1:
                        connection.client.connect(
                            self.host, self.port, keepalive=self.keepalive, clean_start=True
                        )
                    else:
                        connection.client.reconnect()
                    await asyncio.wait_for(connection.connected.wait(), self.connect_timeout)
                    # False: dropped after the broker accepted it (another connection took
                    # its client id, or the broker went). It did connect, and the reconnect
                    # logic owns it from here, which names a take-over; retrying here too
                    # would fight that logic. A timeout (accepted, yet no SUBACK) retries.
                    await self._subscribed(connection.subscribing)
        except (OSError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            connection.last_error = (
                f"MQTT broker {self.url} unreachable for {connection.label} after "
                f"{self.connect_timeout:g} s ({reason}): start the broker or fix the URL"
            )
            raise TransportError(connection.last_error) from None

    async def _close(self, connection: _Connection) -> None:
        connection.closing = True
        if connection.reconnecting:
            connection.reconnecting.cancel()
        self._fail_pending(
            connection, "not acknowledged by the broker when the transport stopped; counted failed"
        )
        if connection.connected.is_set():
            connection.client.disconnect()
            connection.client.loop_write()  # send DISCONNECT now; paho then closes the socket
        connection.connected.clear()
        sock = connection.client.socket()
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            sock.close()

    def _fail_pending(self, connection: _Connection, reason: str) -> None:
        pending = len(connection.inflight) + len(connection.backlog)
        if pending:
            self.counts.failed += pending
            connection.inflight.clear()
            connection.backlog.clear()
            connection.last_error = f"{connection.label}: {pending} message(s) {reason}"

    async def _reconnect(self, connection: _Connection) -> None:
        """Reconnect with exponential backoff until it works or the transport stops."""
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.1, max=5),
            retry=retry_if_exception_type((OSError, TimeoutError)),
        ):
            with attempt:
                if connection.closing:
                    return
                connection.client.reconnect()
                await asyncio.wait_for(connection.connected.wait(), self.connect_timeout)
        self.counts.reconnects += 1

    async def _tick(self) -> None:
        """Once a second, count overdue messages failed; every few seconds, paho's keepalive
        housekeeping (pings), which need not run more often with a keepalive of a minute."""
        for tick in itertools.count():
            now = time.monotonic()
            housekeeping = tick % _HOUSEKEEPING_EVERY == 0
            for connection in self._connections():
                if housekeeping and connection.connected.is_set():
                    connection.client.loop_misc()
                if connection.inflight or connection.backlog:
                    self._expire(connection, now)
            stale = [k for k, t in self._property_mids.items() if now - t > self.message_timeout]
            for key in stale:
                del self._property_mids[key]
            self.property_counts.failed += len(stale)
            await asyncio.sleep(1.0)  # the period of this housekeeping, not a wait on a condition

    def _expire(self, connection: _Connection, now: float) -> None:
        """Count failed what has waited longer than ``message_timeout``."""
        expired = [m for m, t in connection.inflight.items() if now - t > self.message_timeout]
        for mid in expired:
            del connection.inflight[mid]
        backlog = connection.backlog
        while backlog and now - backlog[0][3] > self.message_timeout:
            backlog.popleft()
            expired.append(-1)
        if expired:
            self.counts.failed += len(expired)
            connection.last_error = (
                f"{len(expired)} message(s) of {connection.label} not acknowledged by "
                f"{self.url} within {self.message_timeout:g} s; counted failed"
            )

    # --- paho callbacks (run on the event loop thread) -------------------------------

    def _on_connect(self, connection, _client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            connection.last_error = (
                f"MQTT broker {self.url} refused {connection.label}: {reason_code}"
            )
            return
        connection.last_error = ""
        topics = [_subscription(self.method_topic, d) for d in connection.devices]
        self._subscribe(connection, topics)
        connection.connected_at = time.monotonic()
        connection.connected.set()
        self._drain(connection)

    def _on_disconnect(self, connection, _client, _userdata, _flags, reason_code, _props) -> None:
        connection.connected.clear()
        for ack in connection.subscribing:
            if not ack.done():
                ack.set_result(False)
        connection.subscribing = []
        for key in [key for key in self._suback if key[0] == id(connection)]:
            del self._suback[key]
        if connection.closing or self._stopped:
            return
        # Another client with this client id takes the connection over; reconnecting would
        # only take it back, and the two would push each other off for ever. MQTT v5 brokers
        # may say so (reason 0x8E); mosquitto 2.0 just closes, so a connection that keeps
        # dropping right after it was accepted is taken for the same thing.
        short_lived = time.monotonic() - connection.connected_at < _SHORT_LIVED_SECONDS
        connection.short_lived = connection.short_lived + 1 if short_lived else 0
        if reason_code == _SESSION_TAKEN_OVER or connection.short_lived >= _SHORT_LIVED_LIMIT:
            connection.last_error = (
                f"client id {connection.label!r} was taken over by another connection to "
                f"{self.url} (dropped {connection.short_lived} times right after connecting); "
                "give each simulation its own client_id_prefix"
            )
            return
        connection.last_error = (
            f"connection {connection.label} to {self.url} lost ({reason_code}); reconnecting"
        )
        if connection.reconnecting is None or connection.reconnecting.done():
            connection.reconnecting = self._spawn(self._reconnect(connection))

    def _on_subscribe(self, connection, _client, _userdata, mid, _reason_codes, _props) -> None:
        ack = self._suback.pop((id(connection), mid), None)
        if ack is not None and not ack.done():
            ack.set_result(True)

    def _on_publish(self, connection, _client, _userdata, mid, _reason_code, _props) -> None:
        if connection.inflight.pop(mid, None) is not None:
            self.counts.delivered += 1
            if connection.backlog:
                self._drain(connection)
        elif self._property_mids.pop((id(connection), mid), None) is not None:
            self.property_counts.delivered += 1

    def _on_message(self, connection, _client, _userdata, message) -> None:
        match = self._method_pattern.match(message.topic)
        if match is None or match["device_id"] not in connection.devices:
            return
        self._spawn(
            self._answer(
                connection,
                match["device_id"],
                match["method"],
                match["request_id"],
                message.payload,
                message.properties,
            )
        )

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _answer(self, connection, device_id, method, request_id, payload, request_props):
        """Run a method request through the handler and publish its status and response."""
        status, response = await self._call_handler(device_id, method, payload)
        body = json.dumps(response, separators=(",", ":")).encode()
        properties = Properties(PacketTypes.PUBLISH)
        properties.ContentType = "application/json"
        topic = self.method_response_topic.format(
            device_id=device_id, status=status, request_id=request_id
        )
        # An MQTT v5 requester may name its own response topic and correlation data.
        if request_props is not None and getattr(request_props, "ResponseTopic", None):
            topic = request_props.ResponseTopic
            properties.UserProperty = [("status", str(status))]
        if request_props is not None and getattr(request_props, "CorrelationData", None):
            properties.CorrelationData = request_props.CorrelationData
        connection.client.publish(topic, body, qos=1, properties=properties)

    async def _call_handler(self, device_id: str, method: str, payload: bytes) -> tuple[int, dict]:
        if self._handler is None:
            return 501, {"error": f"device {device_id} accepts no methods here"}
        try:
            arguments = json.loads(payload) if payload.strip() else {}
        except ValueError as exc:
            return 400, {"error": f"method {method} payload is not JSON: {exc}"}
        if not isinstance(arguments, dict):
            return 400, {"error": f"method {method} payload must be a JSON object"}
        try:
            status, response = await self._handler(device_id, method, arguments)
        except Exception as exc:
            return 500, {"error": f"method {method} on {device_id} failed: {exc}"}
        return int(status), response if isinstance(response, dict) else {"result": response}
