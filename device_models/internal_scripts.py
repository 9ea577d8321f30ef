"""Internal scripts: state updates written in Python, named by a dotted Path in the model.

A model lists them beside JavaScript scripts (``{"Type": "internal", "Path":
"Math.Random.WithinRange", "Params": {"temperature": {"Min": 60, "Max": 80}}}``). Their
Params map state keys to numeric settings; each script returns the state keys it changes.
They run in Python because they are tiny and frequent: no sandbox call is worth it.

Params are read as the original service's models write them: ``Min``, ``Max`` and
``Step`` with that casing, numbers or numeric strings (``"Min": "1"``), beside keys the
scripts do not use (``"Unit": "C"``). ``normalize_params`` turns the strings into numbers
once, when the model is loaded, so a tick does no parsing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

#: Params each internal script needs for every state key it drives.
REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {
    "math.random.withinrange": ("Min", "Max"),
    "math.increasing": ("Min", "Max", "Step"),
    "math.decreasing": ("Min", "Max", "Step"),
}

InternalScript = Callable[
    [Mapping[str, Any], Mapping[str, Mapping[str, float]], random.Random], dict
]


def within_range(state: Mapping[str, Any], params: Mapping, rng: random.Random) -> dict:
    """Each key takes a uniformly random value between its Min and Max."""
    return {key: rng.uniform(p["Min"], p["Max"]) for key, p in params.items()}


def increasing(state: Mapping[str, Any], params: Mapping, rng: random.Random) -> dict:
    """Each key grows by Step; past Max it wraps around to Min."""
    updates = {}
    for key, p in params.items():
        value = _start_value(state, key, p, p["Min"]) + p["Step"]
        updates[key] = p["Min"] if value > p["Max"] else value
    return updates


def decreasing(state: Mapping[str, Any], params: Mapping, rng: random.Random) -> dict:
    """Each key shrinks by Step; below Min it wraps around to Max."""
    updates = {}
    for key, p in params.items():
        value = _start_value(state, key, p, p["Max"]) - p["Step"]
        updates[key] = p["Max"] if value < p["Min"] else value
    return updates


def _start_value(state: Mapping[str, Any], key: str, p: Mapping, default: float) -> float:
    """The key's current numeric value, or ``default`` when it is absent or not a number."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return value


#: Lower-cased Path -> implementation (paths are matched case-insensitively).
INTERNAL_SCRIPTS: dict[str, InternalScript] = {
    "math.random.withinrange": within_range,
    "math.increasing": increasing,
    "math.decreasing": decreasing,
}


def as_number(value: Any) -> int | float | None:
    """A Params value as a number: numbers as they are, numeric strings ("12", "-0.5")
    parsed (the original service's models write both), anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def normalize_params(path: str, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Checked Params with every required setting as a number; other keys kept as written."""
    required = REQUIRED_PARAMS[path.lower()]
    return {
        key: {**p, **{name: as_number(p[name]) for name in required}} for key, p in params.items()
    }


def check_params(path: str, params: Any) -> list[tuple[tuple, str]]:
    """Problems with an internal script's Params, as (sub-path, message) pairs; empty if fine."""
    required = REQUIRED_PARAMS[path.lower()]
    if not isinstance(params, Mapping) or not params:
        return [((), f"{path} needs Params mapping state keys to {{{', '.join(required)}}}")]
    problems: list[tuple[tuple, str]] = []
    for key, p in params.items():
        if not isinstance(p, Mapping):
            problems.append(((key,), f"must be an object with {', '.join(required)}"))
            continue
        numbers = {}
        for name in required:
            value = as_number(p.get(name))
            if value is None:
                problems.append(((key, name), _not_a_number(name, p)))
            numbers[name] = value
        min_value, max_value = numbers["Min"], numbers["Max"]
        if min_value is not None and max_value is not None and min_value > max_value:
            problems.append(((key,), f"Min {min_value} is greater than Max {max_value}"))
        step = numbers.get("Step")
        if step is not None and step <= 0:
            problems.append(((key, "Step"), f"Step must be positive (got {step})"))
    return problems


def _not_a_number(name: str, p: Mapping) -> str:
    """Why a required setting is unusable, pointing at a mis-cased key if there is one."""
    value = p.get(name)
    problem = f"{name} must be a number or a numeric string (got {value!r})"
    miscased = [k for k in p if isinstance(k, str) and k != name and k.lower() == name.lower()]
    if miscased:
        problem += f"; names are case-sensitive: write {name!r}, not {miscased[0]!r}"
    return problem
