"""The OpenTelemetry Collector, Jaeger and Loki configs: wired completely, pointing at real ports.

The Collector's and Jaeger's configs serve compose and `redline up` alike: each
``${env:NAME:-default}`` defaults to compose's value. These checks read them as
compose runs them, the references resolved with the compose service's
environment; test_real_programs.py loads the same files with the real binaries.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.stack_config.stack import (
    COLLECTOR_CONFIG,
    JAEGER_CONFIG,
    LOKI_CONFIG,
    endpoint_problems,
    env_references,
    environment,
    host_path,
    load_config,
    load_yaml,
    pipeline_problems,
    resolve_env,
)

COLLECTOR = "otel-collector"


@pytest.fixture(scope="module")
def collector(services: dict[str, Any]) -> dict[str, Any]:
    config = load_config(COLLECTOR_CONFIG, environment(services[COLLECTOR]))
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def jaeger(services: dict[str, Any]) -> dict[str, Any]:
    config = load_config(JAEGER_CONFIG, environment(services["jaeger"]))
    assert isinstance(config, dict)
    return config


# ---------------------------------------------------------- ${env:...}
@pytest.mark.parametrize("path", [COLLECTOR_CONFIG, JAEGER_CONFIG], ids=lambda p: p.parent.name)
def test_every_env_reference_has_a_default_so_compose_needs_no_environment(path: Any) -> None:
    references = env_references(load_yaml(path))
    assert references, "the config is meant to be parameterised"
    assert {name for name, default in references.items() if default is None} == set()


def test_env_resolution_types_whole_references_and_splices_partial_ones() -> None:
    raw = {
        "port": "${env:P:-8888}",
        "endpoint": "${env:HOST:-0.0.0.0}:${env:P:-8888}",
        "escaped": "$${env:P}",
        "list": ["${env:GLOB:-/var/*.log}"],
    }
    assert resolve_env(raw, {}) == {
        "port": 8888,
        "endpoint": "0.0.0.0:8888",
        "escaped": "$${env:P}",
        "list": ["/var/*.log"],
    }
    assert resolve_env(raw, {"P": "4317", "HOST": "127.0.0.1"})["endpoint"] == "127.0.0.1:4317"
    with pytest.raises(KeyError, match="UNSET"):
        resolve_env("${env:UNSET}", {})


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    result = config["service"]["pipelines"]
    assert isinstance(result, dict)
    return result


def kind(component_id: str) -> str:
    return component_id.split("/")[0]


# ---------------------------------------------------------------- collector
# The logs pipeline's exporter is chosen by ${env:OTELCOL_LOGS_EXPORTER}:
# Loki's OTLP endpoint in compose, debug/logs natively when no log store is
# named (redline/stack.py). The Collector ignores a component no pipeline uses.
LOGS_EXPORTERS = {"compose": "otlp_http/logs", "native": "debug/logs"}


def test_collector_pipelines_use_only_defined_components_and_all_of_them(
    collector: dict[str, Any],
) -> None:
    assert pipeline_problems(collector) == [
        f"exporters.{LOGS_EXPORTERS['native']} is defined but never used"
    ]
    native = load_config(COLLECTOR_CONFIG, {"OTELCOL_LOGS_EXPORTER": LOGS_EXPORTERS["native"]})
    assert pipeline_problems(native) == [
        f"exporters.{LOGS_EXPORTERS['compose']} is defined but never used"
    ]


def test_pipeline_check_reports_undefined_missing_and_unused_components() -> None:
    broken = {
        "receivers": {"otlp": {}, "file_log": {}},
        "processors": {"batch": {}},
        "exporters": {"debug": {}},
        "connectors": {"span_metrics": {}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger"]},
                "logs": {"receivers": ["otlp"], "exporters": []},
                "metrics": {"receivers": ["span_metrics"], "exporters": ["debug"]},
            },
        },
    }
    problems = "\n".join(pipeline_problems(broken))
    assert "exporter jaeger is not defined" in problems
    assert "pipeline logs: no exporters" in problems
    assert "service.extensions: health_check is not defined" in problems
    assert "connector span_metrics: must be an exporter" in problems
    assert "receivers.file_log is defined but never used" in problems


def test_every_pipeline_limits_memory_first_and_batches(collector: dict[str, Any]) -> None:
    for name, spec in pipelines(collector).items():
        processors = spec.get("processors", [])
        assert processors[:1] == ["memory_limiter"], name
        assert "batch" in processors, name


def test_traces_go_to_jaeger_and_become_span_metrics_for_prometheus(
    collector: dict[str, Any],
) -> None:
    lines = pipelines(collector)
    assert lines["traces"]["receivers"] == ["otlp"]
    assert set(lines["traces"]["exporters"]) == {"otlp_grpc/jaeger", "span_metrics"}
    assert collector["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "jaeger:4317"
    metrics = [spec for name, spec in lines.items() if kind(name) == "metrics"]
    assert any(
        spec["receivers"] == ["span_metrics"] and spec["exporters"] == ["prometheus/spanmetrics"]
        for spec in metrics
    )
    # Jaeger's Monitor tab queries traces_span_metrics_*, i.e. this namespace.
    assert collector["connectors"]["span_metrics"]["namespace"] == "traces.span.metrics"


def test_logs_from_docker_files_and_otlp_go_to_lokis_otlp_endpoint(
    collector: dict[str, Any],
) -> None:
    logs = pipelines(collector)["logs"]
    assert set(logs["receivers"]) == {"otlp", "file_log"}
    assert logs["exporters"] == [LOGS_EXPORTERS["compose"]]
    assert collector["exporters"]["otlp_http/logs"]["endpoint"] == "http://loki:3100/otlp"


def test_file_log_reads_the_container_logs_that_compose_mounts(
    collector: dict[str, Any], services: dict[str, Any]
) -> None:
    (pattern,) = collector["receivers"]["file_log"]["include"]
    mounted = host_path(services[COLLECTOR], pattern.split("*")[0])
    assert mounted is not None
    assert str(mounted).startswith("/var/lib/docker/containers")
    assert services[COLLECTOR]["user"] == "0:0"  # the files are root's, mode 0640
    for name, svc in services.items():
        if svc.get("image") == "redline:dev":
            assert svc["logging"]["driver"] == "json-file", name


def test_file_log_promotes_trace_context_service_and_level_of_the_json_lines(
    collector: dict[str, Any],
) -> None:
    operators = {op["type"]: op for op in collector["receivers"]["file_log"]["operators"]}
    assert operators["container"]["format"] == "docker"
    assert operators["json_parser"]["parse_from"] == "body"
    trace = operators["trace_parser"]
    assert trace["trace_id"]["parse_from"].endswith(".trace_id")
    assert trace["span_id"]["parse_from"].endswith(".span_id")
    assert operators["severity_parser"]["parse_from"].endswith(".level")
    moves = {op["to"] for op in collector["receivers"]["file_log"]["operators"] if "to" in op}
    assert 'resource["service.name"]' in moves


def test_collector_uses_the_current_component_names_of_the_pinned_release(
    collector: dict[str, Any],
) -> None:
    # contrib 0.144-0.157 renamed these; the old names only log deprecation warnings.
    deprecated = {"otlphttp", "filelog", "spanmetrics"}
    used = {
        kind(c) for section in ("receivers", "exporters", "connectors") for c in collector[section]
    }
    assert used.isdisjoint(deprecated)
    assert "otlp" not in {kind(c) for c in collector["exporters"]}  # now otlp_grpc


def test_every_collector_endpoint_is_a_compose_service_port(
    collector: dict[str, Any], compose: dict[str, Any]
) -> None:
    assert endpoint_problems(collector, own=COLLECTOR, compose=compose) == []


def test_collector_own_and_span_metrics_are_scraped_by_prometheus(
    collector: dict[str, Any],
) -> None:
    from tests.stack_config.stack import PROMETHEUS_DOCKER_CONFIG

    targets = {
        t
        for job in load_yaml(PROMETHEUS_DOCKER_CONFIG)["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    }
    (reader,) = collector["service"]["telemetry"]["metrics"]["readers"]
    own_port = reader["pull"]["exporter"]["prometheus"]["port"]
    span_port = int(collector["exporters"]["prometheus/spanmetrics"]["endpoint"].split(":")[1])
    assert {f"{COLLECTOR}:{own_port}", f"{COLLECTOR}:{span_port}"} <= targets


def test_compose_runs_the_collector_with_this_config(services: dict[str, Any]) -> None:
    svc = services[COLLECTOR]
    (flag,) = [a for a in svc["command"] if a.startswith("--config=")]
    assert host_path(svc, flag.split("=", 1)[1]) == COLLECTOR_CONFIG


# ---------------------------------------------------------------- jaeger
def test_jaeger_pipeline_and_extensions_are_complete(jaeger: dict[str, Any]) -> None:
    # jaeger_storage_exporter and the jaeger_* extensions are Jaeger's own components.
    assert pipeline_problems(jaeger) == []


def test_jaeger_stores_traces_and_reads_span_metrics_from_prometheus(
    jaeger: dict[str, Any],
) -> None:
    storage = jaeger["extensions"]["jaeger_storage"]
    query = jaeger["extensions"]["jaeger_query"]["storage"]
    assert query["traces"] in storage["backends"]
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] == query["traces"]
    spm = storage["metric_backends"][query["metrics"]]["prometheus"]
    assert spm["endpoint"] == "http://prometheus:9090"
    assert spm["normalize_calls"] is True
    assert spm["normalize_duration"] is True


def test_every_jaeger_endpoint_is_a_compose_service_port(
    jaeger: dict[str, Any], compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert endpoint_problems(jaeger, own="jaeger", compose=compose) == []
    command = services["jaeger"]["command"]
    assert host_path(services["jaeger"], command[command.index("--config") + 1]) == JAEGER_CONFIG


# ---------------------------------------------------------------- loki
def test_loki_listens_where_the_collector_and_grafana_send_and_keeps_metadata(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    loki = load_yaml(LOKI_CONFIG)
    assert loki["server"]["http_listen_port"] == 3100
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert any(c["schema"] == "v13" for c in loki["schema_config"]["configs"])
    assert endpoint_problems(loki, own="loki", compose=compose) == []
    (flag,) = services["loki"]["command"]
    assert host_path(services["loki"], flag.split("=", 1)[1]) == LOKI_CONFIG
    # Loki's files live under the path prefix, which is the data volume.
    prefix = loki["common"]["path_prefix"]
    assert any(re.fullmatch(rf"[\w-]+:{prefix}", str(v)) for v in services["loki"]["volumes"])
