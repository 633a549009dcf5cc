"""Per-identity rate limiting: GCRA (a token bucket kept as one timestamp per key).

Hand-written rather than Litestar's ``RateLimitMiddleware``: that one keeps
every request's timestamp of the current window and JSON-encodes the whole
list into its store on each request (O(limit) work per call, under one global
lock), and has a single rate, while the gateway limits users and anonymous IPs
differently. GCRA needs one float per key and O(1) work.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    # Seconds until one more request would be allowed (0 when allowed now).
    retry_after: float
    # Seconds until the bucket is full again.
    reset_after: float


class RateLimiter:
    """``rate`` requests per second on average, bursts of up to ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._tat: OrderedDict[str, float] = OrderedDict()  # theoretical arrival time per key
        self._max_keys = max_keys
        self._clock = clock

    def check(self, key: str) -> Decision:
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        allow_at = tat - self._tolerance
        if now < allow_at:
            return Decision(False, self.burst, 0, allow_at - now, tat - now)
        new_tat = tat + self._interval
        self._tat[key] = new_tat
        self._tat.move_to_end(key)
        if len(self._tat) > self._max_keys:
            # Least recently seen keys go first; their buckets would be full anyway.
            self._tat.popitem(last=False)
        remaining = math.floor(
            (self._tolerance - (new_tat - now - self._interval)) / self._interval
        )
        return Decision(True, self.burst, max(0, remaining), 0.0, new_tat - now)

    def __len__(self) -> int:
        return len(self._tat)
