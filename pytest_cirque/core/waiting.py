"""The one way pytest-cirque waits: poll a condition until it holds or a deadline passes.

No fixed sleeps anywhere: every wait names what it waits for, polls on one backoff
schedule (10 ms doubling up to ``max_interval``), and at the deadline raises WaitTimeout
with what was awaited, the last error the condition raised, and the recent log of what
was being waited on.

The predicate takes no arguments and returns a value: anything truthy ends the wait and
is returned; ``None``, ``False``, ``0`` or an empty container mean "not yet". Exceptions
of the ``ignore`` types also mean "not yet" (and the last one is quoted at the deadline);
any other exception ends the wait at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import tenacity

from pytest_cirque.core.errors import CirqueError, WaitTimeout

T = TypeVar("T")

#: First pause between two polls; it doubles up to the wait's ``max_interval``.
FIRST_INTERVAL_S = 0.01
#: Longest pause between two polls unless the caller asks for a shorter one.
MAX_INTERVAL_S = 0.5
#: What a predicate may raise to say "not yet" unless the caller says otherwise.
NOT_YET: tuple[type[BaseException], ...] = (CirqueError, OSError)

Log = str | Callable[[], str] | None
Sleep = Callable[[float], None]


def _schedule(max_interval: float) -> Any:
    return tenacity.wait_exponential(multiplier=FIRST_INTERVAL_S, min=0, max=max_interval)


def _timeout(what: str, timeout: float, last_error: BaseException | None, log: Log) -> WaitTimeout:
    detail = f" (last error: {last_error})" if last_error is not None else ""
    try:
        text = log() if callable(log) else (log or "")
    except Exception as exc:  # the log is a courtesy: its failure must not hide the timeout
        text = f"(log unavailable: {exc})"
    return WaitTimeout(f"waited {timeout:g} s for {what}{detail}", log=text)


def wait_until(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float,
    *,
    log: Log = None,
    ignore: tuple[type[BaseException], ...] = NOT_YET,
    max_interval: float = MAX_INTERVAL_S,
    sleep: Sleep | None = None,
) -> T:
    """Poll ``predicate()`` until it returns something truthy, and return that.

    ``what`` completes the sentence "waited N s for ...". ``log`` (text, or a function
    giving it) is attached to the WaitTimeout raised at the deadline. ``sleep`` replaces
    the pause between polls, for waits that can be woken early (a recorder wakes when a
    message arrives)."""
    last_error: list[BaseException] = []

    def attempt() -> T | None:
        try:
            return predicate()
        except ignore as exc:
            last_error[:] = [exc]
            return None

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=_schedule(max_interval),
        retry=tenacity.retry_if_result(lambda value: not value),
        sleep=sleep or tenacity.nap.sleep,
    )
    try:
        return retrying(attempt)  # type: ignore[return-value]
    except tenacity.RetryError:
        raise _timeout(what, timeout, last_error[0] if last_error else None, log) from None


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T | None] | None],
    what: str,
    timeout: float,
    *,
    log: Log = None,
    ignore: tuple[type[BaseException], ...] = NOT_YET,
    max_interval: float = MAX_INTERVAL_S,
) -> T:
    """``wait_until`` for an event loop: the pause yields to the loop, and the predicate
    may be a coroutine function."""
    last_error: list[BaseException] = []

    async def attempt() -> T | None:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            return value
        except ignore as exc:
            last_error[:] = [exc]
            return None

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=_schedule(max_interval),
        retry=tenacity.retry_if_result(lambda value: not value),
    )
    try:
        return await retrying(attempt)
    except tenacity.RetryError:
        raise _timeout(what, timeout, last_error[0] if last_error else None, log) from None
