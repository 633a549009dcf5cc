"""One `redline up` with the real pipeline (the Collector and Jaeger built from Go
modules) for this package: its signals first (test_signals.py), then its faults
(test_under_faults.py), which kill and stop parts of it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from redline.binaries import PROGRAMS, binary_path
from tests.harness import Stack, User, sign_up
from tests.otlp_receiver import OtlpReceiver

# The share of ordinary traces Jaeger keeps in this stack.
SAMPLE_PERCENT = 20


@pytest.fixture(scope="package")
def pipeline(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[Stack]:
    missing = [p.name for n, p in PROGRAMS.items() if binary_path(n) is None]
    if missing:
        pytest.fail(
            f"not built: {', '.join(missing)}; `make test` builds them "
            "(or `.venv/bin/python -m redline.binaries`)"
        )
    base = Path(tempfile.mkdtemp(prefix="redline-pipeline-"))
    s = Stack.build(
        base,
        otlp_endpoint=None,
        extra=[
            "--trace-sample-percent", str(SAMPLE_PERCENT),
            "--env", "payments:REDLINE_PROCESSOR_DECLINE_RATE=0",
            "--env", "payments:REDLINE_PROCESSOR_MEDIAN_LATENCY_MS=5",
        ],
        env={"REDLINE_LOGS_OTLP_ENDPOINT": otlp.endpoint},
    ).start(timeout=180)  # fmt: skip
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="package")
def user(pipeline: Stack) -> User:
    return sign_up(pipeline.gateway)
