"""Fixtures for the static checks of the docker compose stack (no Docker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.stack_config.stack import COMPOSE_FILE, load_yaml


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result = compose["services"]
    assert isinstance(result, dict)
    return result
