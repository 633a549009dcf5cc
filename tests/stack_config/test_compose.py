"""docker-compose.yml: valid, pinned, in dependency order, and agreeing with the topology."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped, unused-ignore]  # types-jsonschema
import pytest

from services.topology import SERVICES, start_order, start_waves
from tests.stack_config.stack import (
    COMPOSE_FILE,
    POSTGRES_INIT,
    REPO,
    bind_source,
    depends_on,
    endpoint_problems,
    environment,
    host_path,
    image_pin_problems,
    listening_ports,
    load_yaml,
    mounts,
    require_repo_file,
    tool,
)

SCHEMA_FILE = Path(__file__).parent / "compose_spec" / "compose-spec.json"
COLLECTOR = "otel-collector"
REDLINE_IMAGE = "redline:dev"


def schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# ------------------------------------------------------------------ validity
def test_compose_file_follows_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_schema_check_rejects_an_unknown_depends_on_condition() -> None:
    broken = {
        "services": {
            "a": {"image": "busybox:1.37", "depends_on": {"b": {"condition": "healthy"}}},
            "b": {"image": "busybox:1.37"},
        }
    }
    assert any("healthy" in error for error in schema_errors(broken))


def test_docker_compose_config_accepts_the_file_without_a_daemon(tmp_path: Path) -> None:
    # Debian's docker-compose (1.29) resolves the file, its anchors, build
    # contexts and profiles without talking to a Docker engine.
    result = subprocess.run(
        [tool("docker-compose"), "--file", str(COMPOSE_FILE), "--profile", "load", "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "REDLINE_JWT_SECRET": "s" * 48},
    )
    assert result.returncode == 0, result.stderr
    assert "locust:" in result.stdout  # the profile's service was resolved too


# ------------------------------------------------------------------ images
def test_every_pulled_image_is_pinned_to_a_version(services: dict[str, Any]) -> None:
    assert image_pin_problems(services) == []


def test_pin_check_rejects_latest_and_untagged_images() -> None:
    problems = image_pin_problems(
        {
            "a": {"image": "grafana/grafana:latest"},
            "b": {"image": "grafana/loki"},
            "c": {"image": "localhost:5000/loki"},
            "d": {"image": "prom/prometheus:v3.14.0"},
            "e": {"build": ".", "image": "redline:dev"},
        }
    )
    assert [p.split(":")[0] for p in problems] == ["a", "b", "c"]


def test_the_five_services_share_one_image_built_from_the_dockerfile(
    services: dict[str, Any],
) -> None:
    built = {name for name, svc in services.items() if "build" in svc}
    for name in built:
        build = services[name]["build"]
        assert (REPO / build["context"] / build["dockerfile"]).is_file()
    from_root = {name for name in built if services[name]["build"]["context"] == "."}
    assert set(SERVICES) <= from_root
    assert {services[name]["image"] for name in from_root} == {REDLINE_IMAGE}
    # The only other image built here is the Collector distribution.
    assert built - from_root == {COLLECTOR}


# --------------------------------------------------------------- topology
@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_runs_its_module_on_its_topology_port(
    services: dict[str, Any], compose: dict[str, Any], name: str
) -> None:
    svc = services[name]
    info = SERVICES[name]
    assert svc["command"] == ["python", "-m", f"services.{name}"]
    assert environment(svc)["REDLINE_PORT"] == str(info.port)
    assert environment(svc)["REDLINE_HOST"] == "0.0.0.0"
    assert info.port in listening_ports(compose, name)


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_finds_the_services_it_calls_and_starts_after_they_are_ready(
    services: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    deps = depends_on(services[name])
    for callee in SERVICES[name].calls:
        info = SERVICES[callee]
        assert env[info.url_variable] == f"http://{callee}:{info.port}"
        assert deps.get(callee) == "service_healthy", f"{name} must wait for {callee}"
    # and no URL of a service it does not call
    called = {SERVICES[c].url_variable for c in SERVICES[name].calls}
    assert {k for k in env if re.fullmatch(r"REDLINE_[A-Z]+_URL", k)} == called


def test_start_order_of_the_compose_graph_agrees_with_the_topology(
    services: dict[str, Any],
) -> None:
    order = start_order()
    for name in SERVICES:
        for dep in depends_on(services[name]):
            if dep in SERVICES:
                assert order.index(dep) < order.index(name)


def test_each_start_wave_calls_only_earlier_waves_and_starts_as_soon_as_it_can() -> None:
    waves = start_waves()
    assert sorted(n for wave in waves for n in wave) == sorted(SERVICES)
    for k, wave in enumerate(waves):
        earlier = {n for w in waves[:k] for n in w}
        for name in wave:
            assert set(SERVICES[name].calls) <= earlier, name
            # Not a wave later than needed: it calls something of the wave just before.
            assert k == 0 or set(SERVICES[name].calls) & set(waves[k - 1]), name
    assert waves[0] == ["accounts", "inventory", "payments", "notifications"]
    assert waves[-1] == ["gateway"]


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_with_a_database_gets_its_own_and_waits_for_postgres(
    services: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    if not SERVICES[name].has_database:
        assert "DATABASE_URL" not in env
        return
    url = urlsplit(env["DATABASE_URL"])
    assert url.scheme == "postgresql"
    assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/redline_{name}")
    assert depends_on(services[name])["postgres"] == "service_healthy"


def test_postgres_init_script_creates_exactly_the_service_databases(
    services: dict[str, Any],
) -> None:
    created = set(re.findall(r"CREATE DATABASE (\w+);", POSTGRES_INIT.read_text()))
    assert created == {f"redline_{n}" for n, info in SERVICES.items() if info.has_database}
    # ... and the postgres container runs it at init
    sources = {bind_source(m.source) for m in mounts(services["postgres"]) if m.bind}
    assert POSTGRES_INIT in sources


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_exports_traces_to_the_collectors_otlp_http_receiver(
    services: dict[str, Any], compose: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == COLLECTOR
    assert endpoint.port == 4318
    assert 4318 in listening_ports(compose, COLLECTOR)
    assert COLLECTOR in depends_on(services[name])


def test_every_url_in_the_compose_file_names_a_service_and_a_port_it_listens_on(
    compose: dict[str, Any],
) -> None:
    problems = []
    for name, svc in compose["services"].items():
        problems += endpoint_problems(
            {
                "environment": environment(svc),
                "command": svc.get("command", []),
                "healthcheck": svc.get("healthcheck", {}),
            },
            own=name,
            compose=compose,
        )
    assert problems == []


def test_endpoint_check_reports_unknown_hosts_and_ports(compose: dict[str, Any]) -> None:
    problems = endpoint_problems(
        {"a": "http://tempo:3200", "b": "gateway:9999", "c": "0.0.0.0:8000"},
        own="gateway",
        compose=compose,
    )
    assert len(problems) == 2
    assert "tempo" in problems[0]
    assert "9999" in problems[1]


# ------------------------------------------------------- health and order
def _image_has_healthcheck(service: dict[str, Any]) -> bool:
    """The Redline image's own HEALTHCHECK (its Dockerfile at the repository root)."""
    return service.get("image") == REDLINE_IMAGE and (
        "\nHEALTHCHECK " in (REPO / "Dockerfile").read_text()
    )


