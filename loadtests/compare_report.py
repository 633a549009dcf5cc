"""The comparison as text, and the traces behind each regression.

Per regressed endpoint: the current run's slowest and failed requests of that
endpoint (``traces.json``, each once) and the gateway's exemplars of its route
over the run's window (``server.json``), each as ``redline trace ID`` or a
Jaeger link; with ``--jaeger-url`` each is also looked up in Jaeger, whose tail
sampler may not have kept it (right after a run, again until it has decided).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadtests import results
from loadtests.compare_model import (
    QUANTILES,
    TRACES_LISTED,
    Comparison,
    EndpointComparison,
    fmt_ms,
    fmt_pct,
)
from loadtests.results import Results

# -- traces behind a regression ----------------------------------------------------------


def _trace_rows(run: Path) -> list[dict[str, Any]]:
    folder = run if run.is_dir() else run.parent
    try:
        doc = json.loads((folder / "traces.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    by_endpoint = [row for rows in doc.get("slowest_by_endpoint", {}).values() for row in rows]
    return [*doc.get("slowest", []), *by_endpoint, *doc.get("failures", [])]


def attach_traces(
    comparison: Comparison, current_run: Path, server_cur: dict[str, Any] | None
) -> None:
    """The current run's slowest and failed requests, and exemplars, of each regressed endpoint."""
    rows = _trace_rows(current_run)
    for e in comparison.regressed:
        mine = list(
            {
                r["trace_id"]: r for r in rows if f"{r.get('method')} {r.get('name')}" == e.key
            }.values()
        )  # a failure can also be among the slowest: once
        slow = sorted((r for r in mine if "error" not in r), key=lambda r: -r["duration_ms"])
        failed = [r for r in mine if "error" in r]
        listed = [*slow[:TRACES_LISTED], *failed[:TRACES_LISTED]]
        comparison.traces[e.key] = listed
        seen = {r["trace_id"] for r in listed}
        exemplars = (server_cur or {}).get("exemplars", {}).get(e.key, [])
        unseen = [x for x in exemplars if x["trace_id"] not in seen]
        comparison.exemplars[e.key] = unseen[:TRACES_LISTED]


# Jaeger's tail sampler decides a trace 5 s after its first span (decision_wait,
# telemetry/jaeger/jaeger.yaml) and the generator exports its spans within a second:
# right after a run, its last seconds' traces are not decided yet. Until this long after
# the run stopped, a listed trace not found is looked up again.
SETTLE_SECONDS = 10.0


