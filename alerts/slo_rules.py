"""SLO definitions → Prometheus recording rules and multi-window burn-rate alerts.

One rule group per SLO, recordings first: Prometheus evaluates a group's rules
in order, so the alerts always read this evaluation's ratios.

Series recorded, each labelled ``{slo, service}``:

``slo:sli_error:ratio_rate<W>``
    bad/total over each burn-rate window W (5m … 3d), straight from the raw
    counters as the SRE workbook does.
``slo:sli_bad_events:rate5m``, ``slo:sli_events:rate5m``
    the 5 m rates the 30-day ratio is summed from: a ``rate(...[30d])`` over raw
    histogram series every minute would be the most expensive query we run.
``slo:sli_error:ratio_rate30d``
    traffic-weighted: sum of bad rates over sum of all rates, so a quiet night
    weighs what its requests weigh (an average of 5 m ratios would not).
``slo:objective:ratio``, ``slo:error_budget:ratio``, ``slo:error_budget_remaining:ratio``
    for the dashboards; remaining goes below 0 once the budget is overspent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alerts.links import dashboard_url, runbook_url
from alerts.slo import (
    BURN_RATE_ALERTS,
    SLO,
    WINDOWS,
    BurnRateAlert,
    LatencySLI,
    Profile,
    Severity,
    promql_duration,
    window_label,
)

Rule = dict[str, Any]

SHORTEST = WINDOWS[0]


def error_ratio_series(window: timedelta) -> str:
    return f"slo:sli_error:ratio_rate{window_label(window)}"


ERROR_RATIO_30D = "slo:sli_error:ratio_rate30d"
BAD_EVENTS = f"slo:sli_bad_events:rate{window_label(SHORTEST)}"
ALL_EVENTS = f"slo:sli_events:rate{window_label(SHORTEST)}"
OBJECTIVE = "slo:objective:ratio"
ERROR_BUDGET = "slo:error_budget:ratio"
BUDGET_REMAINING = "slo:error_budget_remaining:ratio"


def rule_groups(slos: tuple[SLO, ...], profile: Profile) -> dict[str, Any]:
    """The ``groups:`` document for one profile."""
    return {"groups": [_group(slo, profile) for slo in slos]}


def _group(slo: SLO, profile: Profile) -> dict[str, Any]:
    return {
        "name": f"slo:{slo.name}",
        "interval": promql_duration(profile.evaluation_interval),
        "rules": [*_recordings(slo, profile), *_alerts(slo)],
    }


def _labels(slo: SLO) -> dict[str, str]:
    return {"slo": slo.name, "service": slo.service}


def _recordings(slo: SLO, profile: Profile) -> list[Rule]:
    labels = _labels(slo)
    rules: list[Rule] = []
    for window in WINDOWS:
        w = promql_duration(profile.window(window))
        ratio = f"{slo.sli.bad_rate(w)}\n/\n{slo.sli.total_rate(w)}"
        rules.append({"record": error_ratio_series(window), "expr": ratio, "labels": labels})
    short = promql_duration(profile.window(SHORTEST))
    period = promql_duration(profile.window(slo.period))
    sel = f'{{slo="{slo.name}"}}'
    rules += [
        {"record": BAD_EVENTS, "expr": slo.sli.bad_rate(short), "labels": labels},
        {"record": ALL_EVENTS, "expr": slo.sli.total_rate(short), "labels": labels},
        {
            "record": ERROR_RATIO_30D,
            "expr": (
                f"sum_over_time({BAD_EVENTS}{sel}[{period}])\n/\n"
                f"sum_over_time({ALL_EVENTS}{sel}[{period}])"
            ),
            "labels": labels,
        },
        {"record": OBJECTIVE, "expr": f"vector({slo.objective})", "labels": labels},
        {"record": ERROR_BUDGET, "expr": f"vector({slo.error_budget})", "labels": labels},
        {
            "record": BUDGET_REMAINING,
            "expr": f"1 - {ERROR_RATIO_30D}{sel} / {slo.error_budget}",
            "labels": labels,
        },
    ]
    return rules


def alerts_of(severity: Severity) -> tuple[BurnRateAlert, ...]:
    return tuple(a for a in BURN_RATE_ALERTS if a.severity == severity)


def _alerts(slo: SLO) -> list[Rule]:
    return [_alert(slo, "page"), _alert(slo, "ticket")]


def _alert(slo: SLO, severity: Severity) -> Rule:
    sel = f'{{slo="{slo.name}"}}'
    budget = slo.error_budget
    branches = [
        f"(\n  {error_ratio_series(a.long_window)}{sel} / {budget} > {a.factor}\n"
        f"and\n  {error_ratio_series(a.short_window)}{sel} / {budget} > {a.factor}\n)"
        for a in alerts_of(severity)
    ]
    return {
        "alert": slo.alert_name,
        # The value is the burn rate over the long window of the branch that
        # matched: what the description reports.
        "expr": "\nor\n".join(branches),
        "labels": {"severity": severity, **_labels(slo)},
        "annotations": alert_annotations(slo, severity),
    }


def _conditions(severity: Severity) -> str:
    return " or ".join(
        f"{a.factor:g}× over {window_label(a.long_window)} and {window_label(a.short_window)}"
        f" ({a.budget_consumed:.0%} of the budget in {window_label(a.long_window)})"
        for a in alerts_of(severity)
    )


def alert_annotations(slo: SLO, severity: Severity) -> dict[str, str]:
    """Also what the generated promtool tests expect, with ``$value`` filled in."""
    speed = "fast" if severity == "page" else "steadily"
    kind = "latency" if isinstance(slo.sli, LatencySLI) else "availability"
    return {
        "summary": f"{slo.service} {kind} SLO is burning its error budget {speed}",
        "description": (
            f"The {slo.name} SLO ({slo.description}) is spending its 30-day error budget at "
            '{{ printf "%.1f" $value }}× the sustainable rate. '
            f"This alert fires at {_conditions(severity)}."
        ),
        "runbook_url": runbook_url(slo.alert_name),
        "dashboard": dashboard_url(slo.dashboard_uid, service=slo.service),
    }
