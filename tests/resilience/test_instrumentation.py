"""Hooks and metrics: what operators see when a breaker trips."""

from __future__ import annotations

import subprocess
import uuid

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import telemetry
from services.chassis.resilience import (
    Balancer,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CompositeHooks,
    LoggingHooks,
    ManualClock,
    OutlierPolicy,
    ResilienceHooks,
    Retrier,
    RetryPolicy,
    SpanEventHooks,
    register,
    snapshot_all,
    unregister,
)
from services.chassis.resilience._prometheus import collect
from tests.conftest import require_tool
from tests.resilience.support import RecordingHooks, record, small_config, succeed


async def trip_and_recover(breaker: CircuitBreaker, clock: ManualClock) -> None:
    """closed → open (one rejection) → half_open → closed."""
    await record(breaker, "f" * 10)
    with pytest.raises(CircuitOpenError):
        await record(breaker, "s")
    clock.advance(30.0)
    await record(breaker, "sss")


async def test_recording_hook_receives_transitions_in_order(
    clock: ManualClock, hooks: RecordingHooks
) -> None:
    breaker = CircuitBreaker("payments", small_config(), clock=clock, hooks=hooks)
    await trip_and_recover(breaker, clock)
    assert hooks.events == [
        ("transition", "payments", "closed", "open", "failure_rate"),
        ("rejection", "payments", "open"),
        ("transition", "payments", "open", "half_open", "wait_elapsed"),
        ("transition", "payments", "half_open", "closed", "half_open_success"),
    ]
    breaker.force_open()
    breaker.disable()
    breaker.reset()
    assert hooks.transitions()[-3:] == [
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
    ]


async def test_a_failing_hook_never_changes_the_outcome(clock: ManualClock) -> None:
    class Broken(ResilienceHooks):
        def on_breaker_transition(
            self, name: str, from_state: str, to_state: str, reason: str
        ) -> None:
            raise RuntimeError("observer bug")

    recording = RecordingHooks()
    breaker = CircuitBreaker(
        "payments", small_config(), clock=clock, hooks=CompositeHooks(Broken(), recording)
    )
    await record(breaker, "f" * 10)
    assert recording.transitions() == [("closed", "open")]
    lone = CircuitBreaker("payments", small_config(), clock=clock, hooks=Broken())
    await record(lone, "f" * 10)  # the transition still happens
    with pytest.raises(CircuitOpenError):
        await record(lone, "s")


