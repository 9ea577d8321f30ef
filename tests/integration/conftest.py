"""What the integration tests share: a Cirque service per test that must leave nothing
behind, and the query that checks it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_cirque import identity
from pytest_cirque.docker_backend import Backend
from pytest_cirque.service import Cirque


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
