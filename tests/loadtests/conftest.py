"""Fixtures for the load-test tests: the Prometheus tool, and nothing that imports Locust."""

from __future__ import annotations

import pytest

from tests.conftest import require_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")
