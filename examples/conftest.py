"""Fixtures shared by the example suite.

Two patterns worth copying:

- a per-node fixture: a plain fixture over ``home`` that returns one node, so a test
  names the devices it talks to (``hub``, ``sensor``) instead of indexing the home;
- a session home: one home shared by the tests that only look at it, built once from
  ``cirque_session_home_spec`` (override that fixture to describe it).
"""

from __future__ import annotations

import pytest

from pytest_cirque import Node


@pytest.fixture
def hub(home) -> Node:
    """The test home's node called "hub"."""
    return home["hub"]


@pytest.fixture
def sensor(home) -> Node:
    """The test home's node called "sensor"."""
    return home["sensor"]


@pytest.fixture(scope="session")
def cirque_session_home_spec() -> dict:
    """One quiet node shared by the read-only examples (exec, files, logs)."""
    return {
        "box": {
            "env": {"ROLE": "box"},
            # The main process prints a line, so the node's log has something to show.
            "command": ["sh", "-c", "echo box is up; exec sleep infinity"],
        }
    }


@pytest.fixture
def box(session_home) -> Node:
    """The shared home's only node."""
    return session_home["box"]
