"""Forwarding a public request to a service and mapping what comes back.

Downstream 2xx and 4xx answers pass through (status, body, and the headers a
client needs); a 5xx becomes a problem the client can act on: 502 for a
service error, 503 (with Retry-After) when a service is down or shedding
load, 504 when it did not answer within the route's budget.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from services.chassis.aiohttp_transport import WireResponse
from services.chassis.errors import PROBLEM_JSON, ProblemError
from services.chassis.http_client import Downstream
from services.chassis.wire import WireAnswer

# Request headers a service needs from the client; everything else stays here.
FORWARDED_REQUEST_HEADERS = ("authorization", "idempotency-key", "content-type", "accept")
_FORWARDED_REQUEST_KEYS = {name.encode(): name for name in FORWARDED_REQUEST_HEADERS}
# Response headers the client needs from a service.
FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "retry-after",
    "location",
    "idempotent-replayed",
    "www-authenticate",
)
API_PREFIX = "/api/v1"


class BadGateway(ProblemError):
    status = 502
    type_slug = "bad-gateway"
    title = "A service failed"


async def forward(
    request: Request[Any, Any, Any],
    downstream: Downstream,
    method: str,
    path: str,
    template: str,
) -> Response[bytes]:
    # Read off the scope: the first value of each (as request.headers.get
    # would give), an empty one not sent.
    headers: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        key = _FORWARDED_REQUEST_KEYS.get(name)
        if key is not None and key not in headers:
            headers[key] = value.decode("latin-1")
    headers = {k: v for k, v in headers.items() if v}
    body = await request.body() if method in ("POST", "PUT", "PATCH") else None
    query = request.scope["query_string"]
    response = await downstream.relay(
        method,
        path,
        url_template=template,
        params=(dict(request.query_params) or None) if query else None,
        headers=headers,
        content=body,
    )
    return _relay(response, downstream.name)


def _relay(response: WireAnswer | WireResponse, service: str) -> Response[bytes]:
    status = response.status_code
    # A 503 or 504 is already a problem the client can act on (with its
    # Retry-After); any other 5xx is the service failing.
    if status >= 500 and status not in (503, 504):
        raise BadGateway(
            f"The {service} service failed ({status}).", dependency=service, upstream_status=status
        )
    headers = {}
    for name in FORWARDED_RESPONSE_HEADERS:
        value = response.headers.get(name)
        if value is None or name == "content-type":
            continue
        if name == "location" and value.startswith("/"):
            value = API_PREFIX + value  # service paths are public under /api/v1
        headers[name] = value
    media = response.headers.get("content-type", "application/json")
    if status >= 400 and "json" in media and "problem" not in media:
        media = PROBLEM_JSON
    return Response(response.content, status_code=status, headers=headers, media_type=media)
