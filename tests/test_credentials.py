"""Sign-in and sign-up under attack: limits per account and per client network, shedding.

Issue 15: login and registration were limited only per IP, at 200/s: one
client could run ~200 Argon2 hashes a second (saturating accounts) and guess
passwords at that rate; behind a load balancer every client shared one
bucket, there being no trusted-proxy setting.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import Platform, ServiceProcess, otel_env

LOGIN = "/api/v1/auth/tokens"


@pytest.fixture(scope="module")
def edge(platform: Platform, logs_dir: Path) -> Iterator[ServiceProcess]:
    """A gateway with the shipped credential limits, small network bursts, behind a proxy."""
    svc = ServiceProcess(
        "gateway",
        env={
            "REDLINE_ACCOUNTS_URL": platform["accounts"].url,
            **otel_env(None),
            "REDLINE_CREDENTIAL_NETWORK_BURST": "4",
            # The test is the load balancer in front of the gateway.
            "REDLINE_TRUSTED_PROXIES": "127.0.0.1",
        },
        log_path=logs_dir / f"credentials-gateway-{os.getpid()}.log",
    ).start()
    yield svc
    svc.stop()


def login(gateway: str, email: str, client: str | None = None) -> httpx.Response:
    headers = {"x-forwarded-for": client} if client else {}
    return httpx.post(
        f"{gateway}{LOGIN}", json={"email": email, "password": "not the one"}, headers=headers
    )


def test_sign_ins_are_limited_per_account_whoever_tries(edge: ServiceProcess) -> None:
    victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    # Each guess from another network: only the account's own bucket is shared.
    statuses = [login(edge.url, victim, f"198.51.100.{i}").status_code for i in range(1, 8)]
    assert statuses[:5] == [401] * 5, statuses  # the burst (5), then the limit
    assert statuses[5:] == [429, 429], statuses
    limited = login(edge.url, victim, "198.51.100.99")
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["type"].endswith("/rate-limited")
    # Another account is not affected.
    assert (
        login(edge.url, f"other-{uuid.uuid4().hex[:8]}@example.com", "198.51.100.1").status_code
        == 401
    )


def test_an_ipv6_client_is_one_client_across_its_slash_64(edge: ServiceProcess) -> None:
    prefix = f"2001:db8:{os.urandom(2).hex()}:{os.urandom(2).hex()}"

    def guess(address: str) -> int:
        return login(edge.url, f"u-{uuid.uuid4().hex[:8]}@example.com", address).status_code

    # Four addresses of one /64 use up its burst of four; a fifth address is still it.
    assert [guess(f"{prefix}::{i:x}") for i in range(1, 5)] == [401] * 4
    assert guess(f"{prefix}::ffff") == 429
    # The next /64 is another client.
    assert guess(f"{prefix[:-1]}{(int(prefix[-1], 16) + 1) % 16:x}::1") == 401


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    platform: Platform, logs_dir: Path
) -> None:
    svc = ServiceProcess(
        "gateway",
        env={
            "REDLINE_ACCOUNTS_URL": platform["accounts"].url,
            **otel_env(None),
            "REDLINE_CREDENTIAL_NETWORK_BURST": "3",
        },
        log_path=logs_dir / f"credentials-untrusted-{os.getpid()}.log",
    ).start()
    try:
        statuses = [
            login(svc.url, f"u-{uuid.uuid4().hex[:8]}@example.com", f"203.0.113.{i}").status_code
            for i in range(1, 6)
        ]
    finally:
        svc.stop()
    # Rotating the header buys nothing: the peer (127.0.0.1) is the client.
    assert statuses == [401, 401, 401, 429, 429], statuses


@pytest.fixture
def slow_accounts(new_database: Callable[[str], str], logs_dir: Path) -> Iterator[ServiceProcess]:
    """Accounts hashing one password at a time, each taking a while."""
    svc = ServiceProcess(
        "accounts",
        env={
            "DATABASE_URL": new_database("accounts_shed"),
            **otel_env(None),
            "REDLINE_PASSWORD_MAX_CONCURRENT": "1",
            "REDLINE_PASSWORD_TIME_COST": "10",
            "REDLINE_PASSWORD_MEMORY_KIB": "65536",
        },
        log_path=logs_dir / f"accounts-shed-{os.getpid()}.log",
    ).start()
    yield svc
    svc.stop()


def test_argon2_past_its_concurrency_sheds_with_a_fast_503(slow_accounts: ServiceProcess) -> None:
    def attempt(i: int) -> tuple[httpx.Response, float]:
        start = time.perf_counter()
        r = httpx.post(
            f"{slow_accounts.url}/tokens",
            json={"email": f"nobody-{i}@example.com", "password": "whatever"},
            timeout=30,
        )
        return r, time.perf_counter() - start

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(8)))
    shed = [(r, took) for r, took in results if r.status_code == 503]
    hashed = [r for r, _ in results if r.status_code == 401]
    assert shed, [r.status_code for r, _ in results]
    assert hashed, [r.status_code for r, _ in results]
    slowest_hash = max(took for r, took in results if r.status_code == 401)
    for r, took in shed:
        assert r.json()["type"].endswith("/password-hashing-busy")
        assert r.headers["retry-after"] == "1"
        # The breaker of a caller does not count a shed sign-in against accounts.
        assert r.headers["redline-outcome"] == "final"
        assert took < slowest_hash, (took, slowest_hash)  # refused, not queued
