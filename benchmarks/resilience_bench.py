"""Redline's resilience primitives against the usual Python circuit-breaker libraries.

    .venv/bin/python benchmarks/resilience_bench.py [--rounds 7] [--calls 50000]

One process, one event loop, same Python. Every timing is reported as
microseconds per call *over a bare ``await noop()``* measured in the same
round; rounds interleave the subjects (in a shuffled order) so machine noise
hits all of them alike, and the report gives medians over rounds.

1. Closed-state overhead around an async no-op. Redline's breaker is measured
   with its Prometheus collector registered in ``telemetry.REGISTRY`` (metrics
   on: the counters are plain attributes read at scrape time).
2. Open-state rejection latency, including raising and catching the error.
3. Bulkhead acquire/release against a bare ``asyncio.Semaphore`` and hyx.
4. Behaviour: 20 concurrent calls issued right after the open timeout elapses
   — how many reach the backend — and memory retained after 100k rejections.

How each library wraps a coroutine (read from its installed source):

* pybreaker 1.x: ``call_async`` needs Tornado. ``with breaker.calling(): await
  fn()`` works in asyncio — ``calling()`` is a generator-based context manager
  whose lock is held only while it sets up — so that is what is measured.
* aiobreaker: ``await breaker.call_async(fn)``.
* purgatory: ``brk = await factory.get_breaker(name)`` once, then
  ``async with brk:`` (its decorator re-fetches the breaker on every call).
* hyx: ``async with consecutive_breaker(...)`` / ``async with bulkhead(...)``.
* circuitbreaker: the ``@CircuitBreaker(...)`` decorator on an async function
  (its ``call_async`` skips the open check; the decorator does it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiobreaker  # type: ignore[import-untyped]
import circuitbreaker  # type: ignore[import-untyped]
import pybreaker
from hyx.bulkhead import bulkhead as hyx_bulkhead
from hyx.circuitbreaker import consecutive_breaker
from hyx.circuitbreaker.exceptions import BreakerFailing
from prometheus_client import generate_latest
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

import telemetry
from services.chassis.resilience import (
    BreakerConfig,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ResilienceHooks,
    default_hooks,
    register,
    unregister,
)

LIBRARIES = ("redline", "purgatory", "circuitbreaker", "hyx", "aiobreaker", "pybreaker")
CONCURRENT = 20
TRIALS = 3  # Redline's permitted_calls_in_half_open in the behaviour check
OPEN_TIMEOUT = 0.05
REJECTIONS_FOR_MEMORY = 100_000
SUSTAINED_BATCHES = 5


async def noop() -> None:
    return None


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom


Loop = Callable[[int], Awaitable[float]]


# -- the timing loops -----------------------------------------------------------------------
# One loop per way a library wraps a call. Each times ``n`` calls of the same
# shape the library is used in, with its bound method loaded once before the
# clock starts; ``rejected`` (an open breaker's error) is raised and caught
# inside the loop, as a caller would. A ``try`` costs nothing until something
# is raised (Python 3.11+), so the closed loops may share it.


def awaiting(
    call: Callable[[Callable[[], Awaitable[None]]], Awaitable[Any]],
    rejected: type[BaseException] | tuple[()] = (),
) -> Loop:
    """``await call(noop)``: Redline's ``call``, aiobreaker's ``call_async``."""

    async def loop(n: int) -> float:
        fn, error = call, rejected
        t = time.perf_counter()
        for _ in range(n):
            try:  # noqa: SIM105 - suppress() would add a frame per call
                await fn(noop)
            except error:
                pass
        return time.perf_counter() - t

    return loop


def calling_bare(
    fn: Callable[[], Awaitable[Any]], rejected: type[BaseException] | tuple[()] = ()
) -> Loop:
    """``await fn()``: a decorated function (circuitbreaker), or ``noop`` itself (the baseline)."""

    async def loop(n: int) -> float:
        call, error = fn, rejected
        t = time.perf_counter()
        for _ in range(n):
            try:  # noqa: SIM105 - suppress() would add a frame per call
                await call()
            except error:
                pass
        return time.perf_counter() - t

    return loop


def entering(
    guard: contextlib.AbstractAsyncContextManager[Any],
    rejected: type[BaseException] | tuple[()] = (),
) -> Loop:
    """``async with guard: await noop()``: purgatory, hyx, a semaphore, ``async with`` forms."""

    async def loop(n: int) -> float:
        cm, error = guard, rejected
        t = time.perf_counter()
        for _ in range(n):
            try:
                async with cm:
                    await noop()
            except error:
                pass
        return time.perf_counter() - t

    return loop


def entering_sync(
    calling: Callable[[], contextlib.AbstractContextManager[Any]],
    rejected: type[BaseException] | tuple[()] = (),
) -> Loop:
    """``with calling(): await noop()``: pybreaker's context manager, made per call."""

    async def loop(n: int) -> float:
        make, error = calling, rejected
        t = time.perf_counter()
        for _ in range(n):
            try:
                with make():
                    await noop()
            except error:
                pass
        return time.perf_counter() - t

    return loop


