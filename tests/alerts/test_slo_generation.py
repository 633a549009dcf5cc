"""The SLO definitions, and the rules and tests generated from them."""

from __future__ import annotations

import re
from datetime import timedelta

import promql_parser
import pytest

from alerts import generate
from alerts.paths import slo_rule_file
from alerts.slo import (
    BURN_RATE_ALERTS,
    COMPRESSED,
    NORMAL,
    PAGE_FAST,
    PAGE_SLOW,
    SLO,
    TICKET_FAST,
    TICKET_SLOW,
    WINDOWS,
    LatencySLI,
    promql_duration,
)
from alerts.slos import SLOS
from telemetry import DURATION_BUCKETS
from tests.alerts.support import load_yaml

SCRAPE_INTERVAL_IN_LIVE_TESTS = timedelta(seconds=1)


def test_generated_rule_and_test_files_match_the_slo_definitions() -> None:
    stale = generate.stale()
    assert not stale, f"regenerate with `python -m alerts`: {[str(p) for p in stale]}"


def test_burn_rate_alerts_spend_the_workbook_shares_of_the_budget() -> None:
    shares = {a: round(a.budget_consumed, 4) for a in BURN_RATE_ALERTS}
    assert shares == {PAGE_FAST: 0.02, PAGE_SLOW: 0.05, TICKET_FAST: 0.1, TICKET_SLOW: 0.1}


def test_every_slo_has_a_unique_name_and_alert() -> None:
    assert len({s.name for s in SLOS}) == len(SLOS)
    assert len({s.alert_name for s in SLOS}) == len(SLOS)


def test_latency_thresholds_are_bucket_boundaries() -> None:
    for slo in SLOS:
        if isinstance(slo.sli, LatencySLI):
            assert slo.sli.threshold_seconds in DURATION_BUCKETS, slo.name


def test_example_routes_are_counted_by_their_slo() -> None:
    """The generated promtool tests send traffic there: it must match the selector."""
    for slo in SLOS:
        m = re.fullmatch(r'http_route(=~|!~)"(.*)"', slo.sli.requests.route_matcher)
        assert m, slo.sli.requests.route_matcher
        matched = re.fullmatch(m[2], slo.sli.requests.example_route) is not None
        assert matched == (m[1] == "=~"), slo.name


def test_compressed_profile_keeps_two_scrapes_in_the_shortest_window() -> None:
    shortest = COMPRESSED.window(WINDOWS[0])
    assert shortest >= 2 * SCRAPE_INTERVAL_IN_LIVE_TESTS
    assert COMPRESSED.evaluation_interval <= shortest / 2


def _ms(d: timedelta) -> int:
    return round(d.total_seconds() * 1000)


def _ranges(expr: str) -> list[timedelta]:
    found: list[timedelta] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.MatrixSelector):
            found.append(node.range)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


@pytest.mark.parametrize("slo", SLOS, ids=lambda s: s.name)
def test_compressed_rules_are_the_normal_rules_with_scaled_windows(slo: SLO) -> None:
    normal = load_yaml(slo_rule_file(slo.name, NORMAL))["groups"]
    compressed = load_yaml(slo_rule_file(slo.name, COMPRESSED))["groups"]
    assert len(normal) == len(compressed)
    for g_normal, g_compressed in zip(normal, compressed, strict=True):
        for r_normal, r_compressed in zip(g_normal["rules"], g_compressed["rules"], strict=True):
            same = {k: v for k, v in r_normal.items() if k != "expr"}
            assert same == {k: v for k, v in r_compressed.items() if k != "expr"}
            scaled = [_ms(r * COMPRESSED.scale) for r in _ranges(r_normal["expr"])]
            assert [_ms(r) for r in _ranges(r_compressed["expr"])] == scaled


def test_every_burn_rate_window_has_a_recording_rule() -> None:
    doc = load_yaml(slo_rule_file(SLOS[0].name, NORMAL))
    records = {r.get("record") for g in doc["groups"] for r in g["rules"]}
    for window in WINDOWS:
        assert f"slo:sli_error:ratio_rate{promql_duration(window)}" in records


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(days=3), "3d"),
        (timedelta(hours=6), "6h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=5), "5s"),
        (timedelta(milliseconds=2500), "2500ms"),
    ],
)
def test_durations_are_written_in_the_largest_whole_unit(duration: timedelta, text: str) -> None:
    assert promql_duration(duration) == text


def test_a_zero_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        promql_duration(timedelta(0))
