"""`cirque devices validate` and `cirque devices run` as a user runs them, on a real broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_cirque.device_models.brokers import free_port

DATA = Path(__file__).parent.parent / "unit" / "data"
STOCK = ["elevator", "chiller", "truck", "thermostat", "door-lock", "light"]


def cirque(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_cirque.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_validate_passes_the_stock_models_and_the_seeds_elevator():
    result = cirque("devices", "validate", *STOCK, str(DATA / "seed_elevator" / "elevator-01.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok: model ") == len(STOCK) + 1


def test_validate_prints_every_error_of_every_file_then_fails():
    files = [DATA / "many_errors.json", DATA / "syntax_error.json", DATA / "tiny.yaml"]
    result = cirque("devices", "validate", *map(str, files))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len([line for line in lines if line.startswith(f"{files[0]}:")]) == 7
    script_lines = [line for line in lines if "syntax_error.js:" in line or "no_main.js:" in line]
    assert len(script_lines) == 2
    assert any(line.startswith(f"{files[2]}: ok") for line in lines)
    assert lines[-1] == "9 problem(s) in 3 file(s)"


def test_validate_of_a_file_that_is_not_there():
    result = cirque("devices", "validate", "no/such/model.json")
    assert result.returncode == 1
    assert "no/such/model.json: model file not found" in result.stdout


def test_run_shows_a_fleet_on_a_real_broker(mqtt_broker, telemetry):
    result = cirque(
        "devices", "run",
        "--model", "light", "--model", "door-lock",
        "--count", "3",
        "--broker", mqtt_broker.url,
        "--duration", "4",
        "--jitter", "0.5",
        "--seed", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    progress = result.stdout.splitlines()
    assert progress[0].startswith("devices online 6/6 | ")
    summary = progress[-1]
    assert summary.startswith("done: devices online 6/6 | ")
    assert "failures 0" in summary and "script errors 0" in summary
    sent = int(re.search(r"sent (\d+) delivered (\d+)", summary).group(1))
    delivered = int(re.search(r"sent (\d+) delivered (\d+)", summary).group(2))
    assert sent == delivered >= 6
    arrived = telemetry.wait_for(sent, where=lambda body: isinstance(body, dict))
    devices = {m.device_id for m in arrived}
    assert devices == {f"{model}.{i}" for model in ("light", "door-lock") for i in range(3)}
    schemas = {m.schema for m in arrived}
    assert schemas == {"light-status;v1", "door-lock-status;v1"}
    assert len(telemetry.select()) == sent  # nothing more, nothing less


@pytest.mark.parametrize("scheme", ["mqtt", "amqp"])
def test_run_against_no_broker_fails_in_one_line(scheme: str) -> None:
    """Nothing but our line on stderr: no library's log lines before it."""
    url = f"{scheme}://127.0.0.1:{free_port()}"
    result = cirque("devices", "run", "--model", "light", "--broker", url, "--duration", "1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("cirque: ") and url in line and "unreachable" in line


def test_run_with_an_unknown_model_names_the_stock_ones():
    result = cirque("devices", "run", "--model", "toaster", "--broker", "mqtt://127.0.0.1:1")
    assert result.returncode == 2
    assert "toaster: no such model file or stock model" in result.stderr
    assert "elevator" in result.stderr
