"""Commit → mail delays of the run, read back through the notifications API.

The journeys list their users' notifications (``GET /api/v1/notifications``);
each item carries ``occurred_at`` (the event's commit, in orders or accounts)
and ``sent_at`` (the SMTP server accepted the mail). Their difference is the
same delay notifications observes into ``notifications_delivery_delay_seconds``,
but exact (that histogram's buckets are 0.1, 0.25, 0.5, 1 s), and read where
the load test already is: the gateway. Nothing more to configure (no
Prometheus URL, no notifications port), in compose and on Kubernetes alike.

It is a sample: the notifications the journeys happened to list, each counted
once (by event id), after it was sent. A notification still ``sending`` is
picked up by a later listing; one sent after the user's last listing is not
in the sample, so the summary says how many it holds.

Workers ship the delays they saw with their stats reports, as they do the
trace records; the master merges. No Locust import: the tests use it directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PERCENTILES = (50, 95, 99)


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` percent at or below it."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class DelayRecorder:
    seen: set[str] = field(default_factory=set)
    # Delays in ms: all of them (local, master), or those not yet shipped (worker).
    delays_ms: list[float] = field(default_factory=list)

    def observe(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Record the sent notifications of one listing not seen before; returns how many."""
        added = 0
        for item in items:
            event_id = str(item.get("event_id", ""))
            occurred, sent = _when(item.get("occurred_at")), _when(item.get("sent_at"))
            if not event_id or event_id in self.seen or occurred is None or sent is None:
                continue
            self.seen.add(event_id)
            self.delays_ms.append((sent - occurred).total_seconds() * 1000)
            added += 1
        return added

    def drain(self) -> list[float]:
        """A worker's delays since its last report (the ids stay seen)."""
        shipped, self.delays_ms = self.delays_ms, []
        return shipped

    def merge(self, delays_ms: Iterable[float]) -> None:
        self.delays_ms.extend(float(d) for d in delays_ms)

    def reset(self) -> None:
        self.seen.clear()
        self.delays_ms.clear()

    def summary(self) -> dict[str, Any]:
        """``{"count": n, "p50_ms": ..., "p95_ms": ..., "p99_ms": ..., "max_ms": ...}``."""
        ordered = sorted(self.delays_ms)
        result: dict[str, Any] = {"count": len(ordered)}
        if ordered:
            for p in PERCENTILES:
                result[f"p{p}_ms"] = round(percentile(ordered, p), 1)
            result["max_ms"] = round(ordered[-1], 1)
        return result


def render(summary: Mapping[str, Any]) -> str:
    """One line for the console."""
    if not summary.get("count"):
        return "Notification delay (commit → mail): no sent notification was listed"
    values = "  ".join(f"p{p} {summary[f'p{p}_ms']:.0f} ms" for p in PERCENTILES)
    return (
        f"Notification delay (commit → mail), {summary['count']} listed: "
        f"{values}  max {summary['max_ms']:.0f} ms"
    )


RECORDER = DelayRecorder()
