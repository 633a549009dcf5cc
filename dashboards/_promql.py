"""PromQL snippets the dashboards share, so every panel computes a ratio the same way.

``$__rate_interval`` is Grafana's: at least four scrape intervals, so rate()
always has samples, however far the graph is zoomed out.
"""

from __future__ import annotations

RATE = "$__rate_interval"

HTTP = "http_server_request_duration_seconds"
HTTP_CLIENT = "http_client_request_duration_seconds"
SERVER_5XX = 'http_response_status_code=~"5.."'


def sel(*matchers: str) -> str:
    return "{" + ",".join(m for m in matchers if m) + "}"


def sum_rate(series: str, matchers: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({series}{matchers}[{RATE}]))"


def _with(matchers: str, extra: str) -> str:
    return matchers[:-1] + ("," if matchers != "{}" else "") + extra + "}"


def ratio_numerator_or_zero(series: str, bad: str, base: str, by: str = "") -> str:
    """The rate of bad events per group; 0 (not "No data") for a group with none.

    A counter with a label value that never occurred has no series at all, so
    the bad side alone would vanish when everything is fine; ``or`` fills it
    with the total × 0, group by group.
    """
    total = sum_rate(series, base, by)
    return f"{sum_rate(series, _with(base, bad), by)}\nor {total} * 0"


def ratio(series: str, bad: str, base: str, by: str = "") -> str:
    """bad/total per group, 0 for a group with traffic and no bad events."""
    numerator = ratio_numerator_or_zero(series, bad, base, by).replace("\n", "\n  ")
    return f"(\n  {numerator}\n)\n/ {sum_rate(series, base, by)}"


def quantile(q: float, histogram: str, matchers: str, by: str = "") -> str:
    le_by = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, {sum_rate(histogram + '_bucket', matchers, le_by)})"
