"""Telemetry templates: the seed's placeholder and quoting rule, and schema field checks."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from pytest_cirque.device_models.telemetry import (
    TelemetryProblem,
    check,
    current_time,
    placeholders,
    render,
    type_problem,
)

SEED_TEMPLATE = (
    '{"floor":${floor},"vibration":${vibration},"vibration_unit":"${vibration_unit}",'
    '"temperature":${temperature},"temperature_unit":"${temperature_unit}"}'
)


def test_the_seeds_template_renders_numbers_bare_and_strings_inside_the_templates_quotes():
    state = {
        "floor": 4,
        "vibration": 10.5,
        "vibration_unit": "mm",
        "temperature": 75.0,
        "temperature_unit": "F",
    }
    body = render(SEED_TEMPLATE, state)
    assert json.loads(body) == state
    assert placeholders(SEED_TEMPLATE) == list(state)


def test_values_are_written_so_the_message_stays_json():
    template = '{"on":${on},"note":"${note}","tags":${tags},"gone":${gone}}'
    state = {"on": False, "note": 'say "hi"\\ now', "tags": {"a": [1, 2]}, "gone": None}
    assert json.loads(render(template, state)) == state


def test_a_placeholder_with_no_state_key_names_it_and_the_keys_there_are():
    with pytest.raises(TelemetryProblem) as caught:
        render('{"h":${humidity}}', {"temperature": 1, "online": True})
    assert caught.value.field == "${humidity}"
    assert "no state key 'humidity' (state keys: online, temperature)" in str(caught.value)


def test_a_string_placeholder_left_unquoted_is_invalid_json():
    body = render('{"unit":${unit}}', {"unit": "mm"})
    with pytest.raises(TelemetryProblem, match="not JSON"):
        check({}, body)


def test_a_message_must_be_a_json_object():
    with pytest.raises(TelemetryProblem, match="must be a JSON object"):
        check({}, "[1, 2]")


def test_schema_fields_must_be_present():
    with pytest.raises(TelemetryProblem) as caught:
        check({"floor": "integer", "speed": "double"}, '{"floor": 1}')
    assert caught.value.field == "speed"
    assert "missing" in str(caught.value)


@pytest.mark.parametrize(
    ("field_type", "good", "bad"),
    [
        ("integer", 3, 3.5),
        ("integer", -7, True),
        ("double", 2.5, "2.5"),
        ("double", 2, False),
        ("boolean", True, 1),
        ("text", "mm", 5),
        ("object", {"a": 1}, "a"),
        ("object", [1], None),
        ("binary", "aGVsbG8=", "not base64!"),
        ("datetime", "2024-05-01T10:00:00+00:00", "yesterday"),
        ("datetime", "2024-05-01T10:00:00Z", 1714557600),
    ],
)
def test_field_types(field_type, good, bad):
    assert type_problem(field_type, good) is None
    problem = type_problem(field_type, bad)
    assert problem is not None and problem.startswith(f"expected {field_type}, got ")


def test_type_mismatch_in_a_rendered_message_names_the_field():
    with pytest.raises(TelemetryProblem) as caught:
        check({"floor": "integer"}, render('{"floor":"${floor}"}', {"floor": "fourth"}))
    assert caught.value.field == "floor"
    assert 'expected integer, got "fourth" (text)' in str(caught.value)


def test_current_time_has_the_seeds_format():
    text = current_time(dt.datetime(2024, 5, 1, 9, 8, 7, 123456, tzinfo=dt.timezone.utc))
    assert text == "2024-05-01T09:08:07+00:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", current_time())
