"""The accounts service's request and response bodies."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from services.chassis.validation import printable

# Deliberately simple: one "@", no spaces or control characters, a dot in the
# domain. Deliverability is proven by sending mail, not by a regular expression.
# Ranges rather than \s, which Python and ECMAScript (a client's validator)
# read differently (U+0085 is a space to one of them).
_PART = r"[^@\x00-\x20\x7f-\xa0]+"
Email = Annotated[
    str, msgspec.Meta(min_length=3, max_length=254, pattern=rf"^{_PART}@{_PART}\.{_PART}$")
]
# Hashed, never stored or logged: any character is fine, only the length is bounded.
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
Name = Annotated[str, printable(min_length=1, max_length=100)]


class Registration(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password
    name: Name


class Credentials(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class RegistrationAccepted(msgspec.Struct, kw_only=True):
    """The same answer whether the address was free or not: registration does not
    tell anyone which addresses have an account. The account's id comes with
    the first access token (``user_id``)."""

    email: str
    detail: str = "If the address was free, its account exists now: sign in to continue."


class User(msgspec.Struct, kw_only=True):
    id: UUID
    email: str
    name: str


class Token(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int
    user_id: UUID
