"""Circuit breaker with resilience4j's semantics, as an asyncio-native state machine.

States: CLOSED, OPEN, HALF_OPEN, plus FORCED_OPEN and DISABLED set by an operator.

CLOSED
    Outcomes go into a count-based sliding window of the last
    ``sliding_window_size`` calls. Once at least ``minimum_calls`` are in the
    window, the breaker opens if the failure rate or the slow-call rate reaches
    its threshold (percent). A call is slow when it took at least
    ``slow_call_duration`` seconds; a slow failure counts in both rates.
OPEN
    Every call is rejected with ``CircuitOpenError`` for
    ``wait_duration_in_open`` seconds of the injected monotonic clock. The move
    to HALF_OPEN is lazy: the first permission request after the wait makes it,
    so an idle breaker needs no timer.
HALF_OPEN
    At most ``permitted_calls_in_half_open`` trial calls run; callers beyond
    that are rejected at once, never queued. As in resilience4j the trials are
    judged together once all of them have completed: rate at or above a
    threshold → OPEN again, otherwise → CLOSED with an empty window. (So with
    N=3 and a 50 % threshold one failed trial out of three closes the breaker;
    use N=1 for "any failure reopens".) A cancelled trial records nothing and
    hands its slot to the next caller.
FORCED_OPEN / DISABLED
    Reject everything / permit everything and record nothing that can trip,
    until ``force_closed()`` or ``reset()``.

What counts as a failure: an ``Exception`` for which ``record_exception``
holds and which is not an instance of ``ignore_exceptions``, or a result for
which ``record_result`` holds. An exception that is not a failure counts as a
success (the dependency answered). ``asyncio.CancelledError`` — and any other
``BaseException`` that is not an ``Exception`` — is not an outcome at all: it
only releases the caller's permission.

Each permission is stamped with the generation (epoch) of the state that
granted it. An outcome reported after the breaker has moved on (a slow call
admitted while CLOSED that ends after the breaker opened) is counted in the
metrics but never fed into the new state, so half-open trial accounting
cannot drift. There are no locks: asyncio runs one task at a time and every
state change happens synchronously between two awaits.

Performance: a successful call in CLOSED costs one integer increment and one
comparison — the window keeps the *positions* of failed and slow calls only,
and successes merely advance the position. Per-call counters are plain
attributes read by the Prometheus collector at scrape time; hooks fire only on
transitions and rejections.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, TypeVarTuple

from services.chassis.resilience._clock import Clock, monotonic
from services.chassis.resilience._errors import CircuitOpenError
from services.chassis.resilience._hooks import ResilienceHooks, notify

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# What a rejection in HALF_OPEN (all trial slots taken) or FORCED_OPEN tells the
# caller: the trials finish within a call's timeout and an operator's decision
# has no known end, so a short, fixed hint.
BUSY_RETRY_AFTER = 1.0


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


# Module-level aliases: a global load is cheaper than an enum attribute lookup.
_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_FORCED_OPEN = CircuitState.FORCED_OPEN
_DISABLED = CircuitState.DISABLED

_CancelledError = asyncio.CancelledError


def _always(_: BaseException) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """resilience4j's defaults, except a smaller ``minimum_calls`` and shorter waits.

    Rates are percentages (0-100] as in resilience4j; durations are seconds.
    """

    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration: float = 10.0
    sliding_window_size: int = 100
    minimum_calls: int = 20
    wait_duration_in_open: float = 30.0
    permitted_calls_in_half_open: int = 5
    record_exception: Callable[[BaseException], bool] = _always
    ignore_exceptions: tuple[type[BaseException], ...] = ()
    record_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        for rate in (self.failure_rate_threshold, self.slow_call_rate_threshold):
            if not 0.0 < rate <= 100.0:
                raise ValueError(f"rate thresholds are percentages in (0, 100], got {rate}")
        if not self.slow_call_duration > 0.0:
            raise ValueError("slow_call_duration must be positive")
        if self.sliding_window_size < 1:
            raise ValueError("sliding_window_size must be at least 1")
        if not 1 <= self.minimum_calls <= self.sliding_window_size:
            raise ValueError("minimum_calls must be between 1 and sliding_window_size")
        if not (self.wait_duration_in_open >= 0.0 and math.isfinite(self.wait_duration_in_open)):
            raise ValueError("wait_duration_in_open must be a finite, non-negative duration")
        if self.permitted_calls_in_half_open < 1:
            raise ValueError("permitted_calls_in_half_open must be at least 1")


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The breaker at one instant, for the admin endpoint and the metrics collector.

    ``failure_rate`` and ``slow_call_rate`` are ratios in [0, 1], computed over
    the CLOSED window, over the completed trials in HALF_OPEN, or frozen at the
    moment the breaker opened; ``None`` while fewer than the required calls
    have been recorded, and in FORCED_OPEN and DISABLED. The ``*_total``
    counters only ever grow: ``successes_total + failures_total + slow_total``
    is every recorded outcome, a slow failure being counted as a failure.
    ``transitions_total`` is keyed ``"closed->open"`` so the snapshot encodes as JSON.
    """

    name: str
    state: CircuitState
    failure_rate: float | None
    slow_call_rate: float | None
    buffered_calls: int
    failed_calls: int
    slow_calls: int
    half_open_in_flight: int
    retry_after: float
    successes_total: int
    failures_total: int
    slow_total: int
    rejected_total: int
    transitions_total: dict[str, int] = field(default_factory=dict)


