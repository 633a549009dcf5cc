"""`redline trace ID`: one request as a waterfall of services, spans, errors, critical path.

The spans come from Jaeger's query service (its classic JSON API,
``/api/traces/{id}``), which `redline up` runs when ``jaeger`` is on PATH.
``ID`` may be a trace id, the 8-digit prefix the concise log lines show, a
request id or an order id: the last three are looked up in the services' logs
(every line inside a request carries ``trace_id``), an order id also in Jaeger
by its ``order.id`` span attribute.

The critical path is Jaeger's: from the root's end, walk back through the
child that finished last, then the child that finished last before that one
started, and so on, recursively. Shortening anything on it shortens the
request; anything off it ran in the shadow of something that is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redline.console._sources import Jaeger, SourceError
from redline.console.logs import read_lines, trace_ids_for

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str  # "" for a root
    service: str
    name: str
    start_us: int  # epoch microseconds
    duration_us: int
    error: bool = False
    kind: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]

    def roots(self) -> list[Span]:
        ids = {s.span_id for s in self.spans}
        return sorted((s for s in self.spans if s.parent_id not in ids), key=lambda s: s.start_us)

    def children(self) -> dict[str, list[Span]]:
        out: dict[str, list[Span]] = {}
        for s in self.spans:
            out.setdefault(s.parent_id, []).append(s)
        for kids in out.values():
            kids.sort(key=lambda s: s.start_us)
        return out


def from_jaeger(data: Mapping[str, Any]) -> Trace:
    """A trace in Jaeger's JSON (``/api/traces/{id}`` → ``data[0]``)."""
    processes = {pid: p.get("serviceName", "?") for pid, p in data.get("processes", {}).items()}
    spans = []
    for s in data.get("spans", []):
        tags = {t["key"]: t.get("value") for t in s.get("tags", [])}
        parent = next(
            (r["spanID"] for r in s.get("references", []) if r.get("refType") == "CHILD_OF"), ""
        )
        error = tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"
        spans.append(
            Span(
                span_id=s["spanID"],
                parent_id=parent,
                service=processes.get(s.get("processID", ""), "?"),
                name=s.get("operationName", ""),
                start_us=int(s["startTime"]),
                duration_us=int(s["duration"]),
                error=bool(error),
                kind=str(tags.get("span.kind", "")),
                attributes=tags,
            )
        )
    return Trace(trace_id=str(data.get("traceID", "")), spans=tuple(spans))


def critical_path(trace: Trace) -> set[str]:
    """The span ids on the critical path (see the module docstring)."""
    kids = trace.children()
    path: set[str] = set()

    def walk(span: Span, cursor: int) -> None:
        path.add(span.span_id)
        cursor = min(cursor, span.end_us)
        for child in sorted(kids.get(span.span_id, []), key=lambda c: c.end_us, reverse=True):
            if child.start_us >= cursor:
                continue  # started after the part of the parent still to explain
            walk(child, cursor)
            cursor = child.start_us

    for root in trace.roots()[:1]:
        walk(root, root.end_us)
    return path


def _ms(us: float) -> str:
    return f"{us / 1000:.1f}ms" if us < 1_000_000 else f"{us / 1_000_000:.2f}s"


def waterfall(trace: Trace, *, width: int = 120, colour: bool = False) -> list[str]:
    """The lines ``redline trace`` prints: a header, one row per span in tree order, a legend."""
    if not trace.spans:
        return [f"trace {trace.trace_id}: no spans"]
    start = min(s.start_us for s in trace.spans)
    end = max(s.end_us for s in trace.spans)
    total = max(end - start, 1)
    crit = critical_path(trace)
    kids = trace.children()
    services = sorted({s.service for s in trace.spans})
    errors = sum(s.error for s in trace.spans)
    out = [
        f"trace {trace.trace_id}  {_ms(total)}  {len(trace.spans)} spans  "
        f"services: {', '.join(services)}" + (f"  errors: {errors}" if errors else "")
    ]
    rows: list[tuple[int, Span]] = []

    def visit(span: Span, depth: int) -> None:
        rows.append((depth, span))
        for child in kids.get(span.span_id, []):
            visit(child, depth + 1)

    for root in trace.roots():
        visit(root, 0)
    # The labels as wide as they need, up to 60% of the line; the bars take the rest.
    needed = max(len(f"{'  ' * d}{s.service}: {s.name}") for d, s in rows)
    label_width = max(20, min(needed, int(width * 0.6)))
    bar_width = max(10, width - label_width - 16)
    for depth, s in rows:
        mark = ("!" if s.error else " ") + ("*" if s.span_id in crit else " ")
        label = f"{'  ' * depth}{s.service}: {s.name}"
        if len(label) > label_width:
            label = label[: label_width - 1] + "…"
        offset = int((s.start_us - start) / total * bar_width)
        length = max(1, round(s.duration_us / total * bar_width))
        length = min(length, bar_width - offset) or 1
        bar = " " * offset + "█" * length
        line = f"{mark} {label:<{label_width}} {_ms(s.duration_us):>9} |{bar:<{bar_width}}|"
        if colour:
            if s.error:
                line = f"\x1b[31m{line}\x1b[0m"
            elif s.span_id in crit:
                line = f"\x1b[1m{line}\x1b[0m"
            else:
                line = f"\x1b[2m{line}\x1b[0m"
        out.append(line)
    out.append("* on the critical path   ! error")
    shares = path_time_by_service(trace, crit)
    out.append(
        "critical path by service: "
        + ", ".join(f"{svc} {_ms(us)} ({us / total:.0%})" for svc, us in shares)
    )
    return out


