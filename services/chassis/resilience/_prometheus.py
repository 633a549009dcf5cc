"""Prometheus export, computed at scrape time from the primitives' own counters.

The breaker, bulkhead and retrier count in plain integer attributes; this
collector reads their snapshots when ``/metrics`` is scraped. Nothing on a
call's path touches prometheus-client (``Counter.labels(...).inc()`` takes a
lock and a dict lookup per call, more than the whole breaker costs).

``register(obj)`` adds a primitive (held weakly: a discarded breaker
disappears from the scrape) and installs the collector into
``telemetry.REGISTRY`` on first use. Names are unique per kind; registering
another object under a taken name replaces the old one, so a reconfigured
breaker takes over its series.

Series:

``resilience_circuit_breaker_state{breaker, state}``
    1 for the current state, 0 for the four others.
``resilience_circuit_breaker_calls_total{breaker, outcome}``
    outcome: ``success``; ``failure`` (every failed call, slow or not);
    ``slow`` (successful calls at or over ``slow_call_duration`` — a slow
    failure is counted once, as ``failure``, though it weighs in the slow-call
    rate); ``rejected`` (refused without running). The first three partition
    the calls that ran; cancelled calls are not outcomes and are not counted.
``resilience_circuit_breaker_transitions_total{breaker, from_state, to_state}``
    The four automatic transitions start at 0; operator ones appear when made.
``resilience_circuit_breaker_failure_rate{breaker}``, ``..._slow_call_rate{breaker}``
    Ratios in [0, 1] over the current window (see ``BreakerSnapshot``). The
    series is *absent* while fewer than ``minimum_calls`` are recorded (and in
    FORCED_OPEN/DISABLED): a -1 sentinel would corrupt ``avg()`` and graphs.
``resilience_bulkhead_in_flight``, ``..._capacity``, ``..._waiting{bulkhead}``
    Gauges read at scrape time.
``resilience_bulkhead_rejections_total{bulkhead}``
``resilience_retry_attempts_total{retrier, outcome}``
    One increment per attempt; outcomes as in ``_retry``: success, retry,
    exhausted, budget_exhausted, deadline, not_retryable.
``resilience_endpoint_requests_total{balancer, endpoint, outcome}``
    Attempts sent to one endpoint (``host:port``) of a dependency, by outcome
    ``success`` or ``failure`` (what outlier detection counts as failing).
    ``endpoint``, not ``instance``: Prometheus owns ``instance`` (the scraped target).
``resilience_endpoint_ejections_total{balancer, endpoint}``
    Times outlier detection took the endpoint out.
``resilience_endpoint_ejected{balancer, endpoint}``, ``resilience_endpoint_in_flight{...}``
    1 while ejected; this process's attempts in flight to it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.chassis.resilience._balancer import Balancer
from services.chassis.resilience._breaker import CircuitBreaker, CircuitState
from services.chassis.resilience._bulkhead import Bulkhead
from services.chassis.resilience._retry import Retrier, RetryOutcome
from telemetry import REGISTRY, register_callback_collector

P = TypeVar("P", CircuitBreaker, Bulkhead, Retrier, Balancer)
Primitive = CircuitBreaker | Bulkhead | Retrier | Balancer

_breakers: weakref.WeakValueDictionary[str, CircuitBreaker] = weakref.WeakValueDictionary()
_bulkheads: weakref.WeakValueDictionary[str, Bulkhead] = weakref.WeakValueDictionary()
_retriers: weakref.WeakValueDictionary[str, Retrier] = weakref.WeakValueDictionary()
_balancers: weakref.WeakValueDictionary[str, Balancer] = weakref.WeakValueDictionary()
_installed: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()

_AUTOMATIC_TRANSITIONS = ("closed->open", "open->half_open", "half_open->open", "half_open->closed")


def _table(obj: Primitive) -> weakref.WeakValueDictionary[str, Any]:
    if isinstance(obj, CircuitBreaker):
        return _breakers
    if isinstance(obj, Bulkhead):
        return _bulkheads
    if isinstance(obj, Retrier):
        return _retriers
    if isinstance(obj, Balancer):
        return _balancers
    raise TypeError(f"cannot export {type(obj).__name__}")


def register(obj: P, registry: CollectorRegistry = REGISTRY) -> P:
    """Export ``obj``'s metrics from now on; returns ``obj``, so ``b = register(Bulkhead(...))``."""
    _table(obj)[obj.name] = obj
    install(registry)
    return obj


def unregister(obj: Primitive) -> None:
    table = _table(obj)
    if table.get(obj.name) is obj:
        del table[obj.name]


def install(registry: CollectorRegistry = REGISTRY) -> None:
    """Add the collector to ``registry`` once; ``register`` calls it for you."""
    if registry not in _installed:
        register_callback_collector(collect, registry)
        _installed.add(registry)


def snapshot_all() -> dict[str, list[Any]]:
    """Snapshots of every registered primitive, by kind, for the admin endpoint."""
    return {
        "circuit_breakers": [b.snapshot() for b in list(_breakers.values())],
        "bulkheads": [b.snapshot() for b in list(_bulkheads.values())],
        "retriers": [r.snapshot() for r in list(_retriers.values())],
        "balancers": [b.snapshot() for b in list(_balancers.values())],
    }