class CircuitBreaker:
    """``await breaker.call(fn, *args)`` or ``async with breaker:`` around a call.

    ``call`` is the fast form. ``async with`` must carry the call's permit and
    start time from ``__aenter__`` to ``__aexit__`` per task, through a
    ContextVar, which roughly triples its overhead (still under a microsecond).

    For composing into a client, the low-level protocol is
    ``permit = breaker.acquire_permission()`` (raises ``CircuitOpenError``), then
    exactly one of ``on_success(duration, permit)``, ``on_error(duration, exc,
    permit)``, ``on_result(duration, result, permit)`` or
    ``release_permission(permit)`` (the call never ran or was cancelled).
    ``permit`` may be omitted; the outcome then applies to the current state, as
    in resilience4j.
    """

    __slots__ = (
        "__weakref__",
        "_call_stack",
        "_clock",
        "_closed_epoch",
        "_config",
        "_count_failure",
        "_count_other",
        "_count_rejected",
        "_count_slow",
        "_epoch",
        "_fail_pct",
        "_failures",
        "_hooks",
        "_ignore",
        "_min_calls",
        "_n",
        "_name",
        "_next_event",
        "_open_until",
        "_record_exception",
        "_record_result",
        "_size",
        "_slow_pct",
        "_slow_s",
        "_slows",
        "_state",
        "_transitions",
        "_trial_failures",
        "_trial_slows",
        "_trials_done",
        "_trials_in_flight",
        "_trials_permitted",
        "_tripped_rates",
        "_wait",
        "_window_start",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = monotonic,
        hooks: ResilienceHooks | None = None,
    ) -> None:
        cfg = config if config is not None else BreakerConfig()
        self._name = name
        self._config = cfg
        self._clock = clock
        self._hooks = hooks
        # Configuration flattened into slots: one attribute load each on the hot path.
        self._size = cfg.sliding_window_size
        self._min_calls = cfg.minimum_calls
        self._fail_pct = cfg.failure_rate_threshold
        self._slow_pct = cfg.slow_call_rate_threshold
        self._slow_s = cfg.slow_call_duration
        self._wait = cfg.wait_duration_in_open
        self._trials_permitted = cfg.permitted_calls_in_half_open
        self._record_exception = cfg.record_exception
        self._ignore = cfg.ignore_exceptions
        self._record_result = cfg.record_result

        self._state = _CLOSED
        self._epoch = 0
        self._closed_epoch = 0  # == _epoch while CLOSED, -1 otherwise: one check admits.
        # CLOSED window. _n counts every outcome ever recorded in a CLOSED window;
        # the window is positions (_window_start, _n], of which the last _size count.
        self._n = 0
        self._window_start = 0
        self._failures: deque[int] = deque()
        self._slows: deque[int] = deque()
        self._next_event = self._min_calls  # _n at which the slow path must look again
        self._open_until = 0.0
        self._tripped_rates: tuple[float | None, float | None] = (None, None)
        self._trials_in_flight = 0
        self._trials_done = 0
        self._trial_failures = 0
        self._trial_slows = 0
        # Lifetime counters, read at scrape time. Successes are derived (see snapshot).
        self._count_failure = 0
        self._count_slow = 0
        self._count_other = 0
        self._count_rejected = 0
        self._transitions: dict[str, int] = {}
        # Per-task stack of (permit, start) for ``async with breaker:``.
        self._call_stack: contextvars.ContextVar[tuple[int, float, Any] | None] = (
            contextvars.ContextVar(f"breaker:{name}", default=None)
        )

    # -- the hot path --------------------------------------------------------------------

    async def call(self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts) -> T:
        """Run ``await fn(*args)`` if the breaker permits; raise ``CircuitOpenError`` if not."""
        permit = self._closed_epoch
        if permit < 0:
            permit = self._acquire_slow()
        clock = self._clock
        start = clock()
        try:
            result = await fn(*args)
        except BaseException as exc:
            self._complete_exception(permit, clock() - start, exc)
            raise
        duration = clock() - start
        record_result = self._record_result
        if (
            permit == self._closed_epoch
            and duration < self._slow_s
            and (record_result is None or not record_result(result))
        ):
            # A fast success in CLOSED: advance the window position, nothing else.
            n = self._n + 1
            self._n = n
            if n >= self._next_event:
                self._window_event()
        else:
            self._complete(permit, duration, record_result is not None and record_result(result))
        return result

    async def __aenter__(self) -> CircuitBreaker:
        permit = self._closed_epoch
        if permit < 0:
            permit = self._acquire_slow()
        var = self._call_stack
        # A stack, so nesting the same breaker in one task stays correct.
        var.set((permit, self._clock(), var.get()))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        var = self._call_stack
        frame = var.get()
        if frame is None:
            raise RuntimeError("__aexit__ without a matching __aenter__")
        permit, start, outer = frame
        var.set(outer)
        duration = self._clock() - start
        if exc is not None:
            self._complete_exception(permit, duration, exc)
        elif permit == self._closed_epoch and duration < self._slow_s:
            n = self._n + 1
            self._n = n
            if n >= self._next_event:
                self._window_event()
        else:
            self._complete(permit, duration, False)

    # -- the low-level protocol ----------------------------------------------------------

    def acquire_permission(self) -> int:
        """Permit one call or raise ``CircuitOpenError``. Returns the permit to report back."""
        permit = self._closed_epoch
        if permit < 0:
            permit = self._acquire_slow()
        return permit

    def on_success(self, duration: float, permit: int | None = None) -> None:
        self._complete(self._permit(permit), duration, False)

    def on_error(self, duration: float, exc: BaseException, permit: int | None = None) -> None:
        self._complete_exception(self._permit(permit), duration, exc)

    def on_result(self, duration: float, result: Any, permit: int | None = None) -> None:
        record_result = self._record_result
        failed = record_result is not None and record_result(result)
        self._complete(self._permit(permit), duration, failed)

    def release_permission(self, permit: int | None = None) -> None:
        """The permitted call did not run to an outcome (cancelled, never sent)."""
        self._release(self._permit(permit))

    # -- operator controls ---------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until ``force_closed()`` or ``reset()``."""
        if self._state is not _FORCED_OPEN:
            self._transition(_FORCED_OPEN, "forced_open")

    def force_closed(self) -> None:
        """Go to CLOSED with an empty window, whatever the current state."""
        if self._state is not _CLOSED:
            self._transition(_CLOSED, "forced_closed")

    def disable(self) -> None:
        """Permit every call and record nothing that can trip, until ``reset()``."""
        if self._state is not _DISABLED:
            self._transition(_DISABLED, "disabled")

    def reset(self) -> None:
        """Back to a fresh CLOSED breaker. Lifetime counters are kept: they feed counters."""
        self._transition(_CLOSED, "reset")

    # -- introspection -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> BreakerConfig:
        return self._config

    @property
    def state(self) -> CircuitState:
        """The stored state. An OPEN breaker whose wait has elapsed still reads OPEN
        until the next permission request moves it (as in resilience4j)."""
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        state = self._state
        failure_rate: float | None
        slow_rate: float | None
        if state is _CLOSED:
            self._expire(self._n)
            buffered = min(self._n - self._window_start, self._size)
            failed, slow = len(self._failures), len(self._slows)
            if buffered >= self._min_calls:
                failure_rate, slow_rate = failed / buffered, slow / buffered
            else:
                failure_rate = slow_rate = None
        elif state is _HALF_OPEN:
            buffered, failed, slow = self._trials_done, self._trial_failures, self._trial_slows
            failure_rate = slow_rate = None  # judged only once every trial is done
        elif state is _OPEN:
            buffered = failed = slow = 0
            failure_rate, slow_rate = self._tripped_rates
        else:
            buffered = failed = slow = 0
            failure_rate = slow_rate = None
        if state is _OPEN:
            retry_after = max(0.0, self._open_until - self._clock())
        elif state is _HALF_OPEN or state is _FORCED_OPEN:
            retry_after = BUSY_RETRY_AFTER
        else:
            retry_after = 0.0
        outcomes = self._n + self._count_other
        return BreakerSnapshot(
            name=self._name,
            state=state,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            buffered_calls=buffered,
            failed_calls=failed,
            slow_calls=slow,
            half_open_in_flight=self._trials_in_flight,
            retry_after=retry_after,
            successes_total=outcomes - self._count_failure - self._count_slow,
            failures_total=self._count_failure,
            slow_total=self._count_slow,
            rejected_total=self._count_rejected,
            transitions_total=dict(self._transitions),
        )

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self._state}>"

    # -- the slow paths ------------------------------------------------------------------

    def _permit(self, permit: int | None) -> int:
        return self._epoch if permit is None else permit

    def _reject(self, retry_after: float) -> CircuitOpenError:
        self._count_rejected += 1
        if self._hooks is not None:
            notify(self._hooks.on_breaker_rejection, self._name, self._state, retry_after)
        return CircuitOpenError(self._name, retry_after)

    def _acquire_slow(self) -> int:
        state = self._state
        if state is _OPEN:
            retry_after = self._open_until - self._clock()
            if retry_after > 0.0:
                # _reject inlined: this is the path every call takes during an outage.
                self._count_rejected += 1
                if self._hooks is not None:
                    notify(self._hooks.on_breaker_rejection, self._name, state, retry_after)
                raise CircuitOpenError(self._name, retry_after)
            self._transition(_HALF_OPEN, "wait_elapsed")
            state = _HALF_OPEN
        if state is _HALF_OPEN:
            if self._trials_in_flight + self._trials_done < self._trials_permitted:
                self._trials_in_flight += 1
                return self._epoch
            raise self._reject(BUSY_RETRY_AFTER)
        if state is _DISABLED:
            return self._epoch
        raise self._reject(BUSY_RETRY_AFTER)  # FORCED_OPEN

    def _complete_exception(self, permit: int, duration: float, exc: BaseException) -> None:
        if isinstance(exc, _CancelledError) or not isinstance(exc, Exception):
            self._release(permit)
            return
        failed = not isinstance(exc, self._ignore) and self._record_exception(exc)
        self._complete(permit, duration, failed)

    def _complete(self, permit: int, duration: float, failed: bool) -> None:
        slow = duration >= self._slow_s
        if failed:
            self._count_failure += 1
        elif slow:
            self._count_slow += 1
        if permit == self._closed_epoch:
            self._record_closed(failed, slow)  # counted through _n
            return
        self._count_other += 1
        if permit == self._epoch and self._state is _HALF_OPEN and self._trials_in_flight > 0:
            self._record_trial(failed, slow)
        # Otherwise DISABLED, or an outcome of a state the breaker has left: metrics only.

    def _release(self, permit: int) -> None:
        if permit == self._epoch and self._state is _HALF_OPEN and self._trials_in_flight > 0:
            self._trials_in_flight -= 1

    def _record_closed(self, failed: bool, slow: bool) -> None:
        n = self._n + 1
        self._n = n
        if failed:
            self._failures.append(n)
        if slow:
            self._slows.append(n)
        if failed or slow or n >= self._next_event:
            self._window_event()

    def _expire(self, n: int) -> None:
        oldest_kept = n - self._size  # positions <= this have left the window
        failures, slows = self._failures, self._slows
        while failures and failures[0] <= oldest_kept:
            failures.popleft()
        while slows and slows[0] <= oldest_kept:
            slows.popleft()

    def _window_event(self) -> None:
        """Expire old entries, judge the window if it is full enough, plan the next look."""
        n = self._n
        self._expire(n)
        buffered = min(n - self._window_start, self._size)
        if buffered >= self._min_calls:
            failed, slow = len(self._failures), len(self._slows)
            # Percent comparisons in integers-times-100: no float rounding at the edge.
            if failed and failed * 100 >= self._fail_pct * buffered:
                self._trip("failure_rate", failed / buffered, slow / buffered)
                return
            if slow and slow * 100 >= self._slow_pct * buffered:
                self._trip("slow_call_rate", failed / buffered, slow / buffered)
                return
        # Successes can only lower the rates once the minimum is reached, so the
        # fast path needs to look again only when an entry leaves the window.
        nxt = self._window_start + self._min_calls
        if n >= nxt:
            nxt = 1 << 62
        if self._failures:
            nxt = min(nxt, self._failures[0] + self._size)
        if self._slows:
            nxt = min(nxt, self._slows[0] + self._size)
        self._next_event = nxt

    def _trip(self, reason: str, failure_rate: float, slow_rate: float) -> None:
        self._tripped_rates = (failure_rate, slow_rate)
        self._transition(_OPEN, reason)

    def _record_trial(self, failed: bool, slow: bool) -> None:
        self._trials_in_flight -= 1
        self._trials_done += 1
        if failed:
            self._trial_failures += 1
        if slow:
            self._trial_slows += 1
        done = self._trials_done
        if done < self._trials_permitted:
            return
        failed_n, slow_n = self._trial_failures, self._trial_slows
        if failed_n and failed_n * 100 >= self._fail_pct * done:
            self._trip("half_open_failure_rate", failed_n / done, slow_n / done)
        elif slow_n and slow_n * 100 >= self._slow_pct * done:
            self._trip("half_open_slow_call_rate", failed_n / done, slow_n / done)
        else:
            self._transition(_CLOSED, "half_open_success")

    def _transition(self, to: CircuitState, reason: str) -> None:
        frm = self._state
        self._state = to
        self._epoch += 1
        self._closed_epoch = self._epoch if to is _CLOSED else -1
        if to is _CLOSED or to is _DISABLED:
            self._window_start = self._n
            self._failures.clear()
            self._slows.clear()
            self._next_event = self._n + self._min_calls
        if to is _OPEN:
            self._open_until = self._clock() + self._wait
        # Trial accounting belongs to one HALF_OPEN generation; permits of the old
        # one no longer match the epoch, so starting from zero cannot go negative.
        self._trials_in_flight = 0
        self._trials_done = 0
        self._trial_failures = 0
        self._trial_slows = 0
        if frm is not to:
            key = f"{frm.value}->{to.value}"
            self._transitions[key] = self._transitions.get(key, 0) + 1
            hooks = self._hooks
            if hooks is not None:
                notify(hooks.on_breaker_transition, self._name, frm, to, reason)
