"""What the integration tests share: a Cirque service per test that must leave nothing
behind, the query that checks it, and a wait on the event loop."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.homes.session import Cirque


def run_objects(service: Cirque) -> list[str]:
    """The "kind:name" of every Docker object labelled with the service's run id."""
    found = Backend(service.client).find([f"{identity.RUN}={service.run_id}"])
    return sorted(f"{o.kind}:{o.name}" for o in found)


@pytest.fixture
def service() -> Iterator[Cirque]:
    """A service for one test; after it, nothing of its run may be left on the engine."""
    svc = Cirque(worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
    try:
        yield svc
    finally:
        svc.close()
        leftovers = run_objects(svc)
        assert leftovers == [], f"objects left behind: {leftovers}"


class _NotYet(Exception):
    """A condition waited on does not hold yet."""


async def until(condition, what: str = "the condition", timeout: float = 60.0) -> None:
    """Wait on the event loop until ``condition()`` holds; fail saying what was awaited."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(timeout),
            wait=wait_exponential(multiplier=0.01, max=0.3),
            retry=retry_if_exception_type(_NotYet),
            reraise=True,
        ):
            with attempt:
                if not condition():
                    raise _NotYet
    except _NotYet:
        raise AssertionError(f"waited {timeout:g} s for {what}") from None
