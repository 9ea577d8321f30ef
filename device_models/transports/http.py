"""HTTP transport: each message is a POST to an endpoint, retried with backoff.

The route is the URL's path, with ``{device_id}`` filled in; a URL without a path gets
the default ``/devices/{device_id}/messages/events``. Reported properties are PUT to
``/devices/{device_id}/properties/reported`` on the same host (configurable). Metadata
travels as headers: ``Content-Type`` and ``X-Cirque-Schema``, ``X-Cirque-Created``,
``X-Cirque-Device-Id``, ``X-Cirque-Model-Id``.

A 2xx answer counts as delivered. Connection errors and 5xx/429 answers are retried with
exponential backoff until ``message_timeout``; other 4xx answers (the endpoint rejects
the message) and exhausted retries count as failed, with the reason in ``last_error``.
HTTP has no channel for the peer to call a device, so methods reach HTTP devices through
the simulation's API only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pytest_cirque.core.errors import TransportError

from .base import DeliveryCounts, DeviceRoster, Message, Transport, metadata, settle

if TYPE_CHECKING:
    import aiohttp

TELEMETRY_PATH = "/devices/{device_id}/messages/events"
PROPERTIES_PATH = "/devices/{device_id}/properties/reported"


class _Retry(Exception):
    """A delivery attempt failed in a way worth another try."""


class HttpTransport(DeviceRoster, Transport):
    """POSTs telemetry to an HTTP endpoint through one pooled aiohttp session."""

    def __init__(
        self,
        url: str,
        *,
        properties_path: str = PROPERTIES_PATH,
        message_timeout: float = 30.0,
        request_timeout: float = 10.0,
        flush_timeout: float = 10.0,
        max_connections: int = 64,
        pooled: bool = True,  # HTTP always shares a connection pool; accepted for symmetry
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise TransportError(
                f"bad HTTP endpoint URL {url!r}: write it as http://HOST[:PORT][/PATH]"
            )
        path = parts.path if parts.path not in ("", "/") else TELEMETRY_PATH
        self.url = url
        self.telemetry_url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        self.properties_url = urlunsplit((parts.scheme, parts.netloc, properties_path, "", ""))
        self.message_timeout = message_timeout
        self.request_timeout = request_timeout
        self.flush_timeout = flush_timeout
        self.max_connections = max_connections
        self.headers = dict(headers or {})
        self.counts = DeliveryCounts()
        self.property_counts = DeliveryCounts()
        self.last_error = ""
        self._init_roster()
        self._session: aiohttp.ClientSession | None = None

    async def start(self, device_ids: Iterable[str]) -> None:
        import aiohttp  # lazily: only HTTP simulations need it

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections),
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
        )
        await self.add_devices(device_ids)

    async def send(self, message: Message) -> None:
        self._check(message.device_id)
        headers = {
            **self.headers,
            "Content-Type": message.content_type,
            **{f"X-Cirque-{k.title()}": v for k, v in metadata(message).items()},
        }
        url = self.telemetry_url.replace("{device_id}", message.device_id)
        self.counts.sent += 1
        await self._deliver("POST", url, message.body, headers, self.counts)

    async def report_properties(self, device_id: str, properties: dict) -> None:
        self._check(device_id)
        body = json.dumps(properties, separators=(",", ":"), sort_keys=True).encode()
        url = self.properties_url.replace("{device_id}", device_id)
        headers = {**self.headers, "Content-Type": "application/json"}
        self.property_counts.sent += 1
        await self._deliver("PUT", url, body, headers, self.property_counts)

    async def stop(self) -> None:
        """Let requests under way finish (at most ``flush_timeout``), then close; what is
        still unanswered then counts failed."""
        await settle([self.counts, self.property_counts], self.flush_timeout)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _check(self, device_id: str) -> None:
        if self._session is None:
            raise TransportError(
                f"HTTP transport to {self.url} is not running: call start() before using it"
            )
        if device_id not in self._devices:
            raise TransportError(f"device {device_id!r} is not part of this HTTP transport")

    async def _deliver(self, verb, url, body, headers, counts: DeliveryCounts) -> None:
        """One request, retried on connection errors and 5xx/429 until ``message_timeout``."""
        import aiohttp

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self.message_timeout),
                wait=wait_exponential(multiplier=0.05, max=2),
                retry=retry_if_exception_type(_Retry),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        counts.reconnects += 1
                    session = self._session
                    if session is None:
                        raise TransportError("transport stopped")
                    try:
                        async with session.request(
                            verb, url, data=body, headers=headers
                        ) as response:
                            status = response.status
                            await response.read()
                    except (
                        aiohttp.ClientError,
                        asyncio.TimeoutError,
                        OSError,
                        RuntimeError,
                    ) as exc:
                        # RuntimeError: the session was closed by stop() meanwhile.
                        self.last_error = f"HTTP {verb} {url} failed: {type(exc).__name__}: {exc}"
                        raise _Retry from exc
                    if status == 429 or status >= 500:
                        self.last_error = f"HTTP {verb} {url} answered {status}; retrying"
                        raise _Retry
                    if status >= 400:
                        self.last_error = (
                            f"HTTP {verb} {url} answered {status}: the endpoint rejects "
                            "the message; counted failed"
                        )
                        counts.failed += 1
                        return
        except (_Retry, TransportError):
            counts.failed += 1
            self.last_error = (
                f"{self.last_error} (gave up after {self.message_timeout:g} s; counted failed)"
            )
            return
        counts.delivered += 1
