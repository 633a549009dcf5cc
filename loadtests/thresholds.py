"""Pass/fail criteria for unattended runs: an error-ratio ceiling and latency ceilings.

Given on the command line::

    --max-error-ratio 0.01            (or 1%)
    --max-p95 "/api/v1/products=200ms,POST /api/v1/orders=1s"
    --max-p99 "Aggregated=2s"

or in a TOML file (``--thresholds loadtests/thresholds.toml``)::

    max_error_ratio = 0.01
    [p95]
    "/api/v1/products" = "200ms"
    "POST /api/v1/orders" = "1s"

A name is a request name as Locust reports it (the route template), optionally
prefixed by its method; without one it applies to every method. ``Aggregated``
is the whole run. A name no request carried is itself a breach, so a typo
cannot pass silently. Percentiles are Locust's (rounded to two significant
digits above 100 ms).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

AGGREGATED = "Aggregated"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?\s*$")
_UNIT_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, None: 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE_KEY = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


class ThresholdError(ValueError):
    """A threshold that cannot be understood; the message says which and why."""


@dataclass(frozen=True)
class LatencyLimit:
    percentile: float  # 0.95
    name: str
    method: str | None
    max_ms: float

    @property
    def label(self) -> str:
        p = f"p{self.percentile * 100:g}"
        return f"{p} of {self.method + ' ' if self.method else ''}{self.name}"


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float | None = None
    latency: tuple[LatencyLimit, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.max_error_ratio is not None or bool(self.latency)

    def __len__(self) -> int:
        return (self.max_error_ratio is not None) + len(self.latency)


class StatsEntry(Protocol):
    """What evaluation needs of ``locust.stats.StatsEntry``."""

    name: str
    method: str
    num_requests: int
    num_failures: int

    def get_response_time_percentile(self, percent: float) -> float: ...


def parse_duration_ms(text: str) -> float:
    m = _DURATION.match(text)
    if m is None:
        raise ThresholdError(f"not a duration: {text!r} (use e.g. 250ms, 1.5s)")
    return float(m[1]) * _UNIT_MS[m[2]]


def parse_ratio(text: str | float) -> float:
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = text.strip()
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise ThresholdError(f"not a ratio: {text!r} (use e.g. 0.01 or 1%)") from None
    if not 0 <= value <= 1:
        raise ThresholdError(f"an error ratio is between 0 and 1, got {text!r}")
    return value


def _split_name(key: str) -> tuple[str | None, str]:
    method, _, rest = key.strip().partition(" ")
    if method.upper() in METHODS and rest.strip():
        return method.upper(), rest.strip()
    return None, key.strip()


def latency_limit(percentile: float, spec: str) -> LatencyLimit:
    """``"[METHOD ]name=duration"``."""
    name, sep, duration = spec.rpartition("=")
    if not sep or not name.strip():
        raise ThresholdError(f"expected NAME=DURATION, e.g. /api/v1/products=200ms; got {spec!r}")
    method, name = _split_name(name)
    return LatencyLimit(percentile, name, method, parse_duration_ms(duration))


def parse_latency_option(
    percentile: float, values: Iterable[str] | str | None
) -> list[LatencyLimit]:
    """A ``--max-pNN`` option: repeated and/or comma-separated ``name=duration`` pairs."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [
        latency_limit(percentile, part)
        for value in values
        for part in value.split(",")
        if part.strip()
    ]


def load_file(path: Path) -> Thresholds:
    try:
        doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ThresholdError(f"{path}: {exc}") from exc
    ratio = doc.pop("max_error_ratio", None)
    limits: list[LatencyLimit] = []
    for key, table in doc.items():
        m = _PERCENTILE_KEY.match(key)
        if m is None or not isinstance(table, dict):
            raise ThresholdError(f"{path}: unknown key {key!r}; expected max_error_ratio or [pNN]")
        for name, duration in table.items():
            method, bare = _split_name(name)
            limits.append(
                LatencyLimit(float(m[1]) / 100, bare, method, parse_duration_ms(duration))
            )
    return Thresholds(None if ratio is None else parse_ratio(ratio), tuple(limits))


def from_options(
    *,
    max_error_ratio: str | float | None = None,
    max_p95: Iterable[str] | str | None = None,
    max_p99: Iterable[str] | str | None = None,
    file: str | Path | None = None,
) -> Thresholds:
    """The options combined; the command line's error ratio wins over the file's."""
    base = load_file(Path(file)) if file else Thresholds()
    ratio = parse_ratio(max_error_ratio) if max_error_ratio not in (None, "") else None
    return Thresholds(
        ratio if ratio is not None else base.max_error_ratio,
        (
            *base.latency,
            *parse_latency_option(0.95, max_p95),
            *parse_latency_option(0.99, max_p99),
        ),
    )


def _ms(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def evaluate(thresholds: Thresholds, entries: Sequence[StatsEntry], total: StatsEntry) -> list[str]:
    """Every broken threshold, as short phrases; empty when the run passes."""
    if not thresholds:
        return []
    if total.num_requests == 0:
        return ["no requests were made"]
    broken: list[str] = []
    if thresholds.max_error_ratio is not None:
        ratio = total.num_failures / total.num_requests
        if ratio > thresholds.max_error_ratio:
            broken.append(
                f"error ratio {ratio:.2%} > {thresholds.max_error_ratio:.2%} "
                f"({total.num_failures} of {total.num_requests})"
            )
    for limit in thresholds.latency:
        if limit.name == AGGREGATED and limit.method is None:
            matching: Sequence[StatsEntry] = [total]
        else:
            matching = [
                e
                for e in entries
                if e.name == limit.name and limit.method in (None, e.method) and e.num_requests
            ]
        if not matching:
            broken.append(f"{limit.label}: no such requests")
        for entry in matching:
            value = entry.get_response_time_percentile(limit.percentile)
            if value > limit.max_ms:
                where = (
                    limit.label
                    if limit.method or entry is total
                    else f"p{limit.percentile * 100:g} of {entry.method} {entry.name}"
                )
                broken.append(f"{where} {_ms(value)} > {_ms(limit.max_ms)}")
    return broken


def verdict(broken: Sequence[str], checked: int) -> str:
    """The one line an unattended run ends with."""
    if broken:
        return "redline: FAILED thresholds: " + "; ".join(broken)
    return f"redline: passed {checked} threshold(s)"
