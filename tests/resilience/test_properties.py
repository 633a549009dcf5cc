"""Property-based tests: no sequence of events leaves a primitive in an impossible state.

The breaker is driven through its synchronous low-level protocol by a
hypothesis state machine and compared with a naive model of its window; the
async tests run generated schedules of real tasks, including cancellations.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from services.chassis.resilience import (
    BreakerConfig,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ManualClock,
)
from tests.resilience.support import RecordingHooks

SLOW = 1.0
OUTCOMES = ("success", "failure", "slow_success", "slow_failure", "bad_result", "cancelled")


@dataclass(frozen=True)
class Permit:
    value: int
    generation: int
    closed: bool
    trial: bool


class BreakerMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.hooks = RecordingHooks()
        self.resets = 0
        self.model: list[tuple[bool, bool]] = []  # the CLOSED window, by a naive list
        self.model_generation = 0
        self.outstanding: list[Permit] = []
        self.breaker = CircuitBreaker("prop", BreakerConfig(), clock=self.clock)

    @initialize(
        window=st.integers(1, 8),
        min_ratio=st.floats(0.0, 1.0),
        trials=st.integers(1, 4),
        failure_pct=st.sampled_from([1.0, 34.0, 50.0, 100.0]),
        slow_pct=st.sampled_from([1.0, 50.0, 100.0]),
        wait=st.sampled_from([0.0, 5.0]),
    )
    def configure(
        self,
        window: int,
        min_ratio: float,
        trials: int,
        failure_pct: float,
        slow_pct: float,
        wait: float,
    ) -> None:
        self.config = BreakerConfig(
            sliding_window_size=window,
            minimum_calls=max(1, round(window * min_ratio)),
            permitted_calls_in_half_open=trials,
            failure_rate_threshold=failure_pct,
            slow_call_rate_threshold=slow_pct,
            slow_call_duration=SLOW,
            wait_duration_in_open=wait,
            record_result=lambda r: r == "bad",
        )
        self.breaker = CircuitBreaker("prop", self.config, clock=self.clock, hooks=self.hooks)

    def generation(self) -> int:
        return len(self.hooks.transitions()) + self.resets

    def sync_model(self) -> None:
        if self.generation() != self.model_generation:
            self.model_generation = self.generation()
            self.model = []

    @rule(target=permits)
    def acquire(self) -> Any:
        try:
            value = self.breaker.acquire_permission()
        except CircuitOpenError as exc:
            rejection = exc
        else:
            self.sync_model()
            state = self.breaker.state
            permit = Permit(
                value,
                self.generation(),
                state is CircuitState.CLOSED,
                state is CircuitState.HALF_OPEN,
            )
            self.outstanding.append(permit)
            return permit
        assert rejection.retry_after > 0.0
        assert self.breaker.state in (
            CircuitState.OPEN,
            CircuitState.HALF_OPEN,
            CircuitState.FORCED_OPEN,
        )
        return multiple()

    @rule(permit=consumes(permits), outcome=st.sampled_from(OUTCOMES))
    def complete(self, permit: Permit, outcome: str) -> None:
        self.outstanding.remove(permit)
        self.sync_model()
        counts_in_window = (
            permit.closed
            and permit.generation == self.generation()
            and self.breaker.state is CircuitState.CLOSED
            and outcome != "cancelled"
        )
        duration = 2 * SLOW if outcome.startswith("slow") else 0.0
        b = self.breaker
        if outcome in ("success", "slow_success"):
            b.on_success(duration, permit.value)
        elif outcome in ("failure", "slow_failure"):
            b.on_error(duration, ConnectionError(), permit.value)
        elif outcome == "bad_result":
            b.on_result(duration, "bad", permit.value)
        else:
            b.on_error(duration, asyncio.CancelledError(), permit.value)
        if counts_in_window:
            failed = outcome in ("failure", "slow_failure", "bad_result")
            self.model.append((failed, outcome.startswith("slow")))
        self.sync_model()

    @rule(permit=consumes(permits))
    def release(self, permit: Permit) -> None:
        self.outstanding.remove(permit)
        self.breaker.release_permission(permit.value)

    @rule(seconds=st.sampled_from([0.5, 5.0, 60.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "force_closed", "disable", "reset"]))
    def operate(self, action: str) -> None:
        getattr(self.breaker, action)()
        if action == "reset":
            self.resets += 1
        self.sync_model()

    @invariant()
    def state_is_possible(self) -> None:
        snap = self.breaker.snapshot()
        n = self.breaker.config.permitted_calls_in_half_open
        assert 0 <= snap.half_open_in_flight <= n
        if snap.state is not CircuitState.HALF_OPEN:
            assert snap.half_open_in_flight == 0
        else:
            assert snap.half_open_in_flight + snap.buffered_calls <= n
            # Exactly the unresolved trials of this half-open round hold a permit: none leak.
            current = self.generation()
            trials = [p for p in self.outstanding if p.trial and p.generation == current]
            assert snap.half_open_in_flight == len(trials)
        # Half-open judges its trials on their own, as resilience4j does: that
        # window holds up to permitted_calls_in_half_open, which may exceed the
        # closed window's size.
        limit = self.breaker.config.sliding_window_size
        if snap.state is CircuitState.HALF_OPEN:
            limit = max(limit, n)
        assert 0 <= snap.buffered_calls <= limit
        assert 0 <= snap.failed_calls <= snap.buffered_calls
        assert 0 <= snap.slow_calls <= snap.buffered_calls
        for rate in (snap.failure_rate, snap.slow_call_rate):
            assert rate is None or 0.0 <= rate <= 1.0
        assert min(snap.successes_total, snap.failures_total, snap.slow_total) >= 0

    @invariant()
    def closed_window_matches_the_naive_model(self) -> None:
        snap = self.breaker.snapshot()
        if snap.state is not CircuitState.CLOSED:
            return
        self.sync_model()
        cfg = self.breaker.config
        window = self.model[-cfg.sliding_window_size :]
        assert snap.buffered_calls == len(window)
        assert snap.failed_calls == sum(f for f, _ in window)
        assert snap.slow_calls == sum(s for _, s in window)
        # A CLOSED breaker with a judged window is below both thresholds, or it would be OPEN.
        if len(window) >= cfg.minimum_calls:
            assert snap.failed_calls * 100 < cfg.failure_rate_threshold * len(window)
            assert snap.slow_calls * 100 < cfg.slow_call_rate_threshold * len(window)


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Call:
    """One generated task: it holds its slot until told how to end."""

    end: asyncio.Future[str]
    inside: bool = False
    task: asyncio.Task[Any] | None = None

    async def body(self) -> str:
        self.inside = True
        try:
            outcome = await self.end
            if outcome == "fail":
                raise ConnectionError
            return outcome
        finally:
            self.inside = False


async def settle() -> None:
    for _ in range(4):
        await asyncio.sleep(0)


async def drain(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for every task, whatever it ended with (gather inside the machine's own loop)."""
    await asyncio.gather(*tasks, return_exceptions=True)