# -- the subjects ---------------------------------------------------------------------------


def redline_breaker(wait: float, name: str, hooks: ResilienceHooks | None = None) -> CircuitBreaker:
    # One failure trips it: window of 1, judged from 1 call.
    config = BreakerConfig(
        sliding_window_size=1,
        minimum_calls=1,
        wait_duration_in_open=wait,
        permitted_calls_in_half_open=TRIALS,
    )
    return CircuitBreaker(name, config, hooks=hooks)


async def trip(call: Callable[[], Awaitable[Any]], times: int) -> None:
    for _ in range(times):
        with contextlib.suppress(Exception):  # failing is the point
            await call()


@dataclass
class Subjects:
    """Every library's breaker twice: one kept closed, one tripped open for an hour."""

    closed: dict[str, Loop] = field(default_factory=dict)
    open: dict[str, Loop] = field(default_factory=dict)
    keep: list[Any] = field(default_factory=list)


async def build_subjects() -> Subjects:
    s = Subjects()
    hour = 3600.0

    # Redline: registered, so the Prometheus collector is live (metrics on).
    ours = register(redline_breaker(hour, "bench-closed"))
    ours_open = register(redline_breaker(hour, "bench-open"))
    # Log + span hooks, as a service would run; no span is active here.
    ours_hooked = redline_breaker(hour, "bench-open-hooked", default_hooks())
    await trip(lambda: ours_open.call(boom), 1)
    await trip(lambda: ours_hooked.call(boom), 1)
    assert ours_open.state is CircuitState.OPEN
    s.keep += [ours, ours_open, ours_hooked]

    s.closed["redline"] = awaiting(ours.call)
    s.closed["redline (async with)"] = entering(ours)
    s.open["redline"] = awaiting(ours_open.call, CircuitOpenError)
    s.open["redline (log+span hooks)"] = awaiting(ours_hooked.call, CircuitOpenError)

    # purgatory
    factory = AsyncCircuitBreakerFactory(default_threshold=1000, default_ttl=hour)
    brk = await factory.get_breaker("closed")
    s.keep.append(factory)

    # A long-lived open breaker, as a service holds one: purgatory raises the same
    # stored exception object each time, so its traceback (and cost) keeps growing.
    p_open = await AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=hour).get_breaker(
        "open"
    )

    async def through_p_open() -> None:
        async with p_open:
            raise Boom

    await trip(through_p_open, 1)

    async def purgatory_open_fresh(n: int) -> float:
        f = AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=hour)
        b = await f.get_breaker("open")

        async def fail_through() -> None:
            async with b:
                raise Boom

        await trip(fail_through, 1)
        return await entering(b, OpenedState)(n)

    s.closed["purgatory"] = entering(brk)
    s.open["purgatory"] = entering(p_open, OpenedState)
    s.open["purgatory (fresh breaker per round)"] = purgatory_open_fresh

    # circuitbreaker
    cb_closed = circuitbreaker.CircuitBreaker(failure_threshold=10**9, recovery_timeout=hour)
    cb_open = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=hour)

    async def cb_noop() -> None:
        return None

    guarded_closed = cb_closed(cb_noop)
    guarded_open = cb_open(cb_noop)
    await trip(cb_open(boom), 1)
    assert cb_open.opened

    s.closed["circuitbreaker"] = calling_bare(guarded_closed)
    s.open["circuitbreaker"] = calling_bare(guarded_open, circuitbreaker.CircuitBreakerError)

    # hyx
    hyx_closed = consecutive_breaker(failure_threshold=10**9, recovery_time_secs=hour)
    hyx_open = consecutive_breaker(failure_threshold=1, recovery_time_secs=hour)

    async def hyx_fail() -> None:
        async with hyx_open:
            raise Boom

    await trip(hyx_fail, 1)

    s.closed["hyx"] = entering(hyx_closed)
    s.open["hyx"] = entering(hyx_open, BreakerFailing)

    # aiobreaker
    ab_closed = aiobreaker.CircuitBreaker(fail_max=10**9, timeout_duration=timedelta(hours=1))
    ab_open = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(hours=1))
    await trip(lambda: ab_open.call_async(boom), 1)

    s.closed["aiobreaker"] = awaiting(ab_closed.call_async)
    s.open["aiobreaker"] = awaiting(ab_open.call_async, aiobreaker.CircuitBreakerError)

    # pybreaker
    pb_closed = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=hour)
    pb_open = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=hour)

    async def pb_fail() -> None:
        with pb_open.calling():
            raise Boom

    await trip(pb_fail, 1)
    assert pb_open.current_state == pybreaker.STATE_OPEN

    s.closed["pybreaker"] = entering_sync(pb_closed.calling)
    s.open["pybreaker"] = entering_sync(pb_open.calling, pybreaker.CircuitBreakerError)
    return s


