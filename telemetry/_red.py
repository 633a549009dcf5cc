"""The server-side RED series, counted without locks and exported at scrape time.

``http_server_request_duration_seconds`` and ``http_server_active_requests``
are updated once per request on the event-loop thread. prometheus-client's
``Histogram.observe`` with an exemplar costs about 2.3 µs there (a lock, a
linear scan of 18 buckets, the exemplar's label validation and two hex
formats), its ``Gauge.inc``/``dec`` about 0.5 µs each; plain integer
arithmetic with ``bisect`` and the trace ids kept as integers until a scrape
costs a fraction of that (benchmarks/red_metrics.py prints both). The
exposition is prometheus-client's own, from a custom collector.

Only the event-loop thread writes these counters; a scrape reads them from
the same thread (the /metrics handler runs on the loop), so no lock is needed.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Exemplar

from telemetry._metrics import DURATION_BUCKETS, REGISTRY, register_callback_collector

_LE = [repr(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]

# Longer than Prometheus's scrape interval (2 s natively, 5 s in compose) is
# pointless: a scrape sees only each bucket's latest exemplar.
EXEMPLAR_INTERVAL_SECONDS = 5.0
# The span attribute that asks the tail sampler to keep the exemplar's trace.
EXEMPLAR_ATTRIBUTE = "redline.exemplar"


class DurationSeries:
    """One label set's histogram: per-bucket counts, sum, latest exemplar per bucket."""

    __slots__ = ("counts", "exemplars", "labels", "sum")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.sum = 0.0
        # (trace_id, span_id, value, unix time) as integers and floats.
        self.exemplars: list[tuple[int, int, float, float] | None] = [None] * len(self.counts)

    def observe(self, value: float, trace_id: int = 0, span_id: int = 0) -> bool:
        """Count ``value``; True when its trace became the bucket's exemplar."""
        # bisect_left: the first bound >= value, i.e. the bucket with le >= value.
        i = bisect_left(DURATION_BUCKETS, value)
        self.counts[i] += 1
        self.sum += value
        if trace_id:
            now = time.time()
            current = self.exemplars[i]
            if current is None or now - current[3] >= EXEMPLAR_INTERVAL_SECONDS:
                self.exemplars[i] = (trace_id, span_id, value, now)
                return True
        return False


class ServerRed:
    """All of a process's server RED series."""

    LABELS = ("http_request_method", "http_route", "http_response_status_code")

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, int], DurationSeries] = {}
        self.active: dict[str, int] = {}

    def duration(self, method: str, route: str, status: int) -> DurationSeries:
        key = (method, route, status)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = DurationSeries((method, route, str(status)))
        return found

    def collect(self) -> Iterable[Metric]:
        hist = HistogramMetricFamily(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, from the first byte received to the last byte sent.",
            labels=self.LABELS,
        )
        for series in list(self.series.values()):
            hist.add_metric(list(series.labels), _buckets(series), series.sum)
        yield hist
        active = GaugeMetricFamily(
            "http_server_active_requests",
            "Number of HTTP server requests in flight.",
            labels=["http_request_method"],
        )
        for method, n in sorted(self.active.items()):
            active.add_metric([method], n)
        yield active


def _buckets(series: DurationSeries) -> Sequence[tuple[str, float] | tuple[str, float, Exemplar]]:
    out: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
    running = 0
    for le, count, ex in zip(_LE, series.counts, series.exemplars, strict=True):
        running += count
        if ex is None:
            out.append((le, float(running)))
            continue
        trace_id, span_id, value, at = ex
        exemplar = Exemplar(
            {"trace_id": format(trace_id, "032x"), "span_id": format(span_id, "016x")},
            value,
            at,
        )
        out.append((le, float(running), exemplar))
    return out


SERVER_RED = ServerRed()
register_callback_collector(SERVER_RED.collect, REGISTRY)
