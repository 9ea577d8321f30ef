"""The plugin's settings: command line over environment over ini over default."""

from __future__ import annotations

import pytest

SHOW_SETTINGS = """
from pytest_cirque.plugin import SETTINGS_KEY

def test_show(request):
    settings = request.config.stash[SETTINGS_KEY]
    print(f"SETTINGS keep={settings.keep} rebuild={settings.rebuild_images} "
          f"log_dir={settings.log_dir}")
"""


@pytest.fixture
def show(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CIRQUE_KEEP", "CIRQUE_REBUILD_IMAGES", "CIRQUE_LOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    return pytester


def settings_line(pytester: pytest.Pytester, *args: str) -> str:
    result = pytester.runpytest("-s", *args)
    assert result.ret == 0, result.stdout.str()
    line = next(line for line in result.stdout.lines if "SETTINGS " in line)
    return line[line.index("SETTINGS ") :]


def test_defaults(show: pytest.Pytester) -> None:
    assert settings_line(show) == (
        f"SETTINGS keep=False rebuild=False log_dir={show.path / 'cirque-logs'}"
    )


def test_ini_options(show: pytest.Pytester) -> None:
    show.makeini(
        """
        [pytest]
        cirque_keep = true
        cirque_rebuild_images = yes
        cirque_log_dir = logs/here
        """
    )
    assert settings_line(show) == (
        f"SETTINGS keep=True rebuild=True log_dir={show.path / 'logs' / 'here'}"
    )


def test_environment_over_ini(show: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    show.makeini(
        """
        [pytest]
        cirque_keep = true
        cirque_log_dir = from-ini
        """
    )
    monkeypatch.setenv("CIRQUE_KEEP", "0")
    monkeypatch.setenv("CIRQUE_REBUILD_IMAGES", "on")
    monkeypatch.setenv("CIRQUE_LOG_DIR", str(show.path / "from-env"))
    assert settings_line(show) == (
        f"SETTINGS keep=False rebuild=True log_dir={show.path / 'from-env'}"
    )


def test_command_line_over_environment(
    show: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRQUE_KEEP", "no")
    monkeypatch.setenv("CIRQUE_LOG_DIR", "from-env")
    line = settings_line(
        show, "--cirque-keep", "--cirque-rebuild-images", "--cirque-log-dir", "from-cli"
    )
    assert line == f"SETTINGS keep=True rebuild=True log_dir={show.path / 'from-cli'}"


def test_a_bad_boolean_in_the_environment_is_a_one_line_usage_error(
    show: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIRQUE_KEEP", "maybe")
    result = show.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: CIRQUE_KEEP='maybe' is not a boolean: use one of 1/0, true/false, yes/no*"]
    )


def test_options_are_in_the_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*--cirque-keep*",
            "*--cirque-rebuild-images*",
            "*--cirque-log-dir=DIR*",
            "*cirque_keep (bool)*",
        ]
    )