# Events are applied back to back; "step" lets the loop run one iteration and
# "settle" until everything blocks, so a cancellation can land between a
# permit being granted and its owner resuming. Invariants hold after "settle".
ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.just(0)),
        st.tuples(st.sampled_from(["finish", "fail", "cancel"]), st.integers(0, 2)),
        st.tuples(st.just("advance"), st.sampled_from([1, 100])),
        st.tuples(st.sampled_from(["step", "settle"]), st.just(0)),
    ),
    max_size=30,
)


def end_call(call: Call, op: str) -> None:
    if call.task is None or call.task.done():
        return
    if op == "cancel":
        call.task.cancel()
    elif not call.end.done():
        call.end.set_result("ok" if op == "finish" else "fail")


class BulkheadMachine(RuleBasedStateMachine):
    """Real tasks on a loop the machine steps by hand, so events interleave finely."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.calls: list[Call] = []
        self.capacity = 1
        self.bulkhead = Bulkhead("prop", 1)

    # Waiting is where the races are, so most runs allow it.
    @initialize(capacity=st.integers(1, 2), max_wait=st.sampled_from([0.0, 30.0, 30.0, 30.0]))
    def configure(self, capacity: int, max_wait: float) -> None:
        self.capacity = capacity
        self.bulkhead = Bulkhead("prop", capacity, max_wait=max_wait)

    started = Bundle("started")

    @rule(target=started)
    def start(self) -> Call:
        call = Call(self.loop.create_future())
        call.task = self.loop.create_task(self.bulkhead.call(call.body))
        self.calls.append(call)
        return call

    @rule(call=started, how=st.sampled_from(["finish", "fail", "cancel"]))
    def end(self, call: Call, how: str) -> None:
        end_call(call, how)

    @rule()
    def step(self) -> None:
        """One loop iteration: a slot may be handed over without its new owner running yet."""
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    @rule()
    def settle(self) -> None:
        self.loop.run_until_complete(settle())
        snap = self.bulkhead.snapshot()
        inside = sum(c.inside for c in self.calls)
        blocked = sum(1 for c in self.calls if c.task and not c.task.done() and not c.inside)
        assert 0 <= snap.in_flight <= self.capacity
        assert snap.in_flight == inside  # no slot held by nobody, none held twice
        assert snap.waiting == blocked

    def teardown(self) -> None:
        try:
            for call in self.calls:
                end_call(call, "cancel")
            self.loop.run_until_complete(drain([c.task for c in self.calls if c.task]))
            snap = self.bulkhead.snapshot()
            assert (snap.in_flight, snap.waiting) == (0, 0)
            # Every slot is still there: `capacity` holders fit at once.
            held = [Call(self.loop.create_future()) for _ in range(self.capacity)]
            tasks = [self.loop.create_task(self.bulkhead.call(c.body)) for c in held]
            self.loop.run_until_complete(settle())
            assert all(c.inside for c in held)
            assert self.bulkhead.snapshot().in_flight == self.capacity
            for call in held:
                call.end.set_result("ok")
            self.loop.run_until_complete(drain(tasks))
            assert all(t.result() == "ok" for t in tasks)
        finally:
            self.loop.close()


TestBulkheadMachine = BulkheadMachine.TestCase
TestBulkheadMachine.settings = settings(
    max_examples=400,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(max_examples=300, deadline=None)
@given(trials=st.integers(1, 3), schedule=ops)
def test_breaker_with_real_tasks_keeps_trial_permits_in_bounds(
    trials: int, schedule: list[tuple[str, int]]
) -> None:
    async def run() -> None:
        clock = ManualClock()
        config = BreakerConfig(
            sliding_window_size=4,
            minimum_calls=2,
            permitted_calls_in_half_open=trials,
            wait_duration_in_open=50.0,
        )
        breaker = CircuitBreaker("prop", config, clock=clock)
        calls: list[Call] = []
        for op, arg in schedule:
            if op == "start":
                call = Call(asyncio.get_running_loop().create_future())
                call.task = asyncio.create_task(breaker.call(call.body))
                calls.append(call)
            elif op == "advance":
                clock.advance(arg)
            elif op == "step":
                await asyncio.sleep(0)
            elif op in ("finish", "fail", "cancel") and calls:
                end_call(calls[arg % len(calls)], op)
            snap = breaker.snapshot()
            assert 0 <= snap.half_open_in_flight <= trials
            if op != "settle":
                continue
            await settle()
            snap = breaker.snapshot()
            running = sum(c.inside for c in calls)
            assert 0 <= snap.half_open_in_flight <= min(trials, running)
            assert snap.buffered_calls <= 4
        for call in calls:
            end_call(call, "cancel")
        await drain([c.task for c in calls if c.task])
        assert breaker.snapshot().half_open_in_flight == 0
        # Whatever happened, an operator reset leaves a working breaker.
        breaker.reset()
        assert await breaker.call(asyncio.sleep, 0, "ok") == "ok"

    asyncio.run(run())
