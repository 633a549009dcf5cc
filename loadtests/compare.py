"""Compare two runs: per endpoint, what changed, whether beyond noise, which traces show it.

    redline load compare BASELINE_RUN CURRENT_RUN [--max-regression p95=10%] [--html FILE]

A run is a run folder of ``redline load`` (or its ``results.json``; a baseline
kept in the repository is such a folder, see loadtests/README.md). Per
endpoint (method and route template): request rate, error ratio, p50/p95/p99
of the client-side response times, each change with its interval
(:mod:`loadtests.bootstrap`) and a mark when the interval excludes no change;
the gateway's own numbers over each run's window beside them when the runs
recorded them (``server.json``, :mod:`loadtests.server`).

``--max-regression`` makes it a gate: ``p95=10%`` fails an endpoint whose p95
is slower by more than 10% *with the whole interval* above that (so noise
cannot fail it), ``p99=50ms`` the same in milliseconds, ``p95=10%+20ms``
beyond both (a fast endpoint's few milliseconds are no regression),
``errors=1%`` an error ratio higher by more than one point. Exit code 1 with one line per regressed
endpoint, each followed by the current run's slowest and failed requests of
that endpoint (trace ids, Jaeger links with ``--jaeger-url``) and the
gateway's exemplars over the run's window.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from loadtests import bootstrap, results, server
from loadtests.bootstrap import QuantileChange, RatioChange
from loadtests.results import Endpoint, Results, ResultsError

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


def _pct(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x * 100:+.0f}%"


def _ms(x: float) -> str:
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
                intervals.append(f"{_pct(ch.ratio_low - 1)} … {_pct(ch.ratio_high - 1)}")
                allowed.append(f"+{a.relative * 100:g}%")
            if a.absolute_ms is not None:
                intervals.append(f"{ch.diff_low:+.0f} … {ch.diff_high:+.0f} ms")
                allowed.append(f"+{a.absolute_ms:g} ms")
            interval, allowed_text = ", ".join(intervals), " and ".join(allowed)
            reasons.append(
                f"{p} {_ms(ch.baseline)} ms → {_ms(ch.current)} ms ({_pct(ch.relative)}, "
                f"{level} {interval}) beyond {allowed_text}"
            )
    return reasons


# -- traces behind a regression ----------------------------------------------------------


def _trace_rows(run: Path) -> list[dict[str, Any]]:
    folder = run if run.is_dir() else run.parent
    try:
        doc = json.loads((folder / "traces.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    by_endpoint = [row for rows in doc.get("slowest_by_endpoint", {}).values() for row in rows]
    return [*doc.get("slowest", []), *by_endpoint, *doc.get("failures", [])]


def attach_traces(
    comparison: Comparison, current_run: Path, server_cur: dict[str, Any] | None
) -> None:
    """The current run's slowest and failed requests, and exemplars, of each regressed endpoint."""
    rows = _trace_rows(current_run)
    for e in comparison.regressed:
        mine = list(
            {
                r["trace_id"]: r for r in rows if f"{r.get('method')} {r.get('name')}" == e.key
            }.values()
        )  # a failure can also be among the slowest: once
        slow = sorted((r for r in mine if "error" not in r), key=lambda r: -r["duration_ms"])
        failed = [r for r in mine if "error" in r]
        listed = [*slow[:TRACES_LISTED], *failed[:TRACES_LISTED]]
        comparison.traces[e.key] = listed
        seen = {r["trace_id"] for r in listed}
        exemplars = (server_cur or {}).get("exemplars", {}).get(e.key, [])
        unseen = [x for x in exemplars if x["trace_id"] not in seen]
        comparison.exemplars[e.key] = unseen[:TRACES_LISTED]


def check_in_jaeger(comparison: Comparison, jaeger_url: str) -> str | None:
    """Mark each listed trace ``in_jaeger`` (tail sampling may have dropped it); or why not."""
    from redline.console._sources import Jaeger, SourceError

    jaeger = Jaeger(jaeger_url.rstrip("/"), timeout=3.0)
    try:
        for rows in (*comparison.traces.values(), *comparison.exemplars.values()):
            for row in rows:
                row["in_jaeger"] = jaeger.trace(row["trace_id"]) is not None
    except SourceError as exc:
        return str(exc)
    finally:
        jaeger.close()
    return None


