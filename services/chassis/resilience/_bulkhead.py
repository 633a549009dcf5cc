"""Bulkhead: a bound on concurrent calls, with an optional bounded wait for a slot.

A counter and a FIFO of waiter futures rather than ``asyncio.Semaphore``,
for three reasons: the uncontended path is one comparison and one increment
(cheaper than the semaphore's two coroutine layers); a freed slot is *handed*
to the first waiter, so a newcomer cannot barge past callers who waited; and
the one subtle case — a waiter cancelled after a slot was handed to it but
before it resumed — is handled by passing that slot on, so slots never leak
(hyx's two-semaphore bulkhead loses one when a waiter is cancelled) and are
never released twice.

The wait bound uses the event loop's timer (``loop.call_later``): a waiter is
suspended, so only the loop can wake it. ``max_wait=0`` rejects at once, and
no caller waits past the current request deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

from services.chassis.resilience._deadline import current_deadline
from services.chassis.resilience._errors import BulkheadFullError
from services.chassis.resilience._hooks import ResilienceHooks, notify

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True, slots=True)
class BulkheadSnapshot:
    name: str
    in_flight: int
    capacity: int
    waiting: int
    rejected_total: int


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Bulkhead:
    """``async with bulkhead:`` or ``await bulkhead.call(fn, *args)``.

    Raises ``BulkheadFullError`` when no slot frees up within ``max_wait`` seconds.
    """

    __slots__ = (
        "__weakref__",
        "_capacity",
        "_hooks",
        "_in_flight",
        "_max_wait",
        "_name",
        "_rejected",
        "_waiters",
    )

    def __init__(
        self,
        name: str,
        max_concurrent: int,
        max_wait: float = 0.0,
        *,
        hooks: ResilienceHooks | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if not max_wait >= 0.0:
            raise ValueError("max_wait must be a non-negative number of seconds")
        self._name = name
        self._capacity = max_concurrent
        self._max_wait = max_wait
        self._hooks = hooks
        # Slots held, including one handed to a waiter that has not resumed yet.
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._rejected = 0

    async def __aenter__(self) -> Bulkhead:
        if self._in_flight < self._capacity:
            self._in_flight += 1
        else:
            await self._wait_for_slot()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._release()

    async def call(self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts) -> T:
        if self._in_flight < self._capacity:
            self._in_flight += 1
        else:
            await self._wait_for_slot()
        try:
            return await fn(*args)
        finally:
            self._release()

    def _release(self) -> None:
        # Above capacity (it was just lowered): the slot is retired, not handed on.
        if self._in_flight <= self._capacity:
            waiters = self._waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    # Hand the slot over: in_flight stays the same, the waiter now owns it.
                    waiter.set_result(True)
                    return
        if self._in_flight <= 0:
            raise RuntimeError(f"bulkhead {self._name!r} released more slots than it granted")
        self._in_flight -= 1

    def _reject(self) -> BulkheadFullError:
        self._rejected += 1
        hooks = self._hooks
        if hooks is not None:
            notify(hooks.on_bulkhead_rejection, self._name)
        return BulkheadFullError(self._name)

    async def _wait_for_slot(self) -> None:
        wait = self._max_wait
        deadline = current_deadline.get()
        if deadline is not None:
            wait = min(wait, deadline.remaining())
        if wait <= 0.0:
            raise self._reject()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(wait, _expire, waiter)
        try:
            granted = await waiter
        except BaseException:
            # Cancelled (or interrupted) while waiting.
            timer.cancel()
            if waiter.done() and not waiter.cancelled() and waiter.result():
                # A slot was handed to us just before the cancellation landed; pass it on.
                self._release()
            else:
                self._discard(waiter)
            raise
        timer.cancel()
        if not granted:
            self._discard(waiter)
            raise self._reject()

    def _discard(self, waiter: asyncio.Future[bool]) -> None:
        # Absent if _release already popped it (it skips finished waiters).
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def resize(self, max_concurrent: int, max_wait: float | None = None) -> None:
        """Change the limits at run time (operators, chaos experiments).

        Raising the capacity hands the new slots to waiters at once; lowering
        it lets the calls in flight finish and admits nobody until in-flight is
        under the new limit.
        """
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if max_wait is not None and not max_wait >= 0.0:
            raise ValueError("max_wait must be a non-negative number of seconds")
        self._capacity = max_concurrent
        if max_wait is not None:
            self._max_wait = max_wait
        waiters = self._waiters
        while waiters and self._in_flight < self._capacity:
            waiter = waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(True)

    @property
    def name(self) -> str:
        return self._name

    def snapshot(self) -> BulkheadSnapshot:
        return BulkheadSnapshot(
            name=self._name,
            in_flight=self._in_flight,
            capacity=self._capacity,
            waiting=sum(1 for w in self._waiters if not w.done()),
            rejected_total=self._rejected,
        )

    def __repr__(self) -> str:
        return f"<Bulkhead {self._name!r} {self._in_flight}/{self._capacity}>"
