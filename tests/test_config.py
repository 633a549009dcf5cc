"""Bad configuration stops a service with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.inventory"],
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
        timeout=30,
    )


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
    ],
)
def test_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], variable: str) -> None:
    result = _start(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: ")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_bad_otel_variable_is_one_line(env: dict[str, str], variable: str) -> None:
    result = _start(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
