"""Retries: full-jitter backoff, idempotent operations only, bounded by deadline and budget.

Why not tenacity or stamina. stamina is the model for this package's shape
(small surface, hooks), but its policy is not the one we need: its backoff is
``initial * base**n + uniform(0, jitter)`` rather than full jitter, its time
bound is a fixed per-call ``timeout`` rather than the request's propagated
deadline, its hooks fire only when a retry is scheduled (not per attempt
outcome, which the attempt spans and ``resilience_retry_attempts_total`` need),
and it has no retry budget; tests switch it globally (``set_testing``) instead
of injecting a clock and a sleep. tenacity could express each rule — a custom
``stop`` reading the deadline, ``wait_random_exponential`` for full jitter,
``sleep=`` injection, ``before_sleep`` hooks — but the budget withdrawal, the
"would the next sleep plus a minimal attempt overrun the deadline" test and the
per-outcome accounting would all live in callbacks sharing state through
``RetryCallState``, which is more code than the loop below and adds a
dependency and its per-attempt allocations. So the loop is hand-written; it is
short, and every rule is one visible ``if``.

Rules, in the order they are applied after an attempt:

* ``asyncio.CancelledError`` propagates at once and is not an outcome.
* A ``ResilienceError`` (an inner breaker or bulkhead refusing, a deadline
  already spent) is never retried: the refusal will hold for ``retry_after``
  or longer, far beyond any backoff, and retrying it only adds load to the
  component that is shedding it. Outcome ``not_retryable``.
* Other exceptions are retried if ``retry_on_exception`` holds (default:
  ``ConnectionError`` — the request never reached the peer); results if
  ``retry_on_result`` holds (see ``retry_on_status``: 502/503/504, never 4xx).
* Only idempotent operations are retried (``is_idempotent``); a retryable
  failure of a non-idempotent call is surfaced as ``not_retryable``.
* Then: ``max_attempts`` reached → ``exhausted``; the next sleep plus
  ``min_attempt_time`` would overrun the deadline → ``deadline``; no token in
  the ``RetryBudget`` → ``budget_exhausted``; otherwise ``retry``.

When retrying stops, the last outcome is surfaced unchanged: its exception is
raised, or its (retryable) result is returned — a 503 response stays a 503.

Outcomes, one per attempt, as counted in ``resilience_retry_attempts_total``:
``success`` (the attempt's result is final: not retryable — for HTTP that
includes a 404, since the retrier judges retryability, not correctness),
``retry``, ``exhausted``, ``budget_exhausted``, ``deadline``, ``not_retryable``.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar, TypeVarTuple

from services.chassis.resilience._clock import Clock, Sleep, monotonic
from services.chassis.resilience._deadline import Deadline, current_deadline
from services.chassis.resilience._errors import ResilienceError
from services.chassis.resilience._hooks import ResilienceHooks, notify

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

RETRYABLE_STATUSES: frozenset[int] = frozenset({502, 503, 504})
# RFC 9110 §9.2.2: PUT and DELETE are idempotent, the safe methods trivially so.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
IDEMPOTENCY_KEY_HEADER = "idempotency-key"


class RetryOutcome(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    EXHAUSTED = "exhausted"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DEADLINE = "deadline"
    NOT_RETRYABLE = "not_retryable"


def is_idempotent(method: str, headers: Mapping[str, str] | None = None) -> bool:
    """May a request be sent twice? POST and PATCH only with a non-empty ``Idempotency-Key``."""
    method = method.upper()
    if method in IDEMPOTENT_METHODS:
        return True
    if method in ("POST", "PATCH") and headers:
        for key, value in headers.items():
            if key.lower() == IDEMPOTENCY_KEY_HEADER and value.strip():
                return True
    return False


def retry_on_status(
    statuses: Collection[int] = RETRYABLE_STATUSES, attribute: str = "status_code"
) -> Callable[[Any], bool]:
    """A ``retry_on_result`` predicate: the result's ``status_code`` is one of ``statuses``."""
    wanted = frozenset(statuses)

    def predicate(result: Any) -> bool:
        return getattr(result, attribute, None) in wanted

    return predicate


def is_connection_error(exc: BaseException) -> bool:
    """The default ``retry_on_exception``: the peer refused or reset the connection."""
    return isinstance(exc, ConnectionError)


