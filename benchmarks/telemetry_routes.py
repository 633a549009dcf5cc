"""Telemetry on a real route: the catalog read with telemetry fully on vs at its minimum, one run.

Starts PostgreSQL and three inventory processes on the same database, one
uvicorn worker each:

* on: every request sampled (``parentbased_always_on``), spans over OTLP/HTTP
  to ``otlp_sink.py``, a DB span per statement, RED metrics, the JSON access line;
* on, SDK processor: the same with the SDK's ``BatchSpanProcessor``
  (``REDLINE_SPAN_PROCESSOR=sdk``) instead of telemetry/_span_batches.py;
* minimum: ``parentbased_always_off`` and no exporter (no span is recorded,
  neither the server's nor the database's), log level WARNING (no access
  line). The RED metrics, the request id and the middleware itself stay: the
  telemetry plugin cannot be removed by configuration, so this is the floor a
  service can be configured down to, not a service without the plugin.

Rounds interleave ``wrk`` against ``GET /products/{id}`` of each; the report
gives requests/s and the process's CPU per request, medians, and the ratios
of each over minimum.

    .venv/bin/python benchmarks/telemetry_routes.py [--rounds 5] [--duration 6]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import SAMPLED_100, TELEMETRY_MINIMUM, cpu_seconds, otlp_env, wait_http
from instrumentation_overhead import run_wrk

from tests.conftest import throwaway_postgres
from tests.harness import ADMIN_TOKEN, ServiceProcess, free_port

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    sink_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(HERE / "otlp_sink.py"), str(sink_port), "--no-count"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    logs = Path(tempfile.mkdtemp(prefix="redline-routes-"))
    variants = {
        "minimum": TELEMETRY_MINIMUM,
        "on": {**otlp_env(sink_port), **SAMPLED_100},
        # The same, with the SDK's BatchSpanProcessor (its thread encodes the spans).
        "on, SDK processor": {
            **otlp_env(sink_port),
            **SAMPLED_100,
            "REDLINE_SPAN_PROCESSOR": "sdk",
        },
    }
    rps: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    try:
        with throwaway_postgres() as pg:
            from services.chassis.db import ensure_database

            asyncio.run(ensure_database(pg.dsn(), "routes_inventory"))
            dsn = pg.dsn("routes_inventory")
            services = {
                name: ServiceProcess(
                    "inventory",
                    env={
                        "DATABASE_URL": dsn,
                        "REDLINE_ADMIN_TOKEN": ADMIN_TOKEN,
                        # No NATS here: never a stack's on the default port.
                        "REDLINE_NATS_SERVERS": f"nats://127.0.0.1:{free_port()}",
                        **env,
                    },
                    log_path=logs / f"inventory-{name}.log",
                )
                for name, env in variants.items()
            }
            try:
                for svc in services.values():
                    svc.start(timeout=120)
                for svc in services.values():
                    url = f"{svc.url}/products/7"
                    wait_http(url, proc=svc.proc)
                    run_wrk(url, 2, args.connections)  # warm-up
                for r in range(args.rounds):
                    for name, svc in services.items():
                        assert svc.proc is not None
                        before = cpu_seconds(svc.proc.pid)
                        per_second, n = run_wrk(
                            f"{svc.url}/products/7", args.duration, args.connections
                        )
                        cpu[name].append((cpu_seconds(svc.proc.pid) - before) / n * 1e6)
                        rps[name].append(per_second)
                        print(
                            f"round {r + 1}/{args.rounds} {name:<17} {per_second:7.0f} rps "
                            f"{cpu[name][-1]:6.0f} µs CPU/request",
                            flush=True,
                        )
            finally:
                for svc in services.values():
                    svc.stop()
    finally:
        sink.terminate()
        sink.wait()

    base_rps, base_cpu = statistics.median(rps["minimum"]), statistics.median(cpu["minimum"])
    print()
    print(
        f"GET /products/{{id}} on inventory (PostgreSQL read), wrk -c{args.connections}, "
        f"{args.rounds} interleaved rounds of {args.duration:g} s, medians"
    )
    print()
    print("| telemetry | requests/s | ratio | CPU µs/request | CPU ratio |")
    print("|---|---:|---:|---:|---:|")
    for name in variants:
        per_second, c = statistics.median(rps[name]), statistics.median(cpu[name])
        print(
            f"| {name} | {per_second:,.0f} | {per_second / base_rps:.2f}× | {c:.0f} | "
            f"{c / base_cpu:.2f}× |"
        )


if __name__ == "__main__":
    main()
