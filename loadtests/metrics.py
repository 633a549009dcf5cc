"""Locust's numbers as Prometheus metrics, read from its stats at scrape time.

Runs only where the whole run's statistics are: the local runner, or the
master (workers send it their stats every few seconds, so a master scrape is
already aggregated). Exposed:

- ``locust_requests_total{method,name}`` and ``locust_request_failures_total{method,name}``
- ``locust_request_duration_seconds{method,name}``: a histogram with the
  server's ``http_server_request_duration_seconds`` buckets, so one
  ``histogram_quantile`` compares client- and server-side latency. Built from
  Locust's response-time counts, which are rounded (to the millisecond below
  100 ms, two significant digits above): a bucket edge is off by at most 0.5 ms
  or 2%.
- ``locust_users{user_class}``, ``locust_workers`` (0 when not distributed),
  ``locust_cpu_usage_ratio{process}`` (``local``, ``master``, ``worker-N``): a
  load generator near 1.0 measures itself, not the platform.
- open model only (``--open-rate``): ``locust_open_model_arrivals_total{outcome}``
  (``sent``, ``dropped``) and ``locust_open_model_lag_seconds``, a histogram of
  how late each request left against its scheduled time: a generator falling
  behind shows while it runs, not only in the end-of-run line.

``name`` is the route template, as the server's ``http_route``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from loadtests.open_model import LAG_BOUNDS_MS, LagRecorder

# The server's buckets (telemetry.DURATION_BUCKETS; a test keeps them equal).
# Copied, not imported: the load generator does not load the platform's telemetry.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
_LABELS = ["method", "name"]


def cumulative_buckets(
    response_times_ms: Mapping[float, int], bounds: tuple[float, ...] = DURATION_BUCKETS
) -> list[tuple[str, float]]:
    """Locust's ``{rounded ms: count}`` as cumulative ``(le, count)`` pairs, ``+Inf`` last."""
    counts = [0] * (len(bounds) + 1)
    for ms, n in response_times_ms.items():
        seconds = ms / 1000
        i = 0
        while i < len(bounds) and seconds > bounds[i]:
            i += 1
        counts[i] += n
    out: list[tuple[str, float]] = []
    running = 0
    # le as the server's histogram writes it ("1.0", not "1").
    for bound, n in zip((*map(floatToGoString, bounds), "+Inf"), counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out


class LocustCollector(Collector):
    """Reads ``environment.stats`` and ``environment.runner`` on every scrape."""

    def __init__(self, environment: Any, lag: LagRecorder | None = None) -> None:
        self.environment = environment
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "locust_requests", "Requests Locust made, by method and name (route).", labels=_LABELS
        )
        failures = CounterMetricFamily(
            "locust_request_failures",
            "Requests Locust counted as failed (unexpected status, no response).",
            labels=_LABELS,
        )
        duration = HistogramMetricFamily(
            "locust_request_duration_seconds",
            "Client-side request duration as Locust measured it, server's buckets.",
            labels=_LABELS,
        )
        for entry in list(self.environment.stats.entries.values()):
            labels = [str(entry.method), str(entry.name)]
            requests.add_metric(labels, entry.num_requests)
            failures.add_metric(labels, entry.num_failures)
            duration.add_metric(
                labels,
                cumulative_buckets(dict(entry.response_times)),
                sum_value=entry.total_response_time / 1000,
            )
        yield requests
        yield failures
        yield duration
        yield from self._runner_metrics()
        yield from self._open_model_metrics()

    def _open_model_metrics(self) -> Iterator[Metric]:
        lag = self.lag
        if lag is None or not lag.scheduled:
            return
        arrivals = CounterMetricFamily(
            "locust_open_model_arrivals",
            "Open model: scheduled arrivals, sent or dropped (max in flight reached).",
            labels=["outcome"],
        )
        arrivals.add_metric(["sent"], lag.sent)
        arrivals.add_metric(["dropped"], lag.dropped)
        yield arrivals
        histogram = HistogramMetricFamily(
            "locust_open_model_lag_seconds",
            "Open model: how late each request left against its scheduled time.",
        )
        running, buckets = 0, []
        bounds = (*map(floatToGoString, (ms / 1000 for ms in LAG_BOUNDS_MS)), "+Inf")
        for bound, n in zip(bounds, lag.counts, strict=True):
            running += n
            buckets.append((bound, float(running)))
        histogram.add_metric([], buckets, sum_value=lag.lag_sum_ms / 1000)
        yield histogram

    def _runner_metrics(self) -> Iterator[Metric]:
        runner = self.environment.runner
        if runner is None:
            return
        users = GaugeMetricFamily(
            "locust_users", "Simulated users running now, by user class.", labels=["user_class"]
        )
        counts = getattr(runner, "reported_user_classes_count", None)
        if counts is None:
            counts = runner.user_classes_count
        for name, n in sorted(dict(counts).items()):
            users.add_metric([name], n)
        yield users
        clients = getattr(runner, "clients", None)
        workers = GaugeMetricFamily(
            "locust_workers", "Locust workers connected to this master (0: not distributed)."
        )
        workers.add_metric([], runner.worker_count if clients is not None else 0)
        yield workers
        cpu = GaugeMetricFamily(
            "locust_cpu_usage_ratio",
            "CPU use of each Locust process (1 = one core); near 1 the generator is the limit.",
            labels=["process"],
        )
        cpu.add_metric(
            ["master" if clients is not None else "local"], runner.current_cpu_usage / 100
        )
        if clients is not None:
            for client in list(clients.values()):
                index = runner.get_worker_index(client.id)
                cpu.add_metric([f"worker-{index}"], client.cpu_usage / 100)
        yield cpu


def serve(
    environment: Any, port: int, host: str = "127.0.0.1", lag: LagRecorder | None = None
) -> Any:
    """Start the exporter on ``host:port`` (a background server); returns it for ``shutdown()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LocustCollector(environment, lag))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
