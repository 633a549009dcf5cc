"""What full instrumentation costs on a hello route: plain Litestar vs Redline's telemetry.

The stock Litestar stack (its OpenTelemetry plugin exporting over OTLP/HTTP and
its Prometheus middleware) runs in the same rounds, as the anchor a reader
would otherwise pick.

Every variant runs as its own uvicorn process (one worker) pinned to CPU 0;
``wrk`` runs pinned to CPU 1, and so does the OTLP sink the instrumented
variants export to. Rounds interleave the variants so machine noise hits all of
them alike; the report gives medians and ratios against plain, measured in the
same run. Server CPU per request comes from the server process's own CPU time.

    .venv/bin/python benchmarks/instrumentation_overhead.py [--rounds 5] [--duration 8]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from _report import SAMPLED_10, SAMPLED_100, cpu_seconds, otlp_env, wait_http

from tests.harness import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CPU, CLIENT_CPU = "0", "1"


@dataclass
class Variant:
    name: str
    app: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def pinned(cpu: str, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *argv]
    return argv


def run_wrk(url: str, seconds: float, connections: int) -> tuple[float, int]:
    out = subprocess.run(
        pinned(CLIENT_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"benchmark: {non2xx.group(1)} error responses from {url}")
    return rps, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="another instrumented variant with these environment variables",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit(
            "benchmark: wrk is not installed (Debian package wrk; `make bench` installs it)"
        )

    sink_port = free_port()
    otlp = otlp_env(sink_port)
    variants = [
        Variant("plain", "plain"),
        Variant(
            "instrumented, 100% sampled",
            "instrumented",
            {**otlp, **SAMPLED_100},
        ),
        Variant(
            "instrumented, 10% sampled",
            "instrumented",
            {**otlp, **SAMPLED_10},
        ),
        # The anchor: Litestar's own OpenTelemetry plugin + OTLP/HTTP + its
        # Prometheus middleware (grouped paths), as shipped (benchmarks/hello_app.py).
        Variant("stock Litestar stack, 100% sampled", "stock", {**otlp, **SAMPLED_100}),
    ]
    for spec in args.variant:
        # "name:KEY=VALUE,KEY=VALUE": another instrumented variant, for experiments.
        name, _, assignments = spec.partition(":")
        env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
        variants.append(Variant(name, "instrumented", {**otlp, **env}))
    devnull = subprocess.DEVNULL
    sink = subprocess.Popen(
        pinned(
            CLIENT_CPU, [sys.executable, str(HERE / "otlp_sink.py"), str(sink_port), "--no-count"]
        ),
        stdout=devnull,
        stderr=devnull,
    )
    try:
        for v in variants:
            v.port = free_port()
            # Logs go to /dev/null: the JSON rendering and the write are paid, as in production.
            v.proc = subprocess.Popen(
                pinned(
                    SERVER_CPU, [sys.executable, str(HERE / "hello_app.py"), v.app, str(v.port)]
                ),
                env={**os.environ, **v.env, "PYTHONPATH": str(ROOT)},
                stdout=devnull,
                stderr=devnull,
            )
        for v in variants:
            wait_http(f"http://127.0.0.1:{v.port}/hello")
            run_wrk(f"http://127.0.0.1:{v.port}/hello", 2, args.connections)  # warm-up
        for r in range(args.rounds):
            for v in variants:
                assert v.proc is not None
                url = f"http://127.0.0.1:{v.port}/hello"
                before = cpu_seconds(v.proc.pid)
                rps, total = run_wrk(url, args.duration, args.connections)
                used = cpu_seconds(v.proc.pid) - before
                v.rps.append(rps)
                v.cpu_us.append(used / total * 1e6)
                print(
                    f"round {r + 1}/{args.rounds} {v.name:<28} {rps:9.0f} rps "
                    f"{v.cpu_us[-1]:7.1f} µs CPU/request",
                    flush=True,
                )
    finally:
        for v in variants:
            if v.proc is not None:
                v.proc.terminate()
                v.proc.wait(timeout=30)
        sink.terminate()
        sink.wait()

    base = variants[0]
    base_rps, base_cpu = statistics.median(base.rps), statistics.median(base.cpu_us)
    print()
    print(
        f"hello route, uvicorn 1 worker on CPU {SERVER_CPU}, wrk -c{args.connections} on CPU "
        f"{CLIENT_CPU}, {args.rounds} interleaved rounds of {args.duration:g}s, medians"
    )
    print()
    print("| variant | requests/s | ratio vs plain | server CPU µs/request | CPU ratio |")
    print("|---|---:|---:|---:|---:|")
    for v in variants:
        rps, cpu = statistics.median(v.rps), statistics.median(v.cpu_us)
        print(
            f"| {v.name} | {rps:,.0f} | {rps / base_rps:.2f}× | {cpu:.1f} | {cpu / base_cpu:.2f}× |"
        )


if __name__ == "__main__":
    main()
