"""Resilience primitives: circuit breaker, bulkhead, retry, deadlines.

Pure asyncio state machines with an injectable monotonic clock; they know
nothing about logs, traces or Prometheus. Observers attach through
``ResilienceHooks`` (transitions, rejections, retry attempts — never the
successful hot path), and ``register(obj)`` exports an object's counters
from ``telemetry.REGISTRY`` at scrape time.

Composed around one outgoing call, from the outside in::

    retrier.call(attempt, idempotent=is_idempotent(method, headers))
      attempt = breaker.call -> bulkhead.call -> the request,
                with timeout = current deadline's timeout_for(own timeout)

The retrier is outermost so each attempt is judged by the breaker and holds a
bulkhead slot only while it runs (never while sleeping); it does not retry
the breaker's or bulkhead's refusals.
"""

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
    "LoggingHooks",
    "ManualClock",
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
