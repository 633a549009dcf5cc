"""Grafana provisioning: the data source uids the dashboards rely on, and the links between signals."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from telemetry.grafana import config as grafana
from tests.stack_config.stack import (
    DASHBOARDS_DIR,
    GRAFANA_PROVISIONING,
    REPO,
    datasource_refs,
    endpoint_problems,
    environment,
    host_path,
    unescaped_macros,
    unknown_datasource_refs,
)

# The contract with the dashboards (issue 6): these uids, exactly.
EXPECTED_UIDS = {
    "prometheus": "prometheus",
    "jaeger": "jaeger",
    "loki": "loki",
    "alertmanager": "alertmanager",
}
DATASOURCE_FILES = sorted((GRAFANA_PROVISIONING / "datasources").glob("*.yml"))
PROVIDER_FILES = sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.yml"))


def as_compose_runs_it(path: Path, services: dict[str, Any]) -> Any:
    """A provisioning file with its ${NAME}s as the compose grafana service sets them."""
    return yaml.safe_load(grafana.substitute(path.read_text(), environment(services["grafana"])))


@pytest.fixture(scope="module")
def datasources(services: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in DATASOURCE_FILES:
        found += as_compose_runs_it(path, services)["datasources"]
    return found


# What `redline up` fills in (redline/stack.py): everything but Loki, which it does not run.
NATIVE = {
    "PROMETHEUS_URL": "http://127.0.0.1:9090",
    "PROMETHEUS_SCRAPE_INTERVAL": "2s",
    "JAEGER_URL": "http://127.0.0.1:16686",
    "ALERTMANAGER_URL": "http://127.0.0.1:9093",
    "REDLINE_DASHBOARDS_DIR": str(DASHBOARDS_DIR),
}


@pytest.mark.parametrize("path", DATASOURCE_FILES + PROVIDER_FILES, ids=lambda p: p.name)
def test_compose_sets_every_variable_the_provisioning_files_use(
    path: Path, services: dict[str, Any]
) -> None:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)\}", text))
    assert used, "each file names at least one value that differs between the stacks"
    assert used <= set(environment(services["grafana"]))
    assert set(NATIVE) | {"LOKI_URL"} >= used


def test_the_native_stack_gets_the_same_datasources_but_loki_and_its_links() -> None:
    rendered = yaml.safe_load(grafana.render(grafana.DATASOURCES, NATIVE))
    sources = by_uid(rendered["datasources"])
    assert set(sources) == set(EXPECTED_UIDS) - {"loki"}
    assert sources["prometheus"]["url"] == NATIVE["PROMETHEUS_URL"]
    assert sources["prometheus"]["jsonData"]["timeInterval"] == "2s"
    refs = [ref for ds in sources.values() for _, ref in datasource_refs(ds)]
    assert "jaeger" in refs
    assert "loki" not in refs
    assert "tracesToMetrics" in sources["jaeger"]["jsonData"]
    # Grafana still expands the rendered file: its own macros stay escaped.
    assert "$$__tags" in grafana.render(grafana.DATASOURCES, NATIVE)


def test_the_native_stack_reads_the_dashboards_from_the_repository() -> None:
    rendered = yaml.safe_load(grafana.render(grafana.DASHBOARD_PROVIDERS, NATIVE))
    (provider,) = rendered["providers"]
    assert provider["options"]["path"] == str(DASHBOARDS_DIR)


def test_substitution_leaves_escaped_and_unknown_names_to_grafana() -> None:
    text = "a: ${KNOWN} b: $${KNOWN} c: ${UNKNOWN} d: $${__value.raw}"
    assert grafana.substitute(text, {"KNOWN": "x"}) == (
        "a: x b: $${KNOWN} c: ${UNKNOWN} d: $${__value.raw}"
    )


def by_uid(datasources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in datasources}


def test_datasources_have_the_uids_the_dashboards_use_each_once(
    datasources: list[dict[str, Any]],
) -> None:
    uids = [ds["uid"] for ds in datasources]
    assert len(uids) == len(set(uids))
    assert {ds["uid"]: ds["type"] for ds in datasources} == EXPECTED_UIDS
    assert [ds["uid"] for ds in datasources if ds.get("isDefault")] == ["prometheus"]


def test_every_link_between_datasources_names_a_provisioned_uid(
    datasources: list[dict[str, Any]],
) -> None:
    links = [(ds["uid"], where, ref) for ds in datasources for where, ref in datasource_refs(ds)]
    assert links, "no links at all"
    assert [(uid, w, r) for uid, w, r in links if r not in EXPECTED_UIDS] == []


def test_prometheus_exemplars_open_the_trace_in_jaeger(
    datasources: list[dict[str, Any]],
) -> None:
    destinations = by_uid(datasources)["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # The services' exemplars carry the trace id as trace_id (telemetry/_metrics.py).
    assert {"name": "trace_id", "datasourceUid": "jaeger"}.items() <= destinations[0].items()


def test_jaeger_traces_open_their_logs_in_loki_by_trace_id(
    datasources: list[dict[str, Any]],
) -> None:
    to_logs = by_uid(datasources)["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki"
    assert to_logs["customQuery"] is True
    # $$ is Grafana's escape of $ in provisioning files.
    assert "$${__trace.traceId}" in to_logs["query"]
    assert "service_name" in to_logs["query"]  # the label Loki makes of service.name


def test_loki_lines_open_their_trace_in_jaeger_by_trace_id(
    datasources: list[dict[str, Any]],
) -> None:
    (field,) = by_uid(datasources)["loki"]["jsonData"]["derivedFields"]
    assert field["datasourceUid"] == "jaeger"
    assert field["url"] == "$${__value.raw}"
    line = json.dumps(
        {
            "event": "request finished",
            "level": "info",
            "service": "gateway",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
        }
    )
    match = re.search(field["matcherRegex"], line)
    assert match is not None
    assert match.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert re.search(field["matcherRegex"], '{"trace_id": null}') is None


@pytest.mark.parametrize("path", DATASOURCE_FILES + PROVIDER_FILES, ids=lambda p: p.name)
def test_grafana_macros_are_escaped_from_environment_expansion(path: Path) -> None:
    assert unescaped_macros(path.read_text()) == []


def test_macro_check_finds_an_unescaped_macro() -> None:
    assert unescaped_macros("url: '${__value.raw}' ok: '$${__value.raw}' q: {$__tags}") == [
        "${__value.raw}",
        "$__tags",
    ]


def test_every_datasource_url_is_a_compose_service_port(
    datasources: list[dict[str, Any]], compose: dict[str, Any]
) -> None:
    assert endpoint_problems(datasources, own="grafana", compose=compose) == []


def test_compose_mounts_the_provisioning_directory(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning") == GRAFANA_PROVISIONING


def test_dashboard_provider_reads_the_generated_dashboards_mounted_from_the_repo(
    services: dict[str, Any],
) -> None:
    (provider,) = [
        p for path in PROVIDER_FILES for p in as_compose_runs_it(path, services)["providers"]
    ]
    assert provider["type"] == "file"
    assert host_path(services["grafana"], provider["options"]["path"]) == DASHBOARDS_DIR
    assert DASHBOARDS_DIR.parent == REPO / "dashboards"


def test_every_datasource_a_generated_dashboard_uses_is_provisioned(
    datasources: list[dict[str, Any]],
) -> None:
    # No dashboards generated yet passes; one unknown uid in any of them fails.
    uids = {ds["uid"] for ds in datasources}
    names = {ds["name"] for ds in datasources}
    problems = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        problems += [
            f"{path.name}: {p}" for p in unknown_datasource_refs(dashboard, uids=uids, names=names)
        ]
    assert problems == []


def test_dashboard_check_flags_unknown_uids_and_accepts_variables_and_builtins() -> None:
    dashboard = {
        "panels": [
            {"datasource": {"type": "prometheus", "uid": "prometheus"}},
            {"datasource": {"type": "tempo", "uid": "tempo"}},
            {"datasource": "${datasource}"},
            {"datasource": "-- Grafana --"},
            {"datasource": {"type": "prometheus"}},
            {
                "targets": [{"datasource": {"uid": "Prom"}}],
                "links": [{"internal": {"datasourceUid": "jaegr"}}],
            },
        ],
        "templating": {"list": [{"type": "datasource", "query": "prometheus"}]},
    }
    problems = unknown_datasource_refs(dashboard, uids=set(EXPECTED_UIDS), names={"Prometheus"})
    assert problems == [
        "panels[1].datasource: data source 'tempo' is not provisioned",
        "panels[5].targets[0].datasource: data source 'Prom' is not provisioned",
        "panels[5].links[0].internal.datasourceUid: data source 'jaegr' is not provisioned",
    ]
