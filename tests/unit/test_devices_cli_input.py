"""`cirque devices` refuses what makes no sense before it connects or starts anything:
one line naming the option and what to give instead, exit code 2."""

from __future__ import annotations

import pytest

from pytest_cirque.cli import main


@pytest.mark.parametrize(
    ("option", "value"),
    [("--duration", "-5"), ("--jitter", "-3"), ("--duration", "inf"), ("--jitter", "nan")],
)
def test_negative_or_endless_seconds_are_refused(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["devices", "run", "--model", "elevator", "--broker", "mqtt://127.0.0.1:9"]
    with pytest.raises(SystemExit) as stop:
        main([*argv, f"{option}={value}"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"cirque devices run: argument {option}: {value!r} must be a finite number of "
        "seconds, 0 or more; see cirque devices run --help"
    ]