def build_bulkheads(keep: list[Any]) -> dict[str, Loop]:
    ours = register(Bulkhead("bench", 10))
    sem = asyncio.Semaphore(10)
    hyx = hyx_bulkhead(max_concurrency=10, max_capacity=10)

    loops: dict[str, Loop] = {
        "redline Bulkhead (async with)": entering(ours),
        "redline Bulkhead.call": awaiting(ours.call),
        "asyncio.Semaphore": entering(sem),
        "hyx bulkhead": entering(hyx),
    }
    keep.append(ours)  # registered objects are held weakly
    return loops


bare = calling_bare(noop)


# -- behaviour ------------------------------------------------------------------------------


@dataclass
class Gate:
    """A backend that counts arrivals and holds them until released."""

    reached: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self) -> None:
        self.reached += 1
        await self.release.wait()


async def guarded_by(library: str, gate: Gate) -> Callable[[], Awaitable[Any]]:
    """A call of ``gate`` through ``library``'s breaker, tripped open by one failure."""
    if library == "redline":
        ours = redline_breaker(OPEN_TIMEOUT, "bench-half-open")
        await trip(lambda: ours.call(boom), 1)
        return lambda: ours.call(gate)
    if library == "purgatory":
        factory = AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=OPEN_TIMEOUT)
        brk = await factory.get_breaker("half-open")

        async def through_purgatory(fn: Callable[[], Awaitable[None]]) -> None:
            async with brk:
                await fn()

        await trip(lambda: through_purgatory(boom), 1)
        return lambda: through_purgatory(gate)
    if library == "circuitbreaker":
        cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=OPEN_TIMEOUT)
        await trip(cb(boom), 1)
        return cb(gate.__call__)  # type: ignore[no-any-return]
    if library == "hyx":
        hb = consecutive_breaker(
            failure_threshold=1, recovery_time_secs=OPEN_TIMEOUT, recovery_threshold=1
        )

        async def through_hyx(fn: Callable[[], Awaitable[None]]) -> None:
            async with hb:
                await fn()

        await trip(lambda: through_hyx(boom), 1)
        return lambda: through_hyx(gate)
    if library == "aiobreaker":
        ab = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(seconds=OPEN_TIMEOUT))
        await trip(lambda: ab.call_async(boom), 1)
        return lambda: ab.call_async(gate)
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=OPEN_TIMEOUT)

    async def through_pybreaker(fn: Callable[[], Awaitable[None]]) -> None:
        with pb.calling():
            await fn()

    await trip(lambda: through_pybreaker(boom), 1)
    return lambda: through_pybreaker(gate)


