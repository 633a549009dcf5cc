"""Panel constructors with the house defaults: a description, a unit, a readable legend.

Each returns a grafanalib panel; :func:`dashboards._grafana.place` positions it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grafanalib import core as g

Json = dict[str, Any]


def timeseries(
    title: str,
    description: str,
    targets: Sequence[Json],
    unit: str,
    *,
    stacked: bool = False,
    bars: bool = False,
    links: Json | None = None,
    max_value: int | None = None,
) -> Any:
    return g.TimeSeries(
        title=title,
        description=description,
        targets=list(targets),
        unit=unit,
        valueMin=0,
        valueMax=max_value,
        stacking={"mode": "normal", "group": "A"} if stacked else {},
        drawStyle="bars" if bars else "line",
        fillOpacity=30 if stacked or bars else 10,
        legendDisplayMode="table",
        legendPlacement="bottom",
        legendCalcs=["mean", "max", "lastNotNull"],
        tooltipMode="multi",
        tooltipSort="desc",
        extraJson=links,
    )


def stat(
    title: str,
    description: str,
    targets: Sequence[Json],
    unit: str,
    *,
    thresholds: Sequence[tuple[str, float | None]] = (("green", None),),
    decimals: int | None = None,
    links: Json | None = None,
    mappings: Sequence[Json] = (),
) -> Any:
    return g.Stat(
        title=title,
        description=description,
        targets=list(targets),
        format=unit,
        decimals=decimals,
        reduceCalc="lastNotNull",
        graphMode="area",
        colorMode="value",
        textMode="value_and_name",
        mappings=list(mappings),
        thresholds=[{"color": c, "value": v} for c, v in thresholds],
        extraJson=_merge(
            {"fieldConfig": {"defaults": {"thresholds": {"mode": "absolute"}}}}, links
        ),
    )


def state_timeline(
    title: str, description: str, targets: Sequence[Json], states: Sequence[tuple[int, str, str]]
) -> Any:
    """``states``: (value, text, colour) mappings, drawn as coloured bands."""
    mapping = {
        "type": "value",
        "options": {str(v): {"text": text, "color": colour} for v, text, colour in states},
    }
    return g.StateTimeline(
        title=title,
        description=description,
        targets=list(targets),
        mappings=[mapping],
        colorMode="fixed",
        mergeValues=True,
        showValue="auto",
        rowHeight=0.8,
        extraJson={"fieldConfig": {"defaults": {"unit": "none"}}},
    )


def heatmap(title: str, description: str, targets: Sequence[Json], unit: str) -> Any:
    """A latency heatmap over Prometheus buckets (``format: heatmap`` targets)."""
    return g.Heatmap(
        title=title,
        description=description,
        targets=list(targets),
        dataFormat="tsbuckets",
        hideZeroBuckets=True,
        # Grafana ≥ 9's heatmap reads "options"; grafanalib writes only the
        # Angular shape (finalize() drops it), which would be migrated with a
        # calculated, not bucket-based, y axis.
        extraJson={
            "options": {
                "calculate": False,
                "yAxis": {"unit": unit, "axisPlacement": "left"},
                "rowsFrame": {"layout": "le"},
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "cellGap": 1,
                "filterValues": {"le": 1e-9},
                "showValue": "never",
                "tooltip": {"show": True, "yHistogram": True},
                "legend": {"show": True},
                "exemplars": {"color": "rgba(120, 160, 255, 0.9)"},
            },
            "fieldConfig": {"defaults": {"unit": unit}},
        },
    )


def _merge(base: Json, extra: Json | None) -> Json:
    if not extra:
        return base
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