def test_everything_waited_for_as_healthy_has_a_health_check(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, condition in depends_on(svc).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if condition == "service_healthy":
                target = services[dep]
                has_check = "healthcheck" in target or _image_has_healthcheck(target)
                assert has_check, f"{name} waits for {dep} to be healthy; it has no check"


def test_every_container_has_a_health_check(services: dict[str, Any]) -> None:
    unchecked = {
        name
        for name, svc in services.items()
        if "healthcheck" not in svc and not _image_has_healthcheck(svc)
    }
    assert unchecked == set()


def test_alertmanager_notifies_the_alert_sink_container_and_starts_after_it(
    services: dict[str, Any], compose: dict[str, Any]
) -> None:
    from alerts.alertmanager import load, webhook_urls

    urls = [url for hooks in webhook_urls(load()).values() for url in hooks]
    assert urls
    assert {urlsplit(url).netloc for url in urls} == {"alert-sink:9095"}
    assert endpoint_problems(urls, own="alertmanager", compose=compose) == []
    sink = services["alert-sink"]
    assert sink["image"] == REDLINE_IMAGE
    assert sink["command"][:3] == ["python", "-m", "redline.alert_sink"]
    assert depends_on(services["alertmanager"])["alert-sink"] == "service_healthy"


def test_grafana_starts_after_all_its_data_sources(services: dict[str, Any]) -> None:
    assert {
        dep for dep, cond in depends_on(services["grafana"]).items() if cond == "service_healthy"
    } >= {"prometheus", "loki", "jaeger", "alertmanager"}


def test_locust_is_off_by_default_behind_the_load_profile(services: dict[str, Any]) -> None:
    locust = services["locust"]
    assert locust["profiles"] == ["load"]
    command = locust["command"]
    assert command[:3] == ["locust", "-f", "loadtests/locustfile.py"]
    assert command[command.index("--host") + 1] == "http://gateway:8000"
    assert depends_on(locust)["gateway"] == "service_healthy"
    assert all("profiles" not in svc for name, svc in services.items() if name != "locust")


def test_published_ports_are_bound_to_loopback_only(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for spec in svc.get("ports", []):
            assert str(spec).startswith("127.0.0.1:"), f"{name} publishes {spec} on all interfaces"


def test_the_uis_are_published_on_their_usual_ports(services: dict[str, Any]) -> None:
    published = {
        int(str(spec).split(":")[1]): name
        for name, svc in services.items()
        for spec in svc.get("ports", [])
    }
    assert published == {
        8000: "gateway",
        3000: "grafana",
        16686: "jaeger",
        9090: "prometheus",
        9093: "alertmanager",
        3100: "loki",
        4317: COLLECTOR,
        4318: COLLECTOR,
        8089: "locust",
    }


# ------------------------------------------------ files the stack refers to
def test_every_bind_mount_source_exists(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for mount in mounts(svc):
            if mount.bind and mount.source.startswith("."):
                assert bind_source(mount.source).exists(), f"{name}: {mount.source} missing"


def test_every_named_volume_is_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for mount in mounts(svc):
            if not mount.bind:
                assert mount.source in declared, f"{name}: volume {mount.source} not declared"


def _file_arguments(compose: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, repository-relative path) of every file a command names."""
    found = []
    for name, svc in compose["services"].items():
        command = svc.get("command") or []
        for arg in command if isinstance(command, list) else command.split():
            value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
            if value.startswith("/"):
                source = host_path(svc, value)
                if source is not None and REPO in source.parents:
                    found.append((name, str(source.relative_to(REPO))))
            elif "build" in svc and re.fullmatch(r"[\w.-]+(/[\w.-]+)+\.\w+", value):
                # relative to the image's WORKDIR, which holds the repository's packages
                found.append((name, value))
    return found


def test_commands_refer_to_config_files_through_their_mounts(compose: dict[str, Any]) -> None:
    referenced = {path for _, path in _file_arguments(compose)}
    assert {
        "telemetry/collector/otelcol.yaml",
        "telemetry/jaeger/jaeger.yaml",
        "telemetry/prometheus/prometheus.docker.yml",
        "telemetry/loki/loki.yaml",
        "alerts/alertmanager.yml",
        "loadtests/locustfile.py",
    } <= referenced


@pytest.mark.parametrize(
    ("service", "path"), sorted(set(_file_arguments(load_yaml(COMPOSE_FILE)))), ids=str
)
def test_every_file_a_command_names_exists_in_the_repository(service: str, path: str) -> None:
    require_repo_file(path)
