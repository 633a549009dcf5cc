"""Every panel explains itself: a title, a description, a unit, readable legends."""

from __future__ import annotations

import pytest

from alerts.promql import selectors
from dashboards.queries import substitute, variable_values
from tests.dashboards.support import Dashboard, Panel, all_panels, generated, panel_id

PANELS = all_panels()
NUMERIC = {"timeseries", "stat", "heatmap", "gauge", "bargauge"}


def _unit(panel: Panel) -> str:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    return str(unit or panel.get("options", {}).get("yAxis", {}).get("unit", ""))


@pytest.mark.parametrize("item", PANELS, ids=panel_id)
def test_panel_has_a_title_and_a_description(item: tuple[str, Panel]) -> None:
    _, panel = item
    assert panel.get("title", "").strip()
    assert len(panel.get("description", "")) >= 30, "say what the panel shows and why"


@pytest.mark.parametrize("item", PANELS, ids=panel_id)
def test_numeric_panel_has_a_unit(item: tuple[str, Panel]) -> None:
    _, panel = item
    if panel["type"] in NUMERIC:
        assert _unit(panel), "set the unit (s, percentunit, reqps, bytes, short, ...)"


@pytest.mark.parametrize("item", PANELS, ids=panel_id)
def test_every_query_has_a_legend_naming_its_series(item: tuple[str, Panel]) -> None:
    _, panel = item
    assert panel["targets"], "a panel without a query shows nothing"
    for target in panel["targets"]:
        legend = target.get("legendFormat", "")
        assert legend, "a legend, not a raw label dump"
        assert legend != "__auto"


@pytest.mark.parametrize("item", PANELS, ids=panel_id)
def test_panel_and_queries_use_the_prometheus_data_source(item: tuple[str, Panel]) -> None:
    _, panel = item
    assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    assert all(t["datasource"]["uid"] == "prometheus" for t in panel["targets"])


def test_queries_over_histogram_buckets_ask_for_exemplars() -> None:
    """Exemplars hang off bucket series: a bucket query without the flag hides them."""
    missing = []
    for d in generated():
        values = variable_values(d, {})
        for uid, panel in ((d["uid"], p) for p in d["panels"] if p.get("targets")):
            for target in panel["targets"]:
                names = {s.name for s in selectors(substitute(target["expr"], values))}
                # Span metrics carry no exemplars on purpose (otelcol.yaml: they
                # would name traces the tail sampler drops).
                reads_buckets = any(
                    n and n.endswith("_bucket") and not n.startswith("traces_span_metrics_")
                    for n in names
                )
                if reads_buckets and not target.get("exemplar"):
                    missing.append(f"{uid}:{panel['title']}")
    assert not missing


def test_service_latency_panels_have_exemplars() -> None:
    service = next(d for d in generated() if d["uid"] == "redline-service")
    latency = [
        p for p in service["panels"] if "atency" in p.get("title", "") and p["type"] != "row"
    ]
    assert len(latency) >= 3
    assert all(t["exemplar"] for p in latency for t in p["targets"])


@pytest.mark.parametrize("dashboard", generated(), ids=lambda d: d["uid"])
def test_panels_fit_the_grid_without_overlapping(dashboard: Dashboard) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_panel_ids_are_unique_per_dashboard() -> None:
    for d in generated():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), d["uid"]
