"""Prometheus and Alertmanager: the docker config, the native renderer and argv, checked by the real tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerts.alertmanager import config_for
from services.topology import SERVICES
from telemetry.prometheus import docker
from telemetry.prometheus.config import alertmanager_command_line, command_line, native_config
from tests.harness import free_port, wait_until
from tests.stack_config.stack import (
    PROMETHEUS_DOCKER_CONFIG,
    REPO,
    endpoint_problems,
    host_path,
    load_yaml,
    require_repo_file,
    running,
    tool,
)

RULE = """\
groups:
  - name: smoke
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        labels: {severity: ticket}
        annotations: {summary: smoke}
"""


def promtool_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def service_targets() -> dict[str, str]:
    return {name: f"127.0.0.1:{info.port}" for name, info in SERVICES.items()}


# ------------------------------------------------------------ docker config
def test_docker_config_with_its_mounted_rule_files_passes_promtool(
    services: dict[str, Any], tmp_path: Path
) -> None:
    # Resolve the container paths through the compose mounts, so promtool also
    # checks whatever rule files alerts/ holds (none yet is fine: an empty glob).
    config = load_yaml(PROMETHEUS_DOCKER_CONFIG)
    prometheus = services["prometheus"]
    resolved = []
    for pattern in config["rule_files"]:
        source = host_path(prometheus, pattern)
        assert source is not None, f"rule_files {pattern} is not under a mount"
        assert REPO in source.parents
        resolved.append(str(source))
    config["rule_files"] = resolved
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = promtool_check_config(copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_config_is_what_the_native_renderer_makes_of_the_compose_hosts() -> None:
    assert docker.DOCKER_CONFIG == PROMETHEUS_DOCKER_CONFIG
    assert PROMETHEUS_DOCKER_CONFIG.read_text() == docker.render(), (
        "prometheus.docker.yml is out of date: run `python -m telemetry.prometheus.docker`"
    )


def test_docker_prometheus_loads_exactly_the_normal_profile_of_the_alert_rules(
    services: dict[str, Any],
) -> None:
    from alerts.paths import rule_files  # the alerts' own definition of the profile

    prometheus = services["prometheus"]
    loaded: set[Path] = set()
    for pattern in load_yaml(PROMETHEUS_DOCKER_CONFIG)["rule_files"]:
        source = host_path(prometheus, pattern)
        assert source is not None
        loaded |= set(source.parent.glob(source.name))
    assert loaded == set(rule_files())
    assert loaded, "no rule files: the alerts directory moved?"


def test_docker_config_is_the_one_compose_mounts_and_keeps_exemplars(
    services: dict[str, Any],
) -> None:
    prometheus = services["prometheus"]
    assert host_path(prometheus, "/etc/prometheus/prometheus.yml") == PROMETHEUS_DOCKER_CONFIG
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert load_yaml(PROMETHEUS_DOCKER_CONFIG)["storage"]["exemplars"]["max_exemplars"] > 0


def test_docker_config_scrapes_every_service_directly_as_a_job_of_its_name() -> None:
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in load_yaml(PROMETHEUS_DOCKER_CONFIG)["scrape_configs"]
    }
    for name, info in SERVICES.items():
        assert jobs[name] == [f"{name}:{info.port}"]
    assert {"prometheus", "alertmanager", "otel-collector", "spanmetrics"} <= set(jobs)


def test_docker_config_scrapes_at_five_seconds_or_less() -> None:
    config = load_yaml(PROMETHEUS_DOCKER_CONFIG)
    assert config["global"]["scrape_interval"] in ("1s", "2s", "5s")
    assert all("scrape_interval" not in job for job in config["scrape_configs"])


def test_every_docker_scrape_and_alerting_target_is_a_compose_service_port(
    compose: dict[str, Any],
) -> None:
    config = load_yaml(PROMETHEUS_DOCKER_CONFIG)
    assert endpoint_problems(config, own="prometheus", compose=compose) == []


def test_alertmanager_reads_the_alerts_config_and_runs_without_clustering(
    services: dict[str, Any],
) -> None:
    alertmanager = services["alertmanager"]
    command = alertmanager["command"]
    assert "--cluster.listen-address=" in command
    config = next(a.split("=", 1)[1] for a in command if a.startswith("--config.file="))
    source = host_path(alertmanager, config)
    assert source == REPO / "alerts/alertmanager.yml"


def test_alertmanager_config_from_the_alerts_passes_amtool() -> None:
    path = require_repo_file("alerts/alertmanager.yml")
    result = subprocess.run(
        [tool("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------ native config
def test_native_config_has_one_job_per_service_a_self_job_and_alertmanager() -> None:
    config = yaml.safe_load(
        native_config(
            service_targets(),
            rule_files=["/rules/*.yml"],
            alertmanager_url="http://127.0.0.1:9093",
            self_address="127.0.0.1:9090",
        )
    )
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs == {
        **{name: [target] for name, target in service_targets().items()},
        "prometheus": ["127.0.0.1:9090"],
        "alertmanager": ["127.0.0.1:9093"],
    }
    assert config["rule_files"] == ["/rules/*.yml"]
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]
    assert config["storage"]["exemplars"]["max_exemplars"] > 0
    assert config["global"]["scrape_interval"] == "2s"


def test_native_config_without_alertmanager_has_no_alerting_section() -> None:
    config = yaml.safe_load(native_config(service_targets(), rule_files=[], alertmanager_url=None))
    assert "alerting" not in config
    assert "alertmanager" not in {j["job_name"] for j in config["scrape_configs"]}


def test_native_config_adds_extra_jobs_such_as_a_local_collector() -> None:
    config = yaml.safe_load(
        native_config(
            {"gateway": "127.0.0.1:8000"},
            rule_files=[],
            alertmanager_url=None,
            extra_targets={"otel-collector": "127.0.0.1:8888"},
        )
    )
    assert [j["job_name"] for j in config["scrape_configs"]] == [
        "gateway",
        "otel-collector",
        "prometheus",
    ]


@pytest.mark.parametrize(
    ("targets", "kwargs"),
    [
        ({"gateway": "http://127.0.0.1:8000"}, {}),
        ({"gateway": "127.0.0.1"}, {}),
        ({"prometheus": "127.0.0.1:8000"}, {}),
        ({"gateway": "127.0.0.1:8000"}, {"alertmanager_url": "127.0.0.1:9093"}),
    ],
)
def test_native_config_refuses_targets_it_cannot_scrape(
    targets: dict[str, str], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=r"expected|already taken"):
        native_config(targets, rule_files=[], **{"alertmanager_url": None, **kwargs})


def test_native_config_with_real_and_globbed_rule_files_passes_promtool(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "smoke.yml").write_text(RULE)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        native_config(
            service_targets(),
            rule_files=["rules/*.yml", str(REPO / "alerts/rules/*.yml")],
            alertmanager_url="http://127.0.0.1:9093",
        )
    )
    result = promtool_check_config(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Checking" in result.stdout
    assert "smoke.yml" in result.stdout


def test_promtool_rejects_a_broken_rendered_rule_file(tmp_path: Path) -> None:
    # The promtool check above can fail: a rule file it cannot parse.
    (tmp_path / "bad.yml").write_text("groups: [{name: x, rules: [{alert: X, expr: 'sum('}]}]\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(native_config({}, rule_files=["bad.yml"], alertmanager_url=None))
    assert promtool_check_config(config).returncode != 0


# ------------------------------------------------ the argv, run for real
def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
        return json.load(response)


def test_prometheus_starts_from_the_native_command_line_with_exemplar_storage(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        native_config(
            {"gateway": "127.0.0.1:1"},
            rule_files=[],
            alertmanager_url=None,
            self_address=f"127.0.0.1:{port}",
        )
    )
    argv = command_line(config, tmp_path / "data", f"127.0.0.1:{port}")
    argv[0] = tool(argv[0])
    base = f"http://127.0.0.1:{port}"
    with running(argv, f"{base}/-/ready", tmp_path / "prometheus.log"):
        flags = _get_json(f"{base}/api/v1/status/flags")["data"]
        assert flags["enable-feature"] == "exemplar-storage"
        assert flags["web.enable-lifecycle"] == "true"
        assert flags["storage.tsdb.retention.time"] == "1d"
        loaded = yaml.safe_load(_get_json(f"{base}/api/v1/status/config")["data"]["yaml"])
        assert [j["job_name"] for j in loaded["scrape_configs"]] == ["gateway", "prometheus"]


def test_alertmanager_starts_from_the_native_command_line_without_clustering(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
    argv = alertmanager_command_line(config, tmp_path / "data", f"127.0.0.1:{port}")
    argv[0] = tool(argv[0])
    base = f"http://127.0.0.1:{port}"
    with running(argv, f"{base}/-/ready", tmp_path / "alertmanager.log"):
        status = _get_json(f"{base}/api/v2/status")
        assert status["cluster"]["status"] == "disabled"


def test_alertmanager_notifies_the_compose_alert_sink_command_which_prints_the_alert(
    services: dict[str, Any], tmp_path: Path
) -> None:
    # The alert-sink container's own command, on a loopback port instead of 9095.
    command = services["alert-sink"]["command"]
    sink_port, am_port = free_port(), free_port()
    argv = [sys.executable, *command[1:]]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(sink_port)
    sink_log = tmp_path / "alert-sink.log"
    config = tmp_path / "alertmanager.yml"
    # The compose config with the container name swapped for the loopback sink and
    # the pager's 10 s group wait cut to 1 s: what this checks is that the sink's
    # command prints what Alertmanager sends it, not the wait (alerts/alertmanager.yml
    # and its timings are tests/alerts/test_alertmanager.py's).
    require_repo_file("alerts/alertmanager.yml")
    config.write_text(config_for(f"http://127.0.0.1:{sink_port}/", group_wait="1s"))
    am_argv = alertmanager_command_line(config, tmp_path / "data", f"127.0.0.1:{am_port}")
    am_argv[0] = tool(am_argv[0])
    am = f"http://127.0.0.1:{am_port}"
    with (
        running(argv, f"http://127.0.0.1:{sink_port}/health", sink_log, env={**os.environ}),
        running(am_argv, f"{am}/-/ready", tmp_path / "alertmanager.log"),
    ):
        alert = [{"labels": {"alertname": "ComposeSmoke", "severity": "page", "service": "x"}}]
        httpx.post(f"{am}/api/v2/alerts", json=alert, timeout=5).raise_for_status()
        wait_until(
            lambda: "[pager] FIRING ComposeSmoke (page, service=x)" in sink_log.read_text(),
            timeout=30,
            interval=0.2,
            message=lambda: f"no notification in the sink's output: {sink_log.read_text()!r}",
        )


def test_native_config_gives_a_replicated_service_one_job_with_a_target_per_instance(
    tmp_path: Path,
) -> None:
    targets: dict[str, str | list[str]] = {**service_targets()}
    targets["inventory"] = ["127.0.0.1:8002", "127.0.0.1:8012"]
    text = native_config(targets, rule_files=[], alertmanager_url=None)
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["inventory"]["static_configs"] == [
        {"targets": ["127.0.0.1:8002", "127.0.0.1:8012"]}
    ]
    assert jobs["orders"]["static_configs"] == [{"targets": ["127.0.0.1:8003"]}]
    (tmp_path / "prometheus.yml").write_text(text)
    result = promtool_check_config(tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(ValueError, match="inventory"):
        native_config(
            {"inventory": ["127.0.0.1:8002", "http://x:1"]}, rule_files=[], alertmanager_url=None
        )