def path_time_by_service(trace: Trace, crit: set[str]) -> list[tuple[str, int]]:
    """Each service's own time on the critical path (a span less its children on it).

    Largest first: where shortening the request has to start.
    """
    kids = trace.children()
    own: dict[str, int] = {}
    for s in trace.spans:
        if s.span_id not in crit:
            continue
        on_path = [c for c in kids.get(s.span_id, []) if c.span_id in crit]
        covered = sum(min(c.end_us, s.end_us) - max(c.start_us, s.start_us) for c in on_path)
        own[s.service] = own.get(s.service, 0) + max(s.duration_us - covered, 0)
    return sorted(own.items(), key=lambda kv: -kv[1])


def log_lines(log_dir: Path) -> Iterable[Any]:
    for path in sorted(log_dir.glob("*.log")):
        yield from read_lines(path, path.stem)[0]


def resolve(ident: str, jaeger: Jaeger, log_dir: Path) -> list[str]:
    """Trace ids for a trace id (or its prefix), a request id or an order id; newest last."""
    ident = ident.strip().lower()
    # The logs first: a minted request id is 32 hex digits too, like a trace id.
    found = sorted(trace_ids_for(log_lines(log_dir), ident))
    if found:
        return found
    if TRACE_ID.match(ident):
        return [ident]
    # Ids the logs no longer hold: the spans carry them as tags.
    for service, tag in (("orders", "order.id"), ("gateway", "redline.request_id")):
        traces = jaeger.find(service, {tag: ident})
        if traces:
            return sorted({str(t.get("traceID")) for t in traces if t.get("traceID")})
    return []


# Jaeger's decision wait natively (3 s) plus the exporters' and the Collector's batching.
TAIL_SAMPLING_WAIT_SECONDS = 8.0


def show(
    ident: str,
    jaeger: Jaeger,
    log_dir: Path,
    *,
    width: int,
    colour: bool,
    wait: float = TAIL_SAMPLING_WAIT_SECONDS,
) -> tuple[int, list[str]]:
    """Exit status and lines for ``redline trace ID``.

    A trace placed a moment ago is not in Jaeger yet: its tail sampler decides
    a few seconds after the trace's first span (telemetry/jaeger/jaeger.yaml).
    So a trace the logs name is waited for, up to ``wait`` seconds, before it
    is called missing.
    """
    try:
        ids = resolve(ident, jaeger, log_dir)
    except SourceError as exc:
        return 1, [f"redline: {exc}"]
    if not ids:
        return 1, [f"redline: no trace found for {ident!r} (in the logs under {log_dir} or Jaeger)"]
    out: list[str] = []
    shown = 0
    deadline = time.monotonic() + wait
    for trace_id in ids:
        try:
            data = jaeger.trace(trace_id)
            while data is None and time.monotonic() < deadline:
                time.sleep(0.5)
                data = jaeger.trace(trace_id)
        except SourceError as exc:
            return 1, [f"redline: {exc}"]
        if data is None:
            out.append(f"trace {trace_id}: not in Jaeger (not exported, sampled out, or expired)")
            continue
        out += [*waterfall(from_jaeger(data), width=width, colour=colour), ""]
        shown += 1
    return (0 if shown else 1), out