async def half_open_trials(library: str) -> int:
    """Trip the breaker, let the open timeout pass, fire 20 calls at once: how many get through?"""
    gate = Gate()
    call = await guarded_by(library, gate)
    await asyncio.sleep(OPEN_TIMEOUT * 2)
    tasks = [asyncio.ensure_future(call()) for _ in range(CONCURRENT)]
    for _ in range(10):
        await asyncio.sleep(0)
    reached = gate.reached
    gate.release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return reached


async def retained_after_rejections(library: str) -> float:
    """KiB still allocated after 100k open-state rejections (and a full collection)."""
    s = await build_subjects()
    loop = s.open[library]  # purgatory's is its long-lived breaker
    await loop(1000)  # warm caches, interned names, free lists
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await loop(REJECTIONS_FOR_MEMORY)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for obj in s.keep:
        if isinstance(obj, CircuitBreaker):
            unregister(obj)
    return (after - before) / 1024


async def sustained_rejections(library: str, n: int, baseline: float) -> list[float]:
    """µs per rejection in consecutive batches on one breaker, garbage collector on.

    This is an outage as a service lives it: the breaker stays open, every
    request is rejected, and the collector runs whenever allocations call for it.
    """
    s = await build_subjects()
    loop = s.open[library]
    gc.collect()
    return [await loop(n) / n * 1e6 - baseline for _ in range(SUSTAINED_BATCHES)]


