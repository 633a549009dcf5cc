"""The pipeline's chaos experiments (chaos/experiments/), against the real Collector and Jaeger.

Run by the same runner as `redline chaos run`, on this package's stack after
its signals were checked: the experiments kill and stop parts of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.cli import EXPERIMENTS, resolve_configuration
from chaos.runner import assert_passed, load_experiment, outputs, run_experiment
from tests.harness import Stack

pytestmark = pytest.mark.slow


def run(name: str, stack: Stack, tmp_path: Path) -> dict[str, Any]:
    experiment = load_experiment(EXPERIMENTS / f"{name}.yaml")
    configuration = {
        "redline_state_dir": str(stack.state_dir),
        "jaeger_url": stack.url("jaeger"),
    }
    journal = run_experiment(
        experiment, resolve_configuration(experiment, configuration), tmp_path / name
    )
    assert_passed(journal)
    return outputs(journal)


def test_a_hung_then_killed_collector_costs_the_services_nothing_and_is_counted(
    pipeline: Stack, tmp_path: Path
) -> None:
    out = run("collector-killed", pipeline, tmp_path)
    counted = out["undelivered-spans-are-counted"]["value"]
    print(f"spans the services could not deliver, counted: {counted:.0f}")
    print(
        f"spans flowing again {out['spans-flow-again-within-seconds']['seconds']} s after the kill"
    )


def test_jaeger_down_is_queued_and_retried_and_nothing_is_lost(
    pipeline: Stack, tmp_path: Path
) -> None:
    out = run("jaeger-down", pipeline, tmp_path)
    print(
        f"queue peak: {out['the-collector-queues-spans']['value']:.0f} batches; "
        f"drained {out['the-queue-drains-within-seconds']['seconds']} s after Jaeger came back"
    )
