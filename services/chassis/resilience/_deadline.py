"""Deadlines: a request's remaining time budget, carried in a contextvar and between services.

A ``Deadline`` is an instant on the monotonic clock. Only the *remaining*
budget crosses the wire, as relative milliseconds in ``x-deadline-remaining-ms``
(as gRPC's ``grpc-timeout`` does): monotonic instants mean nothing on another
host, and relative values need no synchronised wall clocks. Each hop reads the
header into a ``Deadline`` on its own clock when the request arrives, so time
spent in the network and in queues before that is the only error, and it errs
on the generous side.

``from_header`` returns ``None`` for anything it cannot trust — missing,
non-numeric, negative, fractional, or over ``MAX_DEADLINE_MS`` — rather than
raising: a bad header from a peer must not fail the request. The server then
applies its own default budget.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from services.chassis.resilience._clock import Clock, monotonic
from services.chassis.resilience._errors import DeadlineExceeded

DEADLINE_HEADER = "x-deadline-remaining-ms"
# An hour. Anything longer is a bug or an attack; no Redline request waits that long.
MAX_DEADLINE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Deadline:
    """``expires_at`` is a reading of ``clock``; build one with ``Deadline.after(seconds)``."""

    expires_at: float
    clock: Clock = monotonic

    @classmethod
    def after(cls, seconds: float, clock: Clock = monotonic) -> Deadline:
        if not seconds >= 0.0:  # also rejects NaN
            raise ValueError(f"a deadline budget must be non-negative, got {seconds}")
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - self.clock())

    @property
    def expired(self) -> bool:
        return self.clock() >= self.expires_at

    def timeout_for(self, own_timeout: float | None) -> float:
        """The timeout an operation should use: its own, cut to what the budget has left."""
        remaining = self.remaining()
        return remaining if own_timeout is None else min(own_timeout, remaining)

    def check(self, what: str = "request") -> None:
        """Raise ``DeadlineExceeded`` if the budget is spent."""
        if self.expired:
            raise DeadlineExceeded(what)

    def earliest(self, other: Deadline | None) -> Deadline:
        """The tighter of two deadlines (both are assumed to share a clock)."""
        if other is None or self.expires_at <= other.expires_at:
            return self
        return other


current_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "current_deadline", default=None
)


def get_deadline() -> Deadline | None:
    """The deadline of the request being served in this task, if any."""
    return current_deadline.get()


def set_deadline(deadline: Deadline | None) -> contextvars.Token[Deadline | None]:
    """Set the current deadline; pass the token to ``current_deadline.reset`` to undo."""
    return current_deadline.set(deadline)


@contextmanager
def deadline_scope(budget: float | Deadline, clock: Clock = monotonic) -> Iterator[Deadline]:
    """Run a block under a budget. A nested scope can shorten the deadline, never extend it."""
    new = budget if isinstance(budget, Deadline) else Deadline.after(budget, clock)
    effective = new.earliest(current_deadline.get())
    token = current_deadline.set(effective)
    try:
        yield effective
    finally:
        current_deadline.reset(token)


def to_header(deadline: Deadline) -> str:
    """The remaining budget in whole milliseconds, rounded down so it never grows in transit."""
    return str(int(deadline.remaining() * 1000.0))


def from_header(value: str | None, clock: Clock = monotonic) -> Deadline | None:
    """Parse ``x-deadline-remaining-ms``; ``None`` if missing or untrustworthy (see module doc).

    ``"0"`` is valid and yields an already expired deadline: the caller has no
    time left, and the server should answer at once rather than start work.
    """
    if value is None:
        return None
    text = value.strip()
    # isdecimal() alone accepts other scripts' digits; int() accepts "+5", "1_000", " 5".
    if not (0 < len(text) <= 10 and text.isascii() and text.isdecimal()):
        return None
    millis = int(text)
    if millis > MAX_DEADLINE_MS:
        return None
    return Deadline(clock() + millis / 1000.0, clock)
