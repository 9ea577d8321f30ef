"""pytest-cirque's settings: a command-line option over an environment variable over an
ini option over the default, resolved once per pytest run.

One table (SETTINGS) describes every setting, so the option, the variable, the ini key
and the help text cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Setting:
    """One setting and the three places it can be given."""

    attr: str
    option: str
    env: str
    ini: str
    kind: str  # "bool" or "path"
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        attr="keep",
        option="--cirque-keep",
        env="CIRQUE_KEEP",
        ini="cirque_keep",
        kind="bool",
        default=False,
        help="leave a failed test's home running and print how to reach it "
        "(cirque ls / exec / shell / down)",
    ),
    Setting(
        attr="rebuild_images",
        option="--cirque-rebuild-images",
        env="CIRQUE_REBUILD_IMAGES",
        ini="cirque_rebuild_images",
        kind="bool",
        default=False,
        help="rebuild the project's node images this run uses, even when up to date "
        "(under xdist, worker gw0 rebuilds)",
    ),
    Setting(
        attr="log_dir",
        option="--cirque-log-dir",
        env="CIRQUE_LOG_DIR",
        ini="cirque_log_dir",
        kind="path",
        default="cirque-logs",
        help="where a failed test's node logs and home topology are written "
        "(default: cirque-logs/ under the rootdir)",
    ),
)


@dataclass(frozen=True)
class CirqueSettings:
    """The resolved settings of one pytest run."""

    keep: bool
    rebuild_images: bool
    log_dir: Path


def add_options(parser: pytest.Parser) -> None:
    """Register every setting as a command-line option and an ini option."""
    group = parser.getgroup("cirque", "virtual homes (pytest-cirque)")
    for setting in SETTINGS:
        help_text = f"{setting.help}; env {setting.env}, ini {setting.ini}"
        if setting.kind == "bool":
            group.addoption(
                setting.option, action="store_true", default=None, dest=setting.ini, help=help_text
            )
            parser.addini(setting.ini, setting.help, type="bool", default=setting.default)
        else:
            group.addoption(
                setting.option,
                action="store",
                default=None,
                dest=setting.ini,
                metavar="DIR",
                help=help_text,
            )
            parser.addini(setting.ini, setting.help, default=setting.default)


def parse_bool(text: str, where: str) -> bool:
    """A boolean written as text; a word that is neither raises a one-line UsageError."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise pytest.UsageError(
        f"{where}={text!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off"
    )


def resolve(config: pytest.Config, environ: dict[str, str] | None = None) -> CirqueSettings:
    """Each setting from the command line, else the environment, else the ini file."""
    environ = dict(os.environ) if environ is None else environ
    invocation_dir = Path(config.invocation_params.dir)
    ini_dir = config.inipath.parent if config.inipath else config.rootpath
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        given = config.getoption(setting.ini)
        if given is not None:
            value, base = given, invocation_dir
        elif setting.env in environ:
            value, base = environ[setting.env], invocation_dir
            if setting.kind == "bool":
                value = parse_bool(value, setting.env)
        else:
            value, base = config.getini(setting.ini), ini_dir
            if setting.kind == "path" and value == setting.default:
                base = config.rootpath
        if setting.kind == "path":
            value = (base / Path(os.path.expanduser(str(value)))).resolve()
        values[setting.attr] = bool(value) if setting.kind == "bool" else value
    return CirqueSettings(**values)
