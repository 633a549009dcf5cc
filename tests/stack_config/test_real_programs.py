"""The compose-side Collector and Jaeger configs, loaded by the real programs.

Both binaries come from ``python -m redline.binaries`` (the releases compose
pins: the Collector image is built from the same module, Jaeger's image is
2.12.0 = module v1.75.0); a missing one fails the test and says how to build it.

``validate`` reads a config as compose runs it: its environment (none; every
``${env:...}`` defaults to compose's value) and no network. It does not catch
everything: Jaeger's validate accepts a tail-sampling policy of an unknown
type, which only fails when the pipeline starts. So each program is also
started from its compose config on loopback, every container hostname and port
swapped by the config's own variables, and the URL of its compose health check
must answer 200.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack_config.stack import (
    COLLECTOR_CONFIG,
    JAEGER_CONFIG,
    REPO,
    LoopbackPorts,
    clean_env,
    env_references,
    environment,
    go_binary,
    healthcheck_url,
    listening_ports,
    load_config,
    load_yaml,
    loopback_env,
    running,
)

COLLECTOR = "otel-collector"
PROGRAMS = {COLLECTOR: ("otelcol", COLLECTOR_CONFIG), "jaeger": ("jaeger", JAEGER_CONFIG)}


def validate(binary: Path, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=120,
    )


@pytest.mark.parametrize("service", list(PROGRAMS))
def test_the_real_program_validates_its_compose_config(
    services: dict[str, Any], service: str
) -> None:
    program, config = PROGRAMS[service]
    result = validate(go_binary(program), config, environment(services[service]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_names_a_component_the_distribution_lacks(tmp_path: Path) -> None:
    config = load_yaml(COLLECTOR_CONFIG)
    config["exporters"]["kafka"] = {}
    config["service"]["pipelines"]["traces"]["exporters"].append("kafka")
    broken = tmp_path / "otelcol.yaml"
    broken.write_text(yaml.safe_dump(config))
    result = validate(go_binary("otelcol"), broken, {})
    assert result.returncode != 0
    assert "kafka" in result.stderr


# Jaeger tags each release twice, on one commit: the Go module's v1.x and the
# v2.x of the binary and image (jaegertracing/jaeger: v1.75.0 and v2.12.0 are
# commit 1c5531b). Bump both together.
JAEGER_IMAGE_FOR_MODULE = {"v1.75.0": "jaegertracing/jaeger:2.12.0"}


def test_compose_runs_the_jaeger_release_that_the_tests_build(services: dict[str, Any]) -> None:
    go_mod = (REPO / "telemetry/jaeger/go.mod").read_text()
    match = re.search(r"^\s*github\.com/jaegertracing/jaeger (v\S+)", go_mod, re.M)
    assert match is not None
    assert services["jaeger"]["image"] == JAEGER_IMAGE_FOR_MODULE[match.group(1)]


@pytest.mark.parametrize("service", list(PROGRAMS))
def test_every_port_the_config_listens_on_is_declared_in_compose_and_back(
    compose: dict[str, Any], service: str
) -> None:
    _program, path = PROGRAMS[service]
    declared = listening_ports(compose, service)
    # Ports are the numeric defaults of the config's own variables (ports
    # elsewhere, like jaeger:4317 in the Collector's, are another service's).
    own = {
        int(default)
        for name, default in env_references(load_yaml(path)).items()
        if name.endswith("_PORT") and default is not None
    }
    assert own == declared


# ------------------------------------------------------------ started for real
@pytest.fixture
def ports() -> LoopbackPorts:
    return LoopbackPorts()


def start(
    service: str,
    compose: dict[str, Any],
    ports: LoopbackPorts,
    tmp_path: Path,
    extra: dict[str, str] | None = None,
) -> Any:
    """``running(...)`` for a compose service's program, on loopback, ready per its health check."""
    program, path = PROGRAMS[service]
    env = loopback_env(load_yaml(path), own=service, compose=compose, ports=ports)
    url = healthcheck_url(compose["services"][service], own=service, ports=ports)
    return running(
        [str(go_binary(program)), f"--config={path}"],
        url,
        tmp_path / f"{service}.log",
        env=clean_env({**env, **(extra or {})}),
        timeout=60,
    )


def test_jaeger_and_the_collector_start_from_the_compose_configs_and_pass_their_health_checks(
    compose: dict[str, Any], ports: LoopbackPorts, tmp_path: Path
) -> None:
    # Jaeger first, as compose orders them: the Collector exports to it.
    with start("jaeger", compose, ports, tmp_path):
        logs = tmp_path / "containers"
        logs.mkdir()
        files = {"OTELCOL_LOG_FILES": str(logs / "*.log")}
        with start(COLLECTOR, compose, ports, tmp_path, files) as collector:
            assert collector.poll() is None
    # Where the Collector sent traces is where Jaeger listened.
    jaeger_grpc = ports("jaeger", 4317)
    collector_env = loopback_env(
        load_yaml(COLLECTOR_CONFIG), own=COLLECTOR, compose=compose, ports=ports
    )
    assert collector_env["OTELCOL_TRACES_ENDPOINT"] == f"127.0.0.1:{jaeger_grpc}"
    exporter = load_config(COLLECTOR_CONFIG, collector_env)["exporters"]["otlp_grpc/jaeger"]
    assert exporter["endpoint"] == f"127.0.0.1:{jaeger_grpc}"


def test_jaeger_refuses_at_start_a_tail_sampling_policy_its_validate_accepts(
    compose: dict[str, Any], ports: LoopbackPorts, tmp_path: Path
) -> None:
    config = load_yaml(JAEGER_CONFIG)
    policies = config["processors"]["tail_sampling"]["policies"]
    policies[0]["type"] = "no_such_policy"
    broken = tmp_path / "jaeger.yaml"
    broken.write_text(yaml.safe_dump(config))
    assert validate(go_binary("jaeger"), broken, {}).returncode == 0
    env = loopback_env(config, own="jaeger", compose=compose, ports=ports)
    result = subprocess.run(
        [str(go_binary("jaeger")), f"--config={broken}"],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=60,
    )
    assert result.returncode != 0
    assert "unknown sampling policy type no_such_policy" in result.stderr
