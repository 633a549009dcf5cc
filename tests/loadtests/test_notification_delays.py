"""The load test's commit → mail delays: what counts, once, and the percentiles."""

from __future__ import annotations

from loadtests.notification_delays import DelayRecorder, percentile, render


def _item(event_id: str, delay_ms: int | None) -> dict[str, object]:
    sent = None if delay_ms is None else f"2026-12-06T01:00:00.{delay_ms:03d}000+00:00"
    return {
        "event_id": event_id,
        "occurred_at": "2026-12-06T01:00:00.000000Z",
        "sent_at": sent,
        "status": "sending" if sent is None else "sent",
    }


def test_each_sent_notification_counts_once_and_unsent_ones_later() -> None:
    r = DelayRecorder()
    assert r.observe([_item("a", 120), _item("b", None)]) == 1
    # The next listing shows a again (not counted twice) and b, now sent.
    assert r.observe([_item("a", 120), _item("b", 340)]) == 1
    assert sorted(r.delays_ms) == [120.0, 340.0]


def test_malformed_items_are_skipped() -> None:
    r = DelayRecorder()
    bad: list[dict[str, object]] = [
        {"event_id": "x", "occurred_at": "yesterday", "sent_at": "today"},
        {"sent_at": 1},
    ]
    assert r.observe(bad) == 0
    assert r.summary() == {"count": 0}
    assert "no sent notification" in render(r.summary())


def test_a_worker_ships_new_delays_and_the_master_merges_them() -> None:
    worker, master = DelayRecorder(), DelayRecorder()
    worker.observe([_item("a", 100)])
    master.merge(worker.drain())
    worker.observe([_item("a", 100), _item("b", 300)])  # a is not shipped again
    master.merge(worker.drain())
    assert worker.drain() == []
    assert sorted(master.delays_ms) == [100.0, 300.0]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7
    r = DelayRecorder()
    r.observe([_item(str(i), d) for i, d in enumerate((100, 200, 300, 400))])
    summary = r.summary()
    assert summary == {
        "count": 4,
        "p50_ms": 200.0,
        "p95_ms": 400.0,
        "p99_ms": 400.0,
        "max_ms": 400.0,
    }
    assert render(summary).startswith("Notification delay (commit → mail), 4 listed: p50 200 ms")
