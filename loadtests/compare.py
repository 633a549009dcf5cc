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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from loadtests import bootstrap, results, server
from loadtests.compare_model import (
    DEFAULT_ALLOWANCE,
    MIN_REQUESTS,
    QUANTILES,
    Allowance,
    CompareError,
    Comparison,
    EndpointComparison,
    compare,
    parse_allowance,
)
from loadtests.compare_report import attach_traces, check_in_jaeger, render_text, verdict_lines
from loadtests.results import ResultsError

__all__ = [
    "DEFAULT_ALLOWANCE",
    "MIN_REQUESTS",
    "QUANTILES",
    "Allowance",
    "CompareError",
    "Comparison",
    "EndpointComparison",
    "add_gate_arguments",
    "compare",
    "main",
    "parse_allowance",
    "run_comparison",
    "verdict_lines",
]


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
