"""Load shapes as pure functions of elapsed time: ``tick(seconds) -> (users, spawn_rate) | None``.

Locust allows one ``LoadTestShape`` per locustfile, so ``locustfile.SelectedShape``
delegates to the profile named by ``--shape``; the profiles here know nothing
about Locust and are tested on their own. Every shape reads the common options:
``-u`` is the peak number of users, ``-r`` the spawn rate where the shape does
not set its own, ``-t`` the whole duration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

SHAPES = ("steady", "ramp", "step", "spike", "soak")
# Without -t: long enough to see something, and a soak that is actually long.
DEFAULT_DURATION = {"steady": 60.0, "ramp": 60.0, "step": 60.0, "spike": 60.0, "soak": 3600.0}

Tick = tuple[int, float] | None

_TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_timespan(text: str | float) -> float:
    """Seconds in ``90``, ``90s``, ``5m``, ``1h30m`` (Locust's ``-t`` syntax)."""
    if isinstance(text, int | float):
        return float(text)
    value = text.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    m = _TIMESPAN.match(value)
    if not value or m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 90s, 5m, 1h30m)")
    hours, minutes, seconds = m.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


class Profile(Protocol):
    @property
    def duration(self) -> float: ...

    def tick(self, elapsed: float) -> Tick: ...


@dataclass(frozen=True)
class Steady:
    """``users`` (started at ``spawn_rate``) for the whole duration."""

    users: int
    spawn_rate: float
    duration: float

    def tick(self, elapsed: float) -> Tick:
        return None if elapsed >= self.duration else (self.users, self.spawn_rate)


@dataclass(frozen=True)
class Ramp:
    """Users grow linearly from 1 to ``users`` over the duration: find the knee."""

    users: int
    duration: float

    def tick(self, elapsed: float) -> Tick:
        if elapsed >= self.duration:
            return None
        target = max(1, min(self.users, math.ceil(self.users * elapsed / self.duration)))
        # Fast enough to reach each one-second target before the next tick.
        return target, max(1.0, 2 * self.users / self.duration)


@dataclass(frozen=True)
class Step:
    """``steps`` equal plateaus up to ``users``: latency per load level."""

    users: int
    duration: float
    steps: int = 5

    def tick(self, elapsed: float) -> Tick:
        if elapsed >= self.duration:
            return None
        level = min(self.steps, int(elapsed / (self.duration / self.steps)) + 1)
        return max(1, round(self.users * level / self.steps)), max(1.0, self.users / self.steps)


@dataclass(frozen=True)
class Spike:
    """A baseline of a fifth of the users, all of them at once for the middle fifth, back.

    Shows whether the platform sheds or queues a sudden burst, and how fast it
    recovers once the burst is gone.
    """

    users: int
    duration: float

    @property
    def baseline(self) -> int:
        return max(1, self.users // 5)

    def tick(self, elapsed: float) -> Tick:
        if elapsed >= self.duration:
            return None
        spiking = 0.4 * self.duration <= elapsed < 0.6 * self.duration
        # Start and stop the surplus within about a second: that is the spike.
        return (self.users if spiking else self.baseline), float(max(1, self.users))


@dataclass(frozen=True)
class Soak:
    """A gentle ramp (a tenth of the run, at most 5 minutes), then hours at ``users``.

    Finds what only time finds: leaks, pool exhaustion, stock running out, log volume.
    """

    users: int
    duration: float

    @property
    def ramp_up(self) -> float:
        return min(self.duration / 10, 300.0)

    def tick(self, elapsed: float) -> Tick:
        if elapsed >= self.duration:
            return None
        return self.users, max(0.1, self.users / max(self.ramp_up, 1.0))


def profile(
    name: str,
    *,
    users: int,
    spawn_rate: float | None = None,
    duration: float | None = None,
    steps: int = 5,
) -> Profile:
    """The profile called ``name``; ``duration`` defaults per shape (a soak lasts an hour)."""
    if users < 1:
        raise ValueError("a shape needs at least one user (-u)")
    seconds = duration if duration else DEFAULT_DURATION.get(name, 60.0)
    rate = spawn_rate if spawn_rate else float(users)
    if name == "steady":
        return Steady(users, rate, seconds)
    if name == "ramp":
        return Ramp(users, seconds)
    if name == "step":
        if steps < 1:
            raise ValueError("--shape-steps must be at least 1")
        return Step(users, seconds, steps)
    if name == "spike":
        return Spike(users, seconds)
    if name == "soak":
        return Soak(users, seconds)
    raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}")
