"""Token verification, and its cache of tokens verified already (services/chassis/auth.py)."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from services.chassis import auth
from services.chassis.auth import Unauthorized, issue_token, verify_token

SECRET = "a-test-secret-of-at-least-thirty-two-bytes"


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    auth._VERIFIED.clear()


def test_a_token_verifies_to_its_user_and_again_from_the_cache() -> None:
    user = uuid.uuid4()
    token = issue_token(user, "a@example.com", ttl_seconds=60, secret=SECRET)
    first = verify_token(token, secret=SECRET)
    assert (first.user_id, first.email) == (user, "a@example.com")
    assert (token, SECRET) in auth._VERIFIED
    assert verify_token(token, secret=SECRET) is first


def test_a_cached_token_is_judged_by_its_times_at_every_use() -> None:
    # Expired two seconds ago: within a 5 s leeway it passes (and is cached), without
    # leeway the cached entry must not vouch for it.
    token = issue_token(uuid.uuid4(), "b@example.com", ttl_seconds=-2, secret=SECRET)
    verify_token(token, secret=SECRET, leeway_seconds=5)
    with pytest.raises(Unauthorized):
        verify_token(token, secret=SECRET, leeway_seconds=0)


def test_a_token_not_yet_valid_is_refused_though_cached() -> None:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "iss": auth.ISSUER,
        "aud": auth.AUDIENCE,
        "iat": now + 3,
        "nbf": now + 3,
        "exp": now + 60,
    }
    token = jwt.encode(claims, SECRET, algorithm=auth.ALGORITHM)
    verify_token(token, secret=SECRET, leeway_seconds=5)  # 3 s early, within the leeway
    with pytest.raises(Unauthorized):
        verify_token(token, secret=SECRET, leeway_seconds=0)


def test_the_cache_vouches_only_for_the_same_text_under_the_same_secret() -> None:
    token = issue_token(uuid.uuid4(), "c@example.com", ttl_seconds=60, secret=SECRET)
    verify_token(token, secret=SECRET)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    for text, secret in ((tampered, SECRET), (token, SECRET + "-rotated")):
        with pytest.raises(Unauthorized):
            verify_token(text, secret=secret)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_VERIFIED_MAX", 3)
    tokens = [
        issue_token(uuid.uuid4(), f"{i}@example.com", ttl_seconds=60, secret=SECRET)
        for i in range(7)
    ]
    for token in tokens:
        verify_token(token, secret=SECRET)
        assert len(auth._VERIFIED) <= 3
