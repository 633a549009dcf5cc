"""HTTP routes of the accounts service."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import SkipValidation

from services.accounts import store
from services.accounts.models import (
    Credentials,
    Registration,
    RegistrationAccepted,
    Token,
    User,
)
from services.accounts.store import Passwords
from services.chassis import Database
from services.chassis.auth import current_principal, issue_token, jwt_secret
from services.chassis.openapi import problems


class AccountsController(Controller):
    tags = ["accounts"]

    @post("/users", status_code=202)
    async def register(
        self, db: Database, passwords: SkipValidation[Passwords], data: Registration
    ) -> RegistrationAccepted:
        """Create an account. The answer is the same whether the address had one already."""
        await store.register(
            db, passwords, email=data.email, password=data.password, name=data.name
        )
        return RegistrationAccepted(email=data.email)

    @post("/tokens", status_code=200, responses=problems(401))
    async def login(
        self,
        db: Database,
        passwords: SkipValidation[Passwords],
        token_ttl_seconds: int,
        data: Credentials,
    ) -> Token:
        """Exchange e-mail and password for a bearer access token."""
        user = await store.authenticate(db, passwords, email=data.email, password=data.password)
        ttl = token_ttl_seconds
        token = issue_token(user.id, user.email, ttl_seconds=ttl, secret=jwt_secret())
        return Token(
            access_token=token,
            token_type="Bearer",  # noqa: S106 - the scheme's name, not a secret
            expires_in=ttl,
            user_id=user.id,
        )

    @get("/users/me", responses=problems(401, 404))
    async def me(self, request: Request[Any, Any, Any], db: Database) -> User:
        """The caller's profile, from the bearer token the gateway forwarded."""
        principal = current_principal(request)
        return await store.get_user(db, principal.user_id)
