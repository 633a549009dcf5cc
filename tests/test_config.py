"""Bad configuration stops a service with one line naming the variable.

Each variable is checked in-process against the real settings classes and
error formatting; two cases start the real service to show the whole path
(one line on stderr, exit status 2, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from services.chassis.config import EXIT_CONFIG_ERROR, load_settings
from services.chassis.dependencies import dependency_configs
from services.inventory.app import InventorySettings
from telemetry import ConfigError
from telemetry._tracing import build_exporter
from tests.harness import ROOT


def _start(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        # A DSN nobody listens on: if validation wrongly passed, the service
        # must not start an embedded PostgreSQL in the project directory.
        env={
            **os.environ,
            "OTEL_TRACES_EXPORTER": "none",
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    load: Callable[[], object],
) -> str:
    for key in [k for k in os.environ if k.startswith("REDLINE_") or k == "DATABASE_URL"]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exited:
        load()
    assert exited.value.code == EXIT_CONFIG_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDLINE_PORT": "abc"}, "REDLINE_PORT='abc'"),
        ({"REDLINE_PORT": "70000"}, "REDLINE_PORT"),
        ({"REDLINE_LOG_LEVEL": "LOUD"}, "REDLINE_LOG_LEVEL='LOUD'"),
        ({"REDLINE_TRACE_SAMPLE_RATIO": "1.5"}, "REDLINE_TRACE_SAMPLE_RATIO"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"REDLINE_DB_POOL_MAX_SIZE": "0"}, "REDLINE_DB_POOL_MAX_SIZE"),
        (
            {"REDLINE_DB_POOL_MIN_SIZE": "20", "REDLINE_DB_POOL_MAX_SIZE": "5"},
            "REDLINE_DB_POOL_MIN_SIZE",
        ),
        ({"REDLINE_DRAIN_SECONDS": "-1"}, "REDLINE_DRAIN_SECONDS"),
        ({"REDLINE_MAX_BODY_BYTES": "lots"}, "REDLINE_MAX_BODY_BYTES='lots'"),
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    variable: str,
) -> None:
    line = _one_line_error(monkeypatch, capsys, env, lambda: load_settings(InventorySettings))
    assert variable in line


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_bad_otel_variable_names_it(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        build_exporter(env)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDLINE_PAYMENTS_URL": "ftp://payments"}, "REDLINE_PAYMENTS_URL"),
        ({"REDLINE_PAYMENTS_URL": "http://a:1,ftp://b:2"}, "REDLINE_PAYMENTS_URL"),
        ({"REDLINE_PAYMENTS_URL": " , "}, "REDLINE_PAYMENTS_URL"),
        (
            {"REDLINE_PAYMENTS_OUTLIER_CONSECUTIVE_FAILURES": "0"},
            "REDLINE_PAYMENTS_OUTLIER_CONSECUTIVE_FAILURES",
        ),
        ({"REDLINE_PAYMENTS_TIMEOUT_SECONDS": "soon"}, "REDLINE_PAYMENTS_TIMEOUT_SECONDS"),
        ({"REDLINE_PAYMENTS_MAX_CONCURRENT": "0"}, "REDLINE_PAYMENTS_MAX_CONCURRENT"),
        (
            {"REDLINE_INVENTORY_BREAKER_MINIMUM_CALLS": "500"},
            "REDLINE_INVENTORY_BREAKER_MINIMUM_CALLS",
        ),
    ],
)
def test_bad_dependency_setting_names_it(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        dependency_configs("orders", env)


def test_dependency_settings_apply() -> None:
    configs = dependency_configs(
        "orders",
        {
            "REDLINE_PAYMENTS_TIMEOUT_SECONDS": "0.25",
            "REDLINE_PAYMENTS_MAX_CONCURRENT": "7",
            "REDLINE_PAYMENTS_BREAKER_WAIT_SECONDS": "9",
            "REDLINE_INVENTORY_URL": "http://10.0.0.1:81",
        },
    )
    assert set(configs) == {"inventory", "payments"}
    assert configs["payments"].timeout == 0.25
    assert configs["payments"].max_concurrent == 7
    assert configs["payments"].breaker.wait_duration_in_open == 9
    assert configs["inventory"].base_url == "http://10.0.0.1:81"
    assert configs["inventory"].endpoints == ("http://10.0.0.1:81",)


def test_a_dependency_url_may_list_every_instance() -> None:
    configs = dependency_configs(
        "orders",
        {
            "REDLINE_INVENTORY_URL": "http://127.0.0.1:8002, http://127.0.0.1:8012/",
            "REDLINE_INVENTORY_OUTLIER_CONSECUTIVE_FAILURES": "3",
            "REDLINE_INVENTORY_OUTLIER_EJECTION_SECONDS": "2.5",
            "REDLINE_INVENTORY_DNS_REFRESH_SECONDS": "10",
        },
    )
    inventory = configs["inventory"]
    assert inventory.endpoints == ("http://127.0.0.1:8002", "http://127.0.0.1:8012")
    assert inventory.outlier.consecutive_failures == 3
    assert inventory.outlier.base_ejection == 2.5
    assert inventory.dns_refresh_seconds == 10


@pytest.mark.parametrize(
    ("service", "env", "variable"),
    [
        ("inventory", {"REDLINE_PORT": "abc"}, "REDLINE_PORT='abc'"),
        (
            "orders",
            {"REDLINE_PAYMENTS_TIMEOUT_SECONDS": "soon"},
            "REDLINE_PAYMENTS_TIMEOUT_SECONDS",
        ),
    ],
)
def test_the_real_service_exits_2_with_one_line(
    service: str, env: dict[str, str], variable: str
) -> None:
    result = _start(service, env)
    assert result.returncode == EXIT_CONFIG_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
