"""Internal scripts: state updates written in Python, named by a dotted Path in the model.

A model lists them beside JavaScript scripts (``{"Type": "internal", "Path":
"Math.Random.WithinRange", "Params": {"temperature": {"Min": 60, "Max": 80}}}``). Their
Params map state keys to numeric settings; each script returns the state keys it changes.
They run in Python because they are tiny and frequent: no sandbox call is worth it.
"""

from __future__ import annotations

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
        for name in required:
            value = p.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(((key, name), f"{name} must be a number (got {value!r})"))
        min_value, max_value = p.get("Min"), p.get("Max")
        if (
            isinstance(min_value, int | float)
            and isinstance(max_value, int | float)
            and min_value > max_value
        ):
            problems.append(((key,), f"Min {min_value} is greater than Max {max_value}"))
        step = p.get("Step")
        if "Step" in required and isinstance(step, int | float) and step <= 0:
            problems.append(((key, "Step"), f"Step must be positive (got {step})"))
    return problems
