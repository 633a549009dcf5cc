"""Time sources: the monotonic clock every primitive reads, and a manual one for tests.

Wall-clock time jumps (NTP, DST, an operator's ``date -s``); an open circuit
or a deadline measured with it could last forever or not at all. Everything
here takes a ``Clock`` — a zero-argument callable returning seconds — so tests
drive time explicitly instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that moves only when told to; ``sleep`` advances it instead of waiting.

    ``clock = ManualClock(); breaker = CircuitBreaker(..., clock=clock)``;
    ``clock.advance(30)`` makes thirty seconds pass. Passing ``clock.sleep`` as a
    retrier's ``sleep`` records every backoff in ``clock.sleeps`` and returns at once.
    """

    __slots__ = ("now", "sleeps")

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        # Still yield to the loop, as a real sleep would, so interleavings stay realistic.
        await asyncio.sleep(0)
