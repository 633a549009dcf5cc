"""Every rule reads metrics the platform exports, by labels they have.

The catalog (alerts/metrics_catalog.yaml) is checked both ways it can be
without running a service: every metric the code registers at import is in
it, and every selector in every rule is satisfied by it.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from alerts.paths import all_rule_files
from alerts.promql import Catalog, recorded_series, selectors
from tests.alerts.support import rules


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(recorded=recorded_series(all_rule_files()))


def _rule_id(rule: dict[str, object]) -> str:
    return str(rule.get("alert") or rule.get("record"))


@pytest.mark.parametrize("rule", rules(), ids=_rule_id)
def test_rule_reads_only_catalogued_metrics(rule: dict[str, str], catalog: Catalog) -> None:
    assert catalog.problems(rule["expr"]) == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(http_requests_total[5m])", "http_requests_total is not in the metrics catalog"),
        (
            'http_server_active_requests{http_route="/x"}',
            "http_server_active_requests has no label(s) http_route",
        ),
        ('orders_in_flight{job="payments"}', 'orders_in_flight is not exported by job="payments"'),
        ('{__name__=~"http_.*"}', "a selector without a literal metric name cannot be checked"),
        ("sum(rate(up[5m]", "does not parse"),
    ],
)
def test_checker_reports_what_is_wrong(catalog: Catalog, expr: str, problem: str) -> None:
    found = catalog.problems(expr)
    assert len(found) == 1
    assert found[0].startswith(problem)


def test_checker_finds_selectors_inside_functions_and_subqueries() -> None:
    expr = (
        'label_replace(max_over_time(up{job="a"}[5m:1m]), "x", "y", "", "")'
        " and on (job) histogram_quantile(0.9, rate(foo_bucket[1m]))"
    )
    assert [s.name for s in selectors(expr)] == ["up", "foo_bucket"]


def test_histogram_buckets_have_le_and_counters_their_total_suffix(catalog: Catalog) -> None:
    assert "le" in catalog.series["http_server_request_duration_seconds_bucket"].labels
    assert "le" not in catalog.series["http_server_request_duration_seconds_count"].labels
    assert "payments_total" in catalog.series
    assert "saga_compensations_total" in catalog.series


def _exposed_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def test_catalog_lists_every_metric_the_code_registers(catalog: Catalog) -> None:
    """What exists at import: the telemetry library, the resilience exporter, payments."""
    import services.chassis.resilience._prometheus as resilience_metrics
    import services.payments.store  # noqa: F401  (registers payments_* on import)
    from telemetry import REGISTRY

    resilience_metrics.install(REGISTRY)
    missing = sorted(_exposed_names(REGISTRY) - set(catalog.series))
    assert not missing, f"add to alerts/metrics_catalog.yaml: {missing}"
