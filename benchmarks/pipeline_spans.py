"""Spans through the real pipeline at the e2e benchmark's load: how many, and how many lost.

Starts `redline up` with the Collector and Jaeger (built from pinned Go modules)
on free ports, places orders through the gateway at the e2e benchmark's
concurrency (closed loop, each a full saga) while reading the catalog, then
waits for the pipeline to settle and counts every span at each hop, from each
program's own metrics:

    services exported  (otel_sdk_exporter_span_exported_total, delivered)
    → Collector accepted (otelcol_receiver_accepted_spans_total, job otel-collector)
    → Collector sent     (otelcol_exporter_sent_spans_total, to Jaeger)
    → Jaeger accepted    (otelcol_receiver_accepted_spans_total, job jaeger)
    → Jaeger kept        (tail sampling: traces sampled, by policy)

and every place one can be lost (export failures, refusals, queue and send
failures, traces evicted before their decision). Prints a table; exits 1 if a
span was lost.

    .venv/bin/python benchmarks/pipeline_spans.py [--concurrency 8] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
from e2e_orders import place_orders

from redline.binaries import PROGRAMS, binary_path
from tests.harness import Stack, prom_query, sign_up, wait_until

HOPS = {
    "services exported": 'sum(otel_sdk_exporter_span_exported_total{error_type=""})',
    "Collector accepted": 'sum(otelcol_receiver_accepted_spans_total{job="otel-collector"})',
    "Collector sent to Jaeger": (
        'sum(otelcol_exporter_sent_spans_total{job="otel-collector",exporter="otlp_grpc/jaeger"})'
    ),
    "Jaeger accepted": 'sum(otelcol_receiver_accepted_spans_total{job="jaeger"})',
}
LOSSES = {
    "services: export failed": 'sum(otel_sdk_exporter_span_exported_total{error_type!=""})',
    "Collector: refused": "sum(otelcol_receiver_refused_spans_total)",
    "Collector: memory limiter refused": "sum(otelcol_processor_refused_spans_total)",
    "Collector: queue full": "sum(otelcol_exporter_enqueue_failed_spans_total)",
    "Collector: send failed": "sum(otelcol_exporter_send_failed_spans_total)",
    "Jaeger: evicted before deciding (traces)": (
        "sum(otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total)"
    ),
}


def value(prometheus: str, expr: str) -> float:
    result = prom_query(prometheus, expr)
    return float(result[0]["value"][1]) if result else 0.0


async def catalog_reads(gateway: str, seconds: float) -> int:
    n = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
        while time.monotonic() < stop:
            n += 1
            r = await client.get(f"/api/v1/products/{1 + n % 320}")
            assert r.status_code == 200, r.text
    return n


async def drive(gateway: str, concurrency: int, seconds: float) -> tuple[int, dict[int, int], int]:
    tokens = [sign_up(gateway).headers for _ in range(concurrency)]
    (rate, _, codes), reads = await asyncio.gather(
        place_orders(gateway, tokens, concurrency, seconds), catalog_reads(gateway, seconds)
    )
    return rate, codes, reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sample-percent", type=float, default=10.0)
    args = parser.parse_args()
    missing = [p.name for n, p in PROGRAMS.items() if binary_path(n) is None]
    if missing:
        print(f"not built: {', '.join(missing)}; run `make binaries`", file=sys.stderr)
        return 1
    stack = Stack.build(
        Path(tempfile.mkdtemp(prefix="redline-pipeline-")),
        otlp_endpoint=None,
        rules="normal",
        extra=["--trace-sample-percent", f"{args.sample_percent:g}"],
    ).start(timeout=180)
    try:
        rate, codes, reads = asyncio.run(drive(stack.gateway, args.concurrency, args.seconds))
        prometheus = stack.prometheus
        last: list[tuple[float, ...]] = []

        def settled() -> bool:
            # Accepted == sent == stored: nothing in flight inside the pipeline.
            # (The services' count moves on by a few spans: the saga recovery
            # loop traces a round every couple of seconds, load or not.)
            counts = tuple(value(prometheus, q) for q in HOPS.values())
            last.append(counts)
            return len(set(counts[1:])) == 1 and counts[0] - counts[1] <= 10

        try:
            wait_until(settled, timeout=60, interval=0.5, message="the pipeline settling")
        except AssertionError as exc:
            print(f"not settled: {exc}", file=sys.stderr)
        hops = dict(zip(HOPS, last[-1], strict=True))
        losses = {name: value(prometheus, q) for name, q in LOSSES.items()}
        kept = prom_query(
            prometheus,
            "sum by (policy) (otelcol_processor_tail_sampling_count_traces_sampled_total"
            '{job="jaeger",sampled="true"})',
        )
        print(
            f"load: {args.concurrency} closed-loop order clients + 1 catalog reader for "
            f"{args.seconds:g} s: {rate} confirmed orders/s ({codes}), {reads} catalog reads"
        )
        print()
        print("| hop | spans |")
        print("|---|---:|")
        for name, n in hops.items():
            print(f"| {name} | {n:,.0f} |")
        for name, n in losses.items():
            print(f"| lost — {name} | {n:,.0f} |")
        print()
        print("Traces Jaeger kept, by the policy that kept them (a trace may match several):")
        for row in sorted(kept, key=lambda r: r["metric"].get("policy", "")):
            print(f"  {row['metric'].get('policy', '?'):<14} {float(row['value'][1]):,.0f}")
        exported, accepted, _, stored = hops.values()
        lost = sum(losses.values()) + (accepted - stored)
        print()
        print(
            f"spans lost between the services and Jaeger: {lost:,.0f} "
            f"(and {exported - accepted:,.0f} exported but still in flight when read)"
        )
        return 0 if lost == 0 else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
