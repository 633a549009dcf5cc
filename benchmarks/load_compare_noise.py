"""How often does `redline load compare` flag two runs of the same build? (false positives)

Runs ``2 × --pairs`` short ``redline load`` runs back to back against one
platform that nobody changes in between, then compares each pair (runs 1-2,
3-4, ...) and counts, per endpoint and percentile, changes marked beyond noise
(the bootstrap interval excludes zero) and endpoints the gate would fail
(``--max-regression``, default ``p95=10%``). Every flag here is a false
positive by construction: the build, the data and the load are the same;
only time, the machine's other work, and sampling differ.

    .venv/bin/python benchmarks/load_compare_noise.py --host http://127.0.0.1:8000 \\
        [--pairs 6] [--duration 15s] [--open-rate 30 | --users 8 --think-scale 0.1]

Without ``--host`` it starts a platform (``redline up`` on free ports, as the
tests do) and stops it afterwards. Runs go to ``--runs-dir`` (a temporary
folder by default); ``--compare-only DIR`` re-judges the runs already in DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
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
            argv += ["--open-rate", str(args.open_rate)]
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


def judge(folders: list[Path], specs: list[str], block_seconds: int | None) -> None:
    pairs = list(zip(folders[::2], folders[1::2], strict=False))
    tests = flagged = gate_endpoints = gate_pairs = 0
    per_q = dict.fromkeys(QUANTILES, 0)
    per_q_tests = dict.fromkeys(QUANTILES, 0)
    for a, b in pairs:
        c, _ = compare.run_comparison(a, b, specs, block_seconds=block_seconds)
        regressed = [e.key for e in c.regressed]
        gate_endpoints += len(regressed)
        gate_pairs += bool(regressed)
        for e in c.endpoints:
            if not e.judged:
                continue
            for q in QUANTILES:
                tests += 1
                per_q_tests[q] += 1
                if e.quantiles[q].beyond_noise:
                    flagged += 1
                    per_q[q] += 1
        verdict = f"FAILED {', '.join(regressed)}" if regressed else "passed"
        print(f"{a.name} vs {b.name}: gate {verdict}", flush=True)
    judged = len(pairs)
    print()
    print(f"same-build pairs: {len(pairs)}; resampling {c.resampling}")
    print(
        f"percentile changes marked beyond noise: {flagged} of {tests} "
        f"({flagged / max(tests, 1):.1%}; a 95% interval alone would give ~5%)"
    )
    for q in QUANTILES:
        print(f"  p{q * 100:g}: {per_q[q]} of {per_q_tests[q]}")
    print(
        f"gate {' '.join(specs)}: failed {gate_pairs} of {judged} pairs "
        f"({gate_endpoints} endpoint verdicts)"
    )
    all_pairs = list(itertools.combinations(folders, 2))
    failed_any = sum(
        bool(compare.run_comparison(a, b, specs, block_seconds=block_seconds)[0].regressed)
        for a, b in all_pairs
    )
    print(f"gate over all {len(all_pairs)} pairs of runs (any two): failed {failed_any}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=None)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--duration", default="15s")
    parser.add_argument("--open-rate", type=float, default=30.0, help="0: the closed model")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--think-scale", type=float, default=0.1)
    parser.add_argument("--max-regression", action="append", default=None)
    parser.add_argument("--runs-dir", type=Path, default=None)
    parser.add_argument("--compare-only", type=Path, default=None)
    parser.add_argument("--block-seconds", type=int, default=None, help="0: single requests")
    args = parser.parse_args()
    specs = args.max_regression or [compare.DEFAULT_ALLOWANCE]
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
