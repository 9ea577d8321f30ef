"""The `cirque devices` sub-commands: validate model files, run a fleet against a broker.

``validate`` prints every problem of every file (model fields and scripts) before it
exits non-zero, so one run shows everything to fix. ``run`` is the quickest way to see
devices on a broker: it prints a live progress line (devices online, messages per
second, failures) and a summary at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

from pytest_cirque.core.errors import CirqueError, DeviceModelError
from pytest_cirque.device_models.brokers import add_broker_command
from pytest_cirque.device_models.engine import check_scripts
from pytest_cirque.device_models.model import (
    load_model,
    proto_catalog,
    resolve_model_path,
    stock_models,
    validate_model_file,
)

ALLOW_OUTSIDE_HELP = (
    "let model scripts live outside the model's folder and its scripts/ subfolder "
    "(refused by default: a model must not make the tools read other files)"
)
PROTO_HELP = (
    "the schema of the models' Protobuf messages (Format Protobuf, found by their "
    "ClassName): a .proto file, a compiled _pb2.py file or module name (repeat for several)"
)


def _seconds(option: str) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, zero or more."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be a finite number of seconds, 0 or more"
            )
        return value

    parse.__name__ = option
    return parse


def add_commands(subparsers: Any) -> None:
    """Register `cirque devices ...` on the `cirque` parser."""
    devices = subparsers.add_parser("devices", help="device models and simulated fleets")
    actions = devices.add_subparsers(dest="devices_command", metavar="ACTION", required=True)

    validate = actions.add_parser(
        "validate", help="check model files and their scripts; print every problem"
    )
    validate.add_argument(
        "files", nargs="+", metavar="FILE", help="model files (.json, .yaml) or stock model names"
    )
    validate.add_argument("--allow-outside", action="store_true", help=ALLOW_OUTSIDE_HELP)
    validate.add_argument("--proto", action="append", default=[], metavar="FILE", help=PROTO_HELP)
    validate.set_defaults(func=cmd_validate)

    stock = actions.add_parser("stock", help="list the stock models")
    stock.set_defaults(func=cmd_stock)

    run = actions.add_parser("run", help="simulate devices sending telemetry to a broker")
    run.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="model file or stock model name (repeat for several models)",
    )
    run.add_argument("--count", type=int, default=1, metavar="N", help="devices per model (1)")
    run.add_argument("--allow-outside", action="store_true", help=ALLOW_OUTSIDE_HELP)
    run.add_argument("--proto", action="append", default=[], metavar="FILE", help=PROTO_HELP)
    run.add_argument(
        "--broker",
        required=True,
        metavar="URL",
        help="where to send: mqtt://HOST:PORT, http://HOST:PORT/PATH or amqp://HOST:PORT; "
        "the URL's scheme picks the protocol, whatever the models' Protocol says",
    )
    run.add_argument(
        "--duration",
        type=_seconds("--duration"),
        default=0,
        metavar="S",
        help="seconds to run (0: until Ctrl-C)",
    )
    run.add_argument(
        "--jitter",
        type=_seconds("--jitter"),
        default=None,
        metavar="S",
        help="longest start offset per device",
    )
    run.add_argument("--seed", type=int, default=None, help="repeatable offsets and random values")
    run.add_argument(
        "--pooled", action="store_true", help="share a few connections instead of one per device"
    )
    run.set_defaults(func=cmd_run)

    add_broker_command(actions)


def cmd_validate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call, so a redirected stdout is honoured
    try:
        catalog = proto_catalog(args.proto)  # loaded once for every file
    except DeviceModelError as exc:
        raise CirqueError(f"--proto: {exc}") from None
    problems = 0
    for name in args.files:
        try:
            path = resolve_model_path(name)
        except DeviceModelError as exc:
            print(exc, file=out)
            problems += 1
            continue
        model, errors = validate_model_file(path, allow_outside=args.allow_outside, proto=catalog)
        script_errors = check_scripts(model) if model else []
        for error in [*errors, *script_errors]:
            print(error, file=out)
        problems += len(errors) + len(script_errors)
        if model and not script_errors:
            print(
                f"{path}: ok: model {model.id} ({len(model.telemetry)} messages, "
                f"{len(model.methods)} methods)",
                file=out,
            )
    if problems:
        print(f"{problems} problem(s) in {len(args.files)} file(s)", file=out)
        return 1
    return 0


def cmd_stock(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call, so a redirected stdout is honoured
    for name, path in stock_models().items():
        model = load_model(path)  # stock scripts live beside their models
        print(f"{name:12} {model.description}", file=out)
    return 0


def cmd_run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up per call, so a redirected stdout is honoured
    # Imported here so that `validate` works without any transport's client library.
    from pytest_cirque.device_models.simulator import Simulation, SimulationRunner
    from pytest_cirque.device_models.transports.base import make_transport

    if args.count < 0:
        raise CirqueError(f"--count must be 0 or more (got {args.count})")
    try:
        catalog = proto_catalog(args.proto)
    except DeviceModelError as exc:
        raise CirqueError(f"--proto: {exc}") from None
    models = [
        load_model(name, allow_outside=args.allow_outside, proto=catalog) for name in args.model
    ]
    scheme = urlsplit(args.broker).scheme.lower()
    if scheme not in ("mqtt", "http", "https", "amqp"):
        raise CirqueError(
            f"--broker {args.broker!r}: give a URL such as mqtt://127.0.0.1:1883, "
            "http://127.0.0.1:8080/telemetry or amqp://127.0.0.1:5672"
        )
    protocol = "http" if scheme == "https" else scheme
    options = {"pooled": True} if args.pooled else {}
    transport = make_transport(protocol, args.broker, **options)
    simulation = Simulation(models, args.count, transport, jitter=args.jitter, seed=args.seed)
    runner = SimulationRunner(simulation)
    runner.start()
    progress = _Progress(simulation, out)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while deadline is None or time.monotonic() < deadline:
            remaining = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            time.sleep(max(remaining, 0))  # a display refresh, not a wait on a condition
            progress.show()
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
    progress.show(final=True)
    for line in list(simulation.errors)[:10]:
        print(f"error: {line}", file=out)
    counts = simulation.transport.counts
    undelivered = counts.failed + (counts.sent - counts.delivered - counts.failed)
    return 1 if undelivered or simulation.error_count else 0


class _Progress:
    """One status line: devices online, messages per second, failures (redrawn on a tty)."""

    def __init__(self, simulation: Any, out: TextIO) -> None:
        self.simulation = simulation
        self.out = out
        self.tty = out.isatty()
        self.started = self.last_time = time.monotonic()
        self.last_sent = 0

    def show(self, final: bool = False) -> None:
        simulation = self.simulation
        counts = simulation.transport.counts
        now = time.monotonic()
        devices = list(simulation.devices.values())
        online = sum(1 for d in devices if d.online)
        if final:
            rate = counts.sent / max(now - self.started, 1e-9)
        else:
            rate = (counts.sent - self.last_sent) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_sent = now, counts.sent
        line = (
            f"devices online {online}/{len(devices)} | {rate:.1f} msg/s | sent {counts.sent} "
            f"delivered {counts.delivered} | failures {counts.failed} | "
            f"script errors {simulation.error_count} | reconnects {counts.reconnects}"
        )
        pending = counts.sent - counts.delivered - counts.failed
        if final and pending:
            line += f" | never settled {pending}"
        if final:
            prefix = "\r\033[K" if self.tty else ""
            print(f"{prefix}done: {line}", file=self.out, flush=True)
        elif self.tty:
            print(f"\r\033[K{line}", end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)