async def test_transitions_become_log_lines_and_span_events(clock: ManualClock) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with structlog.testing.capture_logs() as logs:
        hooks = CompositeHooks(LoggingHooks(), SpanEventHooks())
        breaker = CircuitBreaker("payments", small_config(), clock=clock, hooks=hooks)
        bulkhead = Bulkhead("payments-db", 1, hooks=hooks)
        with tracer.start_as_current_span("GET /orders"):
            await trip_and_recover(breaker, clock)
            async with bulkhead:
                with pytest.raises(BulkheadFullError):
                    async with bulkhead:
                        pass
    transitions = [line for line in logs if line["event"] == "circuit breaker state changed"]
    assert [(t["from_state"], t["to_state"], t["log_level"]) for t in transitions] == [
        ("closed", "open", "warning"),
        ("open", "half_open", "info"),
        ("half_open", "closed", "info"),
    ]
    assert transitions[0]["breaker"] == "payments"
    assert transitions[0]["reason"] == "failure_rate"
    (span,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert [name for name, _ in events] == [
        "resilience.circuit_breaker.transition",
        "resilience.circuit_breaker.rejected",
        "resilience.circuit_breaker.transition",
        "resilience.circuit_breaker.transition",
        "resilience.bulkhead.rejected",
    ]
    assert events[0][1]["resilience.circuit_breaker.to_state"] == "open"
    assert events[1][1]["resilience.circuit_breaker.retry_after"] == pytest.approx(30.0)
    assert events[4][1] == {"resilience.bulkhead.name": "payments-db"}


async def test_retry_give_ups_are_logged(clock: ManualClock) -> None:
    with structlog.testing.capture_logs() as logs:
        retrier = Retrier(
            "inventory", RetryPolicy(max_attempts=2), sleep=clock.sleep, hooks=LoggingHooks()
        )

        async def refused() -> None:
            raise ConnectionError

        with pytest.raises(ConnectionError):
            await retrier.call(refused, idempotent=True)
    assert [(line["event"], line["outcome"]) for line in logs] == [
        ("retrying", "retry"),
        ("retries stopped", "exhausted"),
    ]


def samples(exposition: bytes, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family, keyed by their sorted labels."""
    for metric in text_string_to_metric_families(exposition.decode()):
        if metric.name == family:
            return {tuple(sorted(s.labels.items())): s.value for s in metric.samples}
    raise AssertionError(f"{family} is not exported")


async def test_prometheus_collector_exports_breaker_bulkhead_and_retry_series(
    clock: ManualClock,
) -> None:
    name = f"payments-{uuid.uuid4().hex[:8]}"
    breaker = register(CircuitBreaker(name, small_config(), clock=clock))
    bulkhead = register(Bulkhead(name, 4))
    retrier = register(Retrier(name, RetryPolicy(max_attempts=2), sleep=clock.sleep))
    try:
        await record(breaker, "ss" + "f" * 8)  # trips on the tenth call: 8/10
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await record(breaker, "s")
        with pytest.raises(CircuitOpenError):  # an inner refusal: not retried
            await retrier.call(breaker.call, succeed, idempotent=True)

        async def refused() -> None:
            raise ConnectionError

        with pytest.raises(ConnectionError):
            await retrier.call(refused, idempotent=True)
        async with bulkhead:
            out = generate_latest(telemetry.REGISTRY)

        b = (("breaker", name),)
        state = samples(out, "resilience_circuit_breaker_state")
        assert {k[1][1]: v for k, v in state.items() if k[0] == ("breaker", name)} == {
            "closed": 0.0,
            "open": 1.0,
            "half_open": 0.0,
            "forced_open": 0.0,
            "disabled": 0.0,
        }
        calls = samples(out, "resilience_circuit_breaker_calls")
        assert calls[(*b, ("outcome", "success"))] == 2.0
        assert calls[(*b, ("outcome", "failure"))] == 8.0
        assert calls[(*b, ("outcome", "slow"))] == 0.0
        assert calls[(*b, ("outcome", "rejected"))] == 4.0
        transitions = samples(out, "resilience_circuit_breaker_transitions")
        assert transitions[(*b, ("from_state", "closed"), ("to_state", "open"))] == 1.0
        assert transitions[(*b, ("from_state", "open"), ("to_state", "half_open"))] == 0.0
        assert samples(out, "resilience_circuit_breaker_failure_rate")[b] == 0.8
        assert samples(out, "resilience_circuit_breaker_slow_call_rate")[b] == 0.0
        h = (("bulkhead", name),)
        assert samples(out, "resilience_bulkhead_in_flight")[h] == 1.0
        assert samples(out, "resilience_bulkhead_capacity")[h] == 4.0
        assert samples(out, "resilience_bulkhead_waiting")[h] == 0.0
        assert samples(out, "resilience_bulkhead_rejections")[h] == 0.0
        attempts = samples(out, "resilience_retry_attempts")
        r = (("outcome", "retry"), ("retrier", name))
        assert attempts[r] == 1.0
        assert attempts[(("outcome", "exhausted"), ("retrier", name))] == 1.0
        assert attempts[(("outcome", "not_retryable"), ("retrier", name))] == 1.0
        text = out.decode()
        assert "# TYPE resilience_circuit_breaker_calls_total counter" in text
        assert (
            f'resilience_circuit_breaker_calls_total{{breaker="{name}",outcome="failure"}}' in text
        )
        assert name in {s.name for s in snapshot_all()["circuit_breakers"]}
    finally:
        for obj in (breaker, bulkhead, retrier):
            unregister(obj)
    assert name not in generate_latest(telemetry.REGISTRY).decode()


async def test_rates_are_absent_below_minimum_calls(clock: ManualClock) -> None:
    name = f"fresh-{uuid.uuid4().hex[:8]}"
    breaker = register(CircuitBreaker(name, small_config(), clock=clock))
    try:
        await record(breaker, "ff")
        out = generate_latest(telemetry.REGISTRY).decode()
        assert f'resilience_circuit_breaker_state{{breaker="{name}",state="closed"}} 1.0' in out
        assert f'resilience_circuit_breaker_failure_rate{{breaker="{name}"}}' not in out
    finally:
        unregister(breaker)


async def test_exposition_passes_promtool(clock: ManualClock) -> None:
    promtool = require_tool("promtool")
    registry = CollectorRegistry()
    name = f"lint-{uuid.uuid4().hex[:8]}"
    breaker = register(CircuitBreaker(name, small_config(), clock=clock), registry)
    bulkhead = register(Bulkhead(name, 2), registry)
    retrier = register(Retrier(name), registry)
    balancer = register(Balancer(name, ["http://10.0.0.1:80", "http://10.0.0.2:80"]), registry)
    try:
        await record(breaker, "f" * 10)
        assert list(collect())  # the same collector feeds telemetry.REGISTRY
        result = subprocess.run(
            [promtool, "check", "metrics"],
            input=generate_latest(registry),
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == b"", result.stdout  # no lint warnings either
    finally:
        for obj in (breaker, bulkhead, retrier, balancer):
            unregister(obj)


async def test_endpoint_series_carry_the_balancer_and_the_endpoint(clock: ManualClock) -> None:
    name = f"inventory-{uuid.uuid4().hex[:8]}"
    hooks = RecordingHooks()
    balancer = register(
        Balancer(
            name,
            ["http://10.0.0.1:8002", "http://10.0.0.2:8002"],
            OutlierPolicy(consecutive_failures=2),
            clock=clock,
            hooks=hooks,
        )
    )
    try:
        bad, good = balancer.endpoints
        for endpoint, failed in ((good, False), (bad, True), (bad, True)):
            balancer.begin(endpoint)
            balancer.end(endpoint, failed=failed)
        balancer.begin(good)  # one in flight
        out = generate_latest(telemetry.REGISTRY)
        e1, e2 = (
            (("balancer", name), ("endpoint", "10.0.0.1:8002")),
            (
                ("balancer", name),
                ("endpoint", "10.0.0.2:8002"),
            ),
        )
        requests = samples(out, "resilience_endpoint_requests")
        assert requests[(*e1, ("outcome", "failure"))] == 2.0
        assert requests[(*e1, ("outcome", "success"))] == 0.0
        assert requests[(*e2, ("outcome", "success"))] == 1.0
        assert samples(out, "resilience_endpoint_ejections")[e1] == 1.0
        assert samples(out, "resilience_endpoint_ejections")[e2] == 0.0
        assert samples(out, "resilience_endpoint_ejected")[e1] == 1.0
        assert samples(out, "resilience_endpoint_in_flight")[e2] == 1.0
        assert "# TYPE resilience_endpoint_ejections_total counter" in out.decode()
        assert hooks.events == [("ejection", name, "10.0.0.1:8002", 5.0)]
        clock.advance(5.0)
        assert samples(generate_latest(telemetry.REGISTRY), "resilience_endpoint_ejected")[e1] == 0
        assert name in {s.name for s in snapshot_all()["balancers"]}
    finally:
        unregister(balancer)


async def test_ejections_become_log_lines_and_span_events() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with structlog.testing.capture_logs() as logs:
        hooks = CompositeHooks(LoggingHooks(), SpanEventHooks())
        with tracer.start_as_current_span("call"):
            hooks.on_endpoint_ejection("inventory", "10.0.0.1:8002", 5.0)
        hooks.on_endpoint_return("inventory", "10.0.0.1:8002")
    events = exporter.get_finished_spans()[0].events
    assert [(e.name, dict(e.attributes or {})) for e in events] == [
        (
            "resilience.endpoint.ejected",
            {
                "resilience.balancer.name": "inventory",
                "resilience.endpoint": "10.0.0.1:8002",
                "resilience.endpoint.ejection_seconds": 5.0,
            },
        )
    ]
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("endpoint ejected", "warning"),
        ("endpoint returned", "info"),
    ]
