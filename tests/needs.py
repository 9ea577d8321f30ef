"""What a test needs from the machine, for tests of every kind: a host program, or a
Docker engine (tests/conftest.py). Where it is missing the test skips with the reason,
unless CIRQUE_REQUIRE_DOCKER=1 (CI sets it, after scripts/setup installed everything):
then it fails, so that a broken CI machine cannot pass quietly.

tests/ is on sys.path (unit and integration are packages under it): ``from needs import``.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(problem: str) -> NoReturn:
    """Skip the test for ``problem``, or fail it where CIRQUE_REQUIRE_DOCKER=1."""
    if os.environ.get("CIRQUE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{problem}; CIRQUE_REQUIRE_DOCKER=1 forbids skipping", pytrace=False)
    pytest.skip(problem)


def host_tool(name: str) -> str:
    """The path of a host program a test needs (scripts/setup installs them all)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (scripts/setup installs it)")
    return path
