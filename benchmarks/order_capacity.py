"""Capacity, open loop: the highest order rate the platform holds, and what an order costs in CPU.

Starts PostgreSQL and the five services (one process each, spans exported over
OTLP/HTTP at 100 % sampling to ``otlp_sink.py``, which counts them), then offers
orders through the gateway at fixed arrival rates: an asyncio generator sends
order *i* at ``start + i / rate`` whether or not earlier ones have answered
(open loop: a slow answer does not slow the offered load, so latency is
measured from the moment the order was due, free of coordinated omission).
The rate steps up until a step misses p99 ≤ 300 ms or errors < 0.1 %; the
report gives, per step, the latency, the errors, the spans exported per
confirmed order and the CPU milliseconds per confirmed order of every service
process and of PostgreSQL (all its processes), read from /proc.

The load generator runs on the same two cores as the platform (as the other
end-to-end benchmarks do) and is counted in the table's last column. The
baseline, measured in the same run: the CPU of a bare Litestar request
(``product_app.py`` under ``wrk``), and the CPU per order expressed in those,
which moves less with the machine's load than milliseconds do.

    .venv/bin/python benchmarks/order_capacity.py [--rates 10,20,30,...] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import psutil
from _report import SAMPLED_100, TELEMETRY_MINIMUM, cpu_seconds, otlp_env, wait_http

from tests.conftest import throwaway_postgres
from tests.harness import Platform, free_port, sign_up

HERE = Path(__file__).resolve().parent
P99_LIMIT_MS = 300.0
ERROR_LIMIT = 0.001
PROCESSES = ("gateway", "orders", "inventory", "payments", "accounts")


@dataclass
class Step:
    rate: float
    latencies: list[float] = field(default_factory=list)
    confirmed: int = 0
    errors: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    late_ms: float = 0.0  # how far behind schedule the generator fell, at worst
    cpu_ms: dict[str, float] = field(default_factory=dict)
    spans: int = 0

    @property
    def offered(self) -> int:
        return len(self.latencies)

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def error_share(self) -> float:
        return self.errors / max(1, self.offered)

    @property
    def holds(self) -> bool:
        return self.pct(99) <= P99_LIMIT_MS and self.error_share < ERROR_LIMIT


def postgres_cpu(postmaster: int) -> dict[int, float]:
    """CPU seconds of the postmaster and each of its processes (backends come and go)."""
    seconds: dict[int, float] = {}
    root = psutil.Process(postmaster)
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
    return seconds


def postgres_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings; a process born in between counts from zero."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


async def offer(
    gateway: str, users: list[dict[str, str]], rate: float, seconds: float, step: Step
) -> None:
    """Send ``rate`` orders a second for ``seconds``, each at its due time; await them all."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=10)
    n = int(rate * seconds)
    async with aiohttp.ClientSession(gateway, connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            product = 1 + (i * 37) % 320
            if product % 25 == 0:  # skip the limited editions: measure confirmed orders
                product += 1
            headers = {**users[i % len(users)], "idempotency-key": str(uuid.uuid4())}
            try:
                async with session.post(
                    "/api/v1/orders",
                    json={"items": [{"product_id": product, "quantity": 1}]},
                    headers=headers,
                ) as r:
                    await r.read()
                    code = str(r.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                code = type(exc).__name__
            step.latencies.append(time.perf_counter() - due)
            step.codes[code] = step.codes.get(code, 0) + 1
            if code == "201":
                step.confirmed += 1
            else:
                step.errors += 1

        tasks = []
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                step.late_ms = max(step.late_ms, -delay * 1000)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def start(platform: Platform) -> None:
    """``Platform.start`` with more patience: on a busy machine a service may take > 30 s."""
    from services.topology import start_order

    try:
        for name in start_order():
            platform[name].start(timeout=180)
    except BaseException:
        platform.stop()
        raise


def bare_request_us(seconds: float = 4.0) -> float:
    """CPU µs per request of a bare Litestar route (``product_app.py``) under wrk, now.

    The unit the CPU per order is also given in: it moves with the machine's
    speed as the orders' CPU does, so runs on a busy and a quiet machine compare.
    """
    from instrumentation_overhead import run_wrk

    port = free_port()
    app = subprocess.Popen(
        [sys.executable, str(HERE / "product_app.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/products/7"
        wait_http(url, proc=app)
        run_wrk(url, 1, 8)
        before = cpu_seconds(app.pid)
        _, n = run_wrk(url, seconds, 8)
        return (cpu_seconds(app.pid) - before) / n * 1e6
    finally:
        app.terminate()
        app.wait(timeout=30)


def sink_spans(url: str) -> int:
    return int(httpx.get(url, timeout=5).text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,20,30,40,50,60,70,80,90,100")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per step")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--keep-going", action="store_true", help="run every rate, even after one fails"
    )
    parser.add_argument(
        "--telemetry",
        choices=("on", "minimum"),
        default="on",
        help="on: 100 %% sampled spans exported, access lines; minimum: no span, no access "
        "line (RED metrics stay)",
    )
    parser.add_argument(
        "--py-spy",
        action="append",
        default=[],
        metavar="SERVICE:FILE",
        help="record SERVICE with py-spy (collapsed stacks) during the first step",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM (or SIGINT in a background job, where it is ignored):
    # unwind, so the services and PostgreSQL are stopped too.
    signal.signal(signal.SIGTERM, _interrupted)
    rates = [float(r) for r in args.rates.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="redline-capacity-"))
    sink_port = free_port()
    sink_process = subprocess.Popen(
        [sys.executable, str(HERE / "otlp_sink.py"), str(sink_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    steps: list[Step] = []
    sink = f"http://127.0.0.1:{sink_port}/spans"
    names = f"http://127.0.0.1:{sink_port}/names"
    try:
        wait_http(sink, proc=sink_process)
        with throwaway_postgres() as pg:
            from services.chassis.db import ensure_database

            def database(name: str) -> str:
                asyncio.run(ensure_database(pg.dsn(), f"cap_{name}"))
                return pg.dsn(f"cap_{name}")

            platform = Platform.build(
                databases=database,
                logs=logs,
                otlp_endpoint=None,
                extra_env={
                    name: {
                        **(
                            {**otlp_env(sink_port), **SAMPLED_100}
                            if args.telemetry == "on"
                            else TELEMETRY_MINIMUM
                        ),
                        **(
                            {
                                "REDLINE_RATE_LIMIT_USER_PER_SECOND": "100000",
                                "REDLINE_RATE_LIMIT_USER_BURST": "100000",
                                "REDLINE_RATE_LIMIT_IP_PER_SECOND": "100000",
                                "REDLINE_RATE_LIMIT_IP_BURST": "100000",
                            }
                            if name == "gateway"
                            else {}
                        ),
                        **({"REDLINE_PROCESSOR_DECLINE_RATE": "0"} if name == "payments" else {}),
                    }
                    for name in PROCESSES
                },
            )
            start(platform)
            try:
                users = [sign_up(platform.gateway).headers for _ in range(args.users)]
                pids = {name: platform[name].proc.pid for name in PROCESSES}  # type: ignore[union-attr]
                postmaster = pg.pid()
                assert postmaster is not None
                # Warm-up: connections, prepared statements, caches.
                asyncio.run(offer(platform.gateway, users, rates[0], 3, Step(rates[0])))
                time.sleep(6)  # its spans out of the next count
                # Spans per order, exactly: orders one at a time, then every span exported.
                spans_before = sink_spans(sink)
                names_before = httpx.get(names, timeout=5).json()
                alone = Step(1)
                asyncio.run(offer(platform.gateway, users, 2, 10, alone))
                time.sleep(6)
                spans_alone = (sink_spans(sink) - spans_before) / max(1, alone.confirmed)
                print(f"{spans_alone:.1f} spans per order ({alone.confirmed} orders, 2/s):")
                for name, count in sorted(httpx.get(names, timeout=5).json().items()):
                    per_order = (count - names_before.get(name, 0)) / max(1, alone.confirmed)
                    if per_order >= 0.05:
                        print(f"  {per_order:5.2f}  {name}")
                # What the processes burn with no traffic (health loops, recovery rounds).
                idle_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                pg_idle = postgres_cpu(postmaster)
                time.sleep(10)
                idle = {n: (cpu_seconds(p) - idle_before[n]) * 100 for n, p in pids.items()}
                idle["postgres"] = postgres_used(pg_idle, postgres_cpu(postmaster)) * 100
                print(
                    "idle CPU, ms/s: " + ", ".join(f"{n} {v:.1f}" for n, v in idle.items()),
                    flush=True,
                )
                for rate in rates:
                    step = Step(rate)
                    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    pg_before = postgres_cpu(postmaster)
                    before["load generator"] = cpu_seconds()
                    spans_before = sink_spans(sink)
                    spies = [
                        subprocess.Popen(
                            [
                                shutil.which("py-spy") or "py-spy",
                                "record",
                                "--pid",
                                str(pids[service]),
                                "--format",
                                "raw",
                                "--duration",
                                str(max(1, round(args.seconds) - 1)),
                                "-o",
                                path,
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                        for service, _, path in (s.partition(":") for s in args.py_spy)
                        if rate == rates[0]
                    ]
                    asyncio.run(offer(platform.gateway, users, rate, args.seconds, step))
                    for spy in spies:
                        spy.wait(timeout=60)
                    # Spans leave each process on the batch processor's schedule (5 s).
                    time.sleep(6)
                    step.spans = sink_spans(sink) - spans_before
                    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    after["postgres"] = postgres_used(pg_before, postgres_cpu(postmaster))
                    before["postgres"] = 0.0
                    after["load generator"] = cpu_seconds()
                    confirmed = max(1, step.confirmed)
                    step.cpu_ms = {k: (after[k] - before[k]) * 1000 / confirmed for k in before}
                    steps.append(step)
                    print(
                        f"{rate:5.0f} orders/s offered: {step.confirmed}/{step.offered} confirmed, "
                        f"p50 {step.pct(50):.0f} ms, p99 {step.pct(99):.0f} ms, "
                        f"errors {step.error_share:.2%} {step.codes}, "
                        f"CPU {sum(step.cpu_ms.values()):.1f} ms/order, "
                        f"{step.spans / confirmed:.1f} spans/order, "
                        f"generator late by up to {step.late_ms:.0f} ms",
                        flush=True,
                    )
                    if not step.holds and not args.keep_going:
                        break
            finally:
                platform.stop()
    finally:
        sink_process.terminate()
        sink_process.wait()

    # The baseline, after the platform stopped: a bare request's CPU on this machine now.
    bare_us = bare_request_us()
    report(steps, args.seconds, bare_us, args.telemetry)


def report(steps: list[Step], seconds: float, bare_us: float, telemetry: str) -> None:
    print()
    spans = (
        "100 % sampled spans to an OTLP sink"
        if telemetry == "on"
        else "telemetry at its minimum (no span, no access line)"
    )
    print(
        f"Open-loop orders through the gateway, {seconds:g} s per rate, {spans}; "
        f"a rate holds if p99 ≤ {P99_LIMIT_MS:.0f} ms and errors < "
        f"{ERROR_LIMIT:.1%}"
    )
    print()
    columns = [*PROCESSES, "postgres"]
    print(
        "| offered/s | confirmed/s | p50 ms | p99 ms | errors | spans/order | "
        + " | ".join(f"{c} CPU ms" for c in columns)
        + " | platform CPU ms/order | in bare requests | generator CPU ms |"
    )
    print("|" + "---:|" * (9 + len(columns)))
    for s in steps:
        platform_ms = sum(s.cpu_ms[c] for c in columns)
        print(
            f"| {s.rate:.0f}{'' if s.holds else ' ✗'} | {s.confirmed / seconds:.1f} | "
            f"{s.pct(50):.0f} | {s.pct(99):.0f} | {s.error_share:.2%} | "
            f"{s.spans / max(1, s.confirmed):.1f} | "
            + " | ".join(f"{s.cpu_ms[c]:.2f}" for c in columns)
            + f" | **{platform_ms:.1f}** | {platform_ms * 1000 / bare_us:.0f}× "
            f"| {s.cpu_ms['load generator']:.1f} |"
        )
    held = [s for s in steps if s.holds]
    print()
    print(
        f"Baseline, same run: a bare Litestar request (product_app.py, wrk -c8) costs "
        f"{bare_us:.0f} µs of CPU; 'in bare requests' is the platform's CPU per order over that."
    )
    if held:
        best = max(held, key=lambda s: s.rate)
        medians = statistics.median(sum(s.cpu_ms[c] for c in columns) for s in held)
        print(
            f"Highest rate held: {best.rate:.0f} orders/s (p99 {best.pct(99):.0f} ms, errors "
            f"{best.error_share:.2%}); platform CPU at that rate "
            f"{sum(best.cpu_ms[c] for c in columns):.1f} ms/order (median over held rates "
            f"{medians:.1f})"
        )
    else:
        print("No rate held.")


if __name__ == "__main__":
    main()
