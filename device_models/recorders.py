"""What arrived at the peer: recorders of telemetry with waiting assertions.

A recorder keeps every message it receives (MQTT subscriber, HTTP endpoint, AMQP
queue) and lets a test wait for what it expects: N messages of a schema from a device
whose values satisfy predicates, within a deadline. A failed wait raises WaitTimeout
saying what arrived instead, so the test's output shows the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from pytest_cirque.core.errors import TransportError, WaitTimeout
from pytest_cirque.core.waiting import wait_until

from .transports.mqtt import METHOD_RESPONSE_TOPIC, METHOD_TOPIC, parse_mqtt_url

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

#: A value predicate: a plain value (must be equal) or a callable returning truth.
Expectation = Any


@dataclass
class Received:
    """One message as the peer saw it."""

    kind: str  # "telemetry", "properties" or "other"
    device_id: str
    schema: str
    content_type: str
    created: str
    body: bytes
    where: str  # topic, path or routing key
    retained: bool = False
    received_at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        body = self.body.decode(errors="replace")
        return f"{self.device_id} {self.schema or self.kind} {body[:120]}"


def _matches(value: Any, expected: Expectation) -> bool:
    if callable(expected):
        try:
            return bool(expected(value))
        except Exception:
            return False
    return value == expected


class TelemetryRecorder:
    """A thread-safe store of received messages with waiting assertions."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self._explainers: list[Callable[[], str]] = []

    def explain_with(self, explainer: Callable[[], str]) -> None:
        """Add a source of context (a simulation's counts and errors, a broker's log) that a
        failed wait attaches as its log."""
        self._explainers.append(explainer)

    def context(self) -> str:
        lines = []
        for explainer in self._explainers:
            try:
                lines.append(explainer())
            except Exception as exc:  # context must never hide the failure itself
                lines.append(f"(context unavailable: {exc})")
        return "\n".join(line for line in lines if line)

    def record(self, message: Received) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self.messages.clear()

    def select(
        self,
        *,
        schema: str | None = None,
        device: str | None = None,
        kind: str | None = "telemetry",
        where: Mapping[str, Expectation] | Callable[[Any], bool] | None = None,
    ) -> list[Received]:
        """The messages so far that match (a snapshot)."""
        with self._changed:
            messages = list(self.messages)
        return [m for m in messages if self._accepts(m, schema, device, kind, where)]

    def wait_for(
        self,
        count: int = 1,
        *,
        schema: str | None = None,
        device: str | None = None,
        kind: str | None = "telemetry",
        where: Mapping[str, Expectation] | Callable[[Any], bool] | None = None,
        timeout: float = 30.0,
    ) -> list[Received]:
        """Wait until ``count`` matching messages arrived; return them.

        ``where`` maps body fields to expected values or predicates
        (``{"floor": lambda f: 1 <= f <= 15}``), or is a predicate on the whole body.
        """
        description = self._describe(count, schema, device, kind, where)

        def check() -> list[Received] | None:
            found = self.select(schema=schema, device=device, kind=kind, where=where)
            return found[:count] if len(found) >= count else None

        return self._wait(
            check, description, timeout, instead=lambda: self.summary(schema, device, kind)
        )

    def summary(self, schema=None, device=None, kind="telemetry") -> str:
        """What arrived, in one line: counts by device and schema, and the latest few."""
        with self._changed:
            messages = list(self.messages)
        if not messages:
            return "nothing arrived at all"
        matching = [m for m in messages if self._accepts(m, schema, device, kind, None)]
        by_key = Counter(f"{m.device_id}/{m.schema or m.kind}" for m in messages)
        common = ", ".join(f"{k} x{n}" for k, n in by_key.most_common(8))
        latest = "; ".join(str(m) for m in (matching or messages)[-3:])
        label = "of those (ignoring values)" if matching else "latest"
        return (
            f"arrived instead: {len(messages)} message(s): {common}; {len(matching)} match "
            f"schema/device/kind; {label}: {latest}"
        )

    def _wait(
        self,
        check: Callable[[], Any | None],
        what: str,
        timeout: float,
        *,
        instead: Callable[[], str] | None = None,
    ) -> Any:
        """Call ``check`` until it returns something other than None (an empty list is an
        answer too), waking whenever a message arrives. At the deadline WaitTimeout says
        ``what`` was awaited and ``instead()`` (what arrived), with the recorder's context
        as its log."""

        def answered() -> tuple[Any] | None:
            value = check()
            return None if value is None else (value,)

        try:
            (value,) = wait_until(
                answered, what, timeout, log=self.context, ignore=(), sleep=self._sleep_until_news
            )
        except WaitTimeout as exc:
            if instead is None:
                raise
            raise WaitTimeout(f"{exc.args[0]}; {instead()}", log=exc.log) from None
        return value

    def _sleep_until_news(self, seconds: float) -> None:
        """The pause between checks, cut short when a message arrives."""
        with self._changed:
            self._changed.wait(seconds)

    @staticmethod
    def _accepts(message: Received, schema, device, kind, where) -> bool:
        if kind is not None and message.kind != kind:
            return False
        if schema is not None and message.schema != schema:
            return False
        if device is not None and message.device_id != device:
            return False
        if where is None:
            return True
        try:
            body = message.json
        except ValueError:
            return False
        if callable(where):
            return _matches(body, where)
        if not isinstance(body, dict):
            return False
        return all(k in body and _matches(body[k], v) for k, v in where.items())

    @staticmethod
    def _describe(count, schema, device, kind, where) -> str:
        parts = [f"{count} {kind or 'any'} message(s)"]
        if schema:
            parts.append(f"of schema {schema!r}")
        if device:
            parts.append(f"from device {device!r}")
        if where is not None:
            parts.append(f"matching {where!r}" if not callable(where) else "matching a predicate")
        return " ".join(parts)


