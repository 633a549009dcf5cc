"""Helpers for driving the resilience primitives on a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.chassis.resilience import (
    BreakerConfig,
    CircuitBreaker,
    CircuitState,
    ManualClock,
    ResilienceHooks,
)


class RecordingHooks(ResilienceHooks):
    """Keeps every event, in order, as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_breaker_transition(self, name: str, from_state: str, to_state: str, reason: str) -> None:
        self.events.append(("transition", name, str(from_state), str(to_state), reason))

    def on_breaker_rejection(self, name: str, state: str, retry_after: float) -> None:
        self.events.append(("rejection", name, str(state)))

    def on_bulkhead_rejection(self, name: str) -> None:
        self.events.append(("bulkhead_rejection", name))

    def on_retry_attempt(self, name: str, attempt: int, outcome: str, delay: float) -> None:
        self.events.append(("retry", name, attempt, str(outcome)))

    def on_endpoint_ejection(self, name: str, endpoint: str, seconds: float) -> None:
        self.events.append(("ejection", name, endpoint, seconds))

    def on_endpoint_return(self, name: str, endpoint: str) -> None:
        self.events.append(("return", name, endpoint))

    def transitions(self) -> list[tuple[str, str]]:
        return [(e[2], e[3]) for e in self.events if e[0] == "transition"]


async def succeed() -> str:
    return "ok"


async def fail() -> str:
    raise ConnectionError("dependency down")


def taking(
    clock: ManualClock, seconds: float, *, error: BaseException | None = None
) -> Callable[[], Awaitable[str]]:
    """A call that lasts ``seconds`` on the manual clock, then returns or raises ``error``."""

    async def call() -> str:
        clock.advance(seconds)
        if error is not None:
            raise error
        return "ok"

    return call


async def record(breaker: CircuitBreaker, outcomes: str) -> None:
    """Push outcomes through the breaker: 's' success, 'f' failure. Rejections propagate."""
    for outcome in outcomes:
        if outcome == "s":
            await breaker.call(succeed)
        else:
            with pytest.raises(ConnectionError):
                await breaker.call(fail)


def small_config(**overrides: Any) -> BreakerConfig:
    """Window of 10, judged from 10 calls, 50 % thresholds, 1 s slow calls, 30 s open, 3 trials."""
    values: dict[str, Any] = {
        "sliding_window_size": 10,
        "minimum_calls": 10,
        "failure_rate_threshold": 50.0,
        "slow_call_rate_threshold": 50.0,
        "slow_call_duration": 1.0,
        "wait_duration_in_open": 30.0,
        "permitted_calls_in_half_open": 3,
    }
    values.update(overrides)
    return BreakerConfig(**values)


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


def state_of(breaker: CircuitBreaker) -> CircuitState:
    """``breaker.state``, read through a call so mypy does not narrow it between calls."""
    return breaker.state