def _never(_: Any) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first one. Delays are seconds.

    Attempt ``k`` (1-based) that fails is followed by a sleep drawn uniformly
    from ``[0, min(max_delay, base_delay * 2**(k-1))]`` (AWS's "full jitter").
    """

    max_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 2.0
    min_attempt_time: float = 0.05
    retry_on_exception: Callable[[BaseException], bool] = is_connection_error
    retry_on_result: Callable[[Any], bool] = _never

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not (0.0 <= self.base_delay <= self.max_delay):
            raise ValueError("need 0 <= base_delay <= max_delay")
        if not self.min_attempt_time >= 0.0:
            raise ValueError("min_attempt_time must be non-negative")

    def backoff_cap(self, attempt: int) -> float:
        """Upper bound of the sleep after failed attempt ``attempt`` (1-based)."""
        # Bound the exponent: 2**1100 overflows a float long before max_delay matters.
        return min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))


class RetryBudget:
    """Finagle-style retry budget, shareable by every retrier calling one dependency.

    Each original request deposits ``ratio`` of a token, each retry withdraws
    one, and ``min_retries_per_second`` tokens per second are always available;
    all over a sliding ``ttl``. So, over any ``ttl`` window, retries <= ``ratio``
    * requests + ``min_retries_per_second`` * ``ttl``: however many layers
    retry and however many callers fan out, an always-failing dependency sees
    at most ``1 + ratio`` times its normal load (plus the floor), not
    ``max_attempts`` times.
    """

    __slots__ = (
        "_bucket_width",
        "_clock",
        "_deposits",
        "_head",
        "_reserve",
        "_withdrawals",
        "min_retries_per_second",
        "ratio",
        "ttl",
    )

    _BUCKETS = 10

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries_per_second: float = 10.0,
        ttl: float = 10.0,
        *,
        clock: Clock = monotonic,
    ) -> None:
        if not 0.0 <= ratio <= 1000.0:
            raise ValueError("ratio must be in [0, 1000]")
        if not min_retries_per_second >= 0.0:
            raise ValueError("min_retries_per_second must be non-negative")
        if not 1.0 <= ttl <= 60.0:
            raise ValueError("ttl must be in [1, 60] seconds")
        self.ratio = ratio
        self.min_retries_per_second = min_retries_per_second
        self.ttl = ttl
        self._clock = clock
        self._reserve = min_retries_per_second * ttl
        self._bucket_width = ttl / self._BUCKETS
        self._deposits = [0] * self._BUCKETS
        self._withdrawals = [0] * self._BUCKETS
        self._head = int(clock() // self._bucket_width)

    def _advance(self) -> int:
        """Index of the current bucket, after zeroing those that slid out of the window."""
        now_bucket = int(self._clock() // self._bucket_width)
        head = self._head
        if now_bucket > head:
            for b in range(max(head + 1, now_bucket - self._BUCKETS + 1), now_bucket + 1):
                i = b % self._BUCKETS
                self._deposits[i] = 0
                self._withdrawals[i] = 0
            self._head = now_bucket
        return self._head % self._BUCKETS

    def deposit(self) -> None:
        """Record one original request (not a retry)."""
        self._deposits[self._advance()] += 1

    def balance(self) -> float:
        """Retries still allowed in the current window."""
        self._advance()
        return self.ratio * sum(self._deposits) + self._reserve - sum(self._withdrawals)

    def try_withdraw(self) -> bool:
        """Take the token for one retry, if there is one."""
        if self.balance() >= 1.0:
            self._withdrawals[self._head % self._BUCKETS] += 1
            return True
        return False


@dataclass(frozen=True, slots=True)
class RetrySnapshot:
    name: str
    attempts_total: dict[RetryOutcome, int]


class Retrier:
    """``await retrier.call(fn, *args, idempotent=...)`` calls ``fn(*args)`` once per attempt.

    ``deadline`` defaults to the task's ``current_deadline``. ``sleep``,
    ``clock`` and ``random`` are injectable so tests run without waiting.
    """

    __slots__ = (
        "__weakref__",
        "_budget",
        "_counts",
        "_hooks",
        "_name",
        "_policy",
        "_random",
        "_sleep",
    )

    def __init__(
        self,
        name: str,
        policy: RetryPolicy | None = None,
        *,
        budget: RetryBudget | None = None,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        hooks: ResilienceHooks | None = None,
    ) -> None:
        self._name = name
        self._policy = policy if policy is not None else RetryPolicy()
        self._budget = budget
        self._sleep = sleep
        self._random = random
        self._hooks = hooks
        self._counts: dict[RetryOutcome, int] = dict.fromkeys(RetryOutcome, 0)

    @property
    def name(self) -> str:
        return self._name

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    async def call(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        idempotent: bool,
        deadline: Deadline | None = None,
    ) -> T:
        policy = self._policy
        if deadline is None:
            deadline = current_deadline.get()
        if self._budget is not None:
            self._budget.deposit()
        attempt = 0
        while True:
            attempt += 1
            error: BaseException | None = None
            try:
                result = await fn(*args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ResilienceError) or not policy.retry_on_exception(exc):
                    self._record(attempt, RetryOutcome.NOT_RETRYABLE, 0.0)
                    raise
                error = exc
            else:
                if not policy.retry_on_result(result):
                    self._record(attempt, RetryOutcome.SUCCESS, 0.0)
                    return result
            if not idempotent:
                outcome, delay = RetryOutcome.NOT_RETRYABLE, 0.0
            else:
                outcome, delay = self._decide(attempt, deadline)
            self._record(attempt, outcome, delay)
            if outcome is not RetryOutcome.RETRY:
                if error is not None:
                    raise error
                return result
            await self._sleep(delay)

    def _decide(self, attempt: int, deadline: Deadline | None) -> tuple[RetryOutcome, float]:
        policy = self._policy
        if attempt >= policy.max_attempts:
            return RetryOutcome.EXHAUSTED, 0.0
        delay = self._random() * policy.backoff_cap(attempt)
        if deadline is not None and delay + policy.min_attempt_time > deadline.remaining():
            return RetryOutcome.DEADLINE, 0.0
        # Last, so a token is taken only for a retry that will happen.
        if self._budget is not None and not self._budget.try_withdraw():
            return RetryOutcome.BUDGET_EXHAUSTED, 0.0
        return RetryOutcome.RETRY, delay

    def _record(self, attempt: int, outcome: RetryOutcome, delay: float) -> None:
        self._counts[outcome] += 1
        hooks = self._hooks
        if hooks is not None and (attempt > 1 or outcome is not RetryOutcome.SUCCESS):
            notify(hooks.on_retry_attempt, self._name, attempt, outcome, delay)

    def snapshot(self) -> RetrySnapshot:
        return RetrySnapshot(name=self._name, attempts_total=dict(self._counts))
