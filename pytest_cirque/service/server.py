"""The service as a running thing: REST (uvicorn) and optionally gRPC over one set of homes.

Both servers run in threads of the owning process, so that process stays in charge of its
signals and of the teardown: `cirque serve` waits for SIGTERM or Ctrl-C in its main thread,
and the ``cirque_service`` fixture runs the service inside a test process. Stopping
stops the servers first (no request can start a home after that), then destroys the
homes, or marks them kept when asked to keep them.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass

from pytest_cirque.core.errors import CirqueError, SpecError
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.homes.session import Cirque
from pytest_cirque.service.peers import Gate
from pytest_cirque.service.registry import ServiceHomes

#: Cirque's Flask service listened on 5000 and its gRPC service on 50051.
DEFAULT_PORT = 5000
DEFAULT_GRPC_PORT = 50051
#: How long the servers may take to come up, and to finish their requests when stopping.
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


@dataclass
class ServiceOptions:
    """What `cirque serve` was told."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: None: no gRPC; 0: a free port.
    grpc_port: int | None = None
    token: str | None = None
    allow_host_mounts: bool = False
    #: Leave the homes (marked kept) when the service stops.
    keep: bool = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(options: ServiceOptions) -> None:
    """Refuse to listen beyond this host without a token: whoever reaches the service
    drives Docker, which is root on the host."""
    if not is_loopback(options.host) and not options.token:
        raise SpecError(
            f"serving on {options.host} lets other hosts drive Docker here; give --token "
            "TOKEN (clients send it as a bearer token) or bind 127.0.0.1"
        )
    if options.token is not None and len(options.token) < 16:
        raise SpecError("--token is too short to guess hard; give at least 16 characters")


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: a free port), or one line saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: without it a kept-alive connection waits for the
        # client's delayed ACK (40 ms) between an answer's header and body writes.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CirqueError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port"
        ) from None
    sock.set_inheritable(True)
    return sock


class Service:
    """The REST (and gRPC) service over the homes of one ``Cirque``."""

    def __init__(
        self, options: ServiceOptions, *, cirque: Cirque | None = None, worker: str = "main"
    ) -> None:
        self.options = options
        self._cirque = cirque
        self._worker = worker
        self.homes: ServiceHomes | None = None
        self.port = 0
        self.grpc_port: int | None = None
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self._grpc: object | None = None

    @property
    def url(self) -> str:
        host = self.options.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    @property
    def grpc_target(self) -> str | None:
        if self.grpc_port is None:
            return None
        host = self.options.host
        return f"[{host}]:{self.grpc_port}" if ":" in host else f"{host}:{self.grpc_port}"

    def start(self) -> Service:
        """Listen, then serve in threads; returns once requests are answered."""
        import uvicorn

        from pytest_cirque.service.rest import build_app

        options = self.options
        check_exposure(options)
        sock = listen(options.host, options.port)
        self.port = sock.getsockname()[1]
        cirque = self._cirque or Cirque(worker=self._worker)
        self._cirque = cirque
        self.homes = ServiceHomes(cirque, allow_host_mounts=options.allow_host_mounts)
        gate = Gate(options.token)
        config = uvicorn.Config(
            build_app(self.homes, gate),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(STOP_GRACE_S),
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="cirque-rest", daemon=True
        )
        self._thread.start()
        thread = self._thread
        wait_until(
            lambda: server.started or not thread.is_alive(),
            f"the REST service on {self.url} to start",
            START_TIMEOUT_S,
        )
        if not server.started:
            raise CirqueError(f"the REST service on {self.url} failed to start; see the log above")
        if options.grpc_port is not None:
            from pytest_cirque.service.grpc_api import start_server

            self._grpc, self.grpc_port = start_server(
                self.homes, gate, options.host, options.grpc_port
            )
        return self

    def stop(self) -> list[str]:
        """Stop serving, then destroy the homes (or keep them: how to reach each)."""
        if self._grpc is not None:
            self._grpc.stop(grace=STOP_GRACE_S).wait()  # type: ignore[attr-defined]
            self._grpc = None
        if self._server is not None:
            self._server.should_exit = True  # type: ignore[attr-defined]
            if self._thread is not None:
                self._thread.join(STOP_GRACE_S * 2)
            self._server = None
        kept: list[str] = []
        if self.homes is not None and self.options.keep:
            kept = self.homes.keep_all()
        if self._cirque is not None:
            self._cirque.close()  # kept homes are left alone
        return kept
