"""The device-model format: what parses, and the one-line errors of what does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_cirque.core.errors import DeviceModelError
from pytest_cirque.device_models.model import (
    load_model,
    parse_interval,
    stock_models,
    validate_model_file,
)

DATA = Path(__file__).parent / "data"
SEED_ELEVATOR = DATA / "seed_elevator" / "elevator-01.json"


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` holding ``text`` (so tests do not hard-code lines)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def only_error(path: Path) -> str:
    model, errors = validate_model_file(path)
    assert model is None
    assert len(errors) == 1, [str(e) for e in errors]
    message = str(errors[0])
    assert "\n" not in message
    return message


def test_the_seeds_elevator_parses_unchanged():
    model = load_model(SEED_ELEVATOR)
    assert model.id == "elevator-01"
    assert model.name == "Elevator"
    assert model.protocol == "AMQP"
    assert model.state_interval == 10
    assert model.initial_state["temperature_unit"] == "F"
    assert model.properties["Location"] == "Building 40"
    (message,) = model.telemetry
    assert message.interval == 10
    assert message.schema.name == "elevator-floor;v1"
    assert message.schema.fields == {"floor": "integer"}
    assert set(model.methods) == {"StopElevator", "StartElevator"}
    assert model.scripts[0].file.name == "elevator-01-state.js"


@pytest.mark.parametrize(
    "name", ["elevator", "chiller", "truck", "thermostat", "door-lock", "light"]
)
def test_every_stock_model_loads_with_a_state_script_and_methods(name):
    model = load_model(name)
    assert model.scripts, "a stock model has a state script"
    assert model.methods, "a stock model has at least one method"
    assert model.telemetry
    assert model.source == stock_models()[name]


def test_yaml_models_parse_with_unquoted_intervals_and_any_case_types():
    model = load_model(DATA / "tiny.yaml")
    assert model.id == "tiny-yaml"
    assert model.state_interval == 1
    assert model.telemetry[0].interval == 3600  # "1:00:00" is not YAML 1.1's base-60 3600 int
    assert model.telemetry[0].schema.fields == {"count": "integer"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:10", 10), ("00:01:30", 90), ("02:00:00", 7200), ("00:00:00.5", 0.5)],
)
def test_intervals(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["10s", "00:00:00", "00:61:00", "", 10, "1:2"])
def test_bad_intervals(text):
    with pytest.raises(ValueError):
        parse_interval(text)


def test_malformed_json_names_the_line_of_the_syntax_error():
    path = DATA / "malformed.json"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, 'Interval')}: malformed JSON")


def test_malformed_yaml_names_its_line():
    path = DATA / "bad.yaml"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, 'Interval')}: malformed YAML")


def test_missing_required_field_is_named():
    message = only_error(DATA / "missing_field.json")
    assert "model missing-field" in message
    assert "Name: required field 'Name' is missing" in message


def test_bad_interval_names_file_line_model_and_field():
    path = DATA / "bad_interval.json"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, '10s')}: model bad-interval: ")
    assert "Simulation.Interval" in message
    assert "hh:mm:ss" in message


def test_unknown_protocol():
    path = DATA / "unknown_protocol.json"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, 'CoAP')}:")
    assert "unknown protocol 'CoAP'; use one of AMQP, MQTT, HTTP" in message


def test_unknown_field_type():
    path = DATA / "unknown_field_type.json"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, 'Float')}:")
    assert "MessageSchema.Fields.count: unknown field type 'Float'" in message


def test_placeholder_with_no_state_key():
    path = DATA / "missing_placeholder.json"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, 'MessageTemplate')}:")
    assert "message 'count;v1'" in message
    assert "${humidity}: no state key 'humidity'" in message


def test_template_that_yields_invalid_json():
    message = only_error(DATA / "invalid_json_template.json")
    assert "message 'count;v1'" in message
    assert "not JSON" in message
    assert "pieces" in message  # shows where it broke


def test_type_mismatch_against_the_schema():
    message = only_error(DATA / "type_mismatch.json")
    assert "count: expected integer, got 1.5 (double)" in message


def test_script_file_missing():
    path = DATA / "missing_script.json"
    message = only_error(path)
    assert message.startswith(f"{path}:{line_of(path, 'no-such-script.js')}:")
    assert "script file 'no-such-script.js' not found" in message


def test_every_error_of_a_file_is_reported_in_line_order():
    path = DATA / "many_errors.json"
    model, errors = validate_model_file(path)
    assert model is None
    messages = [str(e) for e in errors]
    expected = [
        ("SchemaVersion", "2.0.0"),
        ("Protocol", "Pigeon"),
        ("Simulation.Interval", "1 minute"),
        ("Simulation.Scripts[0].Type", "python"),
        ("Simulation.Scripts[1].Params.count", "Min 10 is greater than Max 1"),
        ("Telemtry", "did you mean 'Telemetry'"),
        ("CloudToDeviceMethods.Go.Path", "missing-method.js"),
    ]
    assert len(messages) == len(expected), messages
    for message, (field, detail) in zip(messages, expected, strict=True):
        assert f": {field}: " in message and detail in message, message
    lines = [int(m.split(":")[1]) for m in messages]
    assert lines == sorted(lines)


def test_load_model_raises_the_first_error_and_counts_the_rest():
    with pytest.raises(DeviceModelError) as caught:
        load_model(DATA / "many_errors.json")
    assert "SchemaVersion" in str(caught.value)
    assert "and 6 more" in str(caught.value)


def test_unknown_model_name_lists_the_stock_models():
    with pytest.raises(DeviceModelError, match=r"no such model file or stock model.*elevator"):
        load_model("toaster")


def test_missing_model_file():
    _, errors = validate_model_file(DATA / "nowhere.json")
    assert "model file not found" in str(errors[0])


def test_internal_scripts_and_their_params_are_checked(tmp_path):
    document = json.loads((DATA / "missing_script.json").read_text())
    document["Simulation"]["Scripts"] = [
        {"Type": "internal", "Path": "Math.Random.WithinRange", "Params": {"count": {"Min": 1}}},
        {"Type": "Internal", "Path": "math.increasing", "Params": {"count": {"Min": 0, "Max": 9}}},
        {"Type": "internal", "Path": "Math.Sine", "Params": {}},
    ]
    path = tmp_path / "internal.json"
    path.write_text(json.dumps(document, indent=2))
    _, errors = validate_model_file(path)
    messages = "\n".join(str(e) for e in errors)
    assert "Scripts[0].Params.count.Max: Max must be a number" in messages
    assert "Scripts[1].Params.count.Step: Step must be a number" in messages
    assert "unknown internal script 'Math.Sine'" in messages
    assert len(errors) == 3


# --- where scripts may come from -------------------------------------------------------


def model_with_script(folder: Path, script_path: str) -> Path:
    """A minimal model in ``folder`` whose state script's Path is ``script_path``."""
    model = json.loads(SEED_ELEVATOR.read_text())
    model["Simulation"]["Scripts"] = [{"Type": "javascript", "Path": script_path}]
    model.pop("CloudToDeviceMethods", None)
    path = folder / "model.json"
    path.write_text(json.dumps(model, indent=2))
    return path


