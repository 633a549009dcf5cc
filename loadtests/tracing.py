"""Trace context the load generator creates, and the requests worth looking up afterwards.

Every request carries a fresh, sampled W3C ``traceparent``: the gateway
continues that trace, so a slow or failed request seen by Locust is one
search away in Jaeger. Locust's own ``--otel`` propagates context only for
``HttpUser``, hence this.

:class:`TraceRecorder` keeps only what the summary shows, cheaply enough to sit
on every request: a bounded min-heap of the slowest (one comparison for a
request that is not among them) and a capped list of failures. Workers drain
theirs into each stats report; the master merges them.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from typing import Any


def new_traceparent() -> tuple[str, str, str]:
    """``(header, trace_id, span_id)`` for a new sampled root; ids are never all zero.

    The module-level generator, not an own ``Random``: Python reseeds it in a
    forked child, so ``--processes`` workers do not share ids. Ids need to be
    unique, not secret.
    """
    trace_id = f"{random.getrandbits(128) or 1:032x}"
    span_id = f"{random.getrandbits(64) or 1:016x}"
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@dataclass(frozen=True, slots=True)
class RequestRecord:
    duration_ms: float
    method: str
    name: str
    status: int  # 0: no response
    trace_id: str
    started_at: float  # Unix time
    error: str | None = None

    def to_wire(self) -> list[Any]:
        return [
            self.duration_ms,
            self.method,
            self.name,
            self.status,
            self.trace_id,
            self.started_at,
            self.error,
        ]

    @classmethod
    def from_wire(cls, row: list[Any]) -> RequestRecord:
        duration, method, name, status, trace_id, started_at, error = row
        return cls(
            float(duration), str(method), str(name), int(status), str(trace_id), float(started_at),
            None if error is None else str(error),
        )  # fmt: skip


class TraceRecorder:
    """The ``slowest`` slowest requests and the first ``max_failures`` failures."""

    def __init__(self, slowest: int = 20, max_failures: int = 50, per_endpoint: int = 5) -> None:
        self.slowest_kept = max(0, slowest)
        self.max_failures = max(0, max_failures)
        # The slowest few of every endpoint too: a regressed fast route's own slow requests
        # are rarely among the run's slowest overall.
        self.per_endpoint = max(0, per_endpoint)
        self._heap: list[tuple[float, int, RequestRecord]] = []
        self._by_endpoint: dict[tuple[str, str], list[tuple[float, int, RequestRecord]]] = {}
        self._failures: list[RequestRecord] = []
        self._seq = itertools.count()
        self.failures_not_kept = 0
        self.requests = 0  # observed here, ever (a worker's own count)

    def observe(
        self,
        duration_ms: float,
        method: str,
        name: str,
        status: int,
        trace_id: str,
        started_at: float,
        error: str | None = None,
    ) -> None:
        self.requests += 1
        heap = self._heap
        full = len(heap) >= self.slowest_kept
        mine = self._by_endpoint.get((method, name))
        slow_here = bool(self.per_endpoint) and (
            mine is None or len(mine) < self.per_endpoint or duration_ms > mine[0][0]
        )
        if error is None and not slow_here and full and (not heap or duration_ms <= heap[0][0]):
            return  # the common case: fast and fine
        record = RequestRecord(duration_ms, method, name, status, trace_id, started_at, error)
        self._keep_if_slow(record)
        if slow_here:
            self._keep_for_endpoint(record)
        if error is not None:
            self._keep_failure(record)

    def _keep_if_slow(self, record: RequestRecord) -> None:
        if not self.slowest_kept:
            return
        item = (record.duration_ms, next(self._seq), record)
        if len(self._heap) < self.slowest_kept:
            heapq.heappush(self._heap, item)
        elif record.duration_ms > self._heap[0][0]:
            heapq.heapreplace(self._heap, item)

    def _keep_for_endpoint(self, record: RequestRecord) -> None:
        if not self.per_endpoint:
            return
        heap = self._by_endpoint.setdefault((record.method, record.name), [])
        item = (record.duration_ms, next(self._seq), record)
        if len(heap) < self.per_endpoint:
            heapq.heappush(heap, item)
        elif record.duration_ms > heap[0][0]:
            heapq.heapreplace(heap, item)

    def slowest_by_endpoint(self) -> dict[str, list[RequestRecord]]:
        return {
            f"{method} {name}": [r for _, _, r in sorted(heap, key=lambda item: -item[0])]
            for (method, name), heap in sorted(self._by_endpoint.items())
        }

    def _keep_failure(self, record: RequestRecord) -> None:
        if len(self._failures) < self.max_failures:
            self._failures.append(record)
        else:
            self.failures_not_kept += 1

    def slowest(self) -> list[RequestRecord]:
        return [r for _, _, r in sorted(self._heap, key=lambda item: -item[0])]

    def failures(self) -> list[RequestRecord]:
        return sorted(self._failures, key=lambda r: r.started_at)

    def reset(self) -> None:
        self._heap.clear()
        self._by_endpoint.clear()
        self._failures.clear()
        self.failures_not_kept = 0

    def drain(self) -> dict[str, Any]:
        """What a worker ships to the master with a stats report; starts afresh."""
        payload = {
            "slowest": [r.to_wire() for _, _, r in self._heap],
            "failures": [r.to_wire() for r in self._failures],
            "by_endpoint": [r.to_wire() for heap in self._by_endpoint.values() for _, _, r in heap],
            "failures_not_kept": self.failures_not_kept,
            "requests": self.requests,
        }
        self.reset()
        return payload

    def merge(self, payload: dict[str, Any]) -> None:
        """Take in a worker's drained records (the union of its top-N per report is enough)."""
        for row in payload.get("slowest", []):
            self._keep_if_slow(RequestRecord.from_wire(row))
        for row in payload.get("failures", []):
            self._keep_failure(RequestRecord.from_wire(row))
        for row in payload.get("by_endpoint", []):
            self._keep_for_endpoint(RequestRecord.from_wire(row))
        self.failures_not_kept += int(payload.get("failures_not_kept", 0))
