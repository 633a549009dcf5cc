"""The gateway hop: CPU per proxied catalog read vs a bare Litestar request, in one run.

Starts a bare Litestar app serving ``GET /products/{product_id}`` (a fixed
product, no telemetry: ``product_app.py``) and the real gateway (one uvicorn
worker, telemetry on: 100 % sampled spans over OTLP/HTTP to ``otlp_sink.py``,
RED metrics, access lines) routing ``/api/v1/products/{id}`` to it. Rounds
interleave two loads of ``wrk``: straight to the bare app, and through the
gateway. Each process's CPU comes from /proc; the ratio is the gateway's CPU
per proxied read over the bare app's CPU per request, both from the same
round. A ``wrk -c1`` pass per round gives the latency the hop adds (p50).
The bare app's CPU per proxied read is printed too: what the gateway sends
it costs no more than a direct request (no work moved behind the hop).

    .venv/bin/python benchmarks/gateway_hop.py [--rounds 5] [--duration 6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import SAMPLED_100, cpu_seconds, otlp_env, wait_http
from instrumentation_overhead import run_wrk

from services.topology import SERVICES
from tests.harness import ServiceProcess, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def wrk_p50_ms(url: str, seconds: float) -> float:
    """p50 latency of one connection, one request at a time (wrk --latency)."""
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "50%":
            value = parts[1]
            for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
                if value.endswith(unit):
                    return float(value[: -len(unit)]) * scale
    raise SystemExit(f"benchmark: no p50 in wrk's output for {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the gateway with py-spy (collapsed stacks) during the first proxied load",
    )
    args = parser.parse_args()

    devnull = subprocess.DEVNULL
    sink_port, bare_port = free_port(), free_port()
    sink = subprocess.Popen(
        [sys.executable, str(HERE / "otlp_sink.py"), str(sink_port), "--no-count"],
        stdout=devnull,
        stderr=devnull,
    )
    bare = subprocess.Popen(
        [sys.executable, str(HERE / "product_app.py"), str(bare_port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=devnull,
        stderr=devnull,
    )
    bare_url = f"http://127.0.0.1:{bare_port}"
    urls = {SERVICES[n].url_variable: bare_url for n in SERVICES}
    gateway = ServiceProcess(
        "gateway",
        env={
            **urls,
            **otlp_env(sink_port),
            **SAMPLED_100,
            "REDLINE_RATE_LIMIT_IP_PER_SECOND": "1000000",
            "REDLINE_RATE_LIMIT_IP_BURST": "1000000",
        },
        log_path=Path(tempfile.mkdtemp(prefix="redline-hop-")) / "gateway.log",
    )
    gateway_cpu: list[float] = []
    bare_cpu: list[float] = []
    upstream_cpu: list[float] = []
    added_p50: list[float] = []
    try:
        wait_http(f"{bare_url}/products/7", proc=bare)
        gateway.start(wait_ready=False)
        proxied = f"{gateway.url}/api/v1/products/7"
        direct = f"{bare_url}/products/7"
        wait_http(proxied, proc=gateway.proc)
        assert gateway.proc is not None
        run_wrk(proxied, 2, args.connections)  # warm-up
        for r in range(args.rounds):
            before = cpu_seconds(bare.pid)
            _, n = run_wrk(direct, args.duration, args.connections)
            bare_cpu.append((cpu_seconds(bare.pid) - before) / n * 1e6)
            spy = None
            if args.py_spy and r == 0:
                spy = subprocess.Popen(
                    [
                        shutil.which("py-spy") or "py-spy",
                        "record",
                        "--pid",
                        str(gateway.proc.pid),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--duration",
                        str(max(1, round(args.duration)) - 1),
                        "-o",
                        args.py_spy,
                    ],
                    stdout=devnull,
                    stderr=devnull,
                )
            before = cpu_seconds(gateway.proc.pid)
            before_upstream = cpu_seconds(bare.pid)
            _, n = run_wrk(proxied, args.duration, args.connections)
            if spy is not None:
                spy.wait(timeout=60)
            gateway_cpu.append((cpu_seconds(gateway.proc.pid) - before) / n * 1e6)
            upstream_cpu.append((cpu_seconds(bare.pid) - before_upstream) / n * 1e6)
            p50_direct = wrk_p50_ms(direct, args.duration / 2)
            p50_proxied = wrk_p50_ms(proxied, args.duration / 2)
            added_p50.append(p50_proxied - p50_direct)
            print(
                f"round {r + 1}/{args.rounds}: bare {bare_cpu[-1]:.0f} µs CPU/request, "
                f"gateway {gateway_cpu[-1]:.0f} µs CPU/proxied read "
                f"({gateway_cpu[-1] / bare_cpu[-1]:.1f}×), p50 added {added_p50[-1]:.2f} ms, "
                f"upstream {upstream_cpu[-1]:.0f} µs CPU/proxied read",
                flush=True,
            )
    finally:
        gateway.stop()
        for proc in (bare, sink):
            proc.terminate()
            proc.wait(timeout=30)

    ratios = [g / b for g, b in zip(gateway_cpu, bare_cpu, strict=True)]
    print()
    print(
        f"GET /products/{{id}}: wrk -c{args.connections}, {args.rounds} interleaved rounds of "
        f"{args.duration:g} s, medians; the gateway with telemetry on (100 % sampled)"
    )
    print()
    print("| | CPU µs/request | ratio |")
    print("|---|---:|---:|")
    print(f"| bare Litestar route | {statistics.median(bare_cpu):.0f} | 1.00× |")
    print(
        f"| gateway, proxied read | {statistics.median(gateway_cpu):.0f} | "
        f"**{statistics.median(ratios):.1f}×** |"
    )
    upstream = statistics.median(upstream_cpu)
    print(
        f"| bare route, per proxied read (behind the gateway) | {upstream:.0f} | "
        f"{upstream / statistics.median(bare_cpu):.2f}× |"
    )
    print()
    print(f"p50 latency the hop adds (wrk -c1): {statistics.median(added_p50):.2f} ms")


if __name__ == "__main__":
    main()