def collect() -> Iterator[Metric]:
    yield from _collect_breakers()
    yield from _collect_bulkheads()
    yield from _collect_retriers()
    yield from _collect_balancers()


def _collect_breakers() -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "resilience_circuit_breaker_state",
        "Circuit breaker state: 1 for the current state, 0 for the others.",
        labels=["breaker", "state"],
    )
    calls = CounterMetricFamily(
        "resilience_circuit_breaker_calls",
        "Calls through a circuit breaker by outcome (success, failure, slow, rejected); "
        "a slow failure counts as failure.",
        labels=["breaker", "outcome"],
    )
    transitions = CounterMetricFamily(
        "resilience_circuit_breaker_transitions",
        "Circuit breaker state transitions.",
        labels=["breaker", "from_state", "to_state"],
    )
    failure_rate = GaugeMetricFamily(
        "resilience_circuit_breaker_failure_rate",
        "Failed calls / calls in the breaker's window, 0..1; absent below minimum_calls.",
        labels=["breaker"],
    )
    slow_rate = GaugeMetricFamily(
        "resilience_circuit_breaker_slow_call_rate",
        "Slow calls / calls in the breaker's window, 0..1; absent below minimum_calls.",
        labels=["breaker"],
    )
    for breaker in list(_breakers.values()):
        snap = breaker.snapshot()
        name = snap.name
        for s in CircuitState:
            state.add_metric([name, s.value], 1.0 if s is snap.state else 0.0)
        calls.add_metric([name, "success"], snap.successes_total)
        calls.add_metric([name, "failure"], snap.failures_total)
        calls.add_metric([name, "slow"], snap.slow_total)
        calls.add_metric([name, "rejected"], snap.rejected_total)
        counts = dict.fromkeys(_AUTOMATIC_TRANSITIONS, 0)
        counts.update(snap.transitions_total)
        for key, value in counts.items():
            frm, _, to = key.partition("->")
            transitions.add_metric([name, frm, to], value)
        if snap.failure_rate is not None:
            failure_rate.add_metric([name], snap.failure_rate)
        if snap.slow_call_rate is not None:
            slow_rate.add_metric([name], snap.slow_call_rate)
    yield from (state, calls, transitions, failure_rate, slow_rate)


def _collect_bulkheads() -> Iterator[Metric]:
    in_flight = GaugeMetricFamily(
        "resilience_bulkhead_in_flight", "Calls holding a bulkhead slot.", labels=["bulkhead"]
    )
    capacity = GaugeMetricFamily(
        "resilience_bulkhead_capacity",
        "Bulkhead slots (max concurrent calls).",
        labels=["bulkhead"],
    )
    waiting = GaugeMetricFamily(
        "resilience_bulkhead_waiting", "Calls waiting for a bulkhead slot.", labels=["bulkhead"]
    )
    rejections = CounterMetricFamily(
        "resilience_bulkhead_rejections",
        "Calls refused by a bulkhead: full, and no slot within the wait bound.",
        labels=["bulkhead"],
    )
    for bulkhead in list(_bulkheads.values()):
        snap = bulkhead.snapshot()
        in_flight.add_metric([snap.name], snap.in_flight)
        capacity.add_metric([snap.name], snap.capacity)
        waiting.add_metric([snap.name], snap.waiting)
        rejections.add_metric([snap.name], snap.rejected_total)
    yield from (in_flight, capacity, waiting, rejections)


def _collect_retriers() -> Iterator[Metric]:
    attempts = CounterMetricFamily(
        "resilience_retry_attempts",
        "Attempts made by a retrier, by outcome (success, retry, exhausted, budget_exhausted, "
        "deadline, not_retryable).",
        labels=["retrier", "outcome"],
    )
    for retrier in list(_retriers.values()):
        snap = retrier.snapshot()
        for outcome in RetryOutcome:
            attempts.add_metric([snap.name, outcome.value], snap.attempts_total[outcome])
    yield attempts


def _collect_balancers() -> Iterator[Metric]:
    labels = ["balancer", "endpoint"]
    requests = CounterMetricFamily(
        "resilience_endpoint_requests",
        "Attempts sent to one endpoint of a dependency, by outcome (success, failure).",
        labels=[*labels, "outcome"],
    )
    ejections = CounterMetricFamily(
        "resilience_endpoint_ejections",
        "Times outlier detection ejected an endpoint (consecutive failures).",
        labels=labels,
    )
    ejected = GaugeMetricFamily(
        "resilience_endpoint_ejected", "1 while the endpoint is ejected, else 0.", labels=labels
    )
    in_flight = GaugeMetricFamily(
        "resilience_endpoint_in_flight",
        "Attempts in flight from this process to the endpoint.",
        labels=labels,
    )
    for balancer in list(_balancers.values()):
        snap = balancer.snapshot()
        for e in snap.endpoints:
            requests.add_metric([snap.name, e.address, "success"], e.successes_total)
            requests.add_metric([snap.name, e.address, "failure"], e.failures_total)
            ejections.add_metric([snap.name, e.address], e.ejections_total)
            ejected.add_metric([snap.name, e.address], 1.0 if e.ejected else 0.0)
            in_flight.add_metric([snap.name, e.address], e.in_flight)
    yield from (requests, ejections, ejected, in_flight)