def _user_properties(properties) -> dict[str, str]:
    return dict(getattr(properties, "UserProperty", None) or [])


class MqttRecorder(TelemetryRecorder):
    """Subscribes to every device topic of an MQTT broker and records what arrives.

    Its session is persistent (clean_start false, long expiry), so a broker that saves
    sessions keeps queuing for it across a restart, as a real backend would expect.
    Also calls device methods over the request topic, as a backend would.
    """

    def __init__(
        self,
        url: str,
        *,
        topic_filter: str = "devices/#",
        method_topic: str = METHOD_TOPIC,
        method_response_topic: str = METHOD_RESPONSE_TOPIC,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.url = url
        self.method_topic = method_topic
        self.method_response_topic = method_response_topic
        host, port = parse_mqtt_url(url)
        self._responses: dict[str, tuple[int, dict]] = {}
        self._connected = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cirque-recorder-{uuid.uuid4().hex[:10]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.max_inflight_messages_set(0)
        # paho annotates the delays as int but sleeps floats: 50 ms keeps reconnects quick.
        self._client.reconnect_delay_set(0.05, 1)  # type: ignore[arg-type]
        self._client.on_message = self._on_message
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = lambda *args: self._connected.clear()
        self._topic_filter = topic_filter
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 3600
        try:
            self._client.connect(host, port, clean_start=False, properties=connect_props)
        except OSError as exc:
            raise TransportError(
                f"telemetry recorder cannot reach MQTT broker {url}: {exc}; is it running?"
            ) from None
        self._client.loop_start()
        if not self._connected.wait(connect_timeout):
            self.close()
            raise WaitTimeout(f"waited {connect_timeout:g} s for the recorder to connect to {url}")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float = 30.0) -> None:
        if not self._connected.wait(timeout):
            raise WaitTimeout(f"waited {timeout:g} s for the recorder to reconnect to {self.url}")

    def close(self) -> None:
        """Disconnect and end the session, so the broker stops queuing for it."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.DISCONNECT)
        properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()

    def call_method(
        self, device_id: str, method: str, payload: Mapping | None = None, timeout: float = 30.0
    ) -> tuple[int, dict]:
        """Call a device method over the MQTT request topic; return (status, response)."""
        request_id = uuid.uuid4().hex[:12]
        topic = self.method_topic.format(device_id=device_id, method=method, request_id=request_id)
        self._client.publish(topic, json.dumps(dict(payload or {})), qos=1)

        def answered() -> tuple[int, dict] | None:
            with self._changed:
                return self._responses.pop(request_id, None)

        return self._wait(
            answered,
            f"device {device_id} to answer method {method} (request {request_id} on {topic})",
            timeout,
        )

    def reported_properties(self, device_id: str) -> dict | None:
        """The latest properties the device reported (retained or live), or None."""
        found = self.select(device=device_id, kind="properties")
        return found[-1].json if found else None

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            return
        # Connected counts from the SUBACK: only then does the broker deliver (and keep,
        # in the saved session) what is published to the filter.
        client.subscribe(self._topic_filter, qos=1)

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _props) -> None:
        if not any(code.is_failure for code in reason_codes):
            self._connected.set()

    def _on_message(self, _client, _userdata, message) -> None:
        parts = message.topic.split("/")
        meta = _user_properties(message.properties)
        device_id = meta.get("device-id") or (parts[1] if len(parts) > 1 else "")
        if len(parts) >= 6 and parts[2] == "methods" and parts[3] == "res":
            with contextlib.suppress(ValueError), self._changed:
                self._responses[parts[5]] = (int(parts[4]), json.loads(message.payload))
                self._changed.notify_all()
            return
        if message.topic.endswith("/messages/events"):
            kind = "telemetry"
        elif message.topic.endswith("/properties/reported"):
            kind = "properties"
        else:
            kind = "other"
        self.record(
            Received(
                kind=kind,
                device_id=device_id,
                schema=meta.get("schema", ""),
                content_type=getattr(message.properties, "ContentType", "") or "",
                created=meta.get("created", ""),
                body=bytes(message.payload),
                where=message.topic,
                retained=bool(message.retain),
            )
        )


class HttpEndpoint(TelemetryRecorder):
    """A real local HTTP server that records every POST and PUT it receives.

    ``fail_next(n, status)`` answers the next ``n`` requests with an error status, to
    see retries and failure counts.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self._failures: list[int] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = recorder._next_status()
                if status < 300:
                    recorder._record_request(self.command, self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _handle

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's bound address
        return f"http://{host}:{port}"

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._changed:
            self._failures.extend([status] * count)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_status(self) -> int:
        with self._changed:
            return self._failures.pop(0) if self._failures else 200

    def _record_request(self, verb: str, path: str, headers, body: bytes) -> None:
        parts = path.strip("/").split("/")
        kind = "properties" if path.endswith("/properties/reported") else "telemetry"
        device_id = headers.get("X-Cirque-Device-Id") or (parts[1] if len(parts) > 1 else "")
        self.record(
            Received(
                kind=kind,
                device_id=device_id,
                schema=headers.get("X-Cirque-Schema", ""),
                content_type=headers.get("Content-Type", ""),
                created=headers.get("X-Cirque-Created", ""),
                body=body,
                where=f"{verb} {path}",
            )
        )


class AmqpRecorder(TelemetryRecorder):
    """Binds its own exclusive queue to the devices' exchange and records what arrives.

    aio-pika runs on a private event loop in a thread, so plain test code can use it.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "cirque.devices",
        binding: str = "devices.#",
        connect_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connection: AbstractConnection | None = None
        future = asyncio.run_coroutine_threadsafe(self._open(exchange, binding), self._loop)
        try:
            future.result(connect_timeout)
        except Exception as exc:
            self.close()
            raise TransportError(
                f"telemetry recorder cannot reach AMQP broker {url}: {exc}; is it running?"
            ) from None

    async def _open(self, exchange_name: str, binding: str) -> None:
        import aio_pika

        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, binding)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message) -> None:
        headers = {
            k: (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in (message.headers or {}).items()
        }
        key = message.routing_key or ""
        kind = "properties" if key.endswith(".properties.reported") else "telemetry"
        self.record(
            Received(
                kind=kind,
                device_id=headers.get("device-id", ""),
                schema=headers.get("schema", ""),
                content_type=message.content_type or "",
                created=headers.get("created", ""),
                body=bytes(message.body),
                where=key,
            )
        )

    def close(self) -> None:
        async def shut() -> None:
            if self._connection is not None:
                await self._connection.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
