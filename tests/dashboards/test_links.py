"""Dashboards link to each other, to traces and to logs, and every link resolves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.queries import panels
from tests.dashboards.support import Dashboard, generated

DASHBOARD_PATH = re.compile(r"^/d/(?P<uid>[a-z0-9-]+)(?:[/?&].*)?$")
PROVISIONED = Path(__file__).resolve().parents[2] / "telemetry/grafana/provisioning/datasources"


def _urls(d: Dashboard) -> Iterator[tuple[str, str]]:
    for link in d.get("links", []):
        yield "dashboard link " + link["title"], link["url"]
    for panel in panels(d):
        for link in panel.get("links", []):
            yield f"{panel['title']} panel link", link["url"]
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
            yield f"{panel['title']} data link", link["url"]


def _uids() -> set[str]:
    return {d["uid"] for d in generated()}


@pytest.mark.parametrize("dashboard", generated(), ids=lambda d: d["uid"])
def test_every_dashboard_link_names_a_dashboard_that_exists(dashboard: Dashboard) -> None:
    broken = []
    for where, url in _urls(dashboard):
        if url.startswith("/d/"):
            m = DASHBOARD_PATH.match(url)
            if m is None or m["uid"] not in _uids():
                broken.append(f"{where}: {url}")
        elif not url.startswith("/explore?"):
            broken.append(f"{where}: {url} is neither a dashboard nor Explore")
    assert not broken


@pytest.mark.parametrize("dashboard", generated(), ids=lambda d: d["uid"])
def test_every_dashboard_links_to_all_the_others_and_to_traces_and_logs(
    dashboard: Dashboard,
) -> None:
    linked = {m["uid"] for _, u in _urls(dashboard) if (m := DASHBOARD_PATH.match(u))}
    assert _uids() - {dashboard["uid"]} <= linked
    explore = [u for _, u in _urls(dashboard) if u.startswith("/explore?")]
    assert any("%22uid%22:%22jaeger%22" in u for u in explore)
    assert any("%22uid%22:%22loki%22" in u for u in explore)


def test_overview_series_link_to_their_service_detail() -> None:
    overview = next(d for d in generated() if d["uid"] == "redline-overview")
    urls = [u for where, u in _urls(overview) if "data link" in where]
    assert any(u.startswith("/d/redline-service?var-service=${__field.labels.job}") for u in urls)


def _provisioned_uids() -> set[str]:
    uids: set[str] = set()
    for path in PROVISIONED.glob("*.yml"):
        doc: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
        uids.update(ds["uid"] for ds in doc.get("datasources", []))
    return uids


def test_data_sources_named_by_dashboards_are_provisioned() -> None:
    """The uids are a contract with telemetry/grafana/provisioning (owned elsewhere)."""
    named: set[str] = set()
    for d in generated():
        for panel in panels(d):
            if "datasource" in panel:
                named.add(panel["datasource"]["uid"])
        for _, url in _urls(d):
            named.update(re.findall(r"%22uid%22:%22(\w+)%22", url))
    assert named == {"prometheus", "jaeger", "loki"}
    assert named <= _provisioned_uids()
