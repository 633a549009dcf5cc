"""Errors raised by the primitives themselves, never by the calls they guard.

Rejections are on the hot path of an outage (an open breaker answers every
call with one), so they are built to be cheap: the attributes live in
``args`` and are filled by ``BaseException``'s C initialiser (no Python
``__init__`` frame), the message is formatted only if someone reads it, and
each rejection raises a fresh instance. Re-raising one stored instance would
append a traceback entry per raise and keep every frame alive (purgatory's
leak).
"""

from __future__ import annotations


class ResilienceError(Exception):
    """Base of every error a breaker, bulkhead, retrier or deadline raises on its own."""


class CircuitOpenError(ResilienceError):
    """The breaker refused the call. ``CircuitOpenError(name, retry_after)``.

    ``retry_after`` is the number of seconds until the breaker will let a trial
    call through (the time left in OPEN), or a short constant when it is
    half-open with all trial slots taken or forced open.
    """

    @property
    def name(self) -> str:
        name: str = self.args[0]
        return name

    @property
    def retry_after(self) -> float:
        seconds: float = self.args[1]
        return seconds

    def __str__(self) -> str:
        return f"circuit breaker {self.args[0]!r} is open; retry after {self.args[1]:.3f} s"


class BulkheadFullError(ResilienceError):
    """The bulkhead had no free slot within its wait bound. ``BulkheadFullError(name)``."""

    @property
    def name(self) -> str:
        name: str = self.args[0]
        return name

    def __str__(self) -> str:
        return f"bulkhead {self.args[0]!r} is full"


class DeadlineExceeded(ResilienceError):
    """The request's time budget is spent. ``DeadlineExceeded(what)`` names what ran out."""

    def __str__(self) -> str:
        what = self.args[0] if self.args else "request"
        return f"deadline exceeded: {what}"
