"""The bulkhead: exact limits, bounded waits, and no leaked slots whatever happens."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.chassis.resilience import (
    Bulkhead,
    BulkheadFullError,
    ResilienceError,
    deadline_scope,
)
from tests.resilience.support import RecordingHooks, settle


def assert_idle(bulkhead: Bulkhead) -> None:
    snap = bulkhead.snapshot()
    assert (snap.in_flight, snap.waiting) == (0, 0)


async def test_rejects_exactly_above_its_limit(hooks: RecordingHooks) -> None:
    bulkhead = Bulkhead("db", 3, hooks=hooks)
    release = asyncio.Event()
    tasks = [asyncio.create_task(bulkhead.call(release.wait)) for _ in range(5)]
    await settle()
    rejected = [t for t in tasks if t.done()]
    assert len(rejected) == 2
    for task in rejected:
        error = task.exception()
        assert isinstance(error, BulkheadFullError)
        assert isinstance(error, ResilienceError)
        assert error.name == "db"
        assert "db" in str(error)
    snap = bulkhead.snapshot()
    assert (snap.in_flight, snap.capacity, snap.rejected_total) == (3, 3, 2)
    assert hooks.events == [("bulkhead_rejection", "db")] * 2
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert_idle(bulkhead)


async def test_bounded_wait_then_rejection() -> None:
    bulkhead = Bulkhead("db", 1, max_wait=0.05)
    async with bulkhead:
        started = time.monotonic()
        with pytest.raises(BulkheadFullError):
            async with bulkhead:
                pytest.fail("no slot should have been granted")
        waited = time.monotonic() - started
        assert 0.04 <= waited < 1.0
        assert bulkhead.snapshot().waiting == 0
    assert_idle(bulkhead)


async def test_waiter_gets_the_slot_freed_within_its_wait() -> None:
    bulkhead = Bulkhead("db", 1, max_wait=5.0)
    order: list[str] = []

    async def use(tag: str, hold: float) -> None:
        async with bulkhead:
            order.append(tag)
            await asyncio.sleep(hold)

    await asyncio.gather(use("first", 0.01), use("second", 0), use("third", 0))
    assert order == ["first", "second", "third"]  # FIFO hand-over
    assert_idle(bulkhead)


async def test_frees_its_slot_on_error() -> None:
    bulkhead = Bulkhead("db", 1)

    async def boom() -> None:
        raise RuntimeError("query failed")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            await bulkhead.call(boom)
    assert_idle(bulkhead)


async def test_frees_its_slot_when_a_running_call_is_cancelled() -> None:
    bulkhead = Bulkhead("db", 1)
    task = asyncio.create_task(bulkhead.call(asyncio.sleep, 10))
    await settle()
    assert bulkhead.snapshot().in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_idle(bulkhead)
    async with bulkhead:
        assert bulkhead.snapshot().in_flight == 1


async def test_frees_its_place_when_cancelled_while_waiting() -> None:
    bulkhead = Bulkhead("db", 1, max_wait=10.0)
    release = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(release.wait))
    waiter = asyncio.create_task(bulkhead.call(asyncio.sleep, 0))
    await settle()
    assert bulkhead.snapshot().waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.snapshot().waiting == 0
    release.set()
    await holder
    assert_idle(bulkhead)
    # Capacity is intact: the full limit is usable again.
    async with bulkhead:
        assert bulkhead.snapshot().in_flight == 1


async def test_slot_handed_to_a_waiter_cancelled_before_it_resumed_is_passed_on() -> None:
    bulkhead = Bulkhead("db", 1, max_wait=10.0)
    await bulkhead.__aenter__()
    first = asyncio.create_task(bulkhead.call(asyncio.sleep, 0))
    second_release = asyncio.Event()
    second = asyncio.create_task(bulkhead.call(second_release.wait))
    await settle()
    assert bulkhead.snapshot().waiting == 2
    # Release hands the slot to `first`; cancel it before it gets to run.
    await bulkhead.__aexit__(None, None, None)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await settle()
    snap = bulkhead.snapshot()
    assert (snap.in_flight, snap.waiting) == (1, 0)  # `second` holds the passed-on slot
    second_release.set()
    await second
    assert_idle(bulkhead)


async def test_never_waits_past_the_request_deadline() -> None:
    bulkhead = Bulkhead("db", 1, max_wait=10.0)
    async with bulkhead:
        started = time.monotonic()
        with deadline_scope(0.05), pytest.raises(BulkheadFullError):
            await bulkhead.call(asyncio.sleep, 0)
        assert time.monotonic() - started < 1.0
    assert_idle(bulkhead)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_concurrent"):
        Bulkhead("db", 0)
    with pytest.raises(ValueError, match="max_wait"):
        Bulkhead("db", 1, max_wait=-1.0)


async def test_raising_the_limit_admits_waiters_at_once() -> None:
    bulkhead = Bulkhead("db", 1, max_wait=5.0)
    release = asyncio.Event()
    first = asyncio.create_task(bulkhead.call(release.wait))
    waiting = [asyncio.create_task(bulkhead.call(release.wait)) for _ in range(3)]
    await settle()
    assert bulkhead.snapshot().waiting == 3
    bulkhead.resize(3)
    await settle()
    snap = bulkhead.snapshot()
    assert (snap.in_flight, snap.waiting, snap.capacity) == (3, 1, 3)
    release.set()
    await asyncio.gather(first, *waiting)
    assert_idle(bulkhead)


async def test_lowering_the_limit_drains_before_admitting_anyone() -> None:
    bulkhead = Bulkhead("db", 3, max_wait=5.0)
    gates = [asyncio.Event() for _ in range(3)]
    running = [asyncio.create_task(bulkhead.call(g.wait)) for g in gates]
    await settle()
    bulkhead.resize(1)
    late = asyncio.create_task(bulkhead.call(asyncio.sleep, 0))
    await settle()
    gates[0].set()
    await settle()
    # Two still in flight, above the new limit of one: the waiter must wait.
    assert bulkhead.snapshot().in_flight == 2
    assert not late.done()
    gates[1].set()
    gates[2].set()
    await asyncio.gather(*running, late)
    assert_idle(bulkhead)
    with pytest.raises(ValueError, match="at least 1"):
        bulkhead.resize(0)
