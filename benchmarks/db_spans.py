"""What database spans cost: a saga-step transaction untraced, stock-traced and Redline-traced.

One process, one asyncpg connection to an embedded PostgreSQL, spans exported
over OTLP/HTTP to ``otlp_sink.py`` by the services' own tracer provider
(``telemetry._tracing``: batch processor, Redline's OTLP encoder). The
unit of work is a saga step's shape: ``BEGIN``, an ``INSERT``, an ``UPDATE``,
a ``SELECT``, ``COMMIT``, under a sampled parent span. Four variants take
turns in interleaved rounds in the same process:

* untraced: asyncpg as it comes;
* stock: opentelemetry-instrumentation-asyncpg (what Redline used before:
  a span per statement named by its first word, ``BEGIN;`` and ``COMMIT;``
  included);
* Redline, SDK spans: ``telemetry._db`` (``{operation} {table}``, no
  transaction-control spans) with every span made by the SDK's ``start_span``,
  as before the lighter spans;
* Redline: ``telemetry._db`` as the services run it, its spans made as the
  server spans are (``telemetry/_server_span.py``).

The report gives the process's CPU per transaction (all threads: the
exporter's too), the spans each made, and the ratios against untraced.

    .venv/bin/python benchmarks/db_spans.py [--rounds 5] [--transactions 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from collections.abc import Callable
from typing import Any

import asyncpg
from _report import cpu_seconds, otlp_env, otlp_sink

from tests.conftest import throwaway_postgres


async def unit_of_work(conn: asyncpg.Connection, i: int) -> None:
    async with conn.transaction():
        await conn.execute("INSERT INTO saga_events (order_id, step) VALUES ($1, 'reserve')", i)
        await conn.execute("UPDATE orders SET step = $2 WHERE id = $1", i % 100, "reserve")
        await conn.fetchrow("SELECT id, step FROM orders WHERE id = $1", i % 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transactions", type=int, default=2000, help="per variant per round")
    args = parser.parse_args()
    with otlp_sink() as sink_port:
        os.environ.update(otlp_env(sink_port))
        # The stock instrumentation with the stable names, as Redline configured it.
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "database")
        with throwaway_postgres() as pg:
            results = asyncio.run(run(pg.dsn(), args.rounds, args.transactions))
    report(results, args.rounds, args.transactions)


async def run(dsn: str, rounds: int, n: int) -> dict[str, tuple[list[float], int]]:
    import httpx
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    from telemetry import _db
    from telemetry._tracing import TracingSettings, configure_tracing

    provider = configure_tracing(TracingSettings(service_name="bench"))
    tracer = provider.get_tracer("bench")
    sink = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/spans"

    async def spans_so_far() -> int:
        provider.force_flush()
        async with httpx.AsyncClient() as client:
            return int((await client.get(sink)).text)

    stock: Any = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]

    def nothing() -> None:
        pass

    variants: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "untraced": (nothing, nothing),
        "stock (opentelemetry-instrumentation-asyncpg)": (
            lambda: stock.instrument(tracer_provider=provider),
            lambda: stock.uninstrument(),
        ),
        "Redline, SDK spans (sdk_spans=True)": (
            lambda: _db.instrument_asyncpg(provider, sdk_spans=True),
            _db.uninstrument_asyncpg,
        ),
        "Redline (telemetry._db)": (
            lambda: _db.instrument_asyncpg(provider),
            _db.uninstrument_asyncpg,
        ),
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    spans: dict[str, int] = dict.fromkeys(variants, 0)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, step text);"
            "CREATE TABLE saga_events (order_id int, step text);"
            "INSERT INTO orders SELECT g, 'created' FROM generate_series(0, 99) g"
        )
        for r in range(rounds + 1):  # the first round warms up and is not counted
            for name, (on, off) in variants.items():
                on()
                try:
                    before_spans = await spans_so_far()
                    before = cpu_seconds()
                    for i in range(n):
                        with tracer.start_as_current_span("saga reserve_inventory"):
                            await unit_of_work(conn, i)
                    made = await spans_so_far() - before_spans - n  # not the parents
                    used = cpu_seconds() - before
                finally:
                    off()
                if r:
                    cpu[name].append(used / n * 1e6)
                    spans[name] = made // n
                    print(
                        f"round {r}/{rounds} {name:<48} {cpu[name][-1]:7.1f} µs CPU/transaction, "
                        f"{made / n:.1f} spans",
                        flush=True,
                    )
    finally:
        await conn.close()
        provider.shutdown()
    return {name: (cpu[name], spans[name]) for name in variants}


def report(results: dict[str, tuple[list[float], int]], rounds: int, n: int) -> None:
    print()
    print(
        f"BEGIN; INSERT; UPDATE; SELECT; COMMIT under a sampled parent, {n} per round, "
        f"{rounds} interleaved rounds, medians; CPU of the whole process (exporter included)"
    )
    print()
    base = statistics.median(results["untraced"][0])
    print("| variant | DB spans/transaction | CPU µs/transaction | added µs | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, (values, spans) in results.items():
        median = statistics.median(values)
        print(f"| {name} | {spans} | {median:.0f} | {median - base:+.0f} | {median / base:.2f}× |")


if __name__ == "__main__":
    main()
