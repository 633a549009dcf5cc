"""The comparison as one static HTML page: the table, and each endpoint's latency distributions.

Per endpoint, the two runs' response-time distributions are drawn overlaid as
cumulative curves on a logarithmic time axis (baseline grey, current red),
with p50/p95/p99 marked: a shift shows as one curve to the right of the other,
a tail as curves parting only near the top. Inline SVG and CSS, no script and
nothing fetched from elsewhere, so the file opens anywhere, offline.
"""

from __future__ import annotations

import math
from html import escape

from loadtests.bootstrap import Histogram
from loadtests.compare_model import QUANTILES, Comparison, EndpointComparison, fmt_ms, fmt_pct
from loadtests.compare_report import trace_link

WIDTH, HEIGHT, PAD = 520, 220, 40
BASE_COLOUR, CUR_COLOUR = "#7a7a7a", "#d62728"


def _cdf_points(histogram: Histogram) -> list[tuple[float, float]]:
    n = sum(c for _, c in histogram)
    out, running = [], 0
    for value, count in histogram:
        out.append((value, running / n))
        running += count
        out.append((value, running / n))
    return out


def _svg(e: EndpointComparison) -> str:
    assert e.baseline is not None
    assert e.current is not None
    curves = [(e.baseline.histogram, BASE_COLOUR), (e.current.histogram, CUR_COLOUR)]
    values = [max(v, 0.5) for h, _ in curves for v, _ in h]
    if not values:
        return ""
    lo, hi = math.log10(min(values)), math.log10(max(values))
    if hi - lo < 0.5:
        lo, hi = lo - 0.25, hi + 0.25

    def x(ms: float) -> float:
        return PAD + (math.log10(max(ms, 0.5)) - lo) / (hi - lo) * (WIDTH - 2 * PAD)

    def y(p: float) -> float:
        return HEIGHT - PAD - p * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(e.key)}">',
        f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" '
        'fill="none" stroke="#ccc"/>',
    ]
    for decade in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            ms = m * 10.0**decade
            if lo <= math.log10(ms) <= hi:
                parts.append(
                    f'<line x1="{x(ms):.1f}" y1="{PAD}" x2="{x(ms):.1f}" y2="{HEIGHT - PAD}" '
                    f'stroke="#eee"/><text x="{x(ms):.1f}" y="{HEIGHT - PAD + 14}" '
                    f'font-size="10" text-anchor="middle">{fmt_ms(ms)}</text>'
                )
    for q in QUANTILES:
        parts.append(
            f'<line x1="{PAD}" y1="{y(q):.1f}" x2="{WIDTH - PAD}" y2="{y(q):.1f}" '
            f'stroke="#ddd" stroke-dasharray="3,3"/><text x="{PAD - 4}" y="{y(q) + 3:.1f}" '
            f'font-size="10" text-anchor="end">p{q * 100:g}</text>'
        )
    for histogram, colour in curves:
        points = " ".join(f"{x(v):.1f},{y(p):.1f}" for v, p in _cdf_points(histogram))
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        )
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle">'
        "response time, ms (log scale)</text></svg>"
    )
    return "".join(parts)


def _row(e: EndpointComparison) -> str:
    if e.baseline is None or e.current is None:
        return f"<tr><td>{escape(e.key)}</td><td colspan='5'>only in one run</td></tr>"
    cells = [
        f"{e.base_rate:.2f} → {e.cur_rate:.2f}",
        f"{e.errors.baseline:.2%} → {e.errors.current:.2%}" if e.errors else "",
    ]
    for q in QUANTILES:
        ch = e.quantiles[q]
        mark = ("▲" if ch.diff > 0 else "▼") if ch.beyond_noise else ""
        cls = ' class="worse"' if mark == "▲" else ' class="better"' if mark == "▼" else ""
        cells.append(
            f"<span{cls}>{fmt_ms(ch.baseline)} → {fmt_ms(ch.current)} "
            f"({fmt_pct(ch.relative)}) {mark}</span>"
            f"<br><small>[{ch.diff_low:+.1f} … {ch.diff_high:+.1f} ms]</small>"
        )
    flag = " regressed" if e.regressions else ""
    tds = "".join(f"<td>{c}</td>" for c in cells)
    return f'<tr class="{flag.strip()}"><td>{escape(e.key)}</td>{tds}</tr>'


def render_html(c: Comparison, jaeger_url: str = "") -> str:
    rows = "".join(_row(e) for e in c.endpoints)
    sections = []
    for e in c.endpoints:
        if e.baseline is None or e.current is None:
            continue
        reasons = "".join(f"<p class='worse'>{escape(r)}</p>" for r in e.regressions)
        traces = "".join(
            f"<li>{r['duration_ms']:.1f} ms {escape(str(r.get('status', '')))} "
            f"<code>{escape(trace_link(r['trace_id'], jaeger_url))}</code></li>"
            for r in c.traces.get(e.key, [])
        )
        sections.append(
            f"<section><h3>{escape(e.key)}</h3>{reasons}{_svg(e)}"
            + (f"<ul>{traces}</ul>" if traces else "")
            + "</section>"
        )
    head = "".join(f"<th>p{q * 100:g} ms</th>" for q in QUANTILES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>redline load compare</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px; }}
.worse {{ color: {CUR_COLOUR}; font-weight: bold; }} .better {{ color: #2a7; }}
tr.regressed td:first-child {{ background: #fde; }}
section {{ display: inline-block; vertical-align: top; margin: 1em 1em 0 0; }}
.key span {{ display: inline-block; width: 1em; height: 3px; vertical-align: middle; }}
</style></head><body>
<h1>Load test comparison</h1>
<p>Baseline <code>{escape(str(c.baseline.source))}</code> ({c.baseline.seconds:.0f} s) →
current <code>{escape(str(c.current.source))}</code> ({c.current.seconds:.0f} s).
Bootstrap {c.confidence:.0%} intervals of each change ({c.resamples} resamples, seed {c.seed});
▲/▼: worse/better beyond noise.</p>
<table><tr><th>endpoint</th><th>rate /s</th><th>errors</th>{head}</tr>{rows}</table>
<h2>Latency distributions</h2>
<p class="key"><span style="background:{BASE_COLOUR}"></span> baseline
<span style="background:{CUR_COLOUR}"></span> current (cumulative share of requests)</p>
{"".join(sections)}
</body></html>
"""
