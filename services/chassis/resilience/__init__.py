"""Resilience primitives: circuit breaker, bulkhead, retry, deadlines.

Pure asyncio state machines with an injectable monotonic clock; they know
nothing about logs, traces or Prometheus. Observers attach through
``ResilienceHooks`` (transitions, rejections, retry attempts — never the
successful hot path), and ``register(obj)`` exports an object's counters
from ``telemetry.REGISTRY`` at scrape time.

Composed around one outgoing call (``services/chassis/http_client.py``), from
the outside in, after the deadline check::

    bulkhead.call(breaker.call, retrier.call(attempt, idempotent=...))
      attempt: the request, with timeout = current deadline's timeout_for(own)

Why this order, of the two the guards could be stacked in:

* **The breaker judges calls, not attempts: it sits outside the retrier.**
  Retries exist to absorb a dependency's blips; the breaker is for the
  outage they cannot absorb. A call that succeeded at its second try is a
  success — what the caller got — so a few lost connections during a restart
  do not open the breaker and turn every caller away for its whole wait. An
  open breaker costs no attempt, no retry-budget deposit and no retry
  outcome. The retry budget, not the breaker, bounds how much the retries
  add to a failing dependency's load.
* **The bulkhead is outermost: a call keeps its slot through its retries and
  their backoff.** The N slots bound everything this service does to the
  dependency, retries included, so a slow or failing dependency cannot take
  more than its own slots (the connection pool is sized to match), and a
  retry is never refused for a slot a newcomer took after its first attempt
  was sent — an unknown outcome, for a charge.
* **The bulkhead is outside the breaker**, so a call shed for local capacity
  never reaches the breaker: it is not counted as the dependency failing and
  never uses up a half-open trial.

The price, accepted: the breaker's durations are whole calls, backoff
included (a slow-call threshold is set against that), a half-open trial may
be up to ``max_attempts`` requests, a breaker that opens while a call is
retrying lets that call finish its attempts, and a slot is held during a
backoff sleep. The other order (retrier outermost, breaker and bulkhead per
attempt) trips sooner on blips the retries would have absorbed and lets a
newcomer take a retrying call's slot; it is the better choice only where
every attempt's health matters more than the call's.

Inside the retrier, each attempt picks one of the dependency's endpoints
(``Balancer``, ``_balancer.py``: power of two choices, outlier ejection per
endpoint) and a retry avoids the endpoints the call already tried. So the
breaker stays per dependency and one bad replica ejects itself without
opening it; ``_balancer.py`` argues the split.
"""

from services.chassis.resilience._balancer import (
    Balancer,
    BalancerSnapshot,
    Endpoint,
    EndpointSnapshot,
    OutlierPolicy,
)
from services.chassis.resilience._breaker import (
    BreakerConfig,
    BreakerSnapshot,
    CircuitBreaker,
    CircuitState,
)
from services.chassis.resilience._bulkhead import Bulkhead, BulkheadSnapshot
from services.chassis.resilience._clock import Clock, ManualClock, monotonic
from services.chassis.resilience._deadline import (
    DEADLINE_HEADER,
    MAX_DEADLINE_MS,
    Deadline,
    current_deadline,
    deadline_scope,
    from_header,
    get_deadline,
    set_deadline,
    to_header,
)
from services.chassis.resilience._errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    ResilienceError,
)
from services.chassis.resilience._hooks import (
    CompositeHooks,
    LoggingHooks,
    ResilienceHooks,
    SpanEventHooks,
    default_hooks,
)
from services.chassis.resilience._prometheus import register, snapshot_all, unregister
from services.chassis.resilience._retry import (
    RETRYABLE_STATUSES,
    Retrier,
    RetryBudget,
    RetryOutcome,
    RetryPolicy,
    RetrySnapshot,
    is_idempotent,
    retry_on_status,
)

__all__ = [
    "DEADLINE_HEADER",
    "MAX_DEADLINE_MS",
    "RETRYABLE_STATUSES",
    "Balancer",
    "BalancerSnapshot",
    "BreakerConfig",
    "BreakerSnapshot",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadSnapshot",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "CompositeHooks",
    "Deadline",
    "DeadlineExceeded",
    "Endpoint",
    "EndpointSnapshot",
    "LoggingHooks",
    "ManualClock",
    "OutlierPolicy",
    "ResilienceError",
    "ResilienceHooks",
    "Retrier",
    "RetryBudget",
    "RetryOutcome",
    "RetryPolicy",
    "RetrySnapshot",
    "SpanEventHooks",
    "current_deadline",
    "deadline_scope",
    "default_hooks",
    "from_header",
    "get_deadline",
    "is_idempotent",
    "monotonic",
    "register",
    "retry_on_status",
    "set_deadline",
    "snapshot_all",
    "to_header",
    "unregister",
]