def _trace_link(trace_id: str, jaeger_url: str) -> str:
    if jaeger_url:
        return f"{jaeger_url.rstrip('/')}/trace/{trace_id}"
    return f"redline trace {trace_id}"


# -- text ----------------------------------------------------------------------------------


def _describe(r: Results) -> str:
    shape = r.meta.get("shape", "?")
    if r.model == "open" and isinstance(r.meta.get("open_model"), dict):
        om = r.meta["open_model"]
        shape = f"open model {om.get('rate', '?')}/s {om.get('process', '')}"
    where = r.source.parent if r.source.name == results.FILE_NAME else r.source
    return f"{where} ({shape}, {r.seconds:.0f} s)"


def _server_line(e: EndpointComparison) -> str | None:
    if not e.server_base and not e.server_cur:
        return None

    def side(s: dict[str, float] | None) -> str:
        if not s:
            return "-"
        return "/".join(_ms(s.get(f"p{q * 100:g}_ms", math.nan)) for q in QUANTILES)

    return f"    gateway (server) p50/p95/p99 ms: {side(e.server_base)} → {side(e.server_cur)}"


def _kept(row: dict[str, Any]) -> str:
    return (
        "  (not in Jaeger: not kept by its tail sampler)" if row.get("in_jaeger") is False else ""
    )


def render_text(c: Comparison, jaeger_url: str = "") -> str:
    lines = [
        f"baseline  {_describe(c.baseline)}",
        f"current   {_describe(c.current)}",
        f"method    bootstrap {c.confidence:.0%} interval of each percentile's change, "
        f"resampling {c.resampling} ({c.resamples} resamples, seed {c.seed}); "
        "error ratios: Newcombe's score interval",
        "          ▲ worse, ▼ better, beyond noise (the interval excludes no change); "
        f"judged with ≥ {c.min_requests} requests on both sides",
        "",
    ]
    for e in c.endpoints:
        if e.baseline is None or e.current is None:
            where = "current" if e.baseline is None else "baseline"
            lines += [f"{e.key}  only in the {where} run", ""]
            continue
        err = e.errors
        assert err is not None
        mark = ("▲" if err.diff > 0 else "▼") if err.beyond_noise else " "
        rate_change = _pct(e.cur_rate / e.base_rate - 1) if e.base_rate else ""
        lines.append(
            f"{e.key}   rate {e.base_rate:.2f}/s → {e.cur_rate:.2f}/s {rate_change}   "
            f"errors {err.baseline:.2%} → {err.current:.2%} {mark}".rstrip()
            + ("" if e.judged else "   (too few requests to judge)")
        )
        for q, ch in e.quantiles.items():
            mark = ("▲" if ch.diff > 0 else "▼") if ch.beyond_noise else " "
            lines.append(
                f"    p{q * 100:<4g} {_ms(ch.baseline):>7} → {_ms(ch.current):>7} ms  "
                f"{ch.diff:+8.1f} ms {_pct(ch.relative):>6}  "
                f"[{ch.diff_low:+.1f} … {ch.diff_high:+.1f} ms]  {mark}".rstrip()
            )
        if (server_line := _server_line(e)) is not None:
            lines.append(server_line)
        lines.append("")
    for e in c.regressed:
        lines.append(f"Regressed: {e.key}: {'; '.join(e.regressions)}")
        for r in c.traces.get(e.key, []):
            what = f"failed {r.get('status')}: {r['error'][:80]}" if "error" in r else "slow"
            link = _trace_link(r["trace_id"], jaeger_url) + _kept(r)
            lines.append(f"    {r['duration_ms']:>9.1f} ms  {what:<12}  {link}")
        for x in c.exemplars.get(e.key, []):
            link = _trace_link(x["trace_id"], jaeger_url) + _kept(x)
            lines.append(f"    {x['ms']:>9.1f} ms  exemplar      {link}")
    return "\n".join(lines).rstrip()


