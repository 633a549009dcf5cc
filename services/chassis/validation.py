"""Text at the boundary: what a service accepts before it reaches SQL or a log line.

PostgreSQL refuses a NUL byte in text (``invalid byte sequence for encoding
"UTF8": 0x00``) and control characters in a name or a search term are never
meant; both are refused at the edge of every service with a 400 that names
the field, so they can never become a 500 (nor, through the gateway, a 502
that counts against a circuit breaker). Every text field also has a length
bound, and every number a range that fits its column.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from litestar.params import Parameter

# No C0 control characters (NUL included) and no DEL. Tabs and newlines are
# not meant in any field the services take either.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# How msgspec quotes the pattern in its messages (backslashes doubled).
_QUOTED = re.escape(PRINTABLE_PATTERN.replace("\\", "\\\\"))
_PATTERN_IN_MESSAGE = re.compile(f"matching regex '{_QUOTED}'")

# A PostgreSQL ``integer`` column (ids, quantities).
INT4_MAX = 2_147_483_647


def printable(*, min_length: int = 0, max_length: int) -> msgspec.Meta:
    """The constraints of a text field: a length range and no control characters."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=PRINTABLE_PATTERN)


PaymentMethod = Annotated[str, printable(min_length=1, max_length=64)]

# Pagination query parameters, the same wherever a list is paged.
PageLimit = Annotated[int, Parameter(ge=1, le=100)]
PageOffset = Annotated[int, Parameter(ge=0, le=100_000)]


def readable(message: str) -> str:
    """A validation message with the pattern above said in words."""
    return _PATTERN_IN_MESSAGE.sub("without control characters", message)
