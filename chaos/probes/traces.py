"""Probes of traces: from a metric's exemplar to its trace in Jaeger, as an SRE clicks through."""

from __future__ import annotations

import time
from typing import Any

import httpx

from chaos.context import MARKS, Configuration, setting, stack
from chaos.probes._common import TIMEOUT, ProbeSkipped, poll
from chaos.probes.prometheus import promql


def _exemplar_traces(
    metric: str, labels: dict[str, str], since: float, configuration: Configuration | None
) -> list[str]:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    r = httpx.get(
        f"{stack(configuration).prometheus}/api/v1/query_exemplars",
        params={"query": f"{metric}_bucket{{{selector}}}", "start": since, "end": time.time() + 1},
        timeout=10,
    )
    r.raise_for_status()
    found: list[tuple[float, str]] = []
    for series in r.json()["data"]:
        for e in series["exemplars"]:
            if "trace_id" in e["labels"]:
                found.append((float(e["timestamp"]), e["labels"]["trace_id"]))
    # Oldest first: under load the newest exemplars' traces are still waiting
    # for the tail sampler's decision, and would crowd out complete ones.
    return [t for _, t in sorted(found)]


def _jaeger_trace(url: str, trace_id: str) -> dict[str, Any] | None:
    r = httpx.get(f"{url}/api/traces/{trace_id}", timeout=TIMEOUT)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    data = r.json().get("data") or []
    trace: dict[str, Any] | None = data[0] if data else None
    return trace


def _describe_trace(trace: dict[str, Any]) -> dict[str, Any]:
    processes = trace.get("processes", {})
    spans = []
    for span in trace.get("spans", []):
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        events = [
            f["value"]
            for log in span.get("logs", [])
            for f in log.get("fields", [])
            if f["key"] == "event"
        ]
        spans.append(
            {
                "service": processes.get(span.get("processID"), {}).get("serviceName", "?"),
                "name": span["operationName"],
                "error": tags.get("error") is True or tags.get("otel.status_code") == "ERROR",
                "events": events,
            }
        )
    return {"spans": spans}


def trace_shows(
    metric: str,
    labels: dict[str, str],
    since_mark: str,
    expect_event: str | list[str] | None = None,
    expect_span: str | None = None,
    expect_error_in: str | None = None,
    within: float = 15.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """From a metric's exemplar to its trace, as an SRE would click through; does it show why?

    Takes the exemplars Prometheus stored since the mark for ``metric``'s
    buckets with ``labels``, fetches their traces from the Jaeger query API,
    and looks for a span named ``expect_span``, a span event
    ``expect_event`` (or any of a list of them), and an error span in service
    ``expect_error_in``. ``found`` is 1 when one trace shows all that was asked;
    when 0, ``observed`` is how many such requests the histogram counted since
    the mark (none at all, or no exemplar for them).
    """
    events = [expect_event] if isinstance(expect_event, str) else expect_event
    url = setting(configuration, "jaeger_url")
    since = MARKS.get(since_mark)
    checked: list[dict[str, Any]] = []
    trace_ids: list[str] = []
    for _ in poll(within, 0.5):
        trace_ids = _exemplar_traces(metric, labels, since, configuration)
        if not url:
            if trace_ids:
                raise ProbeSkipped(
                    f"exemplar trace {trace_ids[0]} found, but no trace backend is configured "
                    "(jaeger_url) to check what it shows"
                )
            continue
        for trace_id in trace_ids[:20]:
            trace = _jaeger_trace(url, trace_id)
            if trace is None:
                continue
            described = _describe_trace(trace)
            spans = described["spans"]
            matched = {
                "span": expect_span is None or any(s["name"] == expect_span for s in spans),
                "event": events is None or any(e in s["events"] for s in spans for e in events),
                "error": expect_error_in is None
                or any(s["error"] and s["service"] == expect_error_in for s in spans),
            }
            summary = {
                "trace_id": trace_id,
                "spans": len(spans),
                "services": sorted({s["service"] for s in spans}),
                "matched": matched,
            }
            if all(matched.values()):
                return {"found": 1, **summary, "exemplars": len(trace_ids)}
            if trace_id not in [c["trace_id"] for c in checked]:
                checked.append(summary)
    # Why nothing was found: were there no such requests, or no exemplar for them?
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    observed = promql(
        f"sum(increase({metric}_count{{{selector}}}[$window]))", since_mark, configuration
    )
    return {
        "found": 0,
        "exemplars": len(trace_ids),
        "observed": observed,
        "checked": checked[:5],
    }
