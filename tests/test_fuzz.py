"""Every service and the gateway, fuzzed against its own OpenAPI document by schemathesis.

schemathesis (``--checks all``: no server error, every status, content type
and body as documented, valid requests accepted, invalid ones refused, auth
not ignored; its examples, coverage, fuzzing and stateful phases) runs as a
subprocess against real processes on real databases. ``make test`` runs a
bounded budget (``FUZZ_EXAMPLES``, 8 per operation); ``make fuzz`` a deeper
one with a fixed seed it prints (``FUZZ_SEED``).

Inventory and payments are fuzzed on processes of their own: random
reservations and charges would unbalance the shared platform's ledgers that
other tests reconcile. The gateway runs without rate limits that would answer
most of its examples with 429.

The gateway's public schema is also held to the services' schemas: each
public route documents the same request, parameters and success bodies as the
service operation it forwards to (``PROXIED``), and every status the service
may answer, so a client generated from it is right.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.gateway.routes import PROXIED
from services.topology import SERVICES
from tests.harness import (
    ADMIN_TOKEN,
    PREDICTABLE_PAYMENTS,
    Platform,
    ServiceProcess,
    User,
    otel_env,
    sign_up,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("FUZZ_SEED", "15"))
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CONFIG = Path(__file__).with_name("schemathesis.toml")


def schema(url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{url}/schema/openapi.json", timeout=10).json()
    return document


def fuzz(url: str, name: str, headers: dict[str, str]) -> None:
    """One schemathesis run; fails with its report when it found anything."""
    argv = [
        SCHEMATHESIS,
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        # The token is a throwaway test user's: show whole requests, so a failure reproduces.
        "--output-sanitize",
        "false",
    ]
    for key, value in headers.items():
        # Capitalised as schemathesis' auth checks look for it (they drop it to test 401s).
        argv += ["--header", f"{key.title()}: {value}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    summary = result.stdout[result.stdout.rfind("SUMMARY") :] if "SUMMARY" in result.stdout else ""
    cases = _test_cases(result.stdout)
    # `make fuzz` shows these lines (pytest -s); `make test` keeps them for a failure.
    print(f"schemathesis {name}: {cases} test cases, seed {SEED}, exit {result.returncode}")
    assert result.returncode == 0, (
        f"schemathesis found problems in {name}:\n{result.stdout[-20000:]}"
    )
    assert cases > 0, summary


def _test_cases(output: str) -> int:
    """The number of test cases schemathesis ran, from its summary ("460 generated, ...")."""
    found = re.findall(r"(\d+) generated", output)
    return int(found[-1]) if found else 0


# -- the processes fuzzed --------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzer(platform: Platform) -> User:
    """The signed-in user schemathesis acts as."""
    return sign_up(platform.gateway)


@pytest.fixture(scope="module")
def standalone(
    new_database: Callable[[str], str], logs_dir: Path
) -> Iterator[dict[str, ServiceProcess]]:
    """Inventory and payments on databases of their own."""
    services = {
        name: ServiceProcess(
            name,
            env={
                "DATABASE_URL": new_database(f"fuzz_{name}"),
                "REDLINE_ADMIN_TOKEN": ADMIN_TOKEN,
                **otel_env(None),
                **(PREDICTABLE_PAYMENTS if name == "payments" else {}),
            },
            log_path=logs_dir / f"fuzz-{name}-{os.getpid()}.log",
        )
        for name in ("inventory", "payments")
    }
    try:
        for svc in services.values():
            svc.start(wait_ready=False)  # side by side: neither calls the other
        for svc in services.values():
            svc.wait_ready()
        yield services
    finally:
        for svc in services.values():
            svc.stop()


@pytest.fixture(scope="module")
def open_gateway(platform: Platform, logs_dir: Path) -> Iterator[ServiceProcess]:
    """A gateway in front of the platform's services, without rate limits in the way."""
    svc = ServiceProcess(
        "gateway",
        env={
            **{
                f"REDLINE_{name.upper()}_URL": platform[name].url
                for name in SERVICES["gateway"].calls
            },
            **otel_env(None),
            "REDLINE_RATE_LIMIT_USER_PER_SECOND": "100000",
            "REDLINE_RATE_LIMIT_USER_BURST": "100000",
            "REDLINE_RATE_LIMIT_IP_PER_SECOND": "100000",
            "REDLINE_RATE_LIMIT_IP_BURST": "100000",
            "REDLINE_CREDENTIAL_NETWORK_PER_MINUTE": "6000000",
            "REDLINE_CREDENTIAL_NETWORK_BURST": "100000",
            "REDLINE_CREDENTIAL_ACCOUNT_PER_MINUTE": "6000000",
            "REDLINE_CREDENTIAL_ACCOUNT_BURST": "100000",
        },
        log_path=logs_dir / f"fuzz-gateway-{os.getpid()}.log",
    ).start()
    yield svc
    svc.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["gateway", "accounts", "orders", "inventory", "payments", "notifications"]
)
def test_schemathesis_finds_nothing(
    name: str,
    platform: Platform,
    fuzzer: User,
    standalone: dict[str, ServiceProcess],
    open_gateway: ServiceProcess,
) -> None:
    url = {
        "gateway": open_gateway.url,
        "accounts": platform["accounts"].url,
        "orders": platform["orders"].url,
        "inventory": standalone["inventory"].url,
        "payments": standalone["payments"].url,
        "notifications": platform["notifications"].url,
    }[name]
    fuzz(url, name, fuzzer.headers)


