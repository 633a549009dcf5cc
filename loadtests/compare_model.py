"""What `redline load compare` computes: per endpoint, each change, its interval, the verdict.

The comparison as data (:class:`Comparison`), the allowances of
``--max-regression`` (:class:`Allowance`) and the rule that an endpoint
regressed only when the whole interval of its change lies beyond one. No
printing here: :mod:`loadtests.compare_report` and :mod:`loadtests.compare_html`
render it, :mod:`loadtests.compare` is the command.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from loadtests import bootstrap
from loadtests.bootstrap import QuantileChange, RatioChange
from loadtests.results import Endpoint, Results

QUANTILES = (0.5, 0.95, 0.99)
MIN_REQUESTS = 30
DEFAULT_ALLOWANCE = "p95=10%"
TRACES_LISTED = 5
_SPEC = re.compile(r"^\s*(p\d{1,2}(?:\.\d+)?|errors)\s*=\s*(.+?)\s*$")
_AMOUNT = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*(%|ms|s)?$")


class CompareError(ValueError):
    """Arguments or files that cannot be compared; one line for the user."""


@dataclass(frozen=True)
class Allowance:
    """One ``--max-regression`` item: how much worse an endpoint may get."""

    text: str
    q: float | None  # None: the error ratio
    relative: float | None = None  # 0.10: 10% slower
    absolute_ms: float | None = None
    points: float | None = None  # error ratio, 0.01: one percentage point

    def broken_by(self, change: QuantileChange | RatioChange) -> bool:
        """Whether the whole interval of the change lies beyond the allowance (both parts of it)."""
        if isinstance(change, RatioChange):
            return self.points is not None and change.low > self.points
        if self.relative is None and self.absolute_ms is None:
            return False
        relative = self.relative is None or change.ratio_low > 1 + self.relative
        absolute = self.absolute_ms is None or change.diff_low > self.absolute_ms
        return relative and absolute


def parse_allowance(spec: str) -> Allowance:
    """``pNN=X%``, ``pNN=Xms``, ``pNN=X%+Yms`` (beyond both), ``errors=X%``."""
    usage = f"--max-regression {spec!r}: expected e.g. p95=10%, p99=50ms, p95=10%+20ms, errors=1%"
    m = _SPEC.match(spec)
    if m is None:
        raise CompareError(usage)
    what, parts = m[1], [p.strip() for p in m[2].lstrip("+").split("+")]
    amounts = [_AMOUNT.match(p) for p in parts]
    units = [a[2] if a else "?" for a in amounts]
    if not amounts or None in amounts or len(set(units)) != len(units) or None in units:
        raise CompareError(usage)
    values = {unit: float(a[1]) for a, unit in zip(amounts, units, strict=True) if a}
    if what == "errors":
        if set(values) != {"%"}:
            raise CompareError(f"--max-regression {spec!r}: errors take percentage points, e.g. 1%")
        return Allowance(spec.strip(), None, points=values["%"] / 100)
    q = float(what[1:]) / 100
    if not 0 < q < 1:
        raise CompareError(f"--max-regression {spec!r}: a percentile between p1 and p99.9")
    if "ms" in values and "s" in values:
        raise CompareError(usage)
    absolute = values["ms"] if "ms" in values else values["s"] * 1000 if "s" in values else None
    relative = values["%"] / 100 if "%" in values else None
    return Allowance(spec.strip(), q, relative=relative, absolute_ms=absolute)


@dataclass
class EndpointComparison:
    key: str
    baseline: Endpoint | None
    current: Endpoint | None
    base_rate: float
    cur_rate: float
    errors: RatioChange | None = None
    quantiles: dict[float, QuantileChange] = field(default_factory=dict)
    judged: bool = False  # enough requests on both sides
    regressions: list[str] = field(default_factory=list)
    server_base: dict[str, float] | None = None
    server_cur: dict[str, float] | None = None


@dataclass
class Comparison:
    baseline: Results
    current: Results
    endpoints: list[EndpointComparison]
    allowances: list[Allowance]
    confidence: float
    resamples: int
    seed: int
    resampling: str = "single requests"
    min_requests: int = MIN_REQUESTS
    traces: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    exemplars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def regressed(self) -> list[EndpointComparison]:
        return [e for e in self.endpoints if e.regressions]


def _quantiles(allowances: Sequence[Allowance]) -> tuple[float, ...]:
    extra = {a.q for a in allowances if a.q is not None}
    return tuple(sorted(set(QUANTILES) | extra))


def auto_block_seconds(baseline: Results, current: Results) -> int:
    """1 s, or longer so that the shorter run has at most 40 blocks."""
    return max(1, math.ceil(min(baseline.seconds, current.seconds) / 40))


def compare(
    baseline: Results,
    current: Results,
    allowances: Sequence[Allowance] = (),
    *,
    block_seconds: int | None = None,
    confidence: float = 0.95,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
    min_requests: int = MIN_REQUESTS,
    server_base: dict[str, Any] | None = None,
    server_cur: dict[str, Any] | None = None,
) -> Comparison:
    keys = sorted(set(baseline.endpoints) | set(current.endpoints), key=_order)
    if block_seconds is None:
        block_seconds = auto_block_seconds(baseline, current)
    how = set()
    out = []
    for key in keys:
        b, c = baseline.endpoints.get(key), current.endpoints.get(key)
        e = EndpointComparison(
            key, b, c,
            b.requests / baseline.seconds if b else 0.0,
            c.requests / current.seconds if c else 0.0,
        )  # fmt: skip
        e.server_base = (server_base or {}).get("endpoints", {}).get(key)
        e.server_cur = (server_cur or {}).get("endpoints", {}).get(key)
        if b is not None and c is not None:
            e.errors = bootstrap.error_ratio_change(
                b.failures, b.requests, c.failures, c.requests, confidence=confidence
            )
            e.quantiles, resampled = bootstrap.quantile_changes(
                b.histogram, c.histogram, _quantiles(allowances),
                base_seconds=b.seconds, cur_seconds=c.seconds, block_seconds=block_seconds,
                confidence=confidence, resamples=resamples, seed=seed,
            )  # fmt: skip
            how.add(resampled)
            e.judged = min(b.requests, c.requests) >= min_requests
            if e.judged:
                e.regressions = _regressions(e, allowances, confidence)
        out.append(e)
    resampling = " or ".join(sorted(how)) or "single requests"
    return Comparison(
        baseline, current, out, list(allowances), confidence, resamples, seed, resampling,
        min_requests,
    )  # fmt: skip


def _order(key: str) -> tuple[str, str]:
    method, _, name = key.partition(" ")
    return name, method


def fmt_pct(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x * 100:+.0f}%"


def fmt_ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}".rstrip("0").rstrip(".")


def _regressions(
    e: EndpointComparison, allowances: Sequence[Allowance], confidence: float
) -> list[str]:
    reasons = []
    level = f"{confidence:.0%} CI"
    for a in allowances:
        if a.q is None:
            if e.errors is not None and a.broken_by(e.errors):
                err = e.errors
                reasons.append(
                    f"error ratio {err.baseline:.2%} → {err.current:.2%} "
                    f"({(err.diff) * 100:+.2f} pt, {level} {err.low * 100:+.2f} … "
                    f"{err.high * 100:+.2f} pt) beyond +{(a.points or 0) * 100:g} pt"
                )
            continue
        ch = e.quantiles[a.q]
        if a.broken_by(ch):
            p = f"p{a.q * 100:g}"
            intervals, allowed = [], []
            if a.relative is not None:
                intervals.append(f"{fmt_pct(ch.ratio_low - 1)} … {fmt_pct(ch.ratio_high - 1)}")
                allowed.append(f"+{a.relative * 100:g}%")
            if a.absolute_ms is not None:
                intervals.append(f"{ch.diff_low:+.0f} … {ch.diff_high:+.0f} ms")
                allowed.append(f"+{a.absolute_ms:g} ms")
            interval, allowed_text = ", ".join(intervals), " and ".join(allowed)
            reasons.append(
                f"{p} {fmt_ms(ch.baseline)} ms → {fmt_ms(ch.current)} ms ({fmt_pct(ch.relative)}, "
                f"{level} {interval}) beyond {allowed_text}"
            )
    return reasons
