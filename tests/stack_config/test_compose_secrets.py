"""docker-compose.yml's secrets: required where used, absent elsewhere, no defaults."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
from typing import Any

import pytest

from services.chassis import ServiceSettings, TokenSettings
from services.topology import SERVICES
from tests.stack_config.stack import COMPOSE_FILE, REPO, environment, tool

REQUIRED = re.compile(r"^\$\{REDLINE_JWT_SECRET:\?.+\}$")


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class a service is run with (``services.<name>.app``)."""
    module = importlib.import_module(f"services.{service}.app")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("name", list(SERVICES))
def test_only_services_that_sign_or_verify_tokens_get_the_jwt_secret_and_it_is_required(
    services: dict[str, Any], name: str
) -> None:
    env = environment(services[name])
    if issubclass(settings_class(name), TokenSettings):
        assert REQUIRED.match(env.get("REDLINE_JWT_SECRET", "")), env.get("REDLINE_JWT_SECRET")
    else:
        assert "REDLINE_JWT_SECRET" not in env


def test_the_token_services_are_accounts_the_gateway_and_orders() -> None:
    using = {name for name in SERVICES if issubclass(settings_class(name), TokenSettings)}
    assert using == {"accounts", "gateway", "orders"}


def test_no_service_has_a_default_admin_token(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        value = environment(svc).get("REDLINE_ADMIN_TOKEN")
        assert value in (None, "", "${REDLINE_ADMIN_TOKEN:-}", "${REDLINE_ADMIN_TOKEN}"), name


def test_compose_refuses_to_start_without_a_jwt_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDLINE_JWT_SECRET"}
    result = subprocess.run(
        [tool("docker-compose"), "--file", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert "set REDLINE_JWT_SECRET" in result.stderr
