"""Thin typed wrappers over grafanalib, and the one place its output is corrected.

grafanalib 0.7.1 is the library of record but lags Grafana: its ``Target`` has
no ``exemplar`` flag, dashboards come out at ``schemaVersion`` 12, every panel
at ``maxDataPoints`` 100 (coarse graphs on a wide screen), Stat panels with
``thresholds.steps`` set to ``""``, and legacy keys Grafana ignores. Targets are
therefore plain dicts built by :func:`target`, and :func:`finalize` fixes up
every dashboard's JSON after grafanalib renders it. Nothing edits generated
JSON by hand.

What "correct" means is Grafana's own dashboard schema: the generated files
pass the strict decoder and ``Validate()`` of Grafana's Foundation SDK
(tests/stack_config/test_dashboard_schema.py). So :func:`finalize` also drops
the keys that schema does not have (``editable`` on panels, everything but
layout on rows, the tag fields of old template variables) and writes the
panel options it requires with the values Grafana fills in when they are
missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import attr
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from dashboards.links import PROMETHEUS

SCHEMA_VERSION = 39  # Grafana 10.4 / 11
Json = dict[str, Any]

# Panel keys grafanalib writes that Grafana ≥ 8 ignores or re-derives.
_LEGACY_PANEL_KEYS = (
    "span", "height", "minSpan", "error", "cacheTimeout", "maxDataPoints", "editable",
)  # fmt: skip
_LEGACY_DASHBOARD_KEYS = ("rows", "style", "sharedCrosshair", "hideControls", "gnetId", "__inputs")
_LEGACY_VARIABLE_KEYS = ("tagValuesQuery", "tagsQuery", "useTags")
# A row is layout only: the schema's RowPanel has these keys and no others.
_ROW_KEYS = frozenset({"type", "id", "title", "collapsed", "gridPos", "panels", "repeat"})
# Options the schema requires, with Grafana's own defaults for them.
_STAT_DEFAULTS = {
    "wideLayout": True,
    "showPercentChange": False,
    "percentChangeColorMode": "standard",
}
_HEATMAP_COLOR_DEFAULTS = {"fill": "dark-orange", "exponent": 0.5, "reverse": False}
_DEFAULT_STEPS = [{"color": "green", "value": None}]
# The Angular heatmap's settings; Grafana >= 9 reads "options" and ignores them.
_LEGACY_HEATMAP_KEYS = (
    "cards", "color", "dataFormat", "heatmap", "hideZeroBuckets", "highlightCards", "legend",
    "reverseYBuckets", "tooltip", "xAxis", "xBucketNumber", "xBucketSize", "yAxis",
    "yBucketBound", "yBucketNumber", "yBucketSize",
)  # fmt: skip


def target(
    expr: str,
    legend: str,
    *,
    exemplar: bool = False,
    instant: bool = False,
    fmt: str = "time_series",
) -> Json:
    """A Prometheus query. ``exemplar`` asks Prometheus for the trace ids on the buckets."""
    return {
        "datasource": PROMETHEUS,
        "expr": expr,
        "legendFormat": legend,
        "exemplar": exemplar,
        "instant": instant,
        "range": not instant,
        "format": fmt,
        "editorMode": "code",
    }


def field_links(*links: tuple[str, str]) -> Json:
    """Data links on every series of a panel: ``(title, url)`` pairs, for ``extraJson``."""
    return {"fieldConfig": {"defaults": {"links": [{"title": t, "url": u} for t, u in links]}}}


def render(dashboard: g.Dashboard) -> Json:
    """grafanalib → plain JSON dict → :func:`finalize`."""
    raw: Json = json.loads(
        json.dumps(dashboard.auto_panel_ids().to_json_data(), cls=DashboardEncoder)
    )
    return finalize(raw)


def finalize(d: Json) -> Json:
    """Correct grafanalib's output for current Grafana; applied to every dashboard."""
    d["schemaVersion"] = SCHEMA_VERSION
    for key in _LEGACY_DASHBOARD_KEYS:
        d.pop(key, None)
    d.get("timepicker", {}).pop("time_options", None)  # gone from Grafana's time picker
    for panel in iter_panels(d):
        _finalize_panel(panel)
    for var in d.get("templating", {}).get("list", []):
        for key in _LEGACY_VARIABLE_KEYS:
            var.pop(key, None)
        var.get("current", {}).pop("tags", None)
        if var.get("type") == "query":
            var["datasource"] = PROMETHEUS
            var["definition"] = var["query"]
        if var.get("current", {}).get("value") == "$__all":
            # grafanalib copies the default into both text and value.
            var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return d


def _finalize_panel(panel: Json) -> None:
    for key in _LEGACY_PANEL_KEYS:
        panel.pop(key, None)
    for key in [k for k, v in panel.items() if v is None]:
        del panel[key]
    if panel.get("type") == "row":
        for key in set(panel) - _ROW_KEYS:
            del panel[key]
        return
    _finalize_options(panel.get("type"), panel.get("options", {}))
    if panel.get("type") == "heatmap":
        for key in _LEGACY_HEATMAP_KEYS:
            panel.pop(key, None)
    panel["datasource"] = PROMETHEUS
    defaults = panel.setdefault("fieldConfig", {}).setdefault("defaults", {})
    _drop_nulls(defaults)  # unset options: Grafana applies its own defaults
    thresholds = defaults.get("thresholds")
    if thresholds is not None and not (
        isinstance(steps := thresholds.get("steps"), list) and steps
    ):
        thresholds["steps"] = list(_DEFAULT_STEPS)
    for i, t in enumerate(panel.get("targets", [])):
        t["refId"] = t.get("refId") or chr(ord("A") + i)


def _finalize_options(kind: str | None, options: Json) -> None:
    if kind == "stat":
        for key, value in _STAT_DEFAULTS.items():
            options.setdefault(key, value)
    legend = options.get("legend")
    if isinstance(legend, dict) and kind != "heatmap":
        legend.setdefault("showLegend", legend.get("displayMode") != "hidden")
        legend.setdefault("calcs", [])
    tooltip = options.get("tooltip")
    if not isinstance(tooltip, dict):
        return
    if kind == "heatmap":
        # The Angular heatmap's on/off became a mode.
        tooltip.setdefault("mode", "single" if tooltip.pop("show", True) else "none")
        for key, value in _HEATMAP_COLOR_DEFAULTS.items():
            options.get("color", {}).setdefault(key, value)
    else:
        tooltip.setdefault("sort", "none")


def _drop_nulls(obj: Json) -> None:
    for key, value in list(obj.items()):
        if value is None:
            del obj[key]
        elif isinstance(value, dict):
            _drop_nulls(value)


def iter_panels(d: Json) -> Iterator[Json]:
    """Every panel, rows and the panels collapsed inside them included."""
    for panel in d.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def place(sections: Sequence[tuple[str, Sequence[Any], int]], height: int = 8) -> list[Any]:
    """Lay out ``(row title, panels, panels per line)`` sections on Grafana's 24-column grid.

    grafanalib leaves placement to the caller (its legacy ``Row`` balancing
    predates gridPos); this puts each section under a row header, left to
    right, wrapping after ``per_line`` panels.
    """
    placed: list[Any] = []
    y = 0
    for title, panels, per_line in sections:
        placed.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=y)))
        y += 1
        width = 24 // per_line
        for i, panel in enumerate(panels):
            col, line = i % per_line, i // per_line
            pos = g.GridPos(h=height, w=width, x=col * width, y=y + line * height)
            placed.append(attr.evolve(panel, gridPos=pos))
        y += height * -(-len(panels) // per_line)
    return placed
