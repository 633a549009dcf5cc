"""A simulated card processor: the "flaky third party" of the platform.

Latency is log-normal around a median with a long tail, like real processors;
a configurable share of charges is declined at random, and test payment
methods decline deterministically so load tests and tests can rely on them.

Like Stripe's API, every call carries an idempotency key: the same key answers
with the first call's result (waiting for it if it is still running) and
never authorises or refunds twice; the same key with other parameters is an
error. A caller that stops waiting does not stop the processor: the work runs
to its end, as it would on the other side of the network. The keys live in
this process (the newest ``max_keys``), so unlike a real processor this one
forgets them when payments restarts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

DECLINING_METHODS = {
    "pm_card_chargeDeclined": "card_declined",
    "pm_card_insufficientFunds": "insufficient_funds",
    "pm_card_expired": "expired_card",
}


class IdempotencyKeyReused(ValueError):
    """The same idempotency key came with different parameters."""


@dataclass(frozen=True)
class Authorization:
    approved: bool
    reference: str
    decline_reason: str | None = None
    # True when the answer is the one a previous call with the same key got.
    replayed: bool = False


@dataclass
class SimulatedProcessor:
    median_latency_ms: float = 40.0
    # Shape of the tail: p99 is about median * exp(2.33 * sigma).
    latency_sigma: float = 0.5
    decline_rate: float = 0.02
    rng: random.Random = field(default_factory=random.Random)
    max_keys: int = 100_000
    # Authorisations and refunds actually made (not replayed).
    authorizations: int = 0
    refunds: int = 0
    _calls: OrderedDict[str, tuple[tuple[Any, ...], asyncio.Future[Any]]] = field(
        default_factory=OrderedDict, repr=False
    )

    def latency_seconds(self) -> float:
        if self.median_latency_ms <= 0:
            return 0.0
        return self.median_latency_ms / 1000 * math.exp(self.rng.gauss(0, self.latency_sigma))

    async def authorize(
        self, amount_cents: int, payment_method: str, *, idempotency_key: str
    ) -> Authorization:
        auth, replayed = await self._once(
            idempotency_key, ("authorize", amount_cents, payment_method), self._authorize
        )
        return dataclasses.replace(auth, replayed=True) if replayed else auth

    async def refund(self, reference: str, *, idempotency_key: str) -> None:
        await self._once(idempotency_key, ("refund", reference), self._refund)

    async def _authorize(self, amount_cents: int, payment_method: str) -> Authorization:
        await asyncio.sleep(self.latency_seconds())
        self.authorizations += 1
        reference = f"ch_{uuid.uuid4().hex[:24]}"
        reason = DECLINING_METHODS.get(payment_method)
        if reason is None and self.rng.random() < self.decline_rate:
            reason = "do_not_honor"
        return Authorization(approved=reason is None, reference=reference, decline_reason=reason)

    async def _refund(self, reference: str) -> None:
        await asyncio.sleep(self.latency_seconds())
        self.refunds += 1

    async def _once(
        self, key: str, request: tuple[Any, ...], work: Callable[..., Awaitable[T]]
    ) -> tuple[T, bool]:
        """(result, replayed): run ``work(*request[1:])`` once per key, whoever waits for it."""
        known = self._calls.get(key)
        if known is not None:
            seen, future = known
            if seen != request:
                raise IdempotencyKeyReused(
                    f"The idempotency key {key!r} was used with other parameters."
                )
            return await asyncio.shield(future), True
        task = asyncio.ensure_future(work(*request[1:]))
        self._calls[key] = (request, task)
        task.add_done_callback(lambda t: self._forget_failed(key, t))
        while len(self._calls) > self.max_keys:
            self._calls.popitem(last=False)
        return await asyncio.shield(task), False

    def _forget_failed(self, key: str, task: asyncio.Future[Any]) -> None:
        """A call that failed did nothing: the next one with its key runs again."""
        if task.cancelled() or task.exception() is not None:
            known = self._calls.get(key)
            if known is not None and known[1] is task:
                del self._calls[key]
