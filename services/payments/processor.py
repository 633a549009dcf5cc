"""A simulated card processor: the "flaky third party" of the platform.

Latency is log-normal around a median with a long tail, like real processors;
a configurable share of charges is declined at random, and test payment
methods decline deterministically so load tests and tests can rely on them.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from dataclasses import dataclass, field

DECLINING_METHODS = {
    "pm_card_chargeDeclined": "card_declined",
    "pm_card_insufficientFunds": "insufficient_funds",
    "pm_card_expired": "expired_card",
}


@dataclass(frozen=True)
class Authorization:
    approved: bool
    reference: str
    decline_reason: str | None = None


@dataclass
class SimulatedProcessor:
    median_latency_ms: float = 40.0
    # Shape of the tail: p99 is about median * exp(2.33 * sigma).
    latency_sigma: float = 0.5
    decline_rate: float = 0.02
    rng: random.Random = field(default_factory=random.Random)

    def latency_seconds(self) -> float:
        if self.median_latency_ms <= 0:
            return 0.0
        return self.median_latency_ms / 1000 * math.exp(self.rng.gauss(0, self.latency_sigma))

    async def authorize(self, amount_cents: int, payment_method: str) -> Authorization:
        await asyncio.sleep(self.latency_seconds())
        reference = f"ch_{uuid.uuid4().hex[:24]}"
        reason = DECLINING_METHODS.get(payment_method)
        if reason is None and self.rng.random() < self.decline_rate:
            reason = "do_not_honor"
        return Authorization(approved=reason is None, reference=reference, decline_reason=reason)

    async def refund(self, reference: str) -> None:
        await asyncio.sleep(self.latency_seconds())
