"""One stack for every chaos test in this package: `redline up`, a fault proxy, a trace API."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import chaos_stack
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="package")
def chaos_env(otlp: OtlpReceiver) -> Iterator[dict[str, Any]]:
    """Shared by the experiments: each one restores the steady state it found.

    Not under pytest's tmp_path: the experiments stop and start PostgreSQL,
    whose tools run as an unprivileged user, and any pytest session that
    starts meanwhile resets pytest's base directory to 0700.
    """
    base = Path(tempfile.mkdtemp(prefix="redline-chaos-"))
    try:
        with chaos_stack(base, otlp) as env:
            yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def configuration(chaos_env: dict[str, Any]) -> dict[str, Any]:
    return dict(chaos_env["configuration"])
