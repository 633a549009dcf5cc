"""The circuit breaker's transitions, on a manual clock."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from services.chassis.resilience import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ManualClock,
    ResilienceError,
)
from tests.resilience.support import (
    RecordingHooks,
    fail,
    record,
    settle,
    small_config,
    state_of,
    succeed,
    taking,
)


async def open_breaker(clock: ManualClock, **config: object) -> CircuitBreaker:
    breaker = CircuitBreaker("dep", small_config(**config), clock=clock)
    await record(breaker, "f" * 10)
    assert state_of(breaker) is CircuitState.OPEN
    return breaker


async def test_opens_when_failure_rate_reaches_threshold(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock)
    await record(breaker, "sfsfsfsfs")
    assert state_of(breaker) is CircuitState.CLOSED  # 4 of 9: below the minimum of 10 anyway
    await record(breaker, "f")  # 5 of 10 = 50 %
    assert state_of(breaker) is CircuitState.OPEN
    snap = breaker.snapshot()
    assert snap.failure_rate == 0.5
    assert snap.failures_total == 5
    assert snap.successes_total == 5


async def test_stays_closed_just_below_failure_rate_threshold(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock)
    await record(breaker, "ffffssssss" + "s" * 20)
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().failure_rate == 0.0  # the failures slid out of the window
    await record(breaker, "ffff")
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert (snap.failed_calls, snap.buffered_calls, snap.failure_rate) == (4, 10, 0.4)


async def test_opens_when_slow_call_rate_reaches_threshold(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock)
    for i in range(10):
        # Every other call succeeds but takes 2 s, over the 1 s slow-call duration.
        await breaker.call(taking(clock, 2.0 if i % 2 else 0.1))
    snap = breaker.snapshot()
    assert snap.state is CircuitState.OPEN
    assert (snap.failure_rate, snap.slow_call_rate) == (0.0, 0.5)
    assert snap.slow_total == 5
    assert snap.failures_total == 0


async def test_a_slow_failure_counts_in_both_rates_but_once_in_totals(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(minimum_calls=2), clock=clock)
    with pytest.raises(TimeoutError):
        await breaker.call(taking(clock, 5.0, error=TimeoutError()))
    await breaker.call(succeed)
    snap = breaker.snapshot()
    assert snap.state is CircuitState.OPEN  # 1 failed of 2 = 50 %
    assert (snap.failure_rate, snap.slow_call_rate) == (0.5, 0.5)
    assert (snap.failures_total, snap.slow_total, snap.successes_total) == (1, 0, 1)


async def test_does_not_trip_below_minimum_calls(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock)
    await record(breaker, "f" * 9)
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert snap.failure_rate is None  # not judged yet
    # The tenth call, even a success, brings the window to its minimum: 9/10 failed.
    await record(breaker, "s")
    assert state_of(breaker) is CircuitState.OPEN


async def test_open_rejects_with_retry_after_without_calling(clock: ManualClock) -> None:
    breaker = await open_breaker(clock)
    clock.advance(10.0)
    reached = 0

    async def backend() -> None:
        nonlocal reached
        reached += 1

    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(backend)
    assert reached == 0
    assert caught.value.name == "dep"
    assert caught.value.retry_after == pytest.approx(20.0)
    assert isinstance(caught.value, ResilienceError)
    assert "dep" in str(caught.value)
    assert "20.000" in str(caught.value)
    assert breaker.snapshot().rejected_total == 1


async def test_each_rejection_is_a_fresh_exception_with_a_short_traceback(
    clock: ManualClock,
) -> None:
    breaker = await open_breaker(clock)
    caught: list[CircuitOpenError] = []
    for _ in range(100):
        try:
            await breaker.call(succeed)
        except CircuitOpenError as exc:
            caught.append(exc)
    assert len({id(e) for e in caught}) == 100
    depths = {len(traceback.extract_tb(e.__traceback__)) for e in caught}
    assert depths == {len(traceback.extract_tb(caught[0].__traceback__))}
    assert max(depths) <= 3


async def test_open_moves_to_half_open_after_the_wait(
    clock: ManualClock, hooks: RecordingHooks
) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock, hooks=hooks)
    await record(breaker, "f" * 10)
    clock.advance(29.999)
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)
    clock.advance(0.001)
    assert state_of(breaker) is CircuitState.OPEN  # lazily: nothing happens without a caller
    seen: list[CircuitState] = []

    async def trial() -> None:
        seen.append(breaker.state)

    await breaker.call(trial)
    assert seen == [CircuitState.HALF_OPEN]
    assert hooks.transitions() == [("closed", "open"), ("open", "half_open")]


async def test_half_open_admits_at_most_n_concurrent_trials(clock: ManualClock) -> None:
    breaker = await open_breaker(clock, permitted_calls_in_half_open=3)
    clock.advance(30.0)
    release = asyncio.Event()
    reached = 0

    async def backend() -> str:
        nonlocal reached
        reached += 1
        await release.wait()
        return "ok"

    tasks = [asyncio.create_task(breaker.call(backend)) for _ in range(20)]
    await settle()
    # Rejections are immediate, not queued: 17 are done while the 3 trials still run.
    done = [t for t in tasks if t.done()]
    assert len(done) == 17
    assert all(isinstance(t.exception(), CircuitOpenError) for t in done)
    assert reached == 3
    assert breaker.snapshot().half_open_in_flight == 3
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == 3
    assert state_of(breaker) is CircuitState.CLOSED


async def test_failing_trials_reopen_the_breaker_for_a_fresh_wait(clock: ManualClock) -> None:
    breaker = await open_breaker(clock)
    clock.advance(30.0)
    await record(breaker, "fff")
    assert state_of(breaker) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(succeed)
    assert caught.value.retry_after == pytest.approx(30.0)


async def test_trials_are_judged_together_once_all_complete(clock: ManualClock) -> None:
    breaker = await open_breaker(clock, permitted_calls_in_half_open=4)
    clock.advance(30.0)
    await record(breaker, "f")
    assert state_of(breaker) is CircuitState.HALF_OPEN  # one failure does not decide alone
    await record(breaker, "ss")
    assert state_of(breaker) is CircuitState.HALF_OPEN
    await record(breaker, "s")  # 1 of 4 failed = 25 % < 50 %
    assert state_of(breaker) is CircuitState.CLOSED


async def test_slow_trials_reopen_the_breaker(clock: ManualClock) -> None:
    breaker = await open_breaker(clock, permitted_calls_in_half_open=2)
    clock.advance(30.0)
    await breaker.call(taking(clock, 5.0))
    await breaker.call(taking(clock, 5.0))
    assert state_of(breaker) is CircuitState.OPEN


async def test_successful_trials_close_with_an_empty_window(
    clock: ManualClock, hooks: RecordingHooks
) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock, hooks=hooks)
    await record(breaker, "f" * 10)
    clock.advance(30.0)
    await record(breaker, "sss")
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert (snap.buffered_calls, snap.failed_calls, snap.failure_rate) == (0, 0, None)
    assert hooks.transitions()[-1] == ("half_open", "closed")
    assert hooks.events[-1][-1] == "half_open_success"
    # A fresh window: nine failures are below the minimum again.
    await record(breaker, "f" * 9)
    assert state_of(breaker) is CircuitState.CLOSED


async def test_forced_open_rejects_every_call_until_closed(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock)
    breaker.force_open()
    clock.advance(3600.0)  # no wait ends a forced open
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(succeed)
    assert state_of(breaker) is CircuitState.FORCED_OPEN
    assert 0.0 < caught.value.retry_after <= 1.0
    breaker.force_closed()
    assert await breaker.call(succeed) == "ok"
    assert state_of(breaker) is CircuitState.CLOSED


async def test_disabled_breaker_permits_everything_and_never_trips(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(), clock=clock)
    breaker.disable()
    await record(breaker, "f" * 50)
    snap = breaker.snapshot()
    assert snap.state is CircuitState.DISABLED
    assert snap.failures_total == 50
    assert snap.rejected_total == 0
    breaker.reset()
    assert state_of(breaker) is CircuitState.CLOSED


async def test_reset_returns_to_closed_with_an_empty_window(clock: ManualClock) -> None:
    breaker = await open_breaker(clock)
    breaker.reset()
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert snap.buffered_calls == 0
    assert snap.failures_total == 10  # lifetime counters survive: they feed Prometheus counters
    await record(breaker, "ffff" + "s" * 6)
    assert state_of(breaker) is CircuitState.CLOSED


async def test_cancelled_call_is_not_counted_as_failure(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(minimum_calls=1), clock=clock)
    task = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = breaker.snapshot()
    assert snap.state is CircuitState.CLOSED
    assert (snap.failures_total, snap.successes_total, snap.buffered_calls) == (0, 0, 0)


async def test_cancelled_trial_releases_its_half_open_permit(clock: ManualClock) -> None:
    breaker = await open_breaker(clock, permitted_calls_in_half_open=1)
    clock.advance(30.0)
    trial = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await settle()
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeed)  # the only slot is taken
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert breaker.snapshot().half_open_in_flight == 0
    assert await breaker.call(succeed) == "ok"  # the slot went to the next caller
    assert state_of(breaker) is CircuitState.CLOSED


async def test_ignored_exceptions_and_results_decide_what_is_a_failure(
    clock: ManualClock,
) -> None:
    config = small_config(
        minimum_calls=1,
        ignore_exceptions=(KeyError,),
        record_exception=lambda exc: not isinstance(exc, LookupError) or isinstance(exc, KeyError),
        record_result=lambda status: status >= 500,
    )
    breaker = CircuitBreaker("dep", config, clock=clock)

    async def raise_(exc: Exception) -> int:
        raise exc

    async def status(code: int) -> int:
        return code

    with pytest.raises(KeyError):
        await breaker.call(raise_, KeyError("ignored"))
    with pytest.raises(IndexError):
        await breaker.call(raise_, IndexError("not recorded"))
    assert await breaker.call(status, 404) == 404
    snap = breaker.snapshot()
    assert (snap.state, snap.successes_total, snap.failures_total) == (CircuitState.CLOSED, 3, 0)
    assert await breaker.call(status, 503) == 503  # returned, but recorded as a failure
    snap = breaker.snapshot()
    assert snap.failures_total == 1
    assert snap.state is CircuitState.CLOSED
    await breaker.call(status, 500)
    await breaker.call(status, 502)
    assert state_of(breaker) is CircuitState.OPEN  # 3 of 6 = 50 %


async def test_outcome_from_a_previous_state_does_not_count_as_a_trial(
    clock: ManualClock,
) -> None:
    breaker = CircuitBreaker("dep", small_config(permitted_calls_in_half_open=1), clock=clock)
    release = asyncio.Event()

    async def slow_to_fail() -> None:
        await release.wait()
        raise ConnectionError

    straggler = asyncio.create_task(breaker.call(slow_to_fail))  # admitted while CLOSED
    await settle()
    await record(breaker, "f" * 10)
    clock.advance(30.0)
    trial = asyncio.create_task(breaker.call(release.wait))  # the single trial
    await settle()
    release.set()
    await asyncio.gather(straggler, trial, return_exceptions=True)
    # The straggler's failure belonged to the old CLOSED window: the trial alone decides.
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.snapshot().failures_total == 11


async def test_async_with_records_outcomes_per_task(clock: ManualClock) -> None:
    config = small_config(minimum_calls=4, sliding_window_size=4)
    breaker = CircuitBreaker("dep", config, clock=clock)

    async def guarded(seconds: float, error: bool) -> None:
        async with breaker:
            await asyncio.sleep(seconds)
            if error:
                raise ConnectionError

    # Interleaved tasks: each task's own entry time and permit are used on exit.
    results = await asyncio.gather(
        guarded(0.02, True),
        guarded(0.0, False),
        guarded(0.01, True),
        guarded(0.0, False),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ConnectionError) for r in results) == 2
    assert state_of(breaker) is CircuitState.OPEN  # 2 of 4
    with pytest.raises(CircuitOpenError):
        async with breaker:
            pytest.fail("an open breaker must not run the block")


async def test_async_with_nested_in_one_task(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", small_config(slow_call_duration=5.0), clock=clock)
    async with breaker:
        clock.advance(1.0)
        async with breaker:
            clock.advance(1.0)
        clock.advance(4.0)  # the outer block took 6 s: slow; the inner one 1 s: not
    snap = breaker.snapshot()
    assert (snap.successes_total, snap.slow_total) == (1, 1)


async def test_low_level_protocol_for_clients(clock: ManualClock) -> None:
    breaker = CircuitBreaker(
        "dep", small_config(minimum_calls=2, record_result=lambda r: r == 503), clock=clock
    )
    permit = breaker.acquire_permission()
    breaker.on_result(0.1, 200, permit)
    permit = breaker.acquire_permission()
    breaker.release_permission(permit)  # never sent: not an outcome
    assert breaker.snapshot().buffered_calls == 1
    breaker.on_error(0.1, asyncio.CancelledError())  # cancellation: not an outcome either
    breaker.on_result(0.1, 503, breaker.acquire_permission())
    assert state_of(breaker) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.acquire_permission()
    clock.advance(30.0)
    for _ in range(3):
        breaker.on_success(0.1, breaker.acquire_permission())
    assert state_of(breaker) is CircuitState.CLOSED


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="percentages"):
        BreakerConfig(failure_rate_threshold=0)
    with pytest.raises(ValueError, match="minimum_calls"):
        BreakerConfig(sliding_window_size=5, minimum_calls=6)
    with pytest.raises(ValueError, match="permitted_calls_in_half_open"):
        BreakerConfig(permitted_calls_in_half_open=0)


async def test_call_passes_arguments_and_results_through(clock: ManualClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock)

    async def add(a: int, b: int) -> int:
        return a + b

    assert await breaker.call(add, 2, 3) == 5
    with pytest.raises(ConnectionError):
        await breaker.call(fail)
    assert "dep" in repr(breaker)
