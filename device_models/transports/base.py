"""The seam between the simulator and the transports that carry its messages to a real peer.

The simulator renders and validates messages; a transport only carries them and keeps
count, so that nothing is ever silently dropped: every message handed to ``send`` ends
up either delivered or failed in ``counts``.
"""

from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pytest_cirque.core.errors import TransportError, WaitTimeout
from pytest_cirque.core.waiting import wait_until_async


@dataclass(frozen=True)
class Message:
    """One rendered telemetry message with the metadata a backend needs to parse it."""

    device_id: str
    schema: str  # MessageSchema.Name, e.g. "elevator-floor;v1"
    content_type: str  # "application/json"
    created: str  # ISO-8601 creation time, UTC
    body: bytes  # the rendered, validated template
    model_id: str = ""


@dataclass
class DeliveryCounts:
    """What became of the messages handed to a transport; visible to tests and the CLI."""

    sent: int = 0  # handed to the transport
    delivered: int = 0  # acknowledged by the peer (QoS1 PUBACK, HTTP 2xx, AMQP confirm)
    failed: int = 0  # given up on after retries; never silently dropped
    reconnects: int = 0

    @property
    def pending(self) -> int:
        """Messages handed over but neither delivered nor failed yet."""
        return self.sent - self.delivered - self.failed


def metadata(message: Message) -> dict[str, str]:
    """The metadata every transport carries beside the body, under the same names.

    MQTT v5 user properties, HTTP headers (prefixed ``X-Cirque-``), AMQP application
    properties; the content type travels in each protocol's own content-type field.
    """
    return {
        "schema": message.schema,
        "created": message.created,
        "device-id": message.device_id,
        "model-id": message.model_id,
    }


async def settle(counts: list[DeliveryCounts], timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, until nothing handed over is still pending. Silent
    at its deadline: what is still pending then shows in the counts, not as an error."""
    with contextlib.suppress(WaitTimeout):
        await wait_until_async(
            lambda: not any(c.pending for c in counts),
            "nothing pending",
            timeout,
            ignore=(),
            max_interval=0.2,
        )


# (device_id, method, payload) -> (status, response)
MethodHandler = Callable[[str, str, dict], Awaitable[tuple[int, dict]]]


class Transport(ABC):
    """Carries one simulation's messages for many devices, driven by the simulator's loop."""

    counts: DeliveryCounts

    @abstractmethod
    async def start(self, device_ids: Iterable[str]) -> None:
        """Connect (one connection per device, or pooled: a constructor option)."""

    @abstractmethod
    async def add_devices(self, device_ids: Iterable[str]) -> None:
        """Connect devices that join a running simulation."""

    @abstractmethod
    async def remove_devices(self, device_ids: Iterable[str]) -> None:
        """Disconnect devices that leave a running simulation."""

    @abstractmethod
    async def send(self, message: Message) -> None:
        """Carry one message; delivery failures are counted, never raised.

        Raises TransportError only for misuse (not started, unknown device).
        """

    def send_now(self, message: Message) -> bool:
        """Hand one message over without waiting, if this transport can; else return False.

        A transport whose ``send`` never waits (it only queues) overrides this, so the
        simulator need not create a task for every message; the others keep the
        default, and the simulator awaits ``send`` in a task instead.
        """
        return False

    @abstractmethod
    async def report_properties(self, device_id: str, properties: dict) -> None:
        """Report a device's properties (retained topic or twin-like document)."""

    @abstractmethod
    def on_method(self, handler: MethodHandler) -> None:
        """Route methods arriving from the peer (e.g. the MQTT request topic) to ``handler``."""

    @abstractmethod
    async def stop(self) -> None:
        """Flush what is pending (bounded), then close."""


_TRANSPORT_MODULES = {
    "mqtt": ("pytest_cirque.device_models.transports.mqtt", "MqttTransport"),
    "http": ("pytest_cirque.device_models.transports.http", "HttpTransport"),
    "https": ("pytest_cirque.device_models.transports.http", "HttpTransport"),
    "amqp": ("pytest_cirque.device_models.transports.amqp", "AmqpTransport"),
}


class DeviceRoster:
    """Device membership and the method handler, for transports that keep no connection
    per device (HTTP, AMQP): adding a device only makes it known."""

    _devices: set[str]
    _handler: MethodHandler | None

    def _init_roster(self) -> None:
        self._devices = set()
        self._handler = None

    async def add_devices(self, device_ids: Iterable[str]) -> None:
        self._devices.update(device_ids)

    async def remove_devices(self, device_ids: Iterable[str]) -> None:
        self._devices.difference_update(device_ids)

    def on_method(self, handler: MethodHandler) -> None:
        self._handler = handler


def make_transport(protocol: str, url: str, **options) -> Transport:
    """Build the transport for a model's Protocol (MQTT, HTTP, AMQP) aimed at ``url``.

    ``protocol`` is case-insensitive; the URL scheme must agree with it
    ("mqtt://127.0.0.1:1883", "http://127.0.0.1:8080/telemetry", "amqp://127.0.0.1:5672").
    """
    name = protocol.strip().lower()
    scheme = urlsplit(url).scheme.lower()
    if name not in ("mqtt", "http", "amqp"):
        raise TransportError(f"unknown protocol {protocol!r}: use one of MQTT, HTTP, AMQP")
    if scheme != name and not (name == "http" and scheme == "https"):
        raise TransportError(
            f"broker URL {url!r} does not match protocol {protocol}: give a {name}:// URL"
        )
    module_name, class_name = _TRANSPORT_MODULES[scheme]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(url, **options)