def verdict_lines(c: Comparison) -> list[str]:
    """The gate's last lines: one per regressed endpoint, or one saying it passed."""
    if c.regressed:
        return [f"redline: REGRESSED {e.key}: {'; '.join(e.regressions)}" for e in c.regressed]
    judged = sum(e.judged for e in c.endpoints)
    allowed = ", ".join(a.text for a in c.allowances)
    return [f"redline: no regression beyond {allowed} on {judged} endpoint(s)"]


# -- command line -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_gate_arguments(parser: argparse.ArgumentParser, *, jaeger: bool = True) -> None:
    parser.add_argument(
        "--max-regression", action="append", default=[], metavar="pNN=X%[+Yms]|errors=X%",
        help="fail an endpoint beyond this change (repeatable; with --baseline the default "
        f"is {DEFAULT_ALLOWANCE.replace('%', '%%')})",
    )  # fmt: skip
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="interval level (default 0.95)"
    )
    parser.add_argument("--html", type=Path, default=None, help="write the HTML comparison here")
    parser.add_argument(
        "--min-requests", type=int, default=MIN_REQUESTS,
        help=f"judge endpoints with this many requests in both runs (default {MIN_REQUESTS})",
    )  # fmt: skip
    if jaeger:
        parser.add_argument("--jaeger-url", default="", help="link trace ids to this Jaeger UI")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="redline load compare", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("baseline", type=Path, help="baseline run folder (or its results.json)")
    parser.add_argument("current", type=Path, help="current run folder (or its results.json)")
    add_gate_arguments(parser)
    parser.add_argument(
        "--block-seconds", type=int, default=None,
        help="resample blocks of this many seconds (default: 1, or run/40; 0: single requests)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=bootstrap.DEFAULT_SEED)
    parser.add_argument("--resamples", type=int, default=bootstrap.DEFAULT_RESAMPLES)
    return parser


def run_comparison(
    baseline: Path,
    current: Path,
    specs: Sequence[str],
    *,
    confidence: float = 0.95,
    html: Path | None = None,
    jaeger_url: str = "",
    block_seconds: int | None = None,
    seed: int = bootstrap.DEFAULT_SEED,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    min_requests: int = MIN_REQUESTS,
) -> tuple[Comparison, str]:
    """Load, compare, attach traces, write the HTML; the comparison and its text."""
    if not 0.5 <= confidence < 1:
        raise CompareError(f"--confidence {confidence:g}: between 0.5 and 1")
    if resamples < 100:
        raise CompareError(f"--resamples {resamples}: at least 100")
    if min_requests < 1:
        raise CompareError(f"--min-requests {min_requests}: at least 1")
    if block_seconds is not None and block_seconds < 0:
        raise CompareError(f"--block-seconds {block_seconds}: 0 or more")
    allowances = [parse_allowance(s) for s in specs]
    server_base, server_cur = server.load(baseline), server.load(current)
    c = compare(
        results.load(baseline), results.load(current), allowances,
        block_seconds=block_seconds, confidence=confidence, resamples=resamples, seed=seed,
        min_requests=min_requests, server_base=server_base, server_cur=server_cur,
    )  # fmt: skip
    attach_traces(c, current, server_cur)
    note = check_in_jaeger(c, jaeger_url) if jaeger_url and c.regressed else None
    if html is not None:
        from loadtests.compare_html import render_html

        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(c, jaeger_url), encoding="utf-8")
    text = render_text(c, jaeger_url)
    return c, text + (f"\n(trace links not checked: {note})" if note else "")


def default_html(current: Path) -> Path | None:
    return current / "compare.html" if current.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        c, text = run_comparison(
            args.baseline, args.current, args.max_regression,
            confidence=args.confidence, html=args.html or default_html(args.current),
            jaeger_url=args.jaeger_url, block_seconds=args.block_seconds, seed=args.seed,
            resamples=args.resamples, min_requests=args.min_requests,
        )  # fmt: skip
    except (CompareError, ResultsError, OSError) as exc:
        print(f"redline load compare: {exc}", file=sys.stderr)
        return 2
    print(text)
    html = args.html or default_html(args.current)
    if html is not None:
        print(f"redline: HTML comparison in {html}")
    if args.max_regression:
        for line in verdict_lines(c):
            print(line)
        return 1 if c.regressed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
