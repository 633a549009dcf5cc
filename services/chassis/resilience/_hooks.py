"""Instrumentation as hooks: the state machines report rare events, observers decide what to do.

A breaker, bulkhead, retrier or balancer calls its hooks only on transitions,
rejections, retry attempts and endpoint ejections — never on an ordinary
successful call. Per-call counts are plain integer attributes that
``_prometheus`` reads at scrape time, so metrics cost nothing on the hot path.

``ResilienceHooks`` is the interface and a no-op base: subclass it and override
what you need. ``LoggingHooks`` writes a structured line per transition,
``SpanEventHooks`` adds events to the current OpenTelemetry span and
``CompositeHooks`` fans out to several. A hook that raises is logged and
ignored by the caller (see ``notify``): observing must never change the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from telemetry import get_logger

_stdlib_logger = logging.getLogger(__name__)


class ResilienceHooks:
    """Observer of breakers, bulkheads and retriers. Every method is a no-op here.

    States and outcomes arrive as ``StrEnum`` members (``CircuitState``,
    ``RetryOutcome``), so they compare equal to, and log as, their label values.
    """

    __slots__ = ()

    def on_breaker_transition(self, name: str, from_state: str, to_state: str, reason: str) -> None:
        """The breaker ``name`` moved from ``from_state`` to ``to_state`` because of ``reason``."""

    def on_breaker_rejection(self, name: str, state: str, retry_after: float) -> None:
        """The breaker refused a call while in ``state``."""

    def on_bulkhead_rejection(self, name: str) -> None:
        """The bulkhead refused a call: full, and no slot freed within its wait bound."""

    def on_retry_attempt(self, name: str, attempt: int, outcome: str, delay: float) -> None:
        """Attempt number ``attempt`` (1-based) ended with ``outcome``.

        ``delay`` is the backoff before the next attempt, 0.0 when there is none.
        Not called for a first attempt that succeeds (the common, uninteresting case).
        """

    def on_endpoint_ejection(self, name: str, endpoint: str, seconds: float) -> None:
        """The balancer ``name`` took ``endpoint`` (host:port) out for ``seconds``."""

    def on_endpoint_return(self, name: str, endpoint: str) -> None:
        """An ejected ``endpoint`` is back in ``name``'s set (its ejection ran out)."""


def notify(method: Callable[..., None], *args: Any) -> None:
    """Call one hook method, logging instead of propagating whatever it raises."""
    try:
        method(*args)
    except Exception:
        _stdlib_logger.exception("resilience hook %r failed", method)


