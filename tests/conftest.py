"""Project test configuration.

Tests under tests/integration/ talk to a real Docker engine and real peers. Where the
engine is absent they skip with the reason, unless CIRQUE_REQUIRE_DOCKER=1 (CI sets
it), which turns the skip into a failure so a broken CI machine cannot pass quietly.
"""

from __future__ import annotations

import functools

import pytest
from needs import missing

pytest_plugins = ["pytester"]


@functools.cache
def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None when it can."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means "no engine here"
        return f"Docker engine unreachable ({type(exc).__name__}: {exc})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid or "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is None:
        return
    problem = docker_problem()
    if problem is not None:
        missing(problem)
