"""The accounts and payments services' contracts, against real processes."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from services.chassis.auth import AUDIENCE, DEV_SECRET, ISSUER
from tests.harness import (
    FAST_PASSWORD_HASHING,
    PREDICTABLE_PAYMENTS,
    ServiceProcess,
    free_port,
    otel_env,
)


@pytest.fixture(scope="module")
def accounts(new_database: Callable[[str], str], logs_dir: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        "accounts",
        env={"DATABASE_URL": new_database("accounts"), **FAST_PASSWORD_HASHING, **otel_env(None)},
        log_path=logs_dir / f"accounts-{free_port()}.log",
    ).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def payments(new_database: Callable[[str], str], logs_dir: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        "payments",
        env={
            "DATABASE_URL": new_database("payments"),
            **PREDICTABLE_PAYMENTS,
            **otel_env(None),
        },
        log_path=logs_dir / f"payments-{free_port()}.log",
    ).start()
    yield svc
    svc.stop()


def _register(
    accounts: ServiceProcess, email: str, password: str = "correct horse"
) -> httpx.Response:
    return httpx.post(
        f"{accounts.url}/users", json={"email": email, "password": password, "name": "Ada"}
    )


def test_register_login_and_profile(accounts: ServiceProcess) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    created = _register(accounts, email)
    assert created.status_code == 202
    assert "password" not in created.text
    token = httpx.post(
        f"{accounts.url}/tokens", json={"email": email.upper(), "password": "correct horse"}
    )
    assert token.status_code == 200
    body = token.json()
    claims = jwt.decode(
        body["access_token"], DEV_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["sub"] == body["user_id"]
    me = httpx.get(
        f"{accounts.url}/users/me", headers={"authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["email"] == email


def test_registration_does_not_say_whether_an_address_has_an_account(
    accounts: ServiceProcess,
) -> None:
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    first = _register(accounts, email)
    again = _register(accounts, email.upper(), password="another password")
    assert first.status_code == again.status_code == 202
    assert first.json() == {**again.json(), "email": email}
    # The account is the first one: the second registration changed nothing.
    login = httpx.post(f"{accounts.url}/tokens", json={"email": email, "password": "correct horse"})
    assert login.status_code == 200
    stolen = httpx.post(
        f"{accounts.url}/tokens", json={"email": email, "password": "another password"}
    )
    assert stolen.status_code == 401


def test_bad_credentials_do_not_say_which_part_was_wrong(accounts: ServiceProcess) -> None:
    email = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    _register(accounts, email)
    wrong_password = httpx.post(
        f"{accounts.url}/tokens", json={"email": email, "password": "nope nope"}
    )
    unknown_user = httpx.post(
        f"{accounts.url}/tokens", json={"email": "x" + email, "password": "nope nope"}
    )
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json()["detail"] == unknown_user.json()["detail"]
    assert wrong_password.json()["type"] == unknown_user.json()["type"]


def test_registration_validates_input(accounts: ServiceProcess) -> None:
    for body in (
        {"email": "not-an-email", "password": "long enough", "name": "x"},
        {"email": "a@b.co", "password": "short", "name": "x"},
        {"email": "a@b.co", "password": "long enough", "name": ""},
        {"email": "a@b.co", "password": "long enough", "name": "x", "admin": True},
    ):
        r = httpx.post(f"{accounts.url}/users", json=body)
        assert r.status_code == 400, body
        assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda now, sub: jwt.encode(
            {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now - 100, "exp": now - 50},
            DEV_SECRET,
            algorithm="HS256",
        ),
        lambda now, sub: jwt.encode(
            {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60},
            "forged-secret-000000000000000000000",
            algorithm="HS256",
        ),
        lambda now, sub: jwt.encode(
            {"sub": sub, "iss": ISSUER, "aud": "someone-else", "iat": now, "exp": now + 60},
            DEV_SECRET,
            algorithm="HS256",
        ),
        lambda now, sub: jwt.encode(
            {"sub": sub, "iss": "evil", "aud": AUDIENCE, "iat": now, "exp": now + 60},
            DEV_SECRET,
            algorithm="HS256",
        ),
        lambda now, sub: jwt.encode(
            {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60},
            DEV_SECRET,
            algorithm="HS512",
        ),
        lambda now, sub: jwt.encode(
            {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60},
            None,
            algorithm="none",
        ),
        lambda now, sub: "not.a.jwt",
    ],
    ids=[
        "expired",
        "forged",
        "wrong-audience",
        "wrong-issuer",
        "wrong-algorithm",
        "alg-none",
        "garbage",
    ],
)
def test_bad_tokens_are_401(
    accounts: ServiceProcess, make_token: Callable[[int, str], str]
) -> None:
    token = make_token(int(time.time()), str(uuid.uuid4()))
    r = httpx.get(f"{accounts.url}/users/me", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def _charge(
    payments: ServiceProcess, order_id: str, method: str = "pm_card_visa", cents: int = 1999
) -> httpx.Response:
    return httpx.post(
        f"{payments.url}/charges",
        json={"order_id": order_id, "amount_cents": cents, "payment_method": method},
        timeout=10,
    )


def test_charge_is_idempotent_even_when_concurrent(payments: ServiceProcess) -> None:
    order = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(
            r.status_code for r in pool.map(lambda _: _charge(payments, order), range(8))
        )
    assert codes == [200] * 7 + [201]
    refs = {_charge(payments, order).json()["processor_ref"] for _ in range(3)}
    assert len(refs) == 1, "the processor was called once"


def test_declines_are_402_with_a_reason_and_stay_declined(payments: ServiceProcess) -> None:
    order = str(uuid.uuid4())
    first = _charge(payments, order, "pm_card_insufficientFunds")
    assert first.status_code == 402
    assert first.json()["reason"] == "insufficient_funds"
    assert _charge(payments, order).status_code == 402  # a retry does not turn into a charge


def test_refund_is_idempotent_and_blocks_a_late_charge(payments: ServiceProcess) -> None:
    order = str(uuid.uuid4())
    assert _charge(payments, order).status_code == 201
    for _ in range(2):
        r = httpx.post(f"{payments.url}/charges/{order}/refund")
        assert r.json()["status"] == "refunded"
    never_charged = str(uuid.uuid4())
    assert httpx.post(f"{payments.url}/charges/{never_charged}/refund").json()["status"] == "voided"
    assert _charge(payments, never_charged).status_code == 409


def test_a_different_amount_for_the_same_order_is_refused(payments: ServiceProcess) -> None:
    order = str(uuid.uuid4())
    assert _charge(payments, order, cents=1000).status_code == 201
    assert _charge(payments, order, cents=2000).status_code == 422


def test_business_metrics_are_exported(payments: ServiceProcess) -> None:
    _charge(payments, str(uuid.uuid4()), "pm_card_chargeDeclined")
    text = httpx.get(f"{payments.url}/metrics").text
    assert 'payments_declined_total{reason="card_declined"}' in text
    assert 'payments_total{operation="charge",outcome="charged"}' in text
