"""The zero-error operations, as chaos experiments on the shared stack's two inventory instances.

The session's stack runs `redline up --replicas inventory=2` (tests/conftest.py),
so every stack test also runs against a replicated service. Here, under
catalog reads and orders through the gateway: one instance is killed (its
callers fail over and eject it; at most 0.1 % of requests may fail), then
both are restarted one at a time (not one request may fail). The larger
replica stack (three orders instances, two gateways, saga takeover) is
`make test-replicas` (tests/test_replicas.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos.cli import EXPERIMENTS, resolve_configuration
from chaos.runner import assert_passed, load_experiment, outputs, run_experiment
from tests.chaos.support import JaegerQueryApi
from tests.harness import Stack
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jaeger(otlp: OtlpReceiver) -> Iterator[JaegerQueryApi]:
    """The experiments' trace checks read Jaeger's query API; here it serves the receiver's spans."""
    api = JaegerQueryApi(otlp).start()
    yield api
    api.stop()


def run(name: str, stack: Stack, jaeger: JaegerQueryApi, tmp_path: Path) -> dict[str, Any]:
    experiment = load_experiment(EXPERIMENTS / f"{name}.yaml")
    configuration = {
        "redline_state_dir": str(stack.state_dir),
        "fault_proxy_url": "",
        "jaeger_url": jaeger.url,
    }
    journal = run_experiment(
        experiment, resolve_configuration(experiment, configuration), tmp_path / name
    )
    assert_passed(journal)
    return outputs(journal)


def test_a_killed_replica_costs_its_callers_at_most_a_tenth_of_a_percent(
    stack: Stack, jaeger: JaegerQueryApi, tmp_path: Path
) -> None:
    out = run("replica-killed", stack, jaeger, tmp_path)
    assert out["callers-eject-the-dead-replica"]["value"] >= 1
    catalog = out["requests-over-the-run"]
    assert catalog["error_ratio"] <= 0.001, catalog


def test_a_rolling_restart_under_load_fails_no_request(
    stack: Stack, jaeger: JaegerQueryApi, tmp_path: Path
) -> None:
    before = {
        i: (stack.state() or {})["components"][i]["pid"] for i in ("inventory", "inventory-2")
    }
    out = run("rolling-restart", stack, jaeger, tmp_path)
    restarted = out["rolling-restart"]["instances"]
    assert [r["instance"] for r in restarted] == ["inventory", "inventory-2"]
    assert {r["instance"]: r["old_pid"] for r in restarted} == before
    during = out["requests-during-the-restart"]
    assert during["statuses"].keys() <= {"200"}, during
