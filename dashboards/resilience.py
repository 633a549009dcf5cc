"""Resilience: what the circuit breakers, bulkheads and retriers of the callers are doing.

Series are per calling service (job) and dependency (the breaker, bulkhead,
retrier or balancer label; the balancer's series also per endpoint, one per
instance of the dependency). Templated by ``service``: the jobs that export breakers.
"""

from __future__ import annotations

from grafanalib import core as g

from dashboards import links, signals
from dashboards._grafana import place, target
from dashboards._panels import state_timeline, timeseries
from dashboards._promql import RATE, sel, sum_rate
from dashboards.nav import dashboard_links

JOB = 'job=~"$service"'

_STATE_CODES = signals.BREAKER_STATES
_STATE_EXPR = signals.breaker_state(JOB)

_BREAKER = "{{job}} → {{breaker}}"
_BULKHEAD = "{{job}} → {{bulkhead}}"


def _variables() -> g.Templating:
    return g.Templating(
        list=[
            g.Template(
                name="service",
                label="Calling service",
                query="label_values(resilience_circuit_breaker_state, job)",
                includeAll=True,
                multi=True,
                allValue=".*",
                default="$__all",
                refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
            )
        ]
    )


def _breakers() -> list[object]:
    return [
        state_timeline(
            "Circuit breaker state over time",
            "Each breaker's state: closed (calls flow), half-open (a few trial calls), open "
            "(calls refused without being made), forced open / disabled (set by an operator "
            "through the admin API).",
            [target(_STATE_EXPR, _BREAKER)],
            [(code, text, colour) for code, _, text, colour in _STATE_CODES],
        ),
        timeseries(
            "Breaker calls by outcome",
            "Calls through each breaker: success, failure, slow (succeeded but over the slow-call "
            "threshold) and rejected (refused while open).",
            [
                target(
                    sum_rate(
                        "resilience_circuit_breaker_calls_total", sel(JOB), "job, breaker, outcome"
                    ),
                    _BREAKER + " {{outcome}}",
                )
            ],
            "reqps",
            stacked=True,
        ),
        timeseries(
            "Calls rejected by breakers",
            "Calls each breaker refused without making them. Each one failed fast instead of "
            "waiting on a dependency that is down.",
            [
                target(
                    sum_rate(
                        "resilience_circuit_breaker_calls_total",
                        sel(JOB, 'outcome="rejected"'),
                        "job, breaker",
                    ),
                    _BREAKER,
                )
            ],
            "reqps",
        ),
        timeseries(
            "Breaker failure and slow-call rates",
            "The ratios the breaker decides on, over its own sliding window (not Prometheus'): "
            "it opens when one crosses its threshold. Absent while the window holds fewer "
            "calls than the breaker's minimum.",
            [
                target(f"resilience_circuit_breaker_failure_rate{{{JOB}}}", _BREAKER + " failures"),
                target(
                    f"resilience_circuit_breaker_slow_call_rate{{{JOB}}}", _BREAKER + " slow calls"
                ),
            ],
            "percentunit",
            max_value=1,
        ),
        timeseries(
            "Breaker transitions",
            "State changes per breaker and target state in each interval; open after open "
            "means trial calls keep failing.",
            [
                target(
                    "sum by (job, breaker, to_state) "
                    f"(increase(resilience_circuit_breaker_transitions_total{sel(JOB)}[{RATE}]))",
                    _BREAKER + " to {{to_state}}",
                )
            ],
            "short",
            bars=True,
        ),
    ]


