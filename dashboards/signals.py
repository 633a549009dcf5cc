"""What an operator looks at, as PromQL: the dashboards draw it, `redline top` prints it.

One function or constant per signal — RED, SLO budget and burn, breakers,
bulkheads, retries, targets — so a panel and the console's column for the same
thing are the same string and cannot drift. Expressions keep Grafana's
variables (``$__rate_interval``, ``$service``); the console expands them with
:func:`dashboards.queries.substitute`, as the live dashboard test does.

``matchers`` is a selector body in braces (``{}``, ``{job="$service"}``);
``by`` the grouping labels.
"""

from __future__ import annotations

from datetime import timedelta

from alerts.slo_rules import BUDGET_REMAINING, ERROR_BUDGET, ERROR_RATIO_30D, error_ratio_series
from dashboards._promql import (
    HTTP,
    SERVER_5XX,
    quantile,
    ratio,
    ratio_numerator_or_zero,
    sel,
    sum_rate,
)

ALL = "{}"


# -- RED ---------------------------------------------------------------------------
def request_rate(matchers: str = ALL, by: str = "") -> str:
    """Requests per second (probes and /metrics are not counted by the middleware)."""
    return sum_rate(f"{HTTP}_count", matchers, by)


def error_ratio(matchers: str = ALL, by: str = "") -> str:
    """Share of responses with a 5xx status; 0 for a group with traffic and no errors."""
    return ratio(f"{HTTP}_count", SERVER_5XX, matchers, by)


def latency(q: float, matchers: str = ALL, by: str = "") -> str:
    """The q-quantile of request duration, in seconds."""
    return quantile(q, HTTP, matchers, by)


# -- SLOs --------------------------------------------------------------------------
def slo_attained(slo_name: str) -> str:
    return f'1 - {ERROR_RATIO_30D}{{slo="{slo_name}"}}'


def slo_budget_left(slo_name: str = "") -> str:
    """Share of the 30-day error budget not yet spent; below 0 once overspent."""
    return BUDGET_REMAINING + (f'{{slo="{slo_name}"}}' if slo_name else "")


# The burn rate the fast page reads: how many times faster than sustainable.
BURN_RATE_WINDOW = timedelta(hours=1)
BURN_RATE = f"{error_ratio_series(BURN_RATE_WINDOW)} / on (slo, service) {ERROR_BUDGET}"


# -- What might explain it -----------------------------------------------------------
TARGETS_DOWN = "count(up == 0) or vector(0)"
TARGETS_DOWN_LIST = "up == 0"
SERVICES_NOT_READY = "count(health_ready == 0) or vector(0)"
BREAKERS_NOT_CLOSED = (
    'sum by (job, breaker) (resilience_circuit_breaker_state{state=~"open|half_open|forced_open"})'
)
SPANS_FAILING = ratio_numerator_or_zero(
    "otel_sdk_exporter_span_exported_total", 'error_type!=""', ALL, "job"
)


# -- Resilience ----------------------------------------------------------------------
# Breaker state as one number per breaker: each state series is 1 only for the
# current state, so summing state × code gives the code.
BREAKER_STATES = (
    (0, "closed", "closed", "green"),
    (1, "half_open", "half-open", "yellow"),
    (2, "open", "open", "red"),
    (3, "forced_open", "forced open", "purple"),
    (4, "disabled", "disabled", "blue"),
)


def breaker_state(job: str) -> str:
    return (
        "sum by (job, breaker) (\n  "
        + "\n  or ".join(
            f'resilience_circuit_breaker_state{{{job},state="{state}"}} * {code}'
            for code, state, _, _ in BREAKER_STATES
        )
        + "\n)"
    )


def bulkhead_in_flight(job: str) -> str:
    return f"resilience_bulkhead_in_flight{{{job}}}"


def bulkhead_capacity(job: str) -> str:
    return f"resilience_bulkhead_capacity{{{job}}}"


def bulkhead_rejections(job: str) -> str:
    return sum_rate("resilience_bulkhead_rejections_total", sel(job), "job, bulkhead")


GIVE_UP_OUTCOMES = 'outcome=~"exhausted|budget_exhausted|deadline"'


def retry_give_ups(job: str) -> str:
    """Calls a retrier abandoned (the caller got an error), per outcome."""
    return sum_rate(
        "resilience_retry_attempts_total", sel(job, GIVE_UP_OUTCOMES), "job, retrier, outcome"
    )
