"""Every panel query is PromQL over catalogued metrics, once its variables are expanded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from alerts.paths import all_rule_files
from alerts.promql import Catalog, recorded_series, selectors
from dashboards.queries import UnknownVariableError, expand, substitute, variable_queries
from tests.alerts.support import output, run, tool
from tests.dashboards.support import RICHEST_VALUES, Dashboard, generated

LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(recorded=recorded_series(all_rule_files()))


def _queries() -> list[tuple[str, str, str]]:
    return [
        (d["uid"], title, expr)
        for d in generated()
        for title, expr in expand(d, RICHEST_VALUES.get(d["uid"], {}))
    ]


@pytest.mark.parametrize("query", _queries(), ids=lambda q: f"{q[0]}:{q[1]}")
def test_panel_query_parses_and_reads_only_catalogued_metrics(
    query: tuple[str, str, str], catalog: Catalog
) -> None:
    _, _, expr = query
    assert catalog.problems(expr) == []


@pytest.mark.parametrize("dashboard", generated(), ids=lambda d: d["uid"])
def test_template_variables_query_catalogued_labels(dashboard: Dashboard, catalog: Catalog) -> None:
    for name, query in variable_queries(dashboard, RICHEST_VALUES.get(dashboard["uid"], {})):
        m = LABEL_VALUES.match(query)
        assert m, f"${name}: {query}"
        assert catalog.problems(m["selector"]) == []
        (metric,) = {s.name for s in selectors(m["selector"])}
        assert metric is not None
        assert m["label"] in catalog.series[metric].labels, f"${name}: {query}"


def test_every_dashboard_has_queries_to_check() -> None:
    per_dashboard = {
        d["uid"]: len(expand(d, RICHEST_VALUES.get(d["uid"], {}))) for d in generated()
    }
    assert all(n >= 5 for n in per_dashboard.values()), per_dashboard


# --- the expand() helper the live tests use ------------------------------------------

_DASHBOARD: Dashboard = {
    "templating": {
        "list": [
            {"name": "service", "type": "query", "query": "", "current": {"value": "gateway"}},
            {
                "name": "route",
                "type": "query",
                "query": "",
                "includeAll": True,
                "allValue": ".*",
                "current": {"value": ["$__all"]},
            },
        ]
    },
    "panels": [
        {"type": "row", "title": "Row", "panels": []},
        {
            "title": "Rate",
            "targets": [
                {
                    "expr": 'sum(rate(x{job="$service",http_route=~"${route}"}[$__rate_interval]))',
                    "legendFormat": "{{job}}",
                }
            ],
        },
        {
            "title": "Two",
            "targets": [
                {"expr": 'a{job="[[service]]"}', "legendFormat": "a"},
                {"expr": 'label_replace(b, "x", "$1", "y", "(.*)")', "legendFormat": "b"},
            ],
        },
    ],
}


def test_expand_substitutes_given_values_defaults_and_all() -> None:
    assert expand(_DASHBOARD, {"service": "orders"}, rate_interval="30s") == [
        ("Rate", 'sum(rate(x{job="orders",http_route=~".*"}[30s]))'),
        ("Two [a]", 'a{job="orders"}'),
        ("Two [b]", 'label_replace(b, "x", "$1", "y", "(.*)")'),
    ]
    assert expand(_DASHBOARD)[0][1].startswith('sum(rate(x{job="gateway"')


def test_expand_refuses_a_variable_the_dashboard_does_not_define() -> None:
    with pytest.raises(UnknownVariableError, match="instance"):
        substitute('up{instance="$instance"}', {"service": "x"})


def test_prometheus_own_parser_accepts_every_panel_query(tmp_path: Path) -> None:
    """promql-parser follows Prometheus 2.45; the Prometheus we run is 2.42: ask it too.

    Each expanded query becomes a recording rule, which `promtool check rules`
    parses with Prometheus' own parser.
    """
    queries = _queries()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (*_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", str(path))
    assert result.returncode == 0, output(result)
