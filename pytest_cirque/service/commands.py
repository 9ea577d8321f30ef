"""`cirque serve`: Cirque's REST API (and, with --grpc-port, its gRPC service).

The homes it makes belong to the serving process: they go when it ends (SIGTERM, Ctrl-C)
and the watchdog removes them if it is killed; ``--keep`` leaves them, marked kept, for
`cirque ls` and `cirque down`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from pytest_cirque.service.server import DEFAULT_PORT, Service, ServiceOptions

TOKEN_ENV = "CIRQUE_SERVICE_TOKEN"


def add_commands(subparsers: Any) -> None:
    """Register `cirque serve` on the `cirque` parser."""
    serve = subparsers.add_parser(
        "serve",
        help="serve Cirque's REST API (and gRPC service) over homes of this process",
        description="Serve Cirque's REST API (OpenAPI at /docs) over homes owned by this "
        "process; without a token only this user's local processes are served.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"REST port ({DEFAULT_PORT}; 0: any)"
    )
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve Cirque's gRPC CirqueService on this port (Cirque used 50051)",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"require this bearer token (or ?token=) from every client; needed to bind "
        f"beyond loopback (default: ${TOKEN_ENV})",
    )
    serve.add_argument(
        "--allow-host-mounts",
        action="store_true",
        help="let topologies bind host paths into nodes (Mount, Weave)",
    )
    serve.add_argument(
        "--keep",
        action="store_true",
        help="leave the homes when the service stops (see `cirque ls`, `cirque down`)",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    options = ServiceOptions(
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        token=args.token,
        allow_host_mounts=args.allow_host_mounts,
        keep=args.keep,
    )
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(number: int, _frame: object) -> None:
        received.append(number)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    service = Service(options)
    try:
        service.start()
        grpc = f", gRPC on {service.grpc_target}" if service.grpc_target else ""
        print(
            f"cirque serve: REST on {service.url} (OpenAPI at {service.url}/docs){grpc}; "
            "Ctrl-C or SIGTERM stops it and removes its homes",
            file=sys.stderr,
            flush=True,
        )
        stopping.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for line in service.stop():
            print(f"cirque serve: {line}", file=sys.stderr, flush=True)
    return 0
