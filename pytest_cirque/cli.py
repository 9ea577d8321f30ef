"""The `cirque` command line.

Each area adds its own sub-commands through an ``add_commands(subparsers)`` function in
its module, so this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from pytest_cirque.core.errors import CirqueError
from pytest_cirque.version import __version__

#: Modules that contribute sub-commands; each defines add_commands(subparsers).
COMMAND_MODULES = (
    "pytest_cirque.commands",  # doctor, images, ls, exec, logs, down, reap, shell
    "pytest_cirque.device_models.commands",  # devices validate / run
    "pytest_cirque.service.commands",  # serve (Cirque's REST and gRPC API)
)


class OneLineParser(argparse.ArgumentParser):
    """A usage error as one line and exit code 2, like every other error of `cirque`; every
    sub-command's parser is of this class too (argparse makes them of their parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cirque", description="Virtual homes and device models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CirqueError as exc:
        print(f"cirque: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
