"""The server's side of a run: the gateway's RED numbers and exemplars over the run's window.

Client-side latency includes the load generator (its CPU, its event loop, its
network); the gateway's own ``http_server_request_duration_seconds`` does not.
Put side by side, they tell a slower platform from a slower generator. At the
end of ``redline load``, when Prometheus answers, this reads for the run's
window ``[started_at, stopped_at]`` per gateway route: requests, 5xx answers,
p50/p95/p99 (``histogram_quantile`` over ``increase`` of the buckets), and the
exemplars (trace ids of real requests in those buckets), and keeps them in the
run folder as ``server.json``, so a comparison works later without Prometheus
(exemplars live only in Prometheus's memory).

Format ``redline-load-server/1``::

    {"format": "redline-load-server/1", "prometheus": "http://127.0.0.1:9090",
     "job": "gateway", "start": 1796500000.1, "end": 1796500060.5, "evaluated_at": ...,
     "endpoints": {"GET /api/v1/products": {"requests": 1190.0, "errors": 0.0,
                    "p50_ms": 4.1, "p95_ms": 9.3, "p99_ms": 23.0}, ...},
     "exemplars": {"GET /api/v1/products": [{"trace_id": "…", "ms": 88.1, "at": …}, ...]}}

Percentiles from buckets are interpolated within a bucket (Prometheus's
rule): exact to the bucket, not to the millisecond.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from dashboards._promql import HTTP
from redline.console._sources import Prometheus, SourceError

FORMAT = "redline-load-server/1"
FILE_NAME = "server.json"
QUANTILES = (0.5, 0.95, 0.99)
EXEMPLARS_PER_ROUTE = 10
_BY = "http_request_method, http_route"


def _key(metric: dict[str, str]) -> str:
    return f"{metric.get('http_request_method', '')} {metric.get('http_route', '')}"


def _vector(prom: Prometheus, expr: str, at: float) -> dict[str, float]:
    out = {}
    for row in prom.query(expr, at=at):
        value = float(row["value"][1])
        if not math.isnan(value):
            out[_key(row["metric"])] = value
    return out


def _scraped_after(prom: Prometheus, job: str, moment: float, timeout: float) -> float:
    """The time of the job's first scrape at or after ``moment`` (waits for it, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = prom.query(f'max(timestamp(up{{job="{job}"}}))')
        last = float(rows[0]["value"][1]) if rows else 0.0
        if last >= moment or time.monotonic() > deadline:
            return max(last, moment)
        time.sleep(0.2)


def record(
    prometheus_url: str,
    start: float,
    end: float,
    *,
    job: str = "gateway",
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The gateway's RED numbers and exemplars for ``[start, end]``; raises SourceError."""
    prom = Prometheus(prometheus_url, timeout=timeout)
    try:
        at = _scraped_after(prom, job, end, timeout)
        window = f"{max(1, math.ceil(at - start))}s"
        sel = f'{{job="{job}"}}'
        counts = f"sum by ({_BY}) (increase({HTTP}_count{sel}[{window}]))"
        errors = (
            f"sum by ({_BY}) (increase({HTTP}_count"
            f'{{job="{job}",http_response_status_code=~"5.."}}[{window}]))'
        )
        endpoints: dict[str, dict[str, float]] = {}
        for key, n in _vector(prom, counts, at).items():
            endpoints[key] = {"requests": round(n, 1), "errors": 0.0}
        for key, n in _vector(prom, errors, at).items():
            endpoints.setdefault(key, {"requests": 0.0})["errors"] = round(n, 1)
        for q in QUANTILES:
            expr = (
                f"histogram_quantile({q}, sum by (le, {_BY}) "
                f"(increase({HTTP}_bucket{sel}[{window}])))"
            )
            for key, seconds in _vector(prom, expr, at).items():
                if key in endpoints:
                    endpoints[key][f"p{q * 100:g}_ms"] = round(seconds * 1000, 2)
        exemplars = _exemplars(prom, job, start, at)
    finally:
        prom.close()
    return {
        "format": FORMAT,
        "prometheus": prometheus_url,
        "job": job,
        "start": round(start, 3),
        "end": round(end, 3),
        "evaluated_at": round(at, 3),
        "endpoints": {k: endpoints[k] for k in sorted(endpoints) if endpoints[k]["requests"] > 0},
        "exemplars": exemplars,
    }


def _exemplars(prom: Prometheus, job: str, start: float, end: float) -> dict[str, list[Any]]:
    by_route: dict[str, dict[str, dict[str, Any]]] = {}
    for series in prom.exemplars(f'{HTTP}_bucket{{job="{job}"}}', start, end):
        key = _key(series.get("seriesLabels", {}))
        for e in series.get("exemplars", []):
            trace_id = e.get("labels", {}).get("trace_id")
            if trace_id:
                row = {
                    "trace_id": trace_id,
                    "ms": round(float(e["value"]) * 1000, 2),
                    "at": float(e["timestamp"]),
                }
                kept = by_route.setdefault(key, {})
                if trace_id not in kept or row["ms"] > kept[trace_id]["ms"]:
                    kept[trace_id] = row
    return {
        key: sorted(rows.values(), key=lambda r: -r["ms"])[:EXEMPLARS_PER_ROUTE]
        for key, rows in sorted(by_route.items())
    }


def write(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / FILE_NAME
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def load(run: Path) -> dict[str, Any] | None:
    """A run folder's server.json (beside results.json); None when there is none."""
    folder = run if run.is_dir() else run.parent
    path = folder / FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None


__all__ = ["FILE_NAME", "FORMAT", "SourceError", "load", "record", "write"]
