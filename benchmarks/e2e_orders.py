"""End to end: orders per second through the gateway, and what the gateway adds to a read.

Starts PostgreSQL and the five services (one process each, as in production),
then, in one run:

1. places orders through the gateway at a fixed concurrency (each a full saga:
   pricing, reserve, charge, commit — three services, four databases) and
   reports orders/second and p50/p95/p99;
2. reads one product through the gateway and straight from inventory,
   interleaved, one request at a time, and reports both latencies and the
   difference: the gateway's auth-free hop (routing, budget, resilient client,
   a second server span, a second access line), and the gateway's CPU per read.

    .venv/bin/python benchmarks/e2e_orders.py [--concurrency 8] [--seconds 20]

``--replicas 1,2`` then measures orders/s again with that many instances of
each downstream (inventory, orders, payments; one gateway), each setup on a
fresh platform in the same run, the callers balancing over the instances
(``REDLINE_<DEP>_URL`` lists them), and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from _report import cpu_seconds

from services.topology import SERVICES
from tests.conftest import throwaway_postgres
from tests.harness import Platform, ServiceProcess, sign_up

REPLICATED = ("inventory", "orders", "payments")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def place_orders(
    gateway: str, tokens: list[dict[str, str]], concurrency: int, seconds: float
) -> tuple[int, list[float], dict[int, int]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    stop = time.monotonic() + seconds

    async def worker(n: int) -> None:
        headers = tokens[n % len(tokens)]
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
            i = 0
            while time.monotonic() < stop:
                i += 1
                product = 1 + (n * 37 + i * 11) % 320
                if product % 25 == 0:  # skip the limited editions: measure confirmed orders
                    product += 1
                t0 = time.perf_counter()
                r = await client.post(
                    "/api/v1/orders",
                    json={"items": [{"product_id": product, "quantity": 1}]},
                    headers={**headers, "idempotency-key": str(uuid.uuid4())},
                )
                latencies.append(time.perf_counter() - t0)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.monotonic() - started
    return int(codes.get(201, 0) / elapsed), latencies, codes


async def reads(gateway: str, inventory: str, n: int) -> tuple[list[float], list[float]]:
    via_gateway: list[float] = []
    direct: list[float] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(n):
            product = 1 + i % 320
            for url, bucket in (
                (f"{gateway}/api/v1/products/{product}", via_gateway),
                (f"{inventory}/products/{product}", direct),
            ):
                t0 = time.perf_counter()
                r = await client.get(url)
                bucket.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
    return via_gateway, direct


def add_replicas(platform: Platform, count: int, logs: Path) -> list[ServiceProcess]:
    """``count - 1`` more instances of each downstream, on the same databases; every
    caller's URL variable lists them all. Start them before the platform."""
    extra: list[ServiceProcess] = []
    urls: dict[str, list[str]] = {n: [platform[n].url] for n in REPLICATED}
    for name in REPLICATED:
        for k in range(2, count + 1):
            replica = ServiceProcess(
                name, env=dict(platform[name].env), log_path=logs / f"{name}-{k}.log"
            )
            extra.append(replica)
            urls[name].append(replica.url)
    for svc in [*platform.services.values(), *extra]:
        env = dict(svc.env)
        for name in REPLICATED:
            env[SERVICES[name].url_variable] = ",".join(urls[name])
        svc.env = env
    return extra


def measure_replicas(
    counts: list[int],
    database: Callable[[str], str],
    logs: Path,
    concurrency: int,
    seconds: float,
    rounds: int,
) -> None:
    """orders/s (median of rounds) with each count of downstream instances."""
    results: dict[int, tuple[float, float, dict[int, int]]] = {}
    for count in counts:

        def fresh(name: str, count: int = count) -> str:
            # Fresh databases per setup: the same stock and no orders to start from.
            return database(f"{name}_{count}")

        platform = Platform.build(
            databases=fresh,
            logs=logs / f"replicas-{count}",
            otlp_endpoint=None,
            extra_env={"payments": {"REDLINE_PROCESSOR_DECLINE_RATE": "0"}, "gateway": UNLIMITED},
        )
        extra = add_replicas(platform, count, logs / f"replicas-{count}")
        try:
            for replica in extra:
                replica.start()
            platform.start()
            tokens = [sign_up(platform.gateway).headers for _ in range(concurrency)]
            rates: list[float] = []
            p99s: list[float] = []
            codes_all: dict[int, int] = {}
            for _ in range(rounds):
                orders_per_second, lat, codes = asyncio.run(
                    place_orders(platform.gateway, tokens, concurrency, seconds)
                )
                rates.append(orders_per_second)
                p99s.append(_pct(lat, 99))
                for code, n in codes.items():
                    codes_all[code] = codes_all.get(code, 0) + n
            results[count] = (statistics.median(rates), statistics.median(p99s), codes_all)
            print(
                f"{count} instance(s) of each downstream: {results[count][0]} orders/s", flush=True
            )
        finally:
            platform.stop()
            for replica in extra:
                replica.stop()
    base = results[counts[0]][0]
    print()
    print("| instances of inventory, orders, payments | orders/s | vs first | p99 ms | answers |")
    print("|---:|---:|---:|---:|---|")
    for count, (measured, p99, answers) in results.items():
        ratio = f"{measured / base:.2f}" if base else "-"
        print(f"| {count} | {measured:g} | {ratio} | {p99:.0f} | {dict(sorted(answers.items()))} |")


