"""Probes of Prometheus and of a service's own ``/metrics``: PromQL, counters, retry amplification.

``$window`` in a query becomes the time since a mark, ``increase(x[$window])``
since ``since_mark``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import httpx

from chaos.context import MARKS, Configuration, stack
from chaos.probes._common import TIMEOUT, get, matches, poll, seconds_since
from services.topology import SERVICES


def _window(since_mark: str | None) -> str:
    if not since_mark:
        return "1m"
    return f"{max(2, math.ceil(MARKS.since(since_mark)) + 1)}s"


def prom_query(
    query: str, configuration: Configuration | None = None, at: float | None = None
) -> list[dict[str, Any]]:
    """An instant query's result vector, evaluated now or at the Unix time ``at``."""
    params: dict[str, Any] = {"query": query}
    if at is not None:
        params["time"] = f"{at:.3f}"
    r = get(f"{stack(configuration).prometheus}/api/v1/query", params=params, timeout=10)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def promql(
    query: str,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
    at: float | None = None,
) -> float | None:
    """The value of a query that yields one series (``$window``: the time since the mark),
    now or at the Unix time ``at``."""
    result = prom_query(query.replace("$window", _window(since_mark)), configuration, at)
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else round(value, 6)


def promql_eventually(
    query: str,
    within: float,
    at_least: float | None = None,
    at_most: float | None = None,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Wait until the query's value is in [at_least, at_most]; ``seconds`` from the mark."""
    started = time.time()
    value: float | None = None
    for _ in poll(within, 0.5):
        value = promql(query, since_mark, configuration)
        if (
            value is not None
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)
        ):
            return {"value": value, "seconds": seconds_since(since_mark, started)}
    return {"value": value, "seconds": None, "waited": within}


def metrics_flowing(
    within: float = 0.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Prometheus has scraped every target at least once, and every service's is up
    (waiting up to ``within``).

    An experiment's evidence is in Prometheus: its queries need samples from
    before the fault. On a stack started a moment ago Prometheus may not have
    scraped yet, and a counter first seen after the fault (an ejection counted
    at 1) shows no increase on any panel. Other targets (a Locust exporter
    between load tests) need only have been tried.
    """
    started = time.time()
    unscraped: list[str] = []
    down: list[str] = []
    for _ in poll(within, 0.25):
        r = get(
            f"{stack(configuration).prometheus}/api/v1/targets",
            params={"state": "active"},
            timeout=10,
        )
        r.raise_for_status()
        targets = r.json()["data"]["activeTargets"]
        named = [(t["labels"]["job"], t["labels"]["instance"], t["health"]) for t in targets]
        unscraped = sorted(f"{job} {at}" for job, at, health in named if health == "unknown")
        down = sorted(
            f"{job} {at}" for job, at, health in named if job in SERVICES and health == "down"
        )
        if targets and not unscraped and not down:
            break
    return {
        "unscraped": unscraped,
        "down": down,
        "count": len(unscraped) + len(down),
        "seconds": round(time.time() - started, 2),
    }


# A scrape: {(sample name, sorted label pairs): value}.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(service: str, configuration: Configuration | None = None) -> Samples:
    """A service's own ``/metrics``, as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{stack(configuration).url(service)}/metrics", timeout=TIMEOUT).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def _total(
    samples: Samples,
    name: str,
    labels: dict[str, str],
    by: str | None = None,
) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, sample_labels), value in samples.items():
        found = dict(sample_labels)
        if sample == name and matches(found, labels):
            key = found.get(by, "") if by else ""
            out[key] = out.get(key, 0.0) + value
    return out


_COUNTER_BASELINES: dict[str, dict[str, Any]] = {}


def _retry_counters(
    caller: str, dependency: str, route: str, configuration: Configuration | None
) -> dict[str, Any]:
    by_outcome = _total(
        scrape(caller, configuration),
        "resilience_retry_attempts_total",
        {"retrier": dependency},
        by="outcome",
    )
    served = _total(
        scrape(dependency, configuration),
        "http_server_request_duration_seconds_count",
        {"http_route": route},
    ).get("", 0.0)
    return {"by_outcome": by_outcome, "served": served, "at": time.time()}


