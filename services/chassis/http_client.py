"""The resilient HTTP client: one downstream dependency, every guard in one order.

A call goes through, from the outside in::

    deadline  -> refuse at once if the caller's budget is spent (504)
    bulkhead  -> at most N concurrent calls to this dependency (503 when full)
    breaker   -> fail fast while the dependency is failing (503, Retry-After)
    retry     -> idempotent calls only, on connect errors and 502/503/504,
                 full-jitter backoff, within the deadline and a retry budget
    balancer  -> each attempt picks one of the dependency's endpoints (power of
                 two choices; ejected outliers skipped; a retry avoids the ones
                 the call tried); a refused connection fails over at once to
                 another endpoint, any method (nothing was sent)
    timeout   -> each attempt gets min(own timeout, remaining budget)
    transport -> a CLIENT span per attempt, traceparent, X-Request-ID and the
                 remaining budget in ``x-deadline-remaining-ms``

That is ``bulkhead.call(breaker.call, retrier.call(attempt))``; why in this
order is argued once, in ``services/chassis/resilience/__init__.py``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx
import msgspec

from services.chassis.aiohttp_transport import AiohttpTransport, WireResponse
from services.chassis.discovery import DnsDiscovery
from services.chassis.errors import ProblemError, ServiceUnavailable
from services.chassis.resilience import (
    DEADLINE_HEADER,
    RETRYABLE_STATUSES,
    Balancer,
    BreakerConfig,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Deadline,
    DeadlineExceeded,
    Endpoint,
    OutlierPolicy,
    Retrier,
    RetryBudget,
    RetryPolicy,
    current_deadline,
    default_hooks,
    is_idempotent,
    register,
    to_header,
)
from services.chassis.wire import METHODS as WIRE_METHODS
from services.chassis.wire import WireAnswer, WireClient
from telemetry import RESEND_COUNT_EXTENSION, URL_TEMPLATE_EXTENSION, InstrumentedTransport

# Failures a retry can fix: nothing reached the server, the server said "later",
# or the answer was lost (a timeout, a connection closed or reset before the
# answer: e.g. a replica shutting down just as a kept-alive connection was
# reused). The retrier only ever retries idempotent calls, for which a lost
# answer is safe to ask again.
_RETRYABLE_EXCEPTIONS = (
    httpx.ConnectError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


class DownstreamUnavailable(ServiceUnavailable):
    """The dependency could not be reached, refused, or its breaker/bulkhead said no."""

    type_slug = "downstream-unavailable"
    title = "A service this request needs is unavailable"
    # False when no attempt can have reached the dependency (refused connection,
    # open breaker, full bulkhead); True when one may have (a lost answer).
    maybe_delivered = False


class DownstreamTimeout(ProblemError):
    status = 504
    type_slug = "downstream-timeout"
    title = "A service this request needs did not answer in time"
    maybe_delivered = True


def _retryable_exception(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE_EXCEPTIONS)


# A dependency marks a 5xx answer that is its considered, final outcome (an
# order it cancelled because *its* dependency was down) with this header:
# asking again replays the same answer, and the dependency itself is working.
FINAL_OUTCOME_HEADER = "redline-outcome"


_ANSWERS = (httpx.Response, WireResponse, WireAnswer)
# What ``Downstream.relay`` answers.
Answer = WireAnswer | WireResponse
_R = TypeVar("_R", httpx.Response, WireAnswer | WireResponse)


def is_final(response: httpx.Response | WireResponse | WireAnswer) -> bool:
    return bool(response.headers.get(FINAL_OUTCOME_HEADER) == "final")


def _failed_result(result: Any) -> bool:
    """What the breaker counts as a failed call: a 5xx (a 4xx is the caller's problem),
    unless the dependency says it is its final answer."""
    return isinstance(result, _ANSWERS) and result.status_code >= 500 and not is_final(result)


def _retry_result(result: Any) -> bool:
    return (
        isinstance(result, _ANSWERS)
        and result.status_code in RETRYABLE_STATUSES
        and not is_final(result)
    )


# Attempt failures that count against an endpoint for outlier ejection: it
# refused, dropped or did not answer. (A 5xx answer is judged by _failed_result.)
_ENDPOINT_FAILURES = (httpx.TransportError,)


# Path characters that need no percent-encoding (RFC 3986 pchar and "/"), "%" included:
# a path made of them goes on the wire as it is (httpx would not change it either).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")


class _WireTarget:
    """An endpoint's URL parts, parsed once, for ``Downstream.relay``."""

    __slots__ = ("base_url", "host", "lean", "path_prefix", "port", "prefix", "scheme")

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        self.base_url = base_url
        self.scheme = url.scheme
        self.host = url.host
        self.port = url.port
        # services/chassis/wire.py speaks plain HTTP and sends no credentials.
        self.lean = url.scheme == "http" and not url.userinfo
        path = url.raw_path.decode("ascii")
        self.path_prefix = "" if path == "/" else path
        # What url.full starts with: no credentials (nor query), as the conventions ask.
        self.prefix = f"{url.scheme}://{url.netloc.decode('ascii')}{self.path_prefix}"

    def url(self, path: str, query: str) -> tuple[str, str, str]:
        """The encoded URL to send to, its request target, and the span's ``url.full``."""
        if path.startswith("/") and _PLAIN_PATH.fullmatch(path):
            return self.base_url + path + query, self.path_prefix + path + query, self.prefix + path
        url = httpx.URL(self.base_url + path)  # quotes what needs quoting, as request() would
        raw = url.raw_path.decode("ascii")
        full = f"{url.scheme}://{url.netloc.decode('ascii')}{raw}"
        return str(url) + query, raw + query, full.partition("?")[0]


def split_urls(value: str) -> tuple[str, ...]:
    """``REDLINE_<DEP>_URL`` holds one base URL or several, comma-separated."""
    return tuple(u.strip().rstrip("/") for u in value.split(",") if u.strip())


@dataclass(frozen=True)
class DependencyConfig:
    name: str
    # One base URL, or several comma-separated: the dependency's endpoints.
    base_url: str
    # Per attempt; the caller's remaining budget may make it shorter.
    timeout: float = 2.0
    max_concurrent: int = 32
    max_wait: float = 0.0
    breaker: BreakerConfig = field(
        default_factory=lambda: BreakerConfig(
            failure_rate_threshold=50.0,
            slow_call_rate_threshold=80.0,
            slow_call_duration=1.0,
            sliding_window_size=20,
            minimum_calls=10,
            wait_duration_in_open=5.0,
            permitted_calls_in_half_open=3,
            record_result=_failed_result,
        )
    )
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            max_attempts=3,
            base_delay=0.05,
            max_delay=0.5,
            retry_on_exception=_retryable_exception,
            retry_on_result=_retry_result,
        )
    )
    retry_budget_ratio: float = 0.2
    outlier: OutlierPolicy = field(default_factory=OutlierPolicy)
    # > 0: re-resolve the endpoints' host names this often (services/chassis/discovery.py).
    dns_refresh_seconds: float = 0.0

    @property
    def endpoints(self) -> tuple[str, ...]:
        return split_urls(self.base_url)


