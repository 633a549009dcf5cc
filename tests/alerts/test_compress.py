"""The compressed copies of the hand-written rules: same alerts, shorter clocks."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from alerts.compress import MIN_RANGE, compress_expr, parse_duration
from alerts.paths import RULES_DIR, compressed_rule_file, rule_files
from alerts.slo import COMPRESSED, NORMAL


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172_800), ("10s", 10)],
)
def test_durations_parse_like_prometheus(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "5", "m5", "5 m", "1h-5m"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a PromQL duration"):
        parse_duration(bad)


def test_windows_scale_with_a_floor_and_subquery_steps_too() -> None:
    expr = "rate(x[10m]) / rate(y[1m]) + max_over_time(z[30m:1m])"
    assert compress_expr(expr, COMPRESSED) == (
        f"rate(x[10s]) / rate(y[{int(MIN_RANGE.total_seconds())}s]) + max_over_time(z[30s:1s])"
    )


def test_every_handwritten_alert_has_a_compressed_twin_with_the_same_meaning() -> None:
    compressed = {p.name: p for p in rule_files(COMPRESSED)}
    for source in sorted(RULES_DIR.glob("*.yml")):
        twin = compressed_rule_file(source, COMPRESSED)
        assert twin.name in compressed, f"{twin} is not loaded by the compressed profile"
        original = [r for g in yaml.safe_load(source.read_text())["groups"] for r in g["rules"]]
        copy = [r for g in yaml.safe_load(twin.read_text())["groups"] for r in g["rules"]]
        assert [r.get("alert") or r.get("record") for r in original] == [
            r.get("alert") or r.get("record") for r in copy
        ]
        for a, b in zip(original, copy, strict=True):
            assert a.get("labels") == b.get("labels")
            assert a.get("annotations") == b.get("annotations")
            if "for" in a:
                assert parse_duration(b["for"]) <= parse_duration(a["for"])


def test_production_loads_the_rules_as_written_and_never_both() -> None:
    normal = {p.name for p in rule_files(NORMAL)}
    compressed = {p.name for p in rule_files(COMPRESSED)}
    assert {p.name for p in RULES_DIR.glob("*.yml")} <= normal
    assert not any(n.startswith("handwritten-") for n in normal)
    assert not ({p.name for p in RULES_DIR.glob("*.yml")} & compressed)
