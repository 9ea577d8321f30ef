"""What the integration tests share: a Cirque service per test that must leave nothing
behind, the query that checks it, a wait on the event loop, and Ctrl-C for the processes
a test starts."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend
from pytest_cirque.core.waiting import wait_until_async
from pytest_cirque.homes.home import Home
from pytest_cirque.homes.session import Cirque


def run_objects(service: Cirque) -> list[str]:
    """The "kind:name" of every Docker object labelled with the service's run id."""
    found = Backend(service.client).find([f"{identity.RUN}={service.run_id}"])
    return sorted(f"{o.kind}:{o.name}" for o in found)


@pytest.fixture
def sigint_reaches_children() -> Iterator[None]:
    """Processes the test starts get SIGINT at its default, as from a terminal, so that a
    SIGINT (Ctrl-C) it sends them raises KeyboardInterrupt. A suite started as a background
    job of a non-interactive shell has SIGINT ignored (POSIX), children inherit an ignored
    signal through exec, and Python then installs no KeyboardInterrupt handler: the child
    would never see the signal. A handled signal is reset to its default in a child."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


async def until(
    condition: Callable[[], object], what: str = "the condition", timeout: float = 60.0
) -> None:
    """Wait on the event loop until ``condition()`` holds; WaitTimeout says what was
    awaited. An error of the condition ends the wait at once."""
    await wait_until_async(condition, what, timeout, ignore=(), max_interval=0.3)


@pytest.fixture
def make_home(service: Cirque) -> Iterator[Callable[..., Home]]:
    """Homes for one test from the test's service: ``make_home(spec, name="home")``; all
    destroyed after it."""
    homes: list[Home] = []

    def make(spec: dict, name: str = "home") -> Home:
        homes.append(service.create_home(spec, name=name))
        return homes[-1]

    yield make
    for home in homes:
        home.destroy()
