"""How often does `redline load compare` flag two runs of the same build? (false positives)

Runs ``2 × --pairs`` short ``redline load`` runs back to back against one
platform that nobody changes in between, then compares each pair (runs 1-2,
3-4, ...) and counts, per endpoint and percentile, changes marked beyond noise
(the bootstrap interval excludes zero) and endpoints the gate would fail
(``--max-regression``, default ``p95=10%``). Every flag here is a false
positive by construction: the build, the data and the load are the same;
only time, the machine's other work, and sampling differ.

    .venv/bin/python benchmarks/load_compare_noise.py --host http://127.0.0.1:8000 \\
        [--pairs 6] [--duration 10s] [--open-rate 50 | --open-rate 0 --users 8]

Without ``--host`` it starts a platform (``redline up`` on free ports, as the
tests do) and stops it afterwards. Runs go to ``--runs-dir`` (a temporary
folder by default); ``--compare-only DIR`` re-judges the runs already in DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtests import compare, run
from loadtests.compare import QUANTILES


@contextlib.contextmanager
def _platform(host: str | None) -> Iterator[tuple[str, str]]:
    """(gateway, prometheus) of the given platform, or of one started here."""
    if host:
        yield host, "none"
        return
    from tests.harness import Stack
    from tests.otlp_receiver import OtlpReceiver

    receiver = OtlpReceiver().start()
    stack = Stack.build(
        Path(tempfile.mkdtemp(prefix="redline-noise-")), otlp_endpoint=receiver.endpoint
    )
    try:
        stack.start()
        yield stack.gateway, stack.prometheus
    finally:
        stack.stop()
        receiver.stop()


def _runs(args: argparse.Namespace, gateway: str, prometheus: str, runs_dir: Path) -> list[Path]:
    folders = []
    for i in range(2 * args.pairs):
        argv = [
            "--host", gateway, "--duration", args.duration, "--prometheus-port", "0",
            "--prometheus-url", prometheus, "--runs-dir", str(runs_dir),
        ]  # fmt: skip
        if args.open_rate:
            argv += ["--open-rate", str(args.open_rate), "--arrivals", args.arrivals]
        else:
            argv += ["--users", str(args.users), "--spawn-rate", str(args.users)]
            argv += ["--think-scale", str(args.think_scale)]
        p = run.plan(run.build_parser().parse_args(argv), runs_dir / f"run-{i:02d}")
        p.folder.mkdir(parents=True)
        print(f"run {i + 1} of {2 * args.pairs}", flush=True)
        with (p.folder / "locust.log").open("wb") as log:
            subprocess.run(p.command, stdout=log, stderr=subprocess.STDOUT, check=False)
        folders.append(p.folder)
    return folders


SPECS = (
    "p95=10%", "p95=25%", "p95=50%", "p95=10%+20ms", "p95=25%+50ms", "p95=50%+100ms",
    "p50=10%", "p50=25%", "p50=50%+300ms",
)  # fmt: skip


def _broken(c: compare.Comparison, allowance: compare.Allowance) -> list[str]:
    out = []
    for e in c.endpoints:
        if not e.judged:
            continue
        change = e.errors if allowance.q is None else e.quantiles[allowance.q]
        if change is not None and allowance.broken_by(change):
            out.append(e.key)
    return out


def judge(folders: list[Path], specs: list[str], block_seconds: int | None) -> None:
    """Each pair (1-2, 3-4, ...) compared; every flag counted, since none is real."""
    pairs = list(zip(folders[::2], folders[1::2], strict=False))
    allowances = [compare.parse_allowance(s) for s in specs]
    tests = flagged = 0
    failed = dict.fromkeys(specs, 0)
    per_q = dict.fromkeys(QUANTILES, 0)
    per_q_tests = dict.fromkeys(QUANTILES, 0)
    resampling = ""
    for a, b in pairs:
        c, _ = compare.run_comparison(a, b, [], block_seconds=block_seconds)
        resampling = c.resampling
        for e in c.endpoints:
            if not e.judged:
                continue
            for q in QUANTILES:
                tests += 1
                per_q_tests[q] += 1
                if e.quantiles[q].beyond_noise:
                    flagged += 1
                    per_q[q] += 1
        verdicts = []
        for spec, allowance in zip(specs, allowances, strict=True):
            if broken := _broken(c, allowance):
                failed[spec] += 1
                verdicts.append(f"{spec}: {', '.join(broken)}")
        print(f"{a.name} vs {b.name}: {'; '.join(verdicts) or 'no gate failed'}", flush=True)
    print()
    print(f"same-build pairs: {len(pairs)}; resampling {resampling}")
    print(
        f"percentile changes marked beyond noise: {flagged} of {tests} "
        f"({flagged / max(tests, 1):.1%}; a 95% interval alone would give ~5%)"
    )
    for q in QUANTILES:
        print(f"  p{q * 100:g}: {per_q[q]} of {per_q_tests[q]}")
    for spec in specs:
        print(f"gate {spec}: failed {failed[spec]} of {len(pairs)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--open-rate", type=float, default=25.0, help="0: the closed model")
    parser.add_argument("--arrivals", choices=("poisson", "constant"), default="constant")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--think-scale", type=float, default=0.1)
    parser.add_argument("--max-regression", action="append", default=None)
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--compare-only", type=Path, default=None)
    parser.add_argument("--block-seconds", type=int, default=None, help="0: single requests")
    args = parser.parse_args()
    specs = args.max_regression or list(SPECS)
    if args.compare_only:
        folders = sorted(p for p in args.compare_only.iterdir() if (p / "results.json").exists())
        judge(folders, specs, args.block_seconds)
        return
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="redline-noise-runs-"))
    with _platform(args.host) as (gateway, prometheus):
        folders = _runs(args, gateway, prometheus, runs_dir)
    print(f"runs in {runs_dir}")
    judge(folders, specs, args.block_seconds)


if __name__ == "__main__":
    main()
