"""AMQP 0-9-1 transport (RabbitMQ) with aio-pika: one connection, publisher confirms.

Messages are published to a topic exchange (``cirque.devices`` by default, declared
durable) with the routing key ``devices.{device_id}.messages.events``; reported
properties go to ``devices.{device_id}.properties.reported``. Metadata travels as the
AMQP content type plus application headers (``schema``, ``created``, ``device-id``,
``model-id``). A message counts delivered when the broker confirms it. A device id with
dots (``truck.0``) adds words to the routing key, so bind with ``devices.#`` and read
the ``device-id`` header rather than parsing the key.

When the connection drops, sends wait for one shared reconnect with exponential backoff;
a message not confirmed within ``message_timeout`` counts failed, with the reason in
``last_error``. Methods reach AMQP devices through the simulation's API only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pytest_cirque.core.errors import TransportError

from .base import DeliveryCounts, DeviceRoster, Message, Transport, metadata, settle

# aiormq logs every failed connection attempt at ERROR level. With no logging set up,
# Python prints those to stderr, a dozen lines before our own one-line error. A handler
# on the libraries' loggers keeps that fallback quiet; logging a user configures still
# receives the records through propagation.
for _library in ("aiormq", "aio_pika"):
    logging.getLogger(_library).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection, AbstractExchange

EXCHANGE = "cirque.devices"
TELEMETRY_KEY = "devices.{device_id}.messages.events"
PROPERTIES_KEY = "devices.{device_id}.properties.reported"


class _Retry(Exception):
    """A publish failed in a way worth another try (connection lost, channel closed)."""


class AmqpTransport(DeviceRoster, Transport):
    """Publishes telemetry to a RabbitMQ topic exchange over one confirmed channel."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = EXCHANGE,
        telemetry_key: str = TELEMETRY_KEY,
        properties_key: str = PROPERTIES_KEY,
        connect_timeout: float = 10.0,
        message_timeout: float = 30.0,
        flush_timeout: float = 10.0,
        pooled: bool = True,  # one connection carries every device; accepted for symmetry
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "amqp" or not parts.hostname:
            raise TransportError(
                f"bad AMQP broker URL {url!r}: write it as amqp://[USER:PASS@]HOST[:PORT][/VHOST]"
            )
        self.url = url
        self.exchange_name = exchange
        self.telemetry_key = telemetry_key
        self.properties_key = properties_key
        self.connect_timeout = connect_timeout
        self.message_timeout = message_timeout
        self.flush_timeout = flush_timeout
        self.counts = DeliveryCounts()
        self.property_counts = DeliveryCounts()
        self.last_error = ""
        self._init_roster()
        self._connection: AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._reconnect_lock = asyncio.Lock()
        self._started = False

    @property
    def _safe_url(self) -> str:
        parts = urlsplit(self.url)
        return f"amqp://{parts.hostname}:{parts.port or 5672}"

    async def start(self, device_ids: Iterable[str]) -> None:
        """Connect (retrying up to ``connect_timeout``); raise one clear line if impossible."""
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.connect_timeout),
                wait=wait_exponential(multiplier=0.05, max=2),
                retry=retry_if_exception_type(_Retry),
                reraise=True,
            ):
                with attempt:
                    await self._connect()
        except _Retry:
            raise TransportError(
                f"AMQP broker {self._safe_url} unreachable after {self.connect_timeout:g} s "
                f"({self.last_error}): start the broker or fix the URL"
            ) from None
        self._started = True
        await self.add_devices(device_ids)

    async def send(self, message: Message) -> None:
        self._check(message.device_id)
        self.counts.sent += 1
        await self._publish(
            self.telemetry_key.format(device_id=message.device_id),
            message.body,
            message.content_type,
            metadata(message),
            self.counts,
        )

    async def report_properties(self, device_id: str, properties: dict) -> None:
        self._check(device_id)
        body = json.dumps(properties, separators=(",", ":"), sort_keys=True).encode()
        self.property_counts.sent += 1
        await self._publish(
            self.properties_key.format(device_id=device_id),
            body,
            "application/json",
            {"device-id": device_id},
            self.property_counts,
        )

    async def stop(self) -> None:
        """Let confirms under way arrive (at most ``flush_timeout``), then close; what is
        still unconfirmed then counts failed."""
        await settle([self.counts, self.property_counts], self.flush_timeout)
        self._started = False
        connection, self._connection = self._connection, None
        self._exchange = None
        if connection is not None and not connection.is_closed:
            await connection.close()

    # --- inside --------------------------------------------------------------------

    def _check(self, device_id: str) -> None:
        if not self._started:
            raise TransportError(
                f"AMQP transport to {self._safe_url} is not running: call start() first"
            )
        if device_id not in self._devices:
            raise TransportError(f"device {device_id!r} is not part of this AMQP transport")

    async def _connect(self) -> None:
        import aio_pika  # lazily: only AMQP simulations need it

        try:
            connection = await asyncio.wait_for(
                aio_pika.connect(self.url), timeout=self.connect_timeout
            )
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise _Retry from exc
        self._connection, self._exchange = connection, exchange

    async def _reconnect(self, broken) -> None:
        """Replace a broken connection once, however many sends noticed it."""
        async with self._reconnect_lock:
            if self._exchange is not broken:
                return  # another send already reconnected
            old, self._connection, self._exchange = self._connection, None, None
            if old is not None and not old.is_closed:
                with contextlib.suppress(Exception):  # it is broken; closing is best effort
                    await old.close()
            await self._connect()
            self.counts.reconnects += 1

    async def _publish(self, key, body, content_type, headers, counts: DeliveryCounts) -> None:
        import aio_pika

        message = aio_pika.Message(
            body,
            content_type=content_type,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.message_timeout),
                wait=wait_exponential(multiplier=0.05, max=2),
                retry=retry_if_exception_type(_Retry),
                reraise=True,
            ):
                with attempt:
                    exchange = self._exchange
                    if exchange is None:
                        await self._reconnect(None)
                        exchange = self._exchange
                        if exchange is None:  # stop() ran meanwhile
                            raise TransportError("transport stopped")
                    try:
                        await exchange.publish(message, routing_key=key)
                    except Exception as exc:
                        if not self._started:
                            raise TransportError("transport stopped") from exc
                        self.last_error = (
                            f"AMQP publish to {self._safe_url} failed: {type(exc).__name__}: {exc}"
                        )
                        await self._reconnect(exchange)
                        raise _Retry from exc
        except (_Retry, TransportError):
            counts.failed += 1
            self.last_error = (
                f"{self.last_error} (gave up after {self.message_timeout:g} s; counted failed)"
            )
            return
        counts.delivered += 1
