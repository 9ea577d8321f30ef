"""pytest fixture ``cirque_service``: the REST service in a thread of the test process.

A suite written against Cirque's REST API runs under pytest this way: each process (each
xdist worker) gets its own service on a free loopback port, with its own homes, removed
at the end of the session like every home of the process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def cirque_service() -> Iterator[str]:
    """The base URL ("http://127.0.0.1:PORT") of a Cirque REST service of this process."""
    from pytest_cirque.core import identity
    from pytest_cirque.service.server import Service, ServiceOptions

    service = Service(ServiceOptions(port=0), worker=identity.current_worker()).start()
    try:
        yield service.url
    finally:
        service.stop()