# -- the public schema against the services' -------------------------------------------


def _resolve(node: Any, document: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` replaced by what it points to (schemas are not recursive)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(target, document)
        return {k: _resolve(v, document) for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_resolve(v, document) for v in node]
    return node


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method.lower()]
    return operation


def _body(operation: dict[str, Any], document: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {})
    return _resolve(content.get("application/json", {}).get("schema"), document)


def _parameters(operation: dict[str, Any], document: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (p["in"], p["name"].lower()): _resolve(
            {k: v for k, v in p.items() if k not in ("description", "deprecated")}, document
        )
        for p in operation.get("parameters", [])
        if p["in"] != "header" or p["name"].lower() != "authorization"
    }


def _responses(operation: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    return {
        status: _resolve(
            {media: c.get("schema") for media, c in response.get("content", {}).items()},
            document,
        )
        for status, response in operation["responses"].items()
    }


@pytest.mark.parametrize(
    ("public", "target"), list(PROXIED.items()), ids=[" ".join(k) for k in PROXIED]
)
def test_the_public_schema_matches_the_service_behind_each_route(
    platform: Platform, public: tuple[str, str], target: Any
) -> None:
    gateway_doc = schema(platform.gateway)
    service_doc = schema(platform[target.service].url)
    mine = _operation(gateway_doc, *public)
    theirs = _operation(service_doc, target.method, target.path)

    assert _body(mine, gateway_doc) == _body(theirs, service_doc)
    assert _parameters(mine, gateway_doc) == _parameters(theirs, service_doc)
    public_responses = _responses(mine, gateway_doc)
    for status, content in _responses(theirs, service_doc).items():
        if status.startswith("5"):
            # A service's 5xx reaches the client as the gateway's 502, 503 or 504.
            assert {"502", "503", "504"} <= set(public_responses), public
            continue
        assert public_responses.get(status) == content, (public, status)
    # What only the edge answers: rate limits, and a service that failed.
    assert {"429", "502"} <= set(public_responses)
    signed_in = bool(mine.get("security"))
    assert signed_in == ("401" in public_responses and public != ("POST", "/api/v1/auth/tokens"))


def test_the_public_schema_documents_its_bearer_scheme(platform: Platform) -> None:
    document = schema(platform.gateway)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /api/v1/auth/tokens.",
    }
    assert {path for path in document["paths"]} == {path for _, path in PROXIED}
