"""`redline logs` over the files the supervisor writes: merge, --since, --trace, --follow."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redline.console.logs import show
from tests.harness import wait_until


def line(service: str, event: str, at: datetime, trace_id: str = "", **fields: str) -> str:
    record = {"event": event, "level": "info", "service": service, **fields}
    record["timestamp"] = at.isoformat().replace("+00:00", "Z")
    if trace_id:
        record["trace_id"] = trace_id
    return json.dumps(record)


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(ln + "\n" for ln in lines)


def test_lines_of_every_service_merge_in_time_order_and_since_drops_the_old(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    write(
        tmp_path / "gateway.log",
        line("gateway", "old", now - timedelta(minutes=10)),
        line("gateway", "second", now - timedelta(seconds=20)),
    )
    write(tmp_path / "orders.log", line("orders", "first", now - timedelta(seconds=30)))
    write(tmp_path / "inventory.log", "not json, no time: follows the line before it")
    out = io.StringIO()
    names = ["gateway", "orders", "inventory"]
    assert show(tmp_path, names, since=300, readable=False, out=out) == 0
    events = [json.loads(ln)["event"] for ln in out.getvalue().splitlines()]
    assert events == ["first", "second"]


def test_a_request_id_finds_its_trace_and_follow_prints_lines_that_arrive_later(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    trace = "ab" * 16
    write(
        tmp_path / "gateway.log",
        line("gateway", "request", now, trace, request_id="r-1"),
        line("gateway", "request", now, "cd" * 16, request_id="r-2"),
    )
    out = io.StringIO()
    done = threading.Event()
    follower = threading.Thread(
        target=show,
        args=(tmp_path, ["gateway", "payments"]),
        kwargs={"trace": "r-1", "follow": True, "readable": False, "out": out,
                "poll": 0.05, "stop": done.is_set},
    )  # fmt: skip
    follower.start()
    try:
        wait_until(lambda: out.getvalue().count("\n") == 1, timeout=5)
        later = datetime.now(UTC)
        # The other trace's line first: read no later than the matching one, never shown.
        write(tmp_path / "payments.log", line("payments", "other", later, "cd" * 16))
        write(tmp_path / "payments.log", line("payments", "charged", later, trace))
        wait_until(lambda: "charged" in out.getvalue(), timeout=5)
    finally:
        done.set()
        follower.join(timeout=5)
    services = [json.loads(ln)["service"] for ln in out.getvalue().splitlines()]
    assert services == ["gateway", "payments"]


def test_a_service_stands_for_every_instance_of_it(tmp_path: Path) -> None:
    """With `--replicas inventory=2`, an order's reservation may be committed by either."""
    now = datetime.now(UTC)
    order = "5f0c4a9e-7d0b-4f5e-9a1c-3e2b1d0c9f8a"
    trace = "ef" * 16
    write(tmp_path / "gateway.log", line("gateway", "request", now, trace, path="/api/v1/orders"))
    write(tmp_path / "inventory.log", line("inventory", "other", now, "12" * 16, path="/products"))
    write(
        tmp_path / "inventory-2.log",
        line("inventory", "request", now, trace, path=f"/reservations/{order}/commit"),
    )
    write(tmp_path / "inventory-copy.log", line("inventory", "not an instance", now, trace))
    out = io.StringIO()
    assert show(tmp_path, [], trace=order, readable=True, out=out) == 0
    sources = [ln.split(" | ", 1)[0].strip() for ln in out.getvalue().splitlines()]
    assert sorted(sources) == ["gateway", "inventory-2"]