STATE_SCRIPT = 'function main(context, state, properties) { updateState({floor: 2}); }\n'


def test_scripts_are_found_beside_the_model_then_in_its_scripts_folder(tmp_path: Path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "state.js").write_text(STATE_SCRIPT)
    model = load_model(model_with_script(tmp_path, "state.js"))
    assert model.scripts[0].file == tmp_path / "scripts" / "state.js"
    (tmp_path / "state.js").write_text(STATE_SCRIPT)
    model = load_model(model_with_script(tmp_path, "state.js"))
    assert model.scripts[0].file == tmp_path / "state.js"


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_script_outside_the_model_folder_is_refused_unless_allowed(tmp_path: Path, how: str):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "secret.js"
    secret.write_text("first line of a file that is not a script\n")
    folder = tmp_path / "models"
    folder.mkdir()
    script_path = {"dotdot": "../elsewhere/secret.js", "absolute": str(secret)}.get(how, "link.js")
    if how == "symlink":
        (folder / "link.js").symlink_to(secret)
    path = model_with_script(folder, script_path)
    message = only_error(path)
    assert f"script file {script_path!r} is outside the model's folder" in message
    assert "pass --allow-outside" in message and "not a script" not in message
    model, errors = validate_model_file(path, allow_outside=True)
    assert errors == [] and model is not None
