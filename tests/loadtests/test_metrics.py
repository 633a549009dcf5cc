"""Locust's statistics as Prometheus metrics: names, buckets, and what the catalog allows."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alerts.paths import all_rule_files
from alerts.promql import Catalog, recorded_series
from loadtests.metrics import DURATION_BUCKETS, LocustCollector, cumulative_buckets
from loadtests.open_model import LagRecorder
from telemetry import DURATION_BUCKETS as SERVER_BUCKETS


@dataclass
class Entry:
    """Stands in for locust.stats.StatsEntry."""

    name: str
    method: str
    response_times: dict[float, int]
    num_failures: int = 0

    @property
    def num_requests(self) -> int:
        return sum(self.response_times.values())

    @property
    def total_response_time(self) -> float:
        return sum(ms * n for ms, n in self.response_times.items())


@dataclass
class Worker:
    id: str
    cpu_usage: float


@dataclass
class Master:
    """A master runner's attributes, as the collector reads them."""

    clients: dict[str, Worker]
    reported_user_classes_count: dict[str, int]
    current_cpu_usage: float = 12.0
    indexes: dict[str, int] = field(default_factory=dict)

    @property
    def worker_count(self) -> int:
        return len(self.clients)

    def get_worker_index(self, client_id: str) -> int:
        return self.indexes.setdefault(client_id, len(self.indexes))


@dataclass
class Stats:
    entries: dict[tuple[str, str], Entry]


@dataclass
class Environment:
    stats: Stats
    runner: Any


def _environment() -> Environment:
    products = Entry("/api/v1/products", "GET", {0: 2, 1: 3, 7: 5, 120: 1, 3000: 1}, 1)
    orders = Entry("/api/v1/orders", "POST", {60: 4})
    master = Master({"a": Worker("a", 35.0), "b": Worker("b", 97.0)}, {"Browser": 6, "Shopper": 3})
    return Environment(Stats({("/p", "GET"): products, ("/o", "POST"): orders}), master)


def _lag() -> LagRecorder:
    lag = LagRecorder()
    for ms in (0.2, 0.4, 3.0, 70.0):
        lag.observe(ms)
    lag.drop()
    return lag


def _exposition(environment: Environment, lag: LagRecorder | None = None) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LocustCollector(environment, _lag() if lag is None else lag))
    return generate_latest(registry).decode()


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def test_client_histogram_has_the_servers_buckets() -> None:
    assert DURATION_BUCKETS == SERVER_BUCKETS


def test_bucket_counts_are_cumulative_with_inf_equal_to_the_count() -> None:
    buckets = dict(cumulative_buckets({0: 2, 1: 3, 7: 5, 120: 1, 3000: 1}))
    assert buckets["0.0005"] == 2
    assert buckets["0.001"] == 5
    assert buckets["0.0075"] == 10
    assert buckets["0.1"] == 10
    assert buckets["0.25"] == 11
    assert buckets["2.5"] == 11
    assert buckets["5.0"] == 12
    assert buckets["+Inf"] == 12


def test_collector_exposes_requests_failures_latency_users_and_cpu() -> None:
    samples = _samples(_exposition(_environment()))
    products = (("method", "GET"), ("name", "/api/v1/products"))
    assert samples["locust_requests_total"][products] == 12
    assert samples["locust_request_failures_total"][products] == 1
    assert samples["locust_request_duration_seconds_count"][products] == 12
    assert samples["locust_request_duration_seconds_sum"][products] == pytest.approx(3.158)
    bucket = (("le", "0.0075"), *products)
    assert samples["locust_request_duration_seconds_bucket"][bucket] == 10
    assert samples["locust_users"] == {
        (("user_class", "Browser"),): 6,
        (("user_class", "Shopper"),): 3,
    }
    assert samples["locust_workers"] == {(): 2}
    assert samples["locust_cpu_usage_ratio"] == {
        (("process", "master"),): 0.12,
        (("process", "worker-0"),): 0.35,
        (("process", "worker-1"),): 0.97,
    }


def test_open_model_arrivals_and_lag_are_served_only_in_the_open_model() -> None:
    samples = _samples(_exposition(_environment()))
    assert samples["locust_open_model_arrivals_total"] == {
        (("outcome", "sent"),): 4,
        (("outcome", "dropped"),): 1,
    }
    lag = samples["locust_open_model_lag_seconds_bucket"]
    assert lag[(("le", "0.0005"),)] == 2
    assert lag[(("le", "0.005"),)] == 3
    assert lag[(("le", "+Inf"),)] == 4
    assert samples["locust_open_model_lag_seconds_sum"][()] == pytest.approx(0.0736)
    closed = _samples(_exposition(_environment(), LagRecorder()))
    assert "locust_open_model_arrivals_total" not in closed


def test_exposition_passes_promtool(promtool: str) -> None:
    lint = subprocess.run(
        [promtool, "check", "metrics"],
        input=_exposition(_environment()),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_catalog_lists_every_series_the_exporter_serves_for_job_locust() -> None:
    catalog = Catalog.load(recorded=recorded_series(all_rule_files()))
    for name, series in _samples(_exposition(_environment())).items():
        for labels in series:
            matchers = ",".join(f'{k}="{v}"' for k, v in labels)
            expr = f'{name}{{job="locust"{"," + matchers if matchers else ""}}}'
            assert catalog.problems(expr) == [], expr
