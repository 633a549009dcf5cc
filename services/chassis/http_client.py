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

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from services.chassis.aiohttp_transport import AiohttpTransport
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
from telemetry import RESEND_COUNT_EXTENSION, URL_TEMPLATE_EXTENSION, InstrumentedTransport

# Failures a retry can fix: nothing reached the server, the server said "later",
# or the answer was lost (a timeout). The retrier only ever retries idempotent
# calls, for which a lost answer is safe to ask again.
_RETRYABLE_EXCEPTIONS = (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError)


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


def is_final(response: httpx.Response) -> bool:
    return bool(response.headers.get(FINAL_OUTCOME_HEADER) == "final")


def _failed_result(result: Any) -> bool:
    """What the breaker counts as a failed call: a 5xx (a 4xx is the caller's problem),
    unless the dependency says it is its final answer."""
    return isinstance(result, httpx.Response) and result.status_code >= 500 and not is_final(result)


def _retry_result(result: Any) -> bool:
    return (
        isinstance(result, httpx.Response)
        and result.status_code in RETRYABLE_STATUSES
        and not is_final(result)
    )


# Attempt failures that count against an endpoint for outlier ejection: it
# refused, dropped or did not answer. (A 5xx answer is judged by _failed_result.)
_ENDPOINT_FAILURES = (httpx.TransportError,)


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
        self._transport = InstrumentedTransport(
            # Keep-alive pool sized to the bulkhead: a slot never waits for a socket.
            AiohttpTransport(max_connections=config.max_concurrent),
            peer_service=config.name,
        )
        self._discovery: DnsDiscovery | None = None
        if config.dns_refresh_seconds > 0:
            self._discovery = DnsDiscovery(
                self.balancer, config.endpoints, config.dns_refresh_seconds
            )

    async def aclose(self) -> None:
        if self._discovery is not None:
            await self._discovery.aclose()
        await self._transport.aclose()

    async def _send(self, endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        """One request to one endpoint, its outcome told to the balancer."""
        balancer = self.balancer
        balancer.begin(endpoint)
        failed = True
        try:
            response = await self._transport.handle_async_request(request)
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

        async def attempt() -> httpx.Response:
            nonlocal attempt_number, maybe_delivered
            attempt_number += 1
            own = timeout if timeout is not None else self.config.timeout
            budget = deadline.timeout_for(own) if deadline is not None else own
            if budget <= 0:
                raise DeadlineExceeded(self.name)
            send_headers = dict(headers)
            if deadline is not None:
                send_headers[DEADLINE_HEADER] = to_header(deadline)
            # The timeout extension is how httpx tells a transport its timeouts.
            extensions: dict[str, Any] = {
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), budget)
            }
            if url_template:
                extensions[URL_TEMPLATE_EXTENSION] = url_template
            if attempt_number > 1:
                extensions[RESEND_COUNT_EXTENSION] = attempt_number - 1
            while True:
                endpoint = self.balancer.pick(exclude=tried)
                tried.append(endpoint)
                request = httpx.Request(
                    method,
                    endpoint.base_url + path,
                    params=params,
                    headers=send_headers,
                    json=json,
                    content=content,
                    extensions=dict(extensions),
                )
                try:
                    return await self._send(endpoint, request)
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
