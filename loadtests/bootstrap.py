"""Is a change in a percentile, or in an error ratio, more than noise? Pure Python, seeded.

**Percentiles: a block bootstrap.** "Could the p95 have come out this
different by chance?" is answered by resampling each run, taking the
percentile of every resample, and looking at the spread of (current −
baseline) over many pairs of resamples: the change is beyond noise when its
95% percentile interval excludes zero. What is resampled matters. Requests
sent in the same second share the machine's state (another process's burst,
a GC pause), so they are not independent draws: resampling single requests
called up to 57 % of the changes between two runs of one build
significant (``benchmarks/load_compare_noise.py``). So each run's requests
are kept per second (:mod:`loadtests.timeline`), seconds are grouped into
blocks, and a resample draws whole blocks with replacement
(:func:`block_resampled_quantiles`), keeping that dependence in the interval.

With fewer than :data:`MIN_BLOCKS` blocks (a very short run, or a results
file without per-second data) single requests are resampled, exactly and
fast: the q-percentile of a resample of n values (nearest rank r = ⌈q·n⌉) is
the r-th smallest of n draws from the empirical distribution F, i.e.
F⁻¹(U₍ᵣ₎) where U₍ᵣ₎, the r-th smallest of n uniform numbers, has the
Beta(r, n − r + 1) distribution: one ``betavariate`` draw and a bisection per
resample instead of n draws and a sort (``tests/loadtests/test_compare.py``
holds it to the naive bootstrap). No numpy or scipy: the project does not
depend on them, and this needs neither.

**Error ratios: Newcombe's hybrid score interval** for the difference of two
independent proportions (Newcombe 1998, method 10), built from the two Wilson
score intervals: well-behaved with few or no failures, where the normal
approximation is not.

What no resampling of two runs can capture: a machine that is busier during
one whole run than during the other. That is why a gate asks for a change
beyond an allowance (``p95=10%``), not merely beyond zero, and why the README
reports the false-positive rates measured on pairs of runs of one build.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

Histogram = Sequence[tuple[float, int]]  # (value, count), ascending values

DEFAULT_RESAMPLES = 4000
DEFAULT_SEED = 20261206


def total(histogram: Histogram) -> int:
    return sum(n for _, n in histogram)


def _cumulative(histogram: Histogram) -> list[int]:
    out, running = [], 0
    for _, n in histogram:
        running += n
        out.append(running)
    return out


def quantile(histogram: Histogram, q: float) -> float:
    """The nearest-rank q-quantile (the ⌈q·n⌉-th smallest value); NaN when empty."""
    cum = _cumulative(histogram)
    if not cum or cum[-1] == 0:
        return math.nan
    rank = max(1, math.ceil(q * cum[-1]))
    return histogram[bisect.bisect_left(cum, rank)][0]


def resampled_quantiles(
    histogram: Histogram, q: float, resamples: int, rng: random.Random
) -> list[float]:
    """The q-quantile of each of ``resamples`` bootstrap resamples (see the module's text)."""
    cum = _cumulative(histogram)
    n = cum[-1] if cum else 0
    if n == 0:
        return []
    rank = max(1, math.ceil(q * n))
    values = [v for v, _ in histogram]
    last = len(values) - 1
    out = []
    for _ in range(resamples):
        u = rng.betavariate(rank, n - rank + 1)
        out.append(values[min(bisect.bisect_left(cum, u * n), last)])
    return out


def naive_resampled_quantiles(
    histogram: Histogram, q: float, resamples: int, rng: random.Random
) -> list[float]:
    """The textbook bootstrap (draw n, sort, pick the rank): slow, for checking the fast one."""
    values = [v for v, _ in histogram]
    weights = [n for _, n in histogram]
    n = sum(weights)
    rank = max(1, math.ceil(q * n))
    return [sorted(rng.choices(values, weights=weights, k=n))[rank - 1] for _ in range(resamples)]


def percentile_interval(samples: Sequence[float], confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap samples."""
    ordered = sorted(samples)
    tail = (1 - confidence) / 2
    lo = ordered[max(0, math.floor(tail * len(ordered)))]
    hi = ordered[min(len(ordered) - 1, math.ceil((1 - tail) * len(ordered)) - 1)]
    return lo, hi


@dataclass(frozen=True)
class QuantileChange:
    """A percentile in both runs, and the bootstrap interval of its change."""

    q: float
    baseline: float  # ms
    current: float
    diff_low: float  # ms, interval of current − baseline
    diff_high: float
    ratio_low: float  # interval of current / baseline
    ratio_high: float

    @property
    def diff(self) -> float:
        return self.current - self.baseline

    @property
    def relative(self) -> float:
        return self.current / self.baseline - 1 if self.baseline > 0 else math.inf

    @property
    def beyond_noise(self) -> bool:
        return self.diff_low > 0 or self.diff_high < 0


# A percentile of 0 ms (Locust rounds to whole milliseconds) would make ratios infinite.
_FLOOR_MS = 0.5
# Fewer blocks than this, and the requests are resampled one by one.
MIN_BLOCKS = 5

Seconds = Sequence[tuple[int, Histogram]]  # (second since the start, that second's histogram)


def blocks_of(seconds: Seconds, block_seconds: int) -> list[list[tuple[float, int]]]:
    """Consecutive seconds merged into blocks of ``block_seconds`` (empty blocks left out)."""
    merged: dict[int, dict[float, int]] = {}
    for second, histogram in seconds:
        cell = merged.setdefault(second // max(1, block_seconds), {})
        for value, n in histogram:
            cell[value] = cell.get(value, 0) + n
    return [sorted(cell.items()) for _, cell in sorted(merged.items()) if cell]


def block_resampled_quantiles(
    blocks: Sequence[Histogram], qs: Sequence[float], resamples: int, rng: random.Random
) -> dict[float, list[float]]:
    """Each q-quantile over ``resamples`` resamples of whole blocks (with replacement)."""
    values = sorted({v for block in blocks for v, _ in block})
    index = {v: i for i, v in enumerate(values)}
    vectors = []
    for block in blocks:
        dense = [0] * len(values)
        for v, n in block:
            dense[index[v]] = n
        vectors.append(dense)
    k = len(vectors)
    out: dict[float, list[float]] = {q: [] for q in qs}
    for _ in range(resamples):
        chosen = [vectors[rng.randrange(k)] for _ in range(k)]
        cum = list(itertools.accumulate(map(sum, zip(*chosen, strict=True))))
        n = cum[-1]
        for q in qs:
            out[q].append(values[bisect.bisect_left(cum, max(1, math.ceil(q * n)))])
    return out


def _change(
    q: float,
    baseline: Histogram,
    current: Histogram,
    base: Sequence[float],
    cur: Sequence[float],
    confidence: float,
) -> QuantileChange:
    diffs = [c - b for b, c in zip(base, cur, strict=True)]
    ratios = [max(c, _FLOOR_MS) / max(b, _FLOOR_MS) for b, c in zip(base, cur, strict=True)]
    d_lo, d_hi = percentile_interval(diffs, confidence)
    r_lo, r_hi = percentile_interval(ratios, confidence)
    return QuantileChange(q, quantile(baseline, q), quantile(current, q), d_lo, d_hi, r_lo, r_hi)


def quantile_changes(
    baseline: Histogram,
    current: Histogram,
    qs: Sequence[float],
    *,
    base_seconds: Seconds = (),
    cur_seconds: Seconds = (),
    block_seconds: int = 0,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[dict[float, QuantileChange], str]:
    """Each percentile's change and interval; and which resampling gave them ("blocks of 2 s")."""
    rng = random.Random(seed)
    base_blocks = blocks_of(base_seconds, block_seconds) if block_seconds else []
    cur_blocks = blocks_of(cur_seconds, block_seconds) if block_seconds else []
    if min(len(base_blocks), len(cur_blocks)) >= MIN_BLOCKS:
        base = block_resampled_quantiles(base_blocks, qs, resamples, rng)
        cur = block_resampled_quantiles(cur_blocks, qs, resamples, rng)
        how = f"blocks of {block_seconds} s"
    else:
        base = {q: resampled_quantiles(baseline, q, resamples, rng) for q in qs}
        cur = {q: resampled_quantiles(current, q, resamples, rng) for q in qs}
        how = "single requests"
    changes = {q: _change(q, baseline, current, base[q], cur[q], confidence) for q in qs}
    return changes, how


def quantile_change(
    baseline: Histogram,
    current: Histogram,
    q: float,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> QuantileChange:
    """One percentile's change, resampling single requests (independent draws)."""
    changes, _ = quantile_changes(
        baseline, current, (q,), confidence=confidence, resamples=resamples, seed=seed
    )
    return changes[q]


def wilson(failures: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = failures / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RatioChange:
    baseline: float
    current: float
    low: float  # interval of current − baseline
    high: float

    @property
    def diff(self) -> float:
        return self.current - self.baseline

    @property
    def beyond_noise(self) -> bool:
        return self.low > 0 or self.high < 0


def error_ratio_change(
    base_failures: int, base_n: int, cur_failures: int, cur_n: int, *, confidence: float = 0.95
) -> RatioChange:
    """Newcombe's hybrid score interval for (current − baseline) error ratio."""
    p1 = base_failures / base_n if base_n else 0.0
    p2 = cur_failures / cur_n if cur_n else 0.0
    l1, u1 = wilson(base_failures, base_n, confidence)
    l2, u2 = wilson(cur_failures, cur_n, confidence)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return RatioChange(p1, p2, low, high)