def _bulkheads_and_retries() -> list[object]:
    return [
        timeseries(
            "Bulkhead slots in use vs capacity",
            "Concurrent calls each bulkhead lets through (in flight) against its capacity. "
            "In flight at capacity means further calls wait, then are rejected.",
            [
                target(signals.bulkhead_in_flight(JOB), _BULKHEAD + " in flight"),
                target(signals.bulkhead_capacity(JOB), _BULKHEAD + " capacity"),
            ],
            "short",
        ),
        timeseries(
            "Calls waiting for a bulkhead slot",
            "Calls queued at a full bulkhead, waiting for a slot within the wait bound.",
            [target(f"resilience_bulkhead_waiting{{{JOB}}}", _BULKHEAD)],
            "short",
        ),
        timeseries(
            "Bulkhead rejections",
            "Calls each bulkhead refused because it was full and no slot freed in time.",
            [target(signals.bulkhead_rejections(JOB), _BULKHEAD)],
            "reqps",
        ),
        timeseries(
            "Retry attempts by outcome",
            "Attempts each retrier made: success, retry (failed, will try again), and the ways "
            "it gives up: exhausted (out of attempts), budget_exhausted (retry budget spent), "
            "deadline (no time left), not_retryable.",
            [
                target(
                    sum_rate("resilience_retry_attempts_total", sel(JOB), "job, retrier, outcome"),
                    "{{job}} → {{retrier}} {{outcome}}",
                )
            ],
            "reqps",
            stacked=True,
        ),
        timeseries(
            "Retries that gave up",
            "Calls a retrier abandoned: the caller got an error. A rising budget_exhausted "
            "means the retry budget is protecting a struggling dependency from a retry storm.",
            [target(signals.retry_give_ups(JOB), "{{job}} → {{retrier}} {{outcome}}")],
            "reqps",
        ),
    ]


_ENDPOINT = "{{job}} → {{balancer}} {{endpoint}}"


def _endpoints() -> list[object]:
    return [
        timeseries(
            "Calls per endpoint",
            "Attempts each caller sent to each instance (endpoint) of a dependency, by outcome: "
            "how the balancer (power of two choices on in-flight calls) spreads the load, and "
            "which instance fails.",
            [
                target(
                    sum_rate(
                        "resilience_endpoint_requests_total",
                        sel(JOB),
                        "job, balancer, endpoint, outcome",
                    ),
                    _ENDPOINT + " {{outcome}}",
                )
            ],
            "reqps",
            stacked=True,
        ),
        timeseries(
            "Endpoints ejected (outlier detection)",
            "Ejections in each interval and how many callers' instances hold the endpoint out "
            "right now. A restart keeps an instance out for tens of seconds; out most of the "
            "time for minutes is a sick replica (EndpointEjected).",
            [
                target(
                    "sum by (job, balancer, endpoint) "
                    f"(increase(resilience_endpoint_ejections_total{sel(JOB)}[{RATE}]))",
                    _ENDPOINT + " ejections",
                ),
                target(
                    f"sum by (job, balancer, endpoint) (resilience_endpoint_ejected{sel(JOB)})",
                    _ENDPOINT + " out now",
                ),
            ],
            "short",
        ),
        timeseries(
            "Calls in flight per endpoint",
            "What the balancer compares: this caller's calls in flight to each instance. An "
            "instance that holds more is slower, and gets fewer new calls.",
            [
                target(
                    f"sum by (job, balancer, endpoint) (resilience_endpoint_in_flight{sel(JOB)})",
                    _ENDPOINT,
                )
            ],
            "short",
        ),
    ]


def build() -> g.Dashboard:
    return g.Dashboard(
        title=links.TITLES[links.RESILIENCE],
        uid=links.RESILIENCE,
        description="Circuit breakers, bulkheads and retries of the calling services.",
        tags=["redline"],
        timezone="browser",
        refresh="30s",
        time=g.Time("now-1h", "now"),
        graphTooltip=1,
        templating=_variables(),
        links=dashboard_links(links.RESILIENCE),
        panels=place(
            [
                ("Circuit breakers", _breakers(), 3),
                ("Bulkheads and retries", _bulkheads_and_retries(), 3),
                ("Endpoints (replicas)", _endpoints(), 3),
            ]
        ),
    )
