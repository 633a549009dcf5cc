"""Trace context per request, and the bounded record of the slowest and failed ones."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from loadtests import summary
from loadtests.tracing import TraceRecorder, new_traceparent

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def test_each_request_gets_a_new_sampled_w3c_traceparent() -> None:
    seen = set()
    for _ in range(1000):
        header, trace_id, span_id = new_traceparent()
        m = TRACEPARENT.match(header)
        assert m, header
        assert (m[1], m[2]) == (trace_id, span_id)
        assert trace_id != "0" * 32
        assert span_id != "0" * 16
        seen.add(trace_id)
    assert len(seen) == 1000


def _observe(
    recorder: TraceRecorder, durations: list[float], *, fail_every: int = 0, first: int = 0
) -> None:
    """Request i (from ``first``) took durations[i]; every ``fail_every``-th failed."""
    for i, ms in enumerate(durations, first):
        failed = bool(fail_every) and i % fail_every == 0
        recorder.observe(
            ms, "GET", "/api/v1/products", 500 if failed else 200, f"{i:032x}", 1_700_000_000 + i,
            "expected 200, got 500" if failed else None,
        )  # fmt: skip


def test_recorder_keeps_exactly_the_slowest_n_in_order() -> None:
    durations = [random.uniform(1, 1000) for _ in range(5000)]
    recorder = TraceRecorder(slowest=10, max_failures=5)
    _observe(recorder, durations)
    assert [r.duration_ms for r in recorder.slowest()] == sorted(durations, reverse=True)[:10]
    assert recorder.requests == 5000


def test_recorder_caps_failures_and_counts_the_rest() -> None:
    recorder = TraceRecorder(slowest=3, max_failures=5)
    _observe(recorder, [1.0] * 100, fail_every=10)
    assert len(recorder.failures()) == 5
    assert recorder.failures_not_kept == 5
    assert all(r.status == 500 and r.error for r in recorder.failures())


def test_master_merging_worker_reports_equals_one_process_seeing_everything() -> None:
    durations = [random.uniform(1, 1000) for _ in range(3000)]
    alone = TraceRecorder(slowest=15, max_failures=1000)
    _observe(alone, durations, fail_every=7)
    master = TraceRecorder(slowest=15, max_failures=1000)
    workers = [TraceRecorder(slowest=15, max_failures=1000) for _ in range(2)]
    for start in range(0, 3000, 500):  # a report every 500 requests, workers taking turns
        worker = workers[(start // 500) % 2]
        _observe(worker, durations[start : start + 500], fail_every=7, first=start)
        wire = json.loads(json.dumps(worker.drain()))  # what a message round trip leaves
        master.merge(wire)
    assert master.slowest() == alone.slowest()
    assert {r.trace_id for r in master.failures()} == {r.trace_id for r in alone.failures()}
    assert sum(w.requests for w in workers) == 3000


def test_summary_lists_trace_ids_with_jaeger_links_and_writes_them(tmp_path: Path) -> None:
    recorder = TraceRecorder(slowest=2, max_failures=1)
    _observe(recorder, [5.0, 900.0, 12.0, 300.0], fail_every=2)
    data = summary.report(recorder, "http://jaeger:16686/")
    text = summary.render(data)
    slow_id, failed_id = f"{1:032x}", f"{0:032x}"
    assert f"http://jaeger:16686/trace/{slow_id}" in text
    assert [r["duration_ms"] for r in data["slowest"]] == [900.0, 300.0]
    assert data["failures"][0]["trace_id"] == failed_id
    assert data["failures_not_listed"] == 1
    assert "1 more failures, not listed" in text
    path = tmp_path / "run" / "traces.json"
    summary.write(path, data)
    assert json.loads(path.read_text()) == data


def test_each_endpoint_keeps_its_own_slowest_even_when_another_owns_the_run_s_slowest() -> None:
    worker, master = TraceRecorder(slowest=3, per_endpoint=2), TraceRecorder(3, per_endpoint=2)
    for i in range(50):
        worker.observe(1000.0 + i, "POST", "/orders", 201, f"o{i}", 0.0)
        worker.observe(10.0 + i % 7, "GET", "/products", 200, f"p{i}", 0.0)
    master.merge(worker.drain())
    assert [r.name for r in master.slowest()] == ["/orders"] * 3
    by_endpoint = master.slowest_by_endpoint()
    assert [r.duration_ms for r in by_endpoint["GET /products"]] == [16.0, 16.0]
    assert [r.trace_id for r in by_endpoint["POST /orders"]] == ["o49", "o48"]
