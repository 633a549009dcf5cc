"""What every service's OpenAPI document says beyond its handlers' signatures.

A generated client, or schemathesis (tests/test_fuzz.py), reads the document
as a contract, so it lists what the service really answers:

* every error is ``application/problem+json`` (``Problem``); each handler
  names the statuses of its own domain (``problems(404, 409)``), and the
  chassis adds those any operation can answer: 400 (validation), 503
  (a dependency or the database unavailable, shedding), 504 (deadline);
* a request body that refuses unknown fields (``forbid_unknown_fields``)
  says so (``additionalProperties: false``), so a client knows an extra field
  is a 400 and not ignored.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Schema
from litestar.types import Message, Scope
from litestar.typing import FieldDefinition

from services.chassis.errors import PROBLEM_JSON


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details: every error a Redline service answers."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None
    trace_id: str | None = None


_DESCRIPTIONS = {
    400: "The request is not valid: the problem's `errors` name the fields.",
    401: "No valid bearer token.",
    402: "The payment was declined.",
    404: "No such resource.",
    409: "The request conflicts with the resource's state.",
    413: "The request body is too large.",
    422: "The request is well-formed but cannot be processed.",
    429: "Rate limited: retry after `Retry-After` seconds.",
    502: "A service behind this one failed.",
    503: "A dependency is unavailable or shedding load: retry after `Retry-After` seconds.",
    504: "The request's time budget ran out.",
}

# What any operation may answer, whatever its handler does.
COMMON_STATUSES = (400, 503, 504)


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """``responses=`` for a handler: each status answered with a ``Problem``."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            generate_examples=False,
        )
        for status in statuses
    }


def success(model: Any, description: str) -> ResponseSpec:
    """A documented success body (no generated examples: they would be random data)."""
    return ResponseSpec(model, description=description, generate_examples=False)


def document_common_responses(app: Litestar, statuses: tuple[int, ...] = COMMON_STATUSES) -> None:
    """Add ``statuses`` to every documented operation of ``app`` (a handler's own win).

    An operation with path parameters also answers 404: a value of the wrong
    type (``/orders/not-a-uuid``) matches no route.
    """
    for route in app.routes:
        extra = (404,) if "{" in route.path else ()
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.include_in_schema:
                handler.responses = {**problems(*statuses, *extra), **(handler.responses or {})}


async def correct_allow_header(message: Message, scope: Scope) -> None:
    """``before_send``: the ``Allow`` of an automatic OPTIONS answer lists every method.

    Litestar's automatic OPTIONS handler lists only the methods of the first
    handler registered for a path (two handlers on ``/orders`` answered
    ``Allow: OPTIONS, POST``); the app's route map has them all.
    """
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    methods = scope["app"].route_handler_method_map.get(scope.get("path_template", ""))
    if not methods:
        return
    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(sorted(methods)).encode()))
    message["headers"] = headers


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's msgspec schema, with ``additionalProperties: false`` for a struct that
    forbids unknown fields (Litestar leaves it out: a client would think them ignored)."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        config = getattr(field_definition.type_, "__struct_config__", None)
        if config is not None and config.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
