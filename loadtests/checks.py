"""Which answers a journey expects, and a readable failure message for the others.

Expected answers are successes in Locust's statistics, even 4xx ones: a
declined card (402) and a sold-out limited edition (409 out-of-stock) are the
platform working. Anything else fails with what was expected and the
problem's title and detail; Locust's error report and failures CSV put the
method and route in front (``POST /api/v1/orders: expected 201/202/402/409,
got 500: Internal Server Error: ...``), so the messages do not repeat them.

429 is a failure by default: the gateway limits anonymous traffic per client
IP, and a load generator is one IP, so a 429 means the test measured the rate
limiter rather than the platform (raise ``REDLINE_RATE_LIMIT_IP_PER_SECOND``
and ``..._BURST`` on the gateway for big runs). ``--rate-limited-ok`` accepts
it, for shapes that overload on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

PROBLEM_BASE = "https://redline.dev/problems/"
OUT_OF_STOCK = PROBLEM_BASE + "out-of-stock"
IN_PROGRESS = PROBLEM_BASE + "idempotency-key-in-progress"

# POST /api/v1/orders: confirmed, still completing, declined, sold out.
ORDER_PLACED = frozenset({201, 202, 402, 409})


def json_object(body: bytes | str | None) -> dict[str, Any]:
    """A JSON object body (a problem+json one, say) as a dict; empty if it is not one."""
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def describe(body: bytes | str | None, limit: int = 160) -> str:
    """``title: detail`` of a problem, or the start of whatever the body is."""
    doc = json_object(body)
    if doc.get("title") or doc.get("detail"):
        parts = [str(doc[k]) for k in ("title", "detail") if doc.get(k)]
        return ": ".join(parts)[:limit]
    if not body:
        return "(empty body)"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return " ".join(text.split())[:limit]


def unexpected(status: int, expected: Collection[int], body: bytes | str | None) -> str:
    want = "/".join(str(s) for s in sorted(expected))
    return f"expected {want}, got {status}: {describe(body)}"


def verdict(
    status: int,
    expected: Collection[int],
    body: bytes | str | None,
    *,
    conflicts: Collection[str] = (),
    rate_limited_ok: bool = False,
    error: str | None = None,
) -> str | None:
    """None when the answer is one the journey expects, else the failure message.

    ``conflicts``: the problem types a 409 may have (sold out, yes; a lost
    reservation, no).
    """
    if status == 0:
        return f"no response: {error or 'connection failed'}"
    if status == 429:
        if rate_limited_ok:
            return None
        return (
            f"429 rate limited by the gateway: {describe(body)} (one load generator is one "
            "client IP: raise REDLINE_RATE_LIMIT_IP_* on the gateway, or --rate-limited-ok)"
        )
    if status not in expected:
        return unexpected(status, expected, body)
    if status == 409 and conflicts:
        kind = json_object(body).get("type")
        if kind not in conflicts:
            return f"unexpected 409 {kind}: {describe(body)}"
    return None
