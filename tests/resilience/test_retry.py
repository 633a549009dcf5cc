"""Retries: backoff bounds, deadline, idempotency, retryable outcomes, budget."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import pytest

from services.chassis.resilience import (
    BreakerConfig,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Deadline,
    ManualClock,
    Retrier,
    RetryBudget,
    RetryOutcome,
    RetryPolicy,
    deadline_scope,
    is_idempotent,
    retry_on_status,
)
from tests.resilience.support import RecordingHooks, settle


@dataclass
class Response:
    status_code: int


class Dependency:
    """Answers with the queued outcomes, then with the last one forever; counts calls."""

    def __init__(
        self, *outcomes: int | BaseException, clock: ManualClock | None = None, latency: float = 0.0
    ) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.clock = clock
        self.latency = latency

    async def __call__(self) -> Response:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.latency)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return Response(outcome)


HTTP_POLICY = RetryPolicy(
    max_attempts=4, base_delay=0.1, max_delay=1.0, retry_on_result=retry_on_status()
)


def retrier(clock: ManualClock, policy: RetryPolicy = HTTP_POLICY, **kwargs: object) -> Retrier:
    return Retrier("inventory", policy, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


async def test_full_jitter_sleeps_stay_within_exponential_bounds(clock: ManualClock) -> None:
    policy = RetryPolicy(max_attempts=7, base_delay=0.1, max_delay=1.0)
    # The upper edge of the jitter draws the caps themselves.
    top = Retrier("x", policy, sleep=clock.sleep, random=lambda: 1.0)
    with pytest.raises(ConnectionError):
        await top.call(Dependency(ConnectionError()), idempotent=True)
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    # Real draws are spread over [0, cap].
    rng = random.Random(7)
    for _ in range(50):
        clock.sleeps.clear()
        r = Retrier("x", policy, sleep=clock.sleep, random=rng.random)
        with pytest.raises(ConnectionError):
            await r.call(Dependency(ConnectionError()), idempotent=True)
        caps = [policy.backoff_cap(k) for k in range(1, 7)]
        assert all(0.0 <= s <= cap for s, cap in zip(clock.sleeps, caps, strict=True))
    assert policy.backoff_cap(10_000) == 1.0  # no float overflow for absurd attempt numbers


async def test_never_sleeps_past_the_deadline(clock: ManualClock, hooks: RecordingHooks) -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=0.2, max_delay=5.0, min_attempt_time=0.05)
    r = Retrier("x", policy, sleep=clock.sleep, random=lambda: 0.999, hooks=hooks)
    dependency = Dependency(ConnectionError("refused"), clock=clock, latency=0.05)
    deadline = Deadline.after(1.0, clock)
    with pytest.raises(ConnectionError, match="refused"):
        await r.call(dependency, idempotent=True, deadline=deadline)
    # Sleeps 0.2, 0.4 fit (0.05 + 0.2 + 0.05 + 0.4 + 0.05 = 0.75); the next, 0.8, would not.
    assert clock.sleeps == pytest.approx([0.1998, 0.3996])
    assert not deadline.expired
    assert hooks.events[-1] == ("retry", "x", 3, "deadline")


async def test_uses_the_current_deadline_by_default(clock: ManualClock) -> None:
    r = retrier(clock)
    dependency = Dependency(503)
    with deadline_scope(Deadline.after(0.01, clock)):
        response = await r.call(dependency, idempotent=True)
    assert response.status_code == 503
    assert dependency.calls == 1
    assert r.snapshot().attempts_total[RetryOutcome.DEADLINE] == 1


async def test_post_without_idempotency_key_is_not_retried(clock: ManualClock) -> None:
    r = retrier(clock)
    dependency = Dependency(503, 200)
    response = await r.call(dependency, idempotent=is_idempotent("POST", {}))
    assert response.status_code == 503
    assert dependency.calls == 1
    assert r.snapshot().attempts_total[RetryOutcome.NOT_RETRYABLE] == 1
    with_key = Dependency(503, 200)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "a1b2"}
    response = await r.call(with_key, idempotent=is_idempotent("POST", headers))
    assert response.status_code == 200
    assert with_key.calls == 2


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", None, True),
        ("head", None, True),
        ("PUT", None, True),
        ("DELETE", None, True),
        ("OPTIONS", None, True),
        ("POST", None, False),
        ("POST", {"idempotency-key": "  "}, False),
        ("POST", {"IDEMPOTENCY-KEY": "k"}, True),
        ("PATCH", {"Idempotency-Key": "k"}, True),
        ("PATCH", {}, False),
        ("CONNECT", {"Idempotency-Key": "k"}, False),
    ],
)
def test_is_idempotent(method: str, headers: dict[str, str] | None, expected: bool) -> None:
    assert is_idempotent(method, headers) is expected


async def test_retries_503_but_not_404(clock: ManualClock) -> None:
    r = retrier(clock)
    flaky = Dependency(503, 502, 200)
    assert (await r.call(flaky, idempotent=True)).status_code == 200
    assert flaky.calls == 3
    missing = Dependency(404)
    assert (await r.call(missing, idempotent=True)).status_code == 404
    assert missing.calls == 1
    counts = r.snapshot().attempts_total
    assert (counts[RetryOutcome.RETRY], counts[RetryOutcome.SUCCESS]) == (2, 2)


async def test_exhausted_attempts_surface_the_last_outcome(clock: ManualClock) -> None:
    r = retrier(clock)
    always_503 = Dependency(503)
    assert (await r.call(always_503, idempotent=True)).status_code == 503
    assert always_503.calls == 4
    errors = Dependency(ConnectionError("first"), ConnectionError("last"))
    with pytest.raises(ConnectionError, match="last"):
        await r.call(errors, idempotent=True)
    assert r.snapshot().attempts_total[RetryOutcome.EXHAUSTED] == 2


async def test_non_retryable_exceptions_propagate_at_once(clock: ManualClock) -> None:
    r = retrier(clock)
    dependency = Dependency(ValueError("bad payload"))
    with pytest.raises(ValueError, match="bad payload"):
        await r.call(dependency, idempotent=True)
    assert dependency.calls == 1


async def test_cancellation_is_never_retried(clock: ManualClock) -> None:
    r = Retrier("x", HTTP_POLICY)  # real sleep: the retrier would wait if it retried
    task = asyncio.create_task(r.call(asyncio.sleep, 10, idempotent=True))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sum(r.snapshot().attempts_total.values()) == 0  # not an attempt outcome


async def test_inner_breaker_and_bulkhead_refusals_are_not_retried(clock: ManualClock) -> None:
    r = retrier(clock)
    breaker = CircuitBreaker("dep", BreakerConfig(), clock=clock)
    breaker.force_open()
    dependency = Dependency(200)
    with pytest.raises(CircuitOpenError):
        await r.call(breaker.call, dependency, idempotent=True)
    bulkhead = Bulkhead("dep", 1)
    async with bulkhead:
        with pytest.raises(BulkheadFullError):
            await r.call(bulkhead.call, dependency, idempotent=True)
    assert dependency.calls == 0
    assert clock.sleeps == []
    assert r.snapshot().attempts_total[RetryOutcome.NOT_RETRYABLE] == 2


async def test_budget_stops_retry_storms(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.2, min_retries_per_second=1.0, ttl=10.0, clock=clock)
    r = retrier(clock, budget=budget, random=lambda: 0.5)
    dependency = Dependency(ConnectionError())
    for _ in range(100):
        with pytest.raises(ConnectionError):
            await r.call(dependency, idempotent=True)
    counts = r.snapshot().attempts_total
    retries = counts[RetryOutcome.RETRY]
    # 100 requests * 0.2 + 1/s * 10 s floor; the sleeps (< 10 s in all) stay in one window.
    assert clock.now - 1000.0 < 10.0
    assert 20 <= retries <= 20 + 10
    assert dependency.calls == 100 + retries
    assert counts[RetryOutcome.BUDGET_EXHAUSTED] > 0


def test_budget_refills_as_its_window_slides(clock: ManualClock) -> None:
    budget = RetryBudget(ratio=0.5, min_retries_per_second=0.0, ttl=10.0, clock=clock)
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    clock.advance(11.0)  # old deposits and withdrawals both expire
    assert budget.balance() == 0.0
    budget.deposit()
    budget.deposit()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()


def test_policy_and_budget_are_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=3.0, max_delay=1.0)
    with pytest.raises(ValueError, match="ttl"):
        RetryBudget(ttl=0.0)


async def test_hooks_see_every_attempt_except_a_first_success(
    clock: ManualClock, hooks: RecordingHooks
) -> None:
    r = retrier(clock, hooks=hooks)
    await r.call(Dependency(200), idempotent=True)
    assert hooks.events == []
    await r.call(Dependency(503, 200), idempotent=True)
    assert hooks.events == [
        ("retry", "inventory", 1, "retry"),
        ("retry", "inventory", 2, "success"),
    ]
