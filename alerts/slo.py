"""The shape of a service-level objective and of the burn-rate alerting policy.

An SLO here is request-based: a ratio of bad events to all events, counted from
Prometheus counters, against an objective over a 30-day window. The burn-rate
windows and factors are those of the Google SRE workbook (chapter 5, "Alerting
on SLOs", table 5-8); the recording-rule names follow its
``level:metric:operations`` convention as Sloth does
(``slo:sli_error:ratio_rate1h``).

A ``Profile`` scales every window, so the same definitions yield a
time-compressed rule set for live tests and chaos experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

Severity = Literal["page", "ticket", "info"]


@dataclass(frozen=True)
class BurnRateAlert:
    """Fire when the error ratio is above ``factor`` × budget over both windows.

    The long window says the burn is significant; the short one that it is still
    happening, so the alert resolves minutes after the fault does.
    """

    severity: Severity
    factor: float
    long_window: timedelta
    short_window: timedelta

    @property
    def budget_consumed(self) -> float:
        """Share of a 30-day budget the long window eats at this burn rate."""
        return self.factor * self.long_window / timedelta(days=30)


# Workbook table 5-8: 2% of the budget in 1 h and 5% in 6 h page; 10% in 3 days
# (checked at 1 d and 3 d) files a ticket.
PAGE_FAST = BurnRateAlert("page", 14.4, timedelta(hours=1), timedelta(minutes=5))
PAGE_SLOW = BurnRateAlert("page", 6.0, timedelta(hours=6), timedelta(minutes=30))
TICKET_FAST = BurnRateAlert("ticket", 3.0, timedelta(days=1), timedelta(hours=2))
TICKET_SLOW = BurnRateAlert("ticket", 1.0, timedelta(days=3), timedelta(hours=6))
BURN_RATE_ALERTS: tuple[BurnRateAlert, ...] = (PAGE_FAST, PAGE_SLOW, TICKET_FAST, TICKET_SLOW)

SLO_PERIOD = timedelta(days=30)

# Every window a rule or an alert reads, shortest first.
WINDOWS: tuple[timedelta, ...] = tuple(
    sorted({w for a in BURN_RATE_ALERTS for w in (a.long_window, a.short_window)})
)


HTTP_SERVER_DURATION = "http_server_request_duration_seconds"


@dataclass(frozen=True)
class Requests:
    """Which server requests an SLO counts: one job, routes chosen by a matcher.

    ``example_route`` is a concrete route the matcher accepts; the generated
    promtool tests send their synthetic traffic there.
    """

    job: str
    route_matcher: str
    example_route: str

    def selector(self, *extra: str) -> str:
        return ",".join((f'job="{self.job}"', self.route_matcher, *extra))


def _sum_rate(series: str, selector: str, window: str) -> str:
    return f"sum(rate({series}{{{selector}}}[{window}]))"


_STATUS_5XX = 'http_response_status_code=~"5.."'


@dataclass(frozen=True)
class AvailabilitySLI:
    """Bad events are responses with a 5xx status; 4xx are the caller's fault."""

    requests: Requests

    def bad_rate(self, window: str) -> str:
        bad = _sum_rate(
            f"{HTTP_SERVER_DURATION}_count", self.requests.selector(_STATUS_5XX), window
        )
        # A service that has never failed has no 5xx series at all; "or vector(0)"
        # keeps the ratio (and the budget panels) at 0 instead of absent.
        return f"({bad} or vector(0))"

    def total_rate(self, window: str) -> str:
        return _sum_rate(f"{HTTP_SERVER_DURATION}_count", self.requests.selector(), window)


@dataclass(frozen=True)
class LatencySLI:
    """Bad events are requests slower than ``threshold_seconds``, from the buckets.

    The threshold must be a bucket boundary: between boundaries the count of
    fast requests would be interpolated, and the SLI made up.
    """

    requests: Requests
    threshold_seconds: float

    @property
    def le(self) -> str:
        return format_le(self.threshold_seconds)

    def bad_rate(self, window: str) -> str:
        le = f'le="{self.le}"'
        fast = _sum_rate(f"{HTTP_SERVER_DURATION}_bucket", self.requests.selector(le), window)
        return f"({self.total_rate(window)} - {fast})"

    def total_rate(self, window: str) -> str:
        return _sum_rate(f"{HTTP_SERVER_DURATION}_count", self.requests.selector(), window)


SLI = AvailabilitySLI | LatencySLI


def format_le(seconds: float) -> str:
    """The ``le`` label value prometheus-client writes for a bucket boundary."""
    return repr(float(seconds))


@dataclass(frozen=True)
class SLO:
    """One objective: ``name`` is unique and becomes the ``slo`` label."""

    name: str
    service: str
    objective: float
    sli: SLI
    description: str
    alert_name: str
    dashboard_uid: str
    period: timedelta = SLO_PERIOD

    @property
    def error_budget(self) -> float:
        # round() because 1 - 0.995 is 0.0050000000000000044 in binary.
        return round(1.0 - self.objective, 10)


@dataclass(frozen=True)
class Profile:
    """How long each window really is: ``scale`` 1 is production."""

    name: str
    scale: float
    evaluation_interval: timedelta

    def window(self, nominal: timedelta) -> timedelta:
        return nominal * self.scale


NORMAL = Profile("normal", 1.0, timedelta(minutes=1))
# 1/60: an hour of production in a minute. The shortest window (5 m) becomes
# 5 s, five samples at a 1 s scrape interval, so rate() always has the two it
# needs even when a scrape is late; 1/120 would leave 2.5 s and gaps. A full
# gateway outage then pages within ~5 s (7.2 % of a 60 s window) and files even
# the slowest ticket (0.5 % of a 72 min window) within ~22 s.
COMPRESSED = Profile("compressed", 1 / 60, timedelta(seconds=1))
PROFILES: tuple[Profile, ...] = (NORMAL, COMPRESSED)


def promql_duration(d: timedelta) -> str:
    """``timedelta`` as a PromQL duration, in the largest unit that divides it."""
    ms = round(d.total_seconds() * 1000)
    if ms <= 0:
        raise ValueError(f"not a positive duration: {d}")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def window_label(nominal: timedelta) -> str:
    """The suffix a recording rule carries: always the nominal window.

    The compressed profile keeps the production names (``ratio_rate1h`` over
    60 s), so dashboards and alerts read the same series in both.
    """
    return promql_duration(nominal)
