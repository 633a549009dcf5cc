"""Open-model arrivals: requests offered at a rate, whatever the platform's response times.

Locust's users are a closed model: each sends its next request only after the
previous answer (and a think time), so a platform that slows down slows the
load with it and the percentiles leave out the requests real, independent
users would have sent into the queue (coordinated omission). In the open
model the arrival times are drawn in advance, independent of any answer:

    t₀ = start,  tᵢ₊₁ = tᵢ + gap,  gap ~ Exp(rate) (poisson) or 1/rate (constant)

and each arrival is sent at its time on a greenlet of its own, however many
earlier requests are still waiting. The generator can still fall behind (its
CPU, the event loop, the in-flight cap): :class:`LagRecorder` measures how
late each request left against its scheduled time, and counts the arrivals
dropped because ``max_in_flight`` requests were already waiting, so a
saturated generator shows in the results instead of hiding in them.

This module is plain Python (no Locust, no gevent): the schedule and the
bookkeeping are tested on their own; :mod:`loadtests.arrivals` is the Locust
user that follows them.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Process = Literal["poisson", "constant"]
PROCESSES: tuple[Process, ...] = ("poisson", "constant")
# The generator keeps up when 99% of requests leave within this of their time (on the
# shared 2-core development machine at load 6, a healthy 30/s run showed p99 ≤ 25 ms)...
LAG_OK_MS = 50.0
# ...and it sent this share of what it scheduled.
SENT_OK_RATIO = 0.98
# Lag histogram bounds (ms): fine below 1 ms, where a healthy generator lives.
LAG_BOUNDS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
)  # fmt: skip


def gaps(rate: float, process: Process, rng: random.Random) -> Iterator[float]:
    """Seconds between consecutive arrivals, forever."""
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"an open model needs a positive, finite rate; got {rate!r}")
    if process == "constant":
        while True:
            yield 1.0 / rate
    elif process == "poisson":
        while True:
            yield rng.expovariate(rate)
    else:
        raise ValueError(f"unknown arrival process {process!r}; choose poisson or constant")


def schedule(rate: float, process: Process, duration: float, seed: int = 0) -> list[float]:
    """Arrival offsets (s) within ``[0, duration)``; the first one at the first gap."""
    out: list[float] = []
    t = 0.0
    for gap in gaps(rate, process, random.Random(seed)):
        t += gap
        if t >= duration:
            return out
        out.append(t)
    return out  # pragma: no cover (gaps never ends)


@dataclass
class LagRecorder:
    """Scheduled-vs-sent lag of every arrival, and the arrivals that could not be sent.

    Mergeable (workers drain theirs into the master's with each stats report),
    so the counts are a histogram, not a list.
    """

    scheduled: int = 0
    sent: int = 0
    dropped: int = 0  # max_in_flight requests were already waiting
    max_lag_ms: float = 0.0
    lag_sum_ms: float = 0.0
    max_in_flight_seen: int = 0
    # Unix time the first stream began offering (after its sign-ups): the rate's window.
    offering_since: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(LAG_BOUNDS_MS) + 1)

    def begin(self, unix_time: float) -> None:
        if not self.offering_since or unix_time < self.offering_since:
            self.offering_since = unix_time

    def observe(self, lag_ms: float, in_flight: int = 0) -> None:
        self.scheduled += 1
        self.sent += 1
        lag_ms = max(0.0, lag_ms)
        self.counts[bisect.bisect_left(LAG_BOUNDS_MS, lag_ms)] += 1
        self.lag_sum_ms += lag_ms
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        self.max_in_flight_seen = max(self.max_in_flight_seen, in_flight)

    def drop(self) -> None:
        self.scheduled += 1
        self.dropped += 1

    def lag_percentile(self, q: float) -> float:
        """An upper bound of the q-quantile of lag (the bucket's upper edge; max in the last)."""
        if not self.sent:
            return 0.0
        rank = max(1, math.ceil(q * self.sent))
        running = 0
        for i, n in enumerate(self.counts):
            running += n
            if running >= rank:
                return (
                    min(LAG_BOUNDS_MS[i], self.max_lag_ms)
                    if i < len(LAG_BOUNDS_MS)
                    else (self.max_lag_ms)
                )
        return self.max_lag_ms  # pragma: no cover

    def reset(self) -> None:
        self.scheduled = self.sent = self.dropped = self.max_in_flight_seen = 0
        self.max_lag_ms = self.lag_sum_ms = self.offering_since = 0.0
        self.counts = [0] * (len(LAG_BOUNDS_MS) + 1)

    def drain(self) -> dict[str, Any]:
        payload = {
            "scheduled": self.scheduled,
            "sent": self.sent,
            "dropped": self.dropped,
            "max_lag_ms": self.max_lag_ms,
            "lag_sum_ms": self.lag_sum_ms,
            "max_in_flight_seen": self.max_in_flight_seen,
            "counts": list(self.counts),
            "offering_since": self.offering_since,
        }
        offering_since = self.offering_since
        self.reset()
        self.offering_since = offering_since  # once per run, not per report
        return payload

    def merge(self, payload: dict[str, Any]) -> None:
        self.scheduled += int(payload.get("scheduled", 0))
        self.sent += int(payload.get("sent", 0))
        self.dropped += int(payload.get("dropped", 0))
        self.max_lag_ms = max(self.max_lag_ms, float(payload.get("max_lag_ms", 0.0)))
        self.lag_sum_ms += float(payload.get("lag_sum_ms", 0.0))
        self.max_in_flight_seen = max(
            self.max_in_flight_seen, int(payload.get("max_in_flight_seen", 0))
        )
        if since := float(payload.get("offering_since", 0.0)):
            self.begin(since)
        for i, n in enumerate(payload.get("counts", [])[: len(self.counts)]):
            self.counts[i] += int(n)


@dataclass(frozen=True)
class OpenModelReport:
    rate: float  # offered, per second
    process: Process
    seconds: float  # how long arrivals were scheduled
    scheduled: int
    sent: int
    dropped: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    max_in_flight: int
    max_in_flight_seen: int

    @property
    def sent_rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def saturated(self) -> bool:
        """The generator did not offer what was asked: results describe it, not the platform."""
        if not self.scheduled:
            return False
        return self.lag_p99_ms > LAG_OK_MS or self.sent < SENT_OK_RATIO * self.scheduled

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "process": self.process,
            "seconds": round(self.seconds, 3),
            "scheduled": self.scheduled,
            "sent": self.sent,
            "dropped": self.dropped,
            "sent_rate": round(self.sent_rate, 3),
            "lag_ms": {
                "p50": round(self.lag_p50_ms, 3),
                "p99": round(self.lag_p99_ms, 3),
                "max": round(self.lag_max_ms, 3),
            },
            "max_in_flight": self.max_in_flight,
            "max_in_flight_seen": self.max_in_flight_seen,
            "saturated": self.saturated,
        }

    def line(self) -> str:
        text = (
            f"redline: open model offered {self.rate:g}/s ({self.process}): sent {self.sent} of "
            f"{self.scheduled} scheduled in {self.seconds:.1f} s = {self.sent_rate:.2f}/s; "
            f"lag behind schedule p50 ≤ {self.lag_p50_ms:.1f} ms, p99 ≤ {self.lag_p99_ms:.1f} ms, "
            f"max {self.lag_max_ms:.1f} ms; {self.dropped} dropped "
            f"(in flight peaked at {self.max_in_flight_seen} of {self.max_in_flight})"
        )
        if self.saturated:
            text += (
                "\nredline: WARNING the load generator fell behind its schedule: these results "
                "describe the generator (add --processes, lower --open-rate, raise --max-in-flight)"
            )
        return text


def report(
    recorder: LagRecorder, rate: float, process: Process, seconds: float, max_in_flight: int
) -> OpenModelReport:
    return OpenModelReport(
        rate, process, seconds, recorder.scheduled, recorder.sent, recorder.dropped,
        recorder.lag_percentile(0.5), recorder.lag_percentile(0.99), recorder.max_lag_ms,
        max_in_flight, recorder.max_in_flight_seen,
    )  # fmt: skip
