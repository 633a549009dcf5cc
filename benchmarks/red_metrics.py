"""Per-request cost of the server RED series: prometheus-client vs telemetry/_red.py.

One histogram observation with an exemplar plus an in-flight inc/dec, as the
middleware does per request, timed in one process, interleaved, medians.

    .venv/bin/python benchmarks/red_metrics.py
"""

from __future__ import annotations

import time

from _report import print_ratio_table
from prometheus_client import CollectorRegistry, Gauge, Histogram

from telemetry._metrics import DURATION_BUCKETS
from telemetry._red import ServerRed

N = 100_000
ROUNDS = 7
TRACE_ID, SPAN_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def stock() -> float:
    registry = CollectorRegistry()
    hist = Histogram("d_seconds", "d", ["m", "r", "s"], buckets=DURATION_BUCKETS, registry=registry)
    gauge = Gauge("a", "a", ["m"], registry=registry)
    child, active = hist.labels("GET", "/hello", "200"), gauge.labels("GET")
    t = time.process_time()
    for i in range(N):
        active.inc()
        child.observe(
            0.0003 + i % 7 * 0.001,
            {"trace_id": format(TRACE_ID, "032x"), "span_id": format(SPAN_ID, "016x")},
        )
        active.dec()
    return (time.process_time() - t) / N * 1e6


def ours() -> float:
    red = ServerRed()
    active = red.active
    t = time.process_time()
    for i in range(N):
        active["GET"] = active.get("GET", 0) + 1
        red.duration("GET", "/hello", 200).observe(0.0003 + i % 7 * 0.001, TRACE_ID, SPAN_ID)
        active["GET"] -= 1
    return (time.process_time() - t) / N * 1e6


def main() -> None:
    results: dict[str, list[float]] = {"prometheus-client": [], "telemetry/_red.py": []}
    for _ in range(ROUNDS):
        results["prometheus-client"].append(stock())
        results["telemetry/_red.py"].append(ours())
    print_ratio_table("per request (observe with exemplar + in-flight inc/dec)", "µs", results)


if __name__ == "__main__":
    main()
