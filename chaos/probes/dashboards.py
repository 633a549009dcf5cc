"""Probes of dashboards: what a panel drew, from its own queries in ``dashboards/generated``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import httpx

from chaos.context import MARKS, Configuration, stack
from chaos.probes._common import matches

DASHBOARDS = Path(__file__).resolve().parent.parent.parent / "dashboards" / "generated"


def _panel(dashboard: str, title: str) -> dict[str, Any]:
    data = json.loads((DASHBOARDS / f"{dashboard}.json").read_text())
    for panel in data["panels"]:
        if panel.get("title") == title:
            found: dict[str, Any] = panel
            return found
    titles = [p.get("title") for p in data["panels"] if p.get("type") != "row"]
    raise KeyError(f"dashboard {dashboard} has no panel {title!r}; panels: {titles}")


def panel_shows(
    dashboard: str,
    panel: str,
    since_mark: str,
    variables: dict[str, str] | None = None,
    series: dict[str, str] | None = None,
    legend: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """What a dashboard panel drew since the mark: its own queries, run over that range.

    Template variables are filled in as a user would pick them (``variables``),
    ``$__rate_interval`` as Grafana would for a 1 s scrape. ``legend`` keeps
    the panel's queries whose legend contains it ("in flight", not the
    capacity line beside it); ``series`` the series whose labels match.
    ``max``/``min`` are over every point drawn.
    """
    spec = _panel(dashboard, panel)
    values = {"$__rate_interval": "5s", "$__interval": "1s", "$route": ".*"}
    values.update({f"${k}": v for k, v in (variables or {}).items()})
    start = MARKS.get(since_mark)
    end = time.time()
    points: list[float] = []
    drawn = 0
    for target in spec.get("targets", []):
        if legend is not None and legend not in target.get("legendFormat", ""):
            continue
        expr = target["expr"]
        for name in sorted(values, key=len, reverse=True):
            expr = expr.replace(name, values[name])
        r = httpx.get(
            f"{stack(configuration).prometheus}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": "1s"},
            timeout=10,
        )
        r.raise_for_status()
        for result in r.json()["data"]["result"]:
            if not matches(result["metric"], series or {}):
                continue
            drawn += 1
            points += [float(v) for _, v in result["values"] if not math.isnan(float(v))]
    return {
        "dashboard": dashboard,
        "panel": panel,
        "series": drawn,
        "points": len(points),
        "max": max(points) if points else None,
        "min": min(points) if points else None,
    }
