"""What the service's integration tests share: a `cirque serve` process started as a
user would start it, the Docker objects it owns, and the REST calls every test makes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from pytest_cirque.core import identity
from pytest_cirque.core.docker_backend import Backend, connect
from pytest_cirque.core.waiting import wait_until

#: A safety net against a hung server, not a time bound of any test.
CLIENT_TIMEOUT_S = 300.0
#: `cirque serve` may build images on its first start.
START_WAIT_S = 300.0


def objects_of_home(home_id: str) -> list[str]:
    found = Backend(connect()).find([f"{identity.HOME}={home_id}"])
    return sorted(f"{o.kind}:{o.name}" for o in found)


class Served:
    """A `cirque serve` process of the test, and how to reach it."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self.stderr = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_cirque.cli", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            start_new_session=True,
        )
        self.owner = identity.Owner(
            socket.gethostname(), self.proc.pid, identity.process_start_time(self.proc.pid) or "0"
        )
        banner = wait_until(self._banner, "cirque serve to print its address", START_WAIT_S)
        self.url: str = banner.group(1)
        self.grpc_target: str | None = banner.group(3)

    def _banner(self) -> re.Match[str] | None:
        text = self.log.read_text()
        if self.proc.poll() is not None:
            raise AssertionError(f"cirque serve exited with {self.proc.returncode}: {text}")
        return re.search(r"REST on (http://\S+) \(OpenAPI[^)]*\)(, gRPC on (\S+))?;", text)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S, **kwargs)

    def objects(self) -> list[str]:
        found = Backend(connect()).find([f"{identity.OWNER}={self.owner.label}"])
        return sorted(f"{o.kind}:{o.name}" for o in found)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait()
        self.stderr.close()
        return code


def cmd(home: str, device: str, command: str) -> str:
    return f"/device_cmd/{home}/{device}/{quote(command, safe='')}"


def create(http: httpx.Client, topology: Any) -> str:
    reply = http.post("/create_home", json=topology)
    assert reply.status_code == 200, reply.text
    home_id = reply.json()
    assert isinstance(home_id, str)
    return home_id
