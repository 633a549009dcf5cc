"""Thresholds: what the options and the TOML file mean, and which runs they fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loadtests.thresholds import (
    LatencyLimit,
    ThresholdError,
    Thresholds,
    evaluate,
    from_options,
    latency_limit,
    parse_duration_ms,
    parse_ratio,
    verdict,
)
from tests.harness import ROOT
from tests.loadtests.support import NAMED_REQUESTS


@dataclass
class Entry:
    """Stands in for locust.stats.StatsEntry: fixed percentiles."""

    name: str
    method: str
    num_requests: int
    num_failures: int = 0
    percentiles: dict[float, float] = field(default_factory=dict)

    def get_response_time_percentile(self, percent: float) -> float:
        return self.percentiles[percent]


def _run() -> tuple[list[Entry], Entry]:
    entries = [
        Entry("/api/v1/products", "GET", 900, 0, {0.95: 40, 0.99: 90}),
        Entry("/api/v1/orders", "POST", 80, 1, {0.95: 300, 0.99: 700}),
        Entry("/api/v1/orders", "GET", 20, 0, {0.95: 20, 0.99: 30}),
    ]
    return entries, Entry("Aggregated", "", 1000, 1, {0.95: 120, 0.99: 500})


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("200ms", 200),
        ("200", 200),
        ("1.5s", 1500),
        ("1m", 60_000),
        ("250us", 0.25),
        (" 3 s ", 3000),
    ],
)
def test_durations_take_units_and_default_to_milliseconds(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "fast", "-1ms", "2h", "1e3ms"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ThresholdError, match="not a duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize(("text", "ratio"), [("0.01", 0.01), ("1%", 0.01), ("0", 0.0), (0.5, 0.5)])
def test_error_ratio_is_a_fraction_or_a_percentage(text: str | float, ratio: float) -> None:
    assert parse_ratio(text) == pytest.approx(ratio)


@pytest.mark.parametrize("text", ["2", "150%", "lots", "-0.1"])
def test_error_ratio_outside_zero_to_one_is_refused(text: str) -> None:
    with pytest.raises(ThresholdError):
        parse_ratio(text)


def test_latency_spec_names_a_request_with_or_without_its_method() -> None:
    assert latency_limit(0.95, "/api/v1/products=200ms") == LatencyLimit(
        0.95, "/api/v1/products", None, 200
    )
    assert latency_limit(0.99, "post /api/v1/orders = 1s") == LatencyLimit(
        0.99, "/api/v1/orders", "POST", 1000
    )
    with pytest.raises(ThresholdError, match="NAME=DURATION"):
        latency_limit(0.95, "/api/v1/products")


def test_options_combine_repeated_and_comma_separated_limits_with_a_file(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.toml"
    file.write_text(
        'max_error_ratio = 0.05\n[p90]\n"GET /api/v1/products" = "100ms"\n'
        '[p99]\n"Aggregated" = "2s"\n'
    )
    t = from_options(
        max_error_ratio="1%",
        max_p95=["/api/v1/products=200ms,POST /api/v1/orders=1s", "/api/v1/users/me=50ms"],
        file=file,
    )
    assert t.max_error_ratio == pytest.approx(0.01), "the command line wins over the file"
    assert {(limit.label, limit.max_ms) for limit in t.latency} == {
        ("p90 of GET /api/v1/products", 100),
        ("p99 of Aggregated", 2000),
        ("p95 of /api/v1/products", 200),
        ("p95 of POST /api/v1/orders", 1000),
        ("p95 of /api/v1/users/me", 50),
    }
    assert len(t) == 6


def test_a_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "thresholds.toml"
    file.write_text('[latency]\n"/api/v1/products" = "1s"\n')
    with pytest.raises(ThresholdError, match="unknown key 'latency'"):
        from_options(file=file)


def test_no_thresholds_means_nothing_is_judged() -> None:
    entries, total = _run()
    assert not Thresholds()
    assert evaluate(Thresholds(), entries, total) == []


def test_a_run_within_its_thresholds_passes() -> None:
    entries, total = _run()
    t = from_options(
        max_error_ratio="0.01", max_p95="/api/v1/products=50ms", max_p99="Aggregated=500ms"
    )
    assert evaluate(t, entries, total) == []
    assert verdict([], len(t)) == "redline: passed 3 threshold(s)"


def test_error_ratio_above_the_limit_breaks_the_run() -> None:
    entries, total = _run()
    assert evaluate(from_options(max_error_ratio="0.0005"), entries, total) == [
        "error ratio 0.10% > 0.05% (1 of 1000)"
    ]


def test_a_name_without_method_is_judged_for_each_method() -> None:
    entries, total = _run()
    broken = evaluate(from_options(max_p95="/api/v1/orders=100ms"), entries, total)
    assert broken == ["p95 of POST /api/v1/orders 300 ms > 100 ms"]


def test_a_limit_on_a_name_no_request_had_is_itself_broken() -> None:
    entries, total = _run()
    broken = evaluate(from_options(max_p95="/api/v1/prodcuts=1s"), entries, total)
    assert broken == ["p95 of /api/v1/prodcuts: no such requests"]


def test_a_run_without_requests_fails_any_threshold() -> None:
    assert evaluate(from_options(max_error_ratio="1"), [], Entry("Aggregated", "", 0)) == [
        "no requests were made"
    ]


def test_the_verdict_is_one_line_listing_every_broken_threshold() -> None:
    entries, total = _run()
    t = from_options(max_error_ratio="0", max_p99="Aggregated=0.5ms,POST /api/v1/orders=1s")
    line = verdict(evaluate(t, entries, total), len(t))
    assert "\n" not in line
    assert line == (
        "redline: FAILED thresholds: error ratio 0.10% > 0.00% (1 of 1000); "
        "p99 of Aggregated 500 ms > 0.5 ms"
    )


def test_the_shipped_gate_reads_and_names_only_requests_the_journeys_make() -> None:
    gate = from_options(file=ROOT / "loadtests" / "thresholds.toml")
    assert gate.max_error_ratio == pytest.approx(0.005)
    for limit in gate.latency:
        if limit.name != "Aggregated":
            assert limit.method is not None
            assert (limit.method, limit.name) in NAMED_REQUESTS, limit.label