def check_in_jaeger(
    comparison: Comparison,
    jaeger_url: str,
    *,
    settle: float = SETTLE_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Mark each listed trace ``in_jaeger`` (tail sampling may have dropped it); or why not."""
    from redline.console._sources import Jaeger, SourceError

    rows = [row for rows in (*comparison.traces.values(), *comparison.exemplars.values())
            for row in rows]  # fmt: skip
    until = comparison.current.stopped_at + settle
    jaeger = Jaeger(jaeger_url.rstrip("/"), timeout=3.0)
    try:
        while True:
            for row in rows:
                if not row.get("in_jaeger"):
                    row["in_jaeger"] = jaeger.trace(row["trace_id"]) is not None
            if all(row["in_jaeger"] for row in rows) or clock() >= until:
                return None
            sleep(0.5)
    except SourceError as exc:
        for row in rows:
            row.pop("in_jaeger", None)  # not checked after all
        return str(exc)
    finally:
        jaeger.close()


def trace_link(trace_id: str, jaeger_url: str) -> str:
    if jaeger_url:
        return f"{jaeger_url.rstrip('/')}/trace/{trace_id}"
    return f"redline trace {trace_id}"


# -- text ----------------------------------------------------------------------------------


def _describe(r: Results) -> str:
    shape = r.meta.get("shape", "?")
    if r.model == "open" and isinstance(r.meta.get("open_model"), dict):
        om = r.meta["open_model"]
        shape = f"open model {om.get('rate', '?')}/s {om.get('process', '')}"
    where = r.source.parent if r.source.name == results.FILE_NAME else r.source
    return f"{where} ({shape}, {r.seconds:.0f} s)"


def _server_line(e: EndpointComparison) -> str | None:
    if not e.server_base and not e.server_cur:
        return None

    def side(s: dict[str, float] | None) -> str:
        if not s:
            return "-"
        return "/".join(fmt_ms(s.get(f"p{q * 100:g}_ms", math.nan)) for q in QUANTILES)

    return f"    gateway (server) p50/p95/p99 ms: {side(e.server_base)} → {side(e.server_cur)}"


def _kept(row: dict[str, Any]) -> str:
    return (
        "  (not in Jaeger: not kept by its tail sampler)" if row.get("in_jaeger") is False else ""
    )


def _offered(r: Results) -> str:
    om = r.meta.get("open_model")
    if r.model == "open" and isinstance(om, dict):
        return f"open model at {om.get('rate')}/s"
    return f"closed model, {r.meta.get('shape')} with {r.meta.get('users')} users"


def _unlike(baseline: Results, current: Results) -> str | None:
    """Why the two runs' loads differ, when they do: their numbers then differ for that too."""
    before, after = _offered(baseline), _offered(current)
    if before != after:
        return f"the runs offered different loads ({before} → {after}); compare like with like"
    return None


def render_text(c: Comparison, jaeger_url: str = "") -> str:
    lines = [
        f"baseline  {_describe(c.baseline)}",
        f"current   {_describe(c.current)}",
        f"method    bootstrap {c.confidence:.0%} interval of each percentile's change, "
        f"resampling {c.resampling} ({c.resamples} resamples, seed {c.seed}); "
        "error ratios: Newcombe's score interval",
        "          ▲ worse, ▼ better, beyond noise (the interval excludes no change); "
        f"judged with ≥ {c.min_requests} requests on both sides",
    ]
    if (note := _unlike(c.baseline, c.current)) is not None:
        lines.append(f"note      {note}")
    lines.append("")
    for e in c.endpoints:
        if e.baseline is None or e.current is None:
            where = "current" if e.baseline is None else "baseline"
            lines += [f"{e.key}  only in the {where} run", ""]
            continue
        err = e.errors
        assert err is not None
        mark = ("▲" if err.diff > 0 else "▼") if err.beyond_noise else " "
        rate_change = fmt_pct(e.cur_rate / e.base_rate - 1) if e.base_rate else ""
        lines.append(
            f"{e.key}   rate {e.base_rate:.2f}/s → {e.cur_rate:.2f}/s {rate_change}   "
            f"errors {err.baseline:.2%} → {err.current:.2%} {mark}".rstrip()
            + ("" if e.judged else "   (too few requests to judge)")
        )
        for q, ch in e.quantiles.items():
            mark = ("▲" if ch.diff > 0 else "▼") if ch.beyond_noise else " "
            lines.append(
                f"    p{q * 100:<4g} {fmt_ms(ch.baseline):>7} → {fmt_ms(ch.current):>7} ms  "
                f"{ch.diff:+8.1f} ms {fmt_pct(ch.relative):>6}  "
                f"[{ch.diff_low:+.1f} … {ch.diff_high:+.1f} ms]  {mark}".rstrip()
            )
        if (server_line := _server_line(e)) is not None:
            lines.append(server_line)
        lines.append("")
    for e in c.regressed:
        lines.append(f"Regressed: {e.key}: {'; '.join(e.regressions)}")
        for r in c.traces.get(e.key, []):
            what = f"failed {r.get('status')}: {r['error'][:80]}" if "error" in r else "slow"
            link = trace_link(r["trace_id"], jaeger_url) + _kept(r)
            lines.append(f"    {r['duration_ms']:>9.1f} ms  {what:<12}  {link}")
        for x in c.exemplars.get(e.key, []):
            link = trace_link(x["trace_id"], jaeger_url) + _kept(x)
            lines.append(f"    {x['ms']:>9.1f} ms  exemplar      {link}")
    return "\n".join(lines).rstrip()


def verdict_lines(c: Comparison) -> list[str]:
    """The gate's last lines: one per regressed endpoint, or one saying it passed."""
    if c.regressed:
        return [f"redline: REGRESSED {e.key}: {'; '.join(e.regressions)}" for e in c.regressed]
    judged = sum(e.judged for e in c.endpoints)
    allowed = ", ".join(a.text for a in c.allowances)
    return [f"redline: no regression beyond {allowed} on {judged} endpoint(s)"]
