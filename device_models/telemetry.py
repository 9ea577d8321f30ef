"""Telemetry messages: fill a MessageTemplate from a device's state and check it.

The template is the seed's: ``${name}`` placeholders are replaced by state values, and the
template's author quotes strings (``"\\"unit\\":\\"${unit}\\""``) while numbers stay bare.
Values are written so that the result stays JSON: numbers as JSON numbers, booleans as
``true``/``false``, objects and arrays as JSON, and strings with their quotes and
backslashes escaped (the template supplies the surrounding quotes). The rendered message
must be valid JSON, and each field of its MessageSchema must be present with its type.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pytest_cirque.core.errors import TelemetryProblem

#: The schema field types of the seed, lower-cased (the seed's stock files mix cases).
FIELD_TYPES = ("object", "binary", "text", "boolean", "integer", "double", "datetime")
#: The same, spelled as the seed's document spells them (for messages).
FIELD_TYPE_NAMES = ("Object", "Binary", "Text", "Boolean", "Integer", "Double", "DateTime")

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def placeholders(template: str) -> list[str]:
    """The state keys a template refers to, in order of appearance."""
    return PLACEHOLDER.findall(template)


def render(template: str, state: Mapping[str, Any]) -> str:
    """The template with every ``${name}`` replaced by the state's value for ``name``."""
    literals, names = _split(template)
    parts = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        if name not in state:
            known = ", ".join(sorted(state)) or "none"
            raise TelemetryProblem(
                f"${{{name}}}",
                f"no state key {name!r} (state keys: {known}); add it to InitialState "
                "or set it with updateState",
            )
        parts.append(_as_text(state[name]))
        parts.append(literal)
    return "".join(parts)


@functools.lru_cache(maxsize=1024)
def _split(template: str) -> tuple[list[str], list[str]]:
    """A template's literal text around its placeholders, and the placeholders' names."""
    pieces = PLACEHOLDER.split(template)
    return pieces[0::2], pieces[1::2]


def _as_text(value: Any) -> str:
    kind = type(value)
    if kind is float:  # the common case first: a sensor reading
        return repr(value) if math.isfinite(value) else "null"
    if kind is int:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if value is None or isinstance(value, bool | dict | list):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return str(value)


def check(fields: Mapping[str, str], body: str) -> dict[str, Any]:
    """Parse ``body`` as JSON and check each schema field's presence and type; return it."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        excerpt = body[max(0, exc.pos - 20) : exc.pos + 20]
        raise TelemetryProblem(
            "",
            f"rendered message is not JSON ({exc.msg} at column {exc.colno} near {excerpt!r}); "
            "quote string placeholders in the template, leave numbers bare",
        ) from None
    if not isinstance(message, dict):
        raise TelemetryProblem("", "rendered message must be a JSON object")
    for name, field_type in fields.items():
        if name not in message:
            raise TelemetryProblem(
                name, f"schema field {name!r} is missing from the rendered message"
            )
        value = message[name]
        field_type = field_type.lower()
        if type(value) in _PARSED_TYPES_OK.get(field_type, ()):
            continue  # json.loads gives exact types: no further test needed
        problem = type_problem(field_type, value)
        if problem:
            raise TelemetryProblem(name, problem)
    return message


#: The types json.loads returns that need no further test for a schema field type
#: (every message is checked, so this shortcut is taken millions of times).
_PARSED_TYPES_OK: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "double": (float, int),
    "boolean": (bool,),
    "text": (str,),
    "object": (dict, list),
}


def type_problem(field_type: str, value: Any) -> str | None:
    """Why ``value`` is not of the schema ``field_type``, or None when it is."""
    ok: bool
    if field_type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif field_type == "double":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif field_type == "boolean":
        ok = isinstance(value, bool)
    elif field_type == "text":
        ok = isinstance(value, str)
    elif field_type == "object":
        ok = isinstance(value, dict | list)
    elif field_type == "binary":
        ok = isinstance(value, str) and _is_base64(value)
    elif field_type == "datetime":
        ok = isinstance(value, str) and _is_datetime(value)
    else:
        return f"unknown field type {field_type!r}; use one of {', '.join(FIELD_TYPE_NAMES)}"
    if ok:
        return None
    return f"expected {field_type}, got {json.dumps(value)} ({_json_type(value)})"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    return "object"


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def current_time(now: dt.datetime | None = None) -> str:
    """A time in the seed's context format yyyy-MM-dd'T'HH:mm:sszzz (zzz like +00:00)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.isoformat(timespec="seconds")
