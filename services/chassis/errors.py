"""RFC 9457 problem details for every error a service returns.

Clients always get ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail`` and ``instance``, plus ``request_id`` and ``trace_id``
so a user's bug report leads straight to the logs and the trace. Unexpected
exceptions are logged with their traceback and answered with a generic 500:
no stack trace ever reaches a client.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from services.chassis.resilience import CircuitOpenError, DeadlineExceeded, ResilienceError
from services.chassis.validation import readable
from telemetry import current_request_id, get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://redline.dev/problems/"

_log = get_logger("errors")


class ProblemError(Exception):
    """An error with a meaning for the client. Domain code raises subclasses or this."""

    status: int = 500
    type_slug: str | None = None  # None means "about:blank": the status says it all
    title: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        type_slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if type_slug is not None:
            self.type_slug = type_slug
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extensions = extensions


class ServiceUnavailable(ProblemError):
    status = 503
    type_slug = "service-unavailable"

    def __init__(self, detail: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))}
        super().__init__(detail, headers=headers, **kw)


class DatabaseUnavailable(ServiceUnavailable):
    type_slug = "database-unavailable"
    title = "Database unavailable"


def correlation_ids() -> dict[str, str]:
    """The current request's ``request_id`` and ``trace_id``, for a problem body built elsewhere."""
    ids = {}
    request_id = current_request_id()
    if request_id:
        ids["request_id"] = request_id
    span_ctx = trace.get_current_span().get_span_context()
    if span_ctx.is_valid:
        ids["trace_id"] = format(span_ctx.trace_id, "032x")
    return ids


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    detail: str,
    type_slug: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_slug if type_slug else "about:blank",
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    span = trace.get_current_span()
    if status >= 500 and span.is_recording():
        # The trace says why, not only "503": the problem type is the error's class.
        span.set_attribute("error.type", type_slug or str(status))
        span.set_status(Status(StatusCode.ERROR, detail))
    span_ctx = span.get_span_context()
    if span_ctx.is_valid:
        body["trace_id"] = format(span_ctx.trace_id, "032x")
    if extensions:
        body.update({k: v for k, v in extensions.items() if k not in body})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _problem_error(request: Request[Any, Any, Any], exc: ProblemError) -> Response[Any]:
    if exc.status >= 500:
        _log.warning("problem", status=exc.status, detail=exc.detail, type=exc.type_slug)
    return problem_response(
        request,
        status=exc.status,
        detail=exc.detail,
        type_slug=exc.type_slug,
        title=exc.title,
        headers=exc.headers,
        extensions=exc.extensions,
    )


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            error["message"] = readable(error["message"])
    return problem_response(
        request,
        status=exc.status_code,
        detail=exc.detail or "The request is not valid.",
        type_slug="validation-error",
        title="Request validation failed",
        extensions={"errors": errors},
    )


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    detail = exc.detail if exc.detail and exc.detail != _phrase(exc.status_code) else ""
    if not detail:
        detail = {
            404: f"No route matches {request.method} {request.url.path}.",
            405: f"{request.method} is not allowed on {request.url.path}.",
        }.get(exc.status_code, _phrase(exc.status_code) + ".")
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and "allow" not in {k.lower() for k in headers}:
        route_handler = request.scope.get("route_handler")
        methods = getattr(route_handler, "http_methods", None)
        if methods:
            headers["Allow"] = ", ".join(sorted(methods))
    return problem_response(request, status=exc.status_code, detail=detail, headers=headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    _log.error("unhandled exception", exc_info=exc, path=request.url.path)
    return problem_response(
        request,
        status=500,
        detail="An unexpected error occurred. The request_id identifies it in the logs.",
    )


def _data_error(request: Request[Any, Any, Any], exc: asyncpg.DataError) -> Response[Any]:
    """PostgreSQL (or asyncpg, before sending) refused a value: the input's fault, a 400.

    Validation at the boundary should catch every such value first; this is
    the net under it, so a value it missed is never a 500 that a caller's
    circuit breaker counts against the service.
    """
    _log.warning("value refused by the database", error=type(exc).__name__, path=request.url.path)
    return problem_response(
        request,
        status=400,
        detail="A value in the request cannot be stored or searched for.",
        type_slug="invalid-input",
        title="Invalid input",
    )


def _resilience_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A breaker, bulkhead or deadline refusing work that was not behind the resilient client."""
    if isinstance(exc, DeadlineExceeded):
        return problem_response(request, status=504, detail=str(exc), type_slug="deadline-exceeded")
    retry_after = exc.retry_after if isinstance(exc, CircuitOpenError) else 1.0
    return problem_response(
        request,
        status=503,
        detail=str(exc),
        type_slug="overloaded",
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ResilienceError: _resilience_error,
        asyncpg.DataError: _data_error,
        ProblemError: _problem_error,
        ValidationException: _validation_error,
        HTTPException: _http_exception,
        Exception: _unexpected,
    }