class LoggingHooks(ResilienceHooks):
    """One structured log line per breaker transition and per retry give-up.

    Rejections are not logged: an open breaker rejects every call, and a line
    each would flood the logs exactly when they are needed. The rejection
    counters and span events cover them.
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: Any = None) -> None:
        self._logger = logger if logger is not None else get_logger("resilience")

    def on_breaker_transition(self, name: str, from_state: str, to_state: str, reason: str) -> None:
        log = self._logger.warning if to_state in ("open", "forced_open") else self._logger.info
        log(
            "circuit breaker state changed",
            breaker=name,
            from_state=str(from_state),
            to_state=str(to_state),
            reason=reason,
        )

    def on_retry_attempt(self, name: str, attempt: int, outcome: str, delay: float) -> None:
        if outcome == "retry":
            self._logger.debug(
                "retrying", retrier=name, attempt=attempt, outcome=str(outcome), delay=delay
            )
        elif outcome in ("exhausted", "budget_exhausted", "deadline"):
            self._logger.warning(
                "retries stopped", retrier=name, attempt=attempt, outcome=str(outcome)
            )

    def on_endpoint_ejection(self, name: str, endpoint: str, seconds: float) -> None:
        self._logger.warning("endpoint ejected", balancer=name, endpoint=endpoint, seconds=seconds)

    def on_endpoint_return(self, name: str, endpoint: str) -> None:
        self._logger.info("endpoint returned", balancer=name, endpoint=endpoint)


class SpanEventHooks(ResilienceHooks):
    """Events on the current span, so a trace shows why a call was refused or repeated."""

    __slots__ = ()

    def on_breaker_transition(self, name: str, from_state: str, to_state: str, reason: str) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "resilience.circuit_breaker.transition",
                {
                    "resilience.circuit_breaker.name": name,
                    "resilience.circuit_breaker.from_state": str(from_state),
                    "resilience.circuit_breaker.to_state": str(to_state),
                    "resilience.circuit_breaker.reason": reason,
                },
            )

    def on_breaker_rejection(self, name: str, state: str, retry_after: float) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "resilience.circuit_breaker.rejected",
                {
                    "resilience.circuit_breaker.name": name,
                    "resilience.circuit_breaker.state": str(state),
                    "resilience.circuit_breaker.retry_after": retry_after,
                },
            )

    def on_bulkhead_rejection(self, name: str) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("resilience.bulkhead.rejected", {"resilience.bulkhead.name": name})

    def on_retry_attempt(self, name: str, attempt: int, outcome: str, delay: float) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "resilience.retry.attempt",
                {
                    "resilience.retry.name": name,
                    "resilience.retry.attempt": attempt,
                    "resilience.retry.outcome": str(outcome),
                    "resilience.retry.delay": delay,
                },
            )

    def on_endpoint_ejection(self, name: str, endpoint: str, seconds: float) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "resilience.endpoint.ejected",
                {
                    "resilience.balancer.name": name,
                    "resilience.endpoint": endpoint,
                    "resilience.endpoint.ejection_seconds": seconds,
                },
            )


class CompositeHooks(ResilienceHooks):
    """Calls each hook in order; one that raises does not stop the others.

    Only methods a hook actually overrides are called: a rejection during an
    outage should not pay for the no-op base methods of every member.
    """

    __slots__ = (
        "_bulkhead_rejection",
        "_ejection",
        "_rejection",
        "_retry",
        "_return",
        "_transition",
        "hooks",
    )

    def __init__(self, *hooks: ResilienceHooks) -> None:
        self.hooks = hooks
        self._transition = _overriding(hooks, "on_breaker_transition")
        self._rejection = _overriding(hooks, "on_breaker_rejection")
        self._bulkhead_rejection = _overriding(hooks, "on_bulkhead_rejection")
        self._retry = _overriding(hooks, "on_retry_attempt")
        self._ejection = _overriding(hooks, "on_endpoint_ejection")
        self._return = _overriding(hooks, "on_endpoint_return")

    def on_breaker_transition(self, name: str, from_state: str, to_state: str, reason: str) -> None:
        for method in self._transition:
            notify(method, name, from_state, to_state, reason)

    def on_breaker_rejection(self, name: str, state: str, retry_after: float) -> None:
        for method in self._rejection:
            notify(method, name, state, retry_after)

    def on_bulkhead_rejection(self, name: str) -> None:
        for method in self._bulkhead_rejection:
            notify(method, name)

    def on_retry_attempt(self, name: str, attempt: int, outcome: str, delay: float) -> None:
        for method in self._retry:
            notify(method, name, attempt, outcome, delay)

    def on_endpoint_ejection(self, name: str, endpoint: str, seconds: float) -> None:
        for method in self._ejection:
            notify(method, name, endpoint, seconds)

    def on_endpoint_return(self, name: str, endpoint: str) -> None:
        for method in self._return:
            notify(method, name, endpoint)


def _overriding(hooks: tuple[ResilienceHooks, ...], name: str) -> tuple[Callable[..., None], ...]:
    base = getattr(ResilienceHooks, name)
    return tuple(getattr(h, name) for h in hooks if getattr(type(h), name) is not base)


def default_hooks() -> ResilienceHooks:
    """Log lines and span events: what a Redline service wants unless it says otherwise."""
    return CompositeHooks(LoggingHooks(), SpanEventHooks())