def retry_counters(
    name: str,
    caller: str,
    dependency: str,
    route: str,
    ttl: float = 10.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Record ``caller``'s retry counters for ``dependency`` and the dependency's request count.

    Also ``prior_calls``: at most how many calls the caller made in the
    ``ttl`` before now. The retry budget's window reaches back that far, so
    those calls' deposits count towards what it allows next. It is an upper
    bound, never an estimate: the caller's own counter now (exact) minus the
    last sample Prometheus holds from ``ttl`` ago or earlier. (Prometheus's
    ``increase()`` over the last ``ttl`` was tried first; it misses the calls
    since the last scrape, such as a steady-state probe's reads a moment ago,
    and once allowed a budget-abiding gateway one retry too few.)
    """
    counters = _retry_counters(caller, dependency, route, configuration)
    calls_now = sum(v for k, v in counters["by_outcome"].items() if k != "retry")
    calls_then = (
        promql(
            f'sum(resilience_retry_attempts_total{{job="{caller}",retrier="{dependency}",'
            f'outcome!="retry"}})',
            configuration=configuration,
            at=counters["at"] - ttl,
        )
        or 0.0
    )
    # A restart since then resets the counter: count every call since it.
    counters["prior_calls"] = calls_now - calls_then if calls_now >= calls_then else calls_now
    _COUNTER_BASELINES[name] = counters
    return counters


def retry_amplification(
    baseline: str,
    caller: str,
    dependency: str,
    route: str,
    ratio: float = 0.2,
    floor_per_second: float = 10.0,
    ttl: float = 10.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Attempts per call by ``caller``'s retrier for ``dependency`` since ``retry_counters``.

    Read from the services' own counters (exact, where Prometheus' increase()
    extrapolates). Every call ends in exactly one outcome that is not
    ``retry``, so calls = attempts - retries. The retry budget allows, in any
    ``ttl`` window, ``ratio`` retries per call (this span's calls and at most
    ``prior_calls`` before it) plus ``floor_per_second`` × ``ttl``: that is
    ``retries_allowed``, and ``over_budget`` the retries beyond it (0 when
    the guard holds). ``dependency_amplification`` is the dependency's own
    count of requests on ``route`` per call.
    """
    before = _COUNTER_BASELINES[baseline]
    after = _retry_counters(caller, dependency, route, configuration)
    by_outcome = {
        k: after["by_outcome"].get(k, 0.0) - before["by_outcome"].get(k, 0.0)
        for k in after["by_outcome"]
    }
    attempts = sum(by_outcome.values())
    retries = by_outcome.get("retry", 0.0)
    calls = attempts - retries
    served = after["served"] - before["served"]
    # The budget slides in ten buckets: a withdrawal sees the deposits of the
    # last ttl at most, and the withdrawals of at least the last 0.9 ttl. So
    # split the span into chunks of 0.9 ttl: a chunk's retries are bounded by
    # the deposits from ttl before its start to its end, plus the floor, and
    # one deposit lies in at most three chunks' reach. (An experiment that
    # observes under 9 s has one chunk: the bound is the budget's own.)
    chunks = max(1, math.ceil((after["at"] - before["at"]) / (0.9 * ttl)))
    deposits = ratio * (calls + before.get("prior_calls", 0.0)) * min(chunks, 3)
    allowed = deposits + floor_per_second * ttl * chunks
    return {
        "calls": int(calls),
        "attempts": int(attempts),
        "retries": int(retries),
        "by_outcome": {k: int(v) for k, v in by_outcome.items() if v},
        "budget_exhausted": int(by_outcome.get("budget_exhausted", 0)),
        "amplification": round(attempts / calls, 3) if calls else None,
        "dependency_requests": int(served),
        "dependency_amplification": round(served / calls, 3) if calls else None,
        "retries_allowed": round(allowed, 1),
        "over_budget": round(max(0.0, retries - allowed), 1),
    }


def service_metric(
    service: str,
    metric: str,
    labels: dict[str, str] | None = None,
    at_least: float | None = None,
    within: float = 0.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """A sample summed over ``labels`` from the service's own /metrics (no scrape delay).

    With ``at_least``, waits up to ``within`` for the value to get there.
    """
    started = time.time()
    value = 0.0
    for _ in poll(within, 0.1):
        value = _total(scrape(service, configuration), metric, labels or {}).get("", 0.0)
        if at_least is None or value >= at_least:
            return {"value": value, "seconds": round(time.time() - started, 2)}
    return {"value": value, "seconds": None, "waited": within}