class Downstream:
    """A dependency: its client, breaker, bulkhead and retrier, named after it."""

    def __init__(self, config: DependencyConfig) -> None:
        self.config = config
        self.name = config.name
        hooks = default_hooks()
        self.breaker = CircuitBreaker(config.name, config.breaker, hooks=hooks)
        self.bulkhead = Bulkhead(config.name, config.max_concurrent, config.max_wait, hooks=hooks)
        self.retrier = Retrier(
            config.name,
            config.retry,
            budget=RetryBudget(ratio=config.retry_budget_ratio),
            hooks=hooks,
        )
        self.balancer = Balancer(config.name, config.endpoints, config.outlier, hooks=hooks)
        register(self.breaker)
        register(self.bulkhead)
        register(self.retrier)
        register(self.balancer)
        # Requests go straight to the transport, not through httpx.AsyncClient:
        # its cookie jar, redirect and auth loops and per-request log line are
        # nothing a call between services wants, and cost ~140 µs a call
        # (benchmarks/http_client.py).
        # Keep-alive pool sized to the bulkhead: a slot never waits for a socket.
        self._wire = AiohttpTransport(max_connections=config.max_concurrent)
        self._transport = InstrumentedTransport(self._wire, peer_service=config.name)
        # The gateway's relay (``relay``): its own keep-alive pool, as large.
        self._lean = WireClient(max_connections=config.max_concurrent)
        self._targets: dict[str, _WireTarget] = {}
        self._discovery: DnsDiscovery | None = None
        if config.dns_refresh_seconds > 0:
            self._discovery = DnsDiscovery(
                self.balancer, config.endpoints, config.dns_refresh_seconds
            )

    async def aclose(self) -> None:
        if self._discovery is not None:
            await self._discovery.aclose()
        await self._transport.aclose()
        await self._lean.aclose()

    async def _send(self, endpoint: Endpoint, send: Callable[[], Awaitable[_R]]) -> _R:
        """One request to one endpoint, its outcome told to the balancer."""
        balancer = self.balancer
        balancer.begin(endpoint)
        failed = True
        try:
            response = await send()
            failed = _failed_result(response)
            return response
        except _ENDPOINT_FAILURES:
            raise
        except BaseException:
            failed = False  # cancelled, or our own bug: not the endpoint's fault
            raise
        finally:
            balancer.end(endpoint, failed=failed)

    async def request(
        self,
        method: str,
        path: str,
        *,
        url_template: str | None = None,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, capped by the deadline
    ) -> httpx.Response:
        """Send one logical request; returns whatever status the dependency answered.

        Raises ``DownstreamUnavailable`` (503) when the dependency cannot be
        reached or a guard refuses, ``DownstreamTimeout`` (504) when it does
        not answer within the budget. The caller decides what a 4xx/5xx means.
        """
        transport = self._transport

        def one(
            endpoint: Endpoint, headers: dict[str, str], budget: float, attempt: int
        ) -> Awaitable[httpx.Response]:
            # The timeout extension is how httpx tells a transport its timeouts.
            extensions: dict[str, Any] = {
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), budget)
            }
            if url_template:
                extensions[URL_TEMPLATE_EXTENSION] = url_template
            if attempt > 1:
                extensions[RESEND_COUNT_EXTENSION] = attempt - 1
            request = httpx.Request(
                method,
                endpoint.base_url + path,
                params=params,
                headers=headers,
                json=json,
                content=content,
                extensions=extensions,
            )
            return transport.handle_async_request(request)

        return await self._call(method, headers, idempotent, timeout, one)

    async def relay(
        self,
        method: str,
        path: str,
        *,
        url_template: str | None = None,
        content: bytes | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> WireAnswer | WireResponse:
        """``request`` without httpx's models: the services' own calls go this way.

        The gateway relays its public routes through it, the orders service
        prices and drives its sagas with it. The same guards, span, metrics and
        errors; the answer has ``status_code``, ``headers`` (looked up by
        lower-case name), ``content`` and ``json()``. ``headers`` must have
        lower-case names (the trace context and request id are added to them
        as such). Sent through ``services/chassis/wire.py`` (an ``http``
        endpoint without credentials, the methods it sends), else through
        aiohttp. 94 µs of client CPU a call against ``request``'s 360 in
        benchmarks/http_client.py.
        """
        transport = self._transport
        # The body is relayed as it comes: ask for it unencoded (request()'s
        # httpx.Response would decode it).
        headers = {"accept-encoding": "identity", **(headers or {})}
        if json is not None:
            content = msgspec.json.encode(json)
            headers["content-type"] = "application/json"
        query = ""
        if params:
            query = "?" + str(httpx.QueryParams(params))
        lean = method in WIRE_METHODS

        def one(
            endpoint: Endpoint, headers: dict[str, str], budget: float, attempt: int
        ) -> Awaitable[WireAnswer | WireResponse]:
            target = self._targets.get(endpoint.base_url) or self._target(endpoint.base_url)
            url, request_target, url_full = target.url(path, query)
            send: Callable[[], Awaitable[WireAnswer | WireResponse]]
            if lean and target.lean:
                send = partial(
                    self._lean.send,
                    method,
                    target.host,
                    target.port or 80,
                    request_target,
                    headers,
                    content,
                    connect=budget,
                    read=budget,
                )
            else:
                send = partial(
                    self._wire.send,
                    method,
                    url,
                    headers,
                    content,
                    pool=budget,
                    connect=budget,
                    read=budget,
                    total=budget,
                )
            return transport.traced(
                method,
                target.scheme,
                target.host,
                target.port,
                url_full,
                headers,
                send,
                template=url_template,
                resend=attempt - 1,
            )

        return await self._call(method, headers, idempotent, None, one)

    def _target(self, base_url: str) -> _WireTarget:
        target = self._targets[base_url] = _WireTarget(base_url)
        return target

    async def _call(
        self,
        method: str,
        headers: dict[str, str] | None,
        idempotent: bool | None,
        timeout: float | None,  # noqa: ASYNC109 - per attempt, capped by the deadline
        one: Callable[[Endpoint, dict[str, str], float, int], Awaitable[_R]],
    ) -> _R:
        """The guards around attempts; ``one(endpoint, headers, budget, attempt)`` sends one."""
        headers = dict(headers or {})
        if idempotent is None:
            idempotent = is_idempotent(method, headers)
        deadline = current_deadline.get()
        if deadline is not None and deadline.expired:
            raise DownstreamTimeout(f"No time left to call {self.name}.", dependency=self.name)
        attempt_number = 0
        # Whether any attempt may have reached the server: the difference, for a
        # failed charge, between "nothing happened" and "refund to be safe".
        maybe_delivered = False
        # Endpoints this call has sent to, most recent last: a retry goes elsewhere.
        tried: list[Endpoint] = []
        if self._discovery is not None:
            self._discovery.ensure_started()

        async def attempt() -> _R:
            nonlocal attempt_number, maybe_delivered
            attempt_number += 1
            own = timeout if timeout is not None else self.config.timeout
            budget = deadline.timeout_for(own) if deadline is not None else own
            if budget <= 0:
                raise DeadlineExceeded(self.name)
            deadline_header = to_header(deadline) if deadline is not None else None
            while True:
                endpoint = self.balancer.pick(exclude=tried)
                tried.append(endpoint)
                # A fresh copy per request: the transport adds the trace context to it.
                send_headers = dict(headers)
                if deadline_header is not None:
                    send_headers[DEADLINE_HEADER] = deadline_header
                try:
                    return await self._send(
                        endpoint, partial(one, endpoint, send_headers, budget, attempt_number)
                    )
                except httpx.ConnectError:
                    # Refused: the request never left, so another endpoint may
                    # have it now, whatever the method, without a backoff.
                    if not self._untried(tried, deadline):
                        raise
                except (httpx.ConnectTimeout, httpx.PoolTimeout):
                    raise  # no connection: the request never left, but the time is spent
                except BaseException:
                    maybe_delivered = True
                    raise

        error: DownstreamUnavailable | DownstreamTimeout
        try:
            return await self.bulkhead.call(
                self.breaker.call, partial(self.retrier.call, attempt, idempotent=idempotent)
            )
        except CircuitOpenError as exc:
            error = DownstreamUnavailable(
                f"{self.name} is failing; calls are paused (circuit breaker open).",
                retry_after=exc.retry_after,
                dependency=self.name,
                reason="circuit_open",
            )
        except BulkheadFullError:
            error = DownstreamUnavailable(
                f"Too many calls to {self.name} in flight.",
                dependency=self.name,
                reason="bulkhead_full",
            )
        except (httpx.TimeoutException, DeadlineExceeded):
            error = DownstreamTimeout(f"{self.name} did not answer in time.", dependency=self.name)
        except httpx.TransportError as exc:
            error = DownstreamUnavailable(
                f"{self.name} is unreachable ({type(exc).__name__}).",
                dependency=self.name,
                reason="unreachable",
            )
        error.maybe_delivered = maybe_delivered
        raise error from None

    def _untried(self, tried: list[Endpoint], deadline: Deadline | None) -> bool:
        """Is there an endpoint this call has not tried, and time to try it?"""
        if deadline is not None and deadline.remaining() <= 0:
            return False
        return self.balancer.pick(exclude=tried) not in tried
