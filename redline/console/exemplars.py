"""`redline exemplars [ROUTE]`: the slowest recent requests Prometheus kept a trace id for.

Each latency observation may carry an exemplar: the ``trace_id`` of one real
request in that bucket. Prometheus's exemplar API returns them for a time
range; here they are listed slowest first, each with the command that opens
its trace. The classic Prometheus UI of Debian's 2.42 cannot show them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dashboards._promql import HTTP
from redline.console._sources import Prometheus


@dataclass(frozen=True)
class Exemplar:
    seconds: float
    at: float
    job: str
    method: str
    route: str
    status: str
    trace_id: str


def selector(route: str | None, service: str | None) -> str:
    """The bucket series to ask for: a route template (regex allowed) and/or a job."""
    matchers = []
    if service:
        matchers.append(f'job="{service}"')
    if route:
        matchers.append(f'http_route=~"{route}"')
    return f"{HTTP}_bucket{{{','.join(matchers)}}}"


def collect(
    prometheus: Prometheus,
    route: str | None = None,
    service: str | None = None,
    *,
    since: float = 900.0,
    limit: int = 20,
) -> list[Exemplar]:
    now = time.time()
    found = []
    for series in prometheus.exemplars(selector(route, service), now - since, now + 1):
        labels = series.get("seriesLabels", {})
        for e in series.get("exemplars", []):
            trace_id = e.get("labels", {}).get("trace_id")
            if not trace_id:
                continue
            found.append(
                Exemplar(
                    seconds=float(e["value"]),
                    at=float(e["timestamp"]),
                    job=labels.get("job", ""),
                    method=labels.get("http_request_method", ""),
                    route=labels.get("http_route", ""),
                    status=labels.get("http_response_status_code", ""),
                    trace_id=trace_id,
                )
            )
    # One row per trace: a request is in several services' histograms; keep its slowest.
    best: dict[str, Exemplar] = {}
    for e in found:
        if e.trace_id not in best or e.seconds > best[e.trace_id].seconds:
            best[e.trace_id] = e
    return sorted(best.values(), key=lambda e: -e.seconds)[:limit]


def lines(exemplars: list[Exemplar]) -> list[str]:
    if not exemplars:
        return ["no exemplars in that range (no traffic, or no sampled request)"]
    out = []
    for e in exemplars:
        stamp = time.strftime("%H:%M:%S", time.localtime(e.at))
        ms = f"{e.seconds * 1000:.1f}ms"
        out.append(
            f"{ms:>9}  {stamp}  {e.job:<9} {e.method:<6} {e.route:<28} {e.status:<3}  "
            f"redline trace {e.trace_id}"
        )
    return out