# -- report ---------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def render(rows: list[list[str]], header: list[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50_000, help="calls per subject per round")
    args = parser.parse_args()
    rounds, n = args.rounds, args.calls
    # The hooked breaker logs its transition to OPEN; keep the table readable.
    telemetry.configure_logging(level="ERROR")

    subjects = await build_subjects()
    bulkheads = build_bulkheads(subjects.keep)
    scrape = generate_latest(telemetry.REGISTRY).decode()
    assert 'resilience_circuit_breaker_state{breaker="bench-closed",state="closed"} 1.0' in scrape

    timed: dict[str, Loop] = {"bare": bare}
    timed.update({f"closed/{k}": v for k, v in subjects.closed.items()})
    timed.update({f"open/{k}": v for k, v in subjects.open.items()})
    timed.update({f"bulkhead/{k}": v for k, v in bulkheads.items()})
    per_call: dict[str, list[float]] = {k: [] for k in timed}
    baseline: list[float] = []
    rng = random.Random(1)

    for loop in timed.values():  # warm-up
        await loop(2000)
    for r in range(rounds):
        order = list(timed)
        rng.shuffle(order)
        round_times: dict[str, float] = {}
        # As timeit does, the collector is off while timing: purgatory's ever-growing
        # traceback would otherwise make every full collection slow, whoever triggers it.
        gc.collect()
        gc.disable()
        try:
            for key in order:
                round_times[key] = await timed[key](n) / n * 1e6
            # The baseline twice (start and end of the round), to follow drift.
            round_times["bare"] = min(round_times["bare"], await bare(n) / n * 1e6)
        finally:
            gc.enable()
        baseline.append(round_times["bare"])
        for key, us in round_times.items():
            per_call[key].append(us - round_times["bare"])
        print(f"round {r + 1}/{rounds}: bare await {round_times['bare']:.3f} µs", file=sys.stderr)

    # Drop the timed subjects (purgatory's long-lived breaker now holds hundreds of MB
    # of tracebacks) so they cannot slow the collector in the checks below.
    closed_names = list(subjects.closed)
    for table in (timed, subjects.closed, subjects.open):
        table.clear()
    gc.collect()

    behaviour = {lib: await half_open_trials(lib) for lib in LIBRARIES}
    memory = {lib: await retained_after_rejections(lib) for lib in LIBRARIES}
    sustained = {lib: await sustained_rejections(lib, n, med(baseline)) for lib in LIBRARIES}

    ours_closed = med(per_call["closed/redline"])
    ours_open = med(per_call["open/redline"])
    rows: list[list[str]] = []
    for name in [*closed_names, "redline (log+span hooks)", "purgatory (fresh breaker per round)"]:
        lib = name.split(" ")[0]
        closed = per_call.get(f"closed/{name}")
        opened = per_call.get(f"open/{name}")
        rows.append(
            [
                name,
                f"{med(closed):.3f}" if closed else "",
                f"{med(closed) / ours_closed:.1f}x" if closed else "",
                f"{med(opened):.3f}" if opened else "",
                f"{med(opened) / ours_open:.1f}x" if opened else "",
                f"{behaviour[lib]}/{CONCURRENT}" if name == lib else "",
                f"{memory[lib]:+.0f}" if name == lib else "",
            ]
        )
    header = [
        "library",
        "closed µs",
        "vs redline",
        "open reject µs",
        "vs redline",
        "half-open trials",
        "KiB after 100k rejections",
    ]
    sem = med(per_call["bulkhead/asyncio.Semaphore"])
    brows = [
        [
            name,
            f"{med(per_call[f'bulkhead/{name}']):.3f}",
            f"{med(per_call[f'bulkhead/{name}']) / sem:.2f}x",
        ]
        for name in bulkheads
    ]
    bheader = ["bulkhead", "acquire+release µs", "vs Semaphore"]

    print(
        f"\nPython {platform.python_version()} on {platform.machine()}, "
        f"{rounds} rounds x {n} calls; medians, µs per call over a bare await "
        f"(bare await itself: {med(baseline):.3f} µs)\n"
    )
    print(render(rows, header, markdown=False))
    print()
    print(render(brows, bheader, markdown=False))
    print(
        "\nHalf-open: breakers opened by one failure with a "
        f"{OPEN_TIMEOUT * 1000:.0f} ms timeout; {CONCURRENT} concurrent calls issued after it "
        f"elapsed; redline is configured for {TRIALS} trials."
    )

    srows = [[lib, *(f"{us:.2f}" for us in sustained[lib])] for lib in LIBRARIES]
    sheader = ["sustained outage, GC on", *(f"batch {i + 1}" for i in range(SUSTAINED_BATCHES))]
    print(
        f"\nOne open breaker, {SUSTAINED_BATCHES} consecutive batches of {n} rejections, "
        "garbage collector on; µs per rejection over a bare await:\n"
    )
    print(render(srows, sheader, markdown=False))

    targets = [
        ("closed overhead below purgatory's", ours_closed < med(per_call["closed/purgatory"])),
        ("open rejection under 1 µs including the raise", ours_open < 1.0),
        ("memory flat after 100k rejections (< 16 KiB)", abs(memory["redline"]) < 16),
        (
            "rejection cost flat through a sustained outage (last batch < 1.5x first)",
            sustained["redline"][-1] < 1.5 * max(sustained["redline"][0], 0.05),
        ),
        (f"exactly {TRIALS} half-open trials reach the backend", behaviour["redline"] == TRIALS),
        (
            "bulkhead no slower than 1.1x asyncio.Semaphore",
            med(per_call["bulkhead/redline Bulkhead (async with)"]) <= 1.1 * sem,
        ),
    ]
    print()
    for label, ok in targets:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")

    print("\nMarkdown:\n")
    print(render(rows, header, markdown=True))
    print()
    print(render(brows, bheader, markdown=True))
    print()
    print(render(srows, sheader, markdown=True))


if __name__ == "__main__":
    asyncio.run(main())
