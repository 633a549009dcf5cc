"""The hand-written rules, time-compressed like the SLO rules, for live tests and chaos.

Every ``for:`` duration and every range selector (``[5m]``, ``[10m:30s]``) is
multiplied by the profile's scale, so an alert that would wait "2 minutes"
in production waits 2 seconds under the compressed profile. Range windows
keep a floor of five scrape intervals (rate() needs two samples, and scrapes
come late), ``for:`` keeps a floor of one evaluation. Generated, never
hand-edited: ``python -m alerts`` writes them next to the compressed SLO rules.

The range-selector rewrite is textual: a string literal that looks like
``[5m]`` would be rewritten too. The rules have none; keep it that way.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import yaml

from alerts.slo import Profile, promql_duration

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800, "y": 31_536_000}
_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[((?:\d+(?:ms|[smhdwy]))+)(:[^\]]*)?\]")

# With the 1 s scrape interval of the live tests.
MIN_RANGE = timedelta(seconds=5)
MIN_FOR = timedelta(seconds=1)


def parse_duration(text: str) -> timedelta:
    """A PromQL duration such as ``1h30m`` or ``500ms``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a PromQL duration: {text!r}")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in parts))


def _scaled(duration: timedelta, profile: Profile, floor: timedelta) -> str:
    # Whole seconds: Prometheus accepts ms, but whole seconds read better and
    # nothing here needs sub-second windows.
    seconds = max(round((duration * profile.scale).total_seconds()), floor.total_seconds())
    return promql_duration(timedelta(seconds=seconds))


def compress_expr(expr: str, profile: Profile) -> str:
    def one(match: re.Match[str]) -> str:
        window = _scaled(parse_duration(match.group(1)), profile, MIN_RANGE)
        step = match.group(2) or ""
        if step not in ("", ":"):
            step = ":" + _scaled(parse_duration(step[1:]), profile, timedelta(seconds=1))
        return f"[{window}{step}]"

    return _RANGE.sub(one, expr)


def compress_rules(document: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """A copy of a rules document with every window and ``for:`` scaled."""
    groups = []
    for group in document["groups"]:
        rules = []
        for rule in group["rules"]:
            rule = dict(rule)
            rule["expr"] = compress_expr(rule["expr"], profile)
            if "for" in rule:
                rule["for"] = _scaled(parse_duration(rule["for"]), profile, MIN_FOR)
            rules.append(rule)
        new_group = {**group, "rules": rules}
        new_group["interval"] = promql_duration(profile.evaluation_interval)
        groups.append(new_group)
    return {"groups": groups}


def compressed_text(source: str, profile: Profile) -> dict[str, Any]:
    return compress_rules(yaml.safe_load(source), profile)
