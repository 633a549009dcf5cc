"""Chaos Toolkit tolerances, judged with an explanation of how far off a value is.

The same rules as chaostoolkit-lib's ``within_tolerance`` (a bool, number or
string must equal the value; a two-number list is an inclusive range, another
list a set of allowed values; ``{type: range, range: [lo, hi], target: key}``,
``{type: regex, pattern, target}``, ``{type: jsonpath, path, expect}`` for
simple ``$.a.b`` paths, ``{type: probe, provider: ...}``), plus the reason
when the value is outside: "p99_ms=1832.0 is above 300 by 1532.0".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from numbers import Number
from typing import Any

ProbeRunner = Callable[[dict[str, Any], Any], Any]


class InvalidTolerance(ValueError):
    pass


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _range(value: Any, low: Any, high: Any, label: str) -> tuple[bool, str]:
    number = _number(value)
    if number is None:
        return False, f"{label}={_short(value)} is not a number (expected [{low}, {high}])"
    lo, hi = Decimal(str(low)), Decimal(str(high))
    if number < lo:
        return False, f"{label}={number} is below {lo} by {lo - number}"
    if number > hi:
        return False, f"{label}={number} is above {hi} by {number - hi}"
    return True, f"{label}={number} within [{lo}, {hi}]"


def _jsonpath(value: Any, path: str) -> list[Any]:
    """``$.a.b`` and ``$.a[0]`` only: enough for the experiments, no dependency."""
    if not path.startswith("$"):
        raise InvalidTolerance(f"jsonpath must start with $: {path!r}")
    current = [value]
    for part in re.findall(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]", path[1:]):
        key, index = part
        nxt = []
        for item in current:
            if key and isinstance(item, dict) and key in item:
                nxt.append(item[key])
            elif index and isinstance(item, list) and int(index) < len(item):
                nxt.append(item[int(index)])
        current = nxt
    return current


def check(tolerance: Any, value: Any, run_probe: ProbeRunner | None = None) -> tuple[bool, str]:
    """(met, explanation)."""
    if isinstance(tolerance, bool):
        return value == tolerance, f"value={_short(value)}, expected {tolerance}"
    if isinstance(tolerance, Number):
        got = value.get("status") if isinstance(value, dict) and "status" in value else value
        number, wanted = _number(got), Decimal(str(tolerance))
        if number is None:
            return False, f"value={_short(got)}, expected {tolerance}"
        if number == wanted:
            return True, f"value={number}, expected {wanted}"
        direction = "above" if number > wanted else "below"
        return False, f"value={number} is {direction} {wanted} by {abs(number - wanted)}"
    if isinstance(tolerance, str):
        return value == tolerance, f"value={_short(value)}, expected {tolerance!r}"
    if isinstance(tolerance, list):
        got = value.get("status") if isinstance(value, dict) and "status" in value else value
        if len(tolerance) == 2 and all(isinstance(t, Number) for t in tolerance):
            return _range(got, tolerance[0], tolerance[1], "value")
        return got in tolerance, f"value={_short(got)}, expected one of {tolerance}"
    if not isinstance(tolerance, dict):
        raise InvalidTolerance(f"unsupported tolerance {tolerance!r}")
    kind = tolerance.get("type")
    target = tolerance.get("target")
    label = target or "value"
    if target:
        if not isinstance(value, dict) or target not in value:
            return False, f"the probe returned no {target!r}: {_short(value)}"
        value = value[target]
    if kind == "range":
        low, high = tolerance["range"]
        return _range(value, low, high, label)
    if kind == "regex":
        met = re.search(tolerance["pattern"], str(value)) is not None
        verb = "matches" if met else "does not match"
        return met, f"{label}={_short(value)} {verb} /{tolerance['pattern']}/"
    if kind == "jsonpath":
        found = _jsonpath(value, tolerance["path"])
        if "expect" in tolerance:
            expect = tolerance["expect"]
            expected = expect if isinstance(expect, list) else [expect]
            return found == expected, f"{tolerance['path']}={_short(found)}, expected {expected}"
        if "count" in tolerance:
            return len(found) == tolerance["count"], f"{tolerance['path']} matched {len(found)}"
        return bool(found), f"{tolerance['path']} matched {len(found)}"
    if kind == "probe":
        if run_probe is None:
            raise InvalidTolerance("a probe tolerance needs a runner")
        result = run_probe(tolerance, value)
        return bool(result), f"tolerance probe {tolerance.get('name', '?')} said {result!r}"
    raise InvalidTolerance(f"unsupported tolerance type {kind!r}")


def validate(tolerance: Any) -> list[str]:
    """Problems with a tolerance, as chaostoolkit-lib would see them."""
    if isinstance(tolerance, bool | int | float | str | list):
        return []
    if not isinstance(tolerance, dict):
        return [f"tolerance {tolerance!r} must be a bool, number, string, list or mapping"]
    kind = tolerance.get("type")
    if kind == "range":
        r = tolerance.get("range")
        if not (isinstance(r, list) and len(r) == 2 and all(isinstance(x, Number) for x in r)):
            return [f"range tolerance needs range: [low, high], got {r!r}"]
        return []
    if kind == "regex":
        try:
            re.compile(tolerance["pattern"])
        except (KeyError, re.error) as exc:
            return [f"regex tolerance: {exc}"]
        return []
    if kind == "jsonpath":
        return [] if str(tolerance.get("path", "")).startswith("$") else ["jsonpath needs a path"]
    if kind == "probe":
        return [] if "provider" in tolerance else ["probe tolerance needs a provider"]
    return [f"unsupported tolerance type {kind!r}"]
