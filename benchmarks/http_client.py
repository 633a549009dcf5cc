"""CPU per request on the client side: httpx's own transport vs the resilient client's.

One hello server (benchmarks/hello_app.py, plain) pinned to CPU 1; this process
pinned to CPU 0 sends GETs from 8 concurrent tasks on uvloop. Each variant's
CPU time (user + system of this process) per request, interleaved rounds,
medians, ratios against stock httpx measured in the same run:

* ``httpx.AsyncClient`` — httpx as shipped (httpcore on anyio);
* ``httpx.AsyncClient`` on ``AiohttpTransport`` — services/chassis/aiohttp_transport.py;
* ``httpx.Request`` straight to ``AiohttpTransport`` — what ``Downstream`` does;
* ``Downstream`` — the whole resilient client: bulkhead, breaker, retrier,
  CLIENT span (tracing not configured here, so a non-recording one) and metrics;
* ``AiohttpTransport.send`` — the same without httpx's models;
* ``WireClient.send`` — services/chassis/wire.py, httptools' parser on an
  ``asyncio.Protocol``, what the gateway's relay sends through;
* ``Downstream.relay`` — the whole resilient client on it (the gateway's path);
* ``aiohttp.ClientSession`` alone — aiohttp's floor.

    .venv/bin/python benchmarks/http_client.py [--rounds 5] [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvloop
from _report import cpu_seconds, print_ratio_table, wait_http

from services.chassis.aiohttp_transport import AiohttpTransport, WireResponse
from services.chassis.http_client import DependencyConfig, Downstream
from services.chassis.wire import WireAnswer, WireClient
from tests.harness import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONCURRENCY = 8
TIMEOUTS = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), 5.0)}

Call = Callable[[], Awaitable[None]]


async def per_request(call: Call, requests: int) -> float:
    """µs of this process's CPU per request, ``requests`` sent by 8 tasks."""

    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    before = cpu_seconds()
    await asyncio.gather(*(worker(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
    return (cpu_seconds() - before) / (requests // CONCURRENCY * CONCURRENCY) * 1e6


async def clients(url: str) -> tuple[dict[str, Call], Callable[[], Awaitable[None]]]:
    """One call per variant, and what closes them all."""
    stock = httpx.AsyncClient()
    on_aiohttp = httpx.AsyncClient(transport=AiohttpTransport(max_connections=32))
    transport = AiohttpTransport(max_connections=32)
    downstream = Downstream(
        DependencyConfig(name="hello", base_url=url.rsplit("/", 1)[0], max_concurrent=32)
    )
    session = aiohttp.ClientSession()
    wire = WireClient(max_connections=32)
    host, _, rest = url.removeprefix("http://").partition(":")
    port, _, _ = rest.partition("/")

    def check(response: httpx.Response | WireResponse | WireAnswer) -> None:
        if response.status_code != 200:
            raise SystemExit(f"benchmark: {url} answered {response.status_code}")

    async def via_stock() -> None:
        check(await stock.get(url))

    async def via_client_on_aiohttp() -> None:
        check(await on_aiohttp.get(url))

    async def via_transport() -> None:
        check(await transport.handle_async_request(httpx.Request("GET", url, extensions=TIMEOUTS)))

    async def via_downstream() -> None:
        check(await downstream.request("GET", "/hello"))

    async def via_transport_send() -> None:
        response = await transport.send(
            "GET", url, {}, None, pool=5.0, connect=5.0, read=5.0, total=5.0
        )
        check(response)

    async def via_wire() -> None:
        answer = await wire.send("GET", host, int(port), "/hello", {}, None, connect=5, read=5)
        check(answer)

    async def via_relay() -> None:
        check(await downstream.relay("GET", "/hello"))

    async def via_aiohttp() -> None:
        async with session.get(url) as response:
            await response.read()
            if response.status != 200:
                raise SystemExit(f"benchmark: {url} answered {response.status}")

    async def close() -> None:
        await stock.aclose()
        await on_aiohttp.aclose()
        await transport.aclose()
        await downstream.aclose()
        await session.close()
        await wire.aclose()

    return {
        "httpx.AsyncClient (stock transport)": via_stock,
        "httpx.AsyncClient on AiohttpTransport": via_client_on_aiohttp,
        "httpx.Request straight to AiohttpTransport": via_transport,
        "Downstream (the resilient client)": via_downstream,
        "AiohttpTransport.send (no httpx models)": via_transport_send,
        "WireClient.send (httptools)": via_wire,
        "Downstream.relay (the gateway's path)": via_relay,
        "aiohttp.ClientSession alone": via_aiohttp,
    }, close


async def run(url: str, rounds: int, requests: int) -> dict[str, list[float]]:
    calls, close = await clients(url)
    results: dict[str, list[float]] = {name: [] for name in calls}
    try:
        for call in calls.values():  # warm-up: connections, caches
            await per_request(call, 400)
        for r in range(rounds):
            for name, call in calls.items():
                results[name].append(await per_request(call, requests))
                print(f"round {r + 1}/{rounds} {name:<44} {results[name][-1]:8.1f} µs", flush=True)
    finally:
        await close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "hello_app.py"), "plain", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(server.pid, {1})
        url = f"http://127.0.0.1:{port}/hello"
        wait_http(url, proc=server)
        results: Any = uvloop.run(run(url, args.rounds, args.requests))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print()
    print(
        f"GET /hello, {CONCURRENCY} concurrent tasks on uvloop, client on CPU 0, server on CPU 1, "
        f"{args.rounds} interleaved rounds of {args.requests} requests, medians"
    )
    print()
    print_ratio_table("client", "CPU µs/request", results)


if __name__ == "__main__":
    main()
