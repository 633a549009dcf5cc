"""promtool unit tests for the generated burn-rate alerts, from the same SLO objects.

Each SLO gets synthetic traffic at a chosen burn rate (the error ratio divided
by the budget) and checks, per profile:

* a fast burn (20×) pages and files a ticket;
* a slow burn (4×) files a ticket and does not page;
* a burn inside the budget (0.8×) fires nothing, and the budget panels read
  what is left (20 %);
* once a fast burn stops, the page resolves when the short windows are clean
  while the ticket, reading 1 d and 2 h, stays.

Times are written in nominal (production) minutes and scaled by the profile,
so the compressed tests check that the compressed rules fire as early, in
their own time, as the production ones.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alerts.slo import (
    HTTP_SERVER_DURATION,
    SLO,
    AvailabilitySLI,
    LatencySLI,
    Profile,
    Severity,
    promql_duration,
)
from alerts.slo_rules import BUDGET_REMAINING, alert_annotations

# Events per nominal minute: large enough that every burn rate used below is a
# whole number of bad events.
_PER_MINUTE = 100_000

FAST, SLOW, WITHIN = 20.0, 4.0, 0.8


def unit_test_document(slos: tuple[SLO, ...], profile: Profile, rule_file: str) -> dict[str, Any]:
    return {
        "rule_files": [rule_file],
        "evaluation_interval": promql_duration(profile.evaluation_interval),
        "tests": [case for slo in slos for case in _cases(slo, profile)],
    }


def _cases(slo: SLO, profile: Profile) -> list[dict[str, Any]]:
    def at(minutes: int) -> str:
        return promql_duration(profile.window(timedelta(minutes=minutes)))

    def case(name: str, series: list[dict[str, str]], **checks: Any) -> dict[str, Any]:
        return {
            "name": f"{slo.name} ({profile.name}): {name}",
            "interval": promql_duration(profile.window(timedelta(minutes=1))),
            "input_series": series,
            **checks,
        }

    def expect(minutes: int, *fired: tuple[Severity, float]) -> dict[str, Any]:
        return {
            "eval_time": at(minutes),
            "alertname": slo.alert_name,
            "exp_alerts": [_expected_alert(slo, sev, burn) for sev, burn in fired],
        }

    return [
        case(
            "a fast burn pages and files a ticket",
            _traffic(slo, [(FAST, 70)]),
            alert_rule_test=[expect(65, ("page", FAST), ("ticket", FAST))],
        ),
        case(
            "a slow burn files a ticket and does not page",
            _traffic(slo, [(SLOW, 130)]),
            alert_rule_test=[expect(125, ("ticket", SLOW))],
        ),
        case(
            "a burn within the budget fires nothing",
            _traffic(slo, [(WITHIN, 70)]),
            alert_rule_test=[expect(65)],
            promql_expr_test=[
                {
                    # round(): 1 - 0.8 is not 0.2 in binary, and promtool compares exactly.
                    "expr": f'round({BUDGET_REMAINING}{{slo="{slo.name}"}}, 0.001)',
                    "eval_time": at(65),
                    "exp_samples": [
                        {
                            "labels": f'{{service="{slo.service}",slo="{slo.name}"}}',
                            "value": round(1 - WITHIN, 6),
                        }
                    ],
                }
            ],
        ),
        case(
            "the page resolves when the short windows are clean; the ticket stays",
            _traffic(slo, [(FAST, 60), (0.0, 40)]),
            # 35 min after the fault: 5 m and 30 m windows clean; 1 d and 2 h still
            # hold 60 of 95 minutes at 20×.
            alert_rule_test=[expect(95, ("ticket", FAST * 60 / 95))],
        ),
    ]


def _expected_alert(slo: SLO, severity: Severity, burn: float) -> dict[str, Any]:
    notes = alert_annotations(slo, severity)
    notes["description"] = notes["description"].replace('{{ printf "%.1f" $value }}', f"{burn:.1f}")
    return {
        "exp_labels": {"severity": severity, "slo": slo.name, "service": slo.service},
        "exp_annotations": notes,
    }


def _traffic(slo: SLO, phases: list[tuple[float, int]]) -> list[dict[str, str]]:
    """Counter series with ``(burn rate, nominal minutes)`` phases, one sample a minute."""
    bad_per_minute = [round(_PER_MINUTE * burn * slo.error_budget) for burn, _ in phases]
    durations = [minutes for _, minutes in phases]
    req = slo.sli.requests
    base = ",".join(
        (
            f'job="{req.job}"',
            f'instance="{req.job}:8000"',
            'http_request_method="POST"',
            f'http_route="{req.example_route}"',
        )
    )
    total = _counter(_PER_MINUTE, durations)
    if isinstance(slo.sli, AvailabilitySLI):
        ok = [_PER_MINUTE - b for b in bad_per_minute]
        return [
            _series(
                f"{HTTP_SERVER_DURATION}_count",
                base,
                'http_response_status_code="200"',
                ok,
                durations,
            ),
            _series(
                f"{HTTP_SERVER_DURATION}_count",
                base,
                'http_response_status_code="500"',
                bad_per_minute,
                durations,
            ),
        ]
    assert isinstance(slo.sli, LatencySLI)
    fast = [_PER_MINUTE - b for b in bad_per_minute]
    labels = f'{base},http_response_status_code="200"'
    return [
        {"series": f"{HTTP_SERVER_DURATION}_count{{{labels}}}", "values": total},
        _series(f"{HTTP_SERVER_DURATION}_bucket", labels, f'le="{slo.sli.le}"', fast, durations),
    ]


def _series(
    name: str, base: str, extra: str, per_minute: list[int], durations: list[int]
) -> dict[str, str]:
    return {"series": f"{name}{{{base},{extra}}}", "values": _counter_phases(per_minute, durations)}


def _counter(per_minute: int, durations: list[int]) -> str:
    return _counter_phases([per_minute] * len(durations), durations)


def _counter_phases(per_minute: list[int], durations: list[int]) -> str:
    """promtool's expanding notation: ``0+100x60 6000+0x40`` for 60 min, then flat."""
    parts: list[str] = []
    start = 0
    for i, (step, minutes) in enumerate(zip(per_minute, durations, strict=True)):
        first = start if i == 0 else start + step
        count = minutes if i == 0 else minutes - 1
        parts.append(f"{first}+{step}x{count}")
        start = first + step * count
    return " ".join(parts)
