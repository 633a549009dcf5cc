"""The end-of-run list of slow and failed requests with their trace ids: console and file."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.tracing import RequestRecord, TraceRecorder


def jaeger_link(jaeger_url: str, trace_id: str) -> str:
    return f"{jaeger_url.rstrip('/')}/trace/{trace_id}" if jaeger_url else ""


def _iso(unix: float) -> str:
    millis = int(unix * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix)) + f".{millis:03d}Z"


def _row(record: RequestRecord, jaeger_url: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": record.name,
        "method": record.method,
        "status": record.status,
        "duration_ms": round(record.duration_ms, 3),
        "trace_id": record.trace_id,
        "started_at": _iso(record.started_at),
    }
    if record.error is not None:
        row["error"] = record.error
    if jaeger_url:
        row["jaeger"] = jaeger_link(jaeger_url, record.trace_id)
    return row


def report(recorder: TraceRecorder, jaeger_url: str = "") -> dict[str, Any]:
    """The trace report as JSON-ready data."""
    return {
        "slowest": [_row(r, jaeger_url) for r in recorder.slowest()],
        "failures": [_row(r, jaeger_url) for r in recorder.failures()],
        "failures_not_listed": recorder.failures_not_kept,
        "slowest_by_endpoint": {
            key: [_row(r, jaeger_url) for r in records]
            for key, records in recorder.slowest_by_endpoint().items()
        },
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _table(title: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [title]
    width = max(len(f"{r['method']} {r['name']}") for r in rows)
    for r in rows:
        what = f"{r['method']} {r['name']}".ljust(width)
        where = r.get("jaeger") or r["trace_id"]
        line = f"  {r['duration_ms']:>10.1f} ms  {r['status']:>3}  {what}  {where}"
        if "error" in r:
            line += f"  {r['error']}"
        lines.append(line)
    return lines


def render(data: dict[str, Any]) -> str:
    """The console version: one line per request, trace id (or Jaeger link) included."""
    lines = _table("Slowest requests (trace ids):", data["slowest"])
    lines += _table("Failed requests (trace ids):", data["failures"])
    if data["failures_not_listed"]:
        lines.append(f"  ... and {data['failures_not_listed']} more failures, not listed")
    return "\n".join(lines) if lines else "No requests recorded."