UNLIMITED = {
    "REDLINE_RATE_LIMIT_USER_PER_SECOND": "100000",
    "REDLINE_RATE_LIMIT_USER_BURST": "100000",
    "REDLINE_RATE_LIMIT_IP_PER_SECOND": "100000",
    "REDLINE_RATE_LIMIT_IP_BURST": "100000",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument(
        "--replicas",
        default=None,
        metavar="N,M",
        help="instead: orders/s with N, then M instances of each downstream (e.g. 1,2)",
    )
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="redline-e2e-"))
    with throwaway_postgres() as pg:
        import asyncio as _a

        from services.chassis.db import ensure_database

        def database(name: str) -> str:
            _a.run(ensure_database(pg.dsn(), f"e2e_{name}"))
            return pg.dsn(f"e2e_{name}")

        if args.replicas:
            counts = [int(c) for c in args.replicas.split(",")]
            measure_replicas(counts, database, logs, args.concurrency, args.seconds, args.rounds)
            return

        platform = Platform.build(
            databases=database,
            logs=logs,
            otlp_endpoint=None,
            extra_env={
                "payments": {"REDLINE_PROCESSOR_DECLINE_RATE": "0"},
                "gateway": {
                    "REDLINE_RATE_LIMIT_USER_PER_SECOND": "100000",
                    "REDLINE_RATE_LIMIT_USER_BURST": "100000",
                    "REDLINE_RATE_LIMIT_IP_PER_SECOND": "100000",
                    "REDLINE_RATE_LIMIT_IP_BURST": "100000",
                },
            },
        ).start()
        try:
            tokens = [sign_up(platform.gateway).headers for _ in range(args.concurrency)]
            rates, p50s, p95s, p99s = [], [], [], []
            gw, inv = [], []
            gateway_us: list[float] = []
            gateway = platform["gateway"].proc
            assert gateway is not None
            gateway_pid = gateway.pid
            all_codes: dict[int, int] = {}
            for r in range(args.rounds):
                rate, lat, codes = asyncio.run(
                    place_orders(platform.gateway, tokens, args.concurrency, args.seconds)
                )
                for code, count in codes.items():
                    all_codes[code] = all_codes.get(code, 0) + count
                rates.append(rate)
                p50s.append(_pct(lat, 50))
                p95s.append(_pct(lat, 95))
                p99s.append(_pct(lat, 99))
                gateway_cpu = cpu_seconds(gateway_pid)
                g, d = asyncio.run(reads(platform.gateway, platform["inventory"].url, args.reads))
                # Only the reads through the gateway touch it in this phase.
                gateway_us.append((cpu_seconds(gateway_pid) - gateway_cpu) / len(g) * 1e6)
                gw += g
                inv += d
                print(
                    f"round {r + 1}: {rate} orders/s, p50 {p50s[-1]:.0f} ms, p99 {p99s[-1]:.0f} ms",
                    flush=True,
                )
        finally:
            platform.stop()
    print()
    print(
        f"Orders through the gateway, {args.concurrency} concurrent clients, "
        f"{args.rounds} rounds of {args.seconds:g} s, medians "
        f"(answers: {dict(sorted(all_codes.items()))})"
    )
    print()
    print("| orders/s (confirmed) | p50 ms | p95 ms | p99 ms |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {statistics.median(rates)} | {statistics.median(p50s):.0f} | "
        f"{statistics.median(p95s):.0f} | {statistics.median(p99s):.0f} |"
    )
    print()
    print(f"Catalog read GET /products/{{id}}, one at a time, {len(gw)} each, interleaved")
    print()
    print("| path | p50 ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, values in (("through the gateway", gw), ("inventory directly", inv)):
        print(
            f"| {name} | {_pct(values, 50):.2f} | {_pct(values, 95):.2f} | {_pct(values, 99):.2f} |"
        )
    print(
        f"| **gateway adds** | {_pct(gw, 50) - _pct(inv, 50):.2f} | "
        f"{_pct(gw, 95) - _pct(inv, 95):.2f} | {_pct(gw, 99) - _pct(inv, 99):.2f} |"
    )
    print()
    cpu = statistics.median(gateway_us)
    print(f"Gateway CPU per proxied read: {cpu:.0f} µs (median of rounds)")


if __name__ == "__main__":
    main()
