"""The open model's schedule and bookkeeping, and `redline load --open-rate`'s command."""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import pytest

from loadtests import open_model, run
from loadtests.compare import CompareError


def test_constant_arrivals_are_evenly_spaced_at_the_rate() -> None:
    times = open_model.schedule(20, "constant", 10.0)
    assert len(times) == pytest.approx(200, abs=1)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) == pytest.approx(0.05) == min(gaps)


def test_poisson_arrivals_have_exponential_gaps_at_the_rate() -> None:
    times = open_model.schedule(50, "poisson", 200.0, seed=3)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) / 200 == pytest.approx(50, rel=0.03)
    # An exponential's standard deviation equals its mean.
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.05)


@pytest.mark.parametrize("rate", [0, -1, float("inf")])
def test_a_rate_that_is_not_positive_and_finite_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive, finite rate"):
        open_model.schedule(rate, "poisson", 1.0)


def test_lag_recorder_merges_workers_and_bounds_percentiles() -> None:
    a, b = open_model.LagRecorder(), open_model.LagRecorder()
    for _ in range(98):
        a.observe(0.3, in_flight=3)
    b.observe(40.0, in_flight=7)
    b.observe(700.0)
    b.drop()
    a.merge(b.drain())
    assert (a.scheduled, a.sent, a.dropped, a.max_in_flight_seen) == (101, 100, 1, 7)
    assert a.lag_percentile(0.5) == 0.5  # the bucket's upper edge
    assert a.lag_percentile(0.99) == 50.0
    assert a.lag_percentile(1.0) == 700.0
    assert (b.scheduled, b.sent) == (0, 0), "drained"


def test_a_generator_that_falls_behind_says_so() -> None:
    healthy = open_model.LagRecorder()
    for _ in range(100):
        healthy.observe(1.0)
    ok = open_model.report(healthy, 10, "poisson", 10.0, 256)
    assert not ok.saturated
    assert "WARNING" not in ok.line()
    late = open_model.LagRecorder()
    for _ in range(100):
        late.observe(300.0)
    behind = open_model.report(late, 10, "poisson", 10.0, 256)
    assert behind.saturated
    assert "fell behind its schedule" in behind.line()
    dropping = open_model.LagRecorder()
    for i in range(100):
        dropping.observe(1.0) if i % 2 else dropping.drop()
    assert open_model.report(dropping, 10, "constant", 10.0, 1).saturated


def _args(*argv: str) -> argparse.Namespace:
    return run.build_parser().parse_args(list(argv))


def test_open_rate_runs_one_arrival_stream_per_process(tmp_path: Path) -> None:
    p = run.plan(_args("--open-rate", "40", "--arrivals", "constant", "--runs-dir", str(tmp_path)))
    c = p.command
    assert c[c.index("--open-rate") + 1] == "40"
    assert c[c.index("--arrivals") + 1] == "constant"
    assert c[c.index("--users") + 1] == "1"
    assert c[c.index("--results") + 1] == str(p.results)
    assert p.folder.name.endswith("-open")
    c = run.plan(_args("--open-rate", "40", "--processes", "3"), tmp_path / "x").command
    assert c[c.index("--users") + 1] == "3"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--open-rate", "10", "--shape", "ramp"], "shapes are for the closed model"),
        (["--max-regression", "p95=10%"], "needs --baseline"),
        (["--baseline", "no-such-run"], "no such run folder"),
        (["--max-in-flight", "0", "--open-rate", "5"], "--max-in-flight 0"),
    ],
)
def test_arguments_that_cannot_work_are_refused_before_a_run(argv: list[str], message: str) -> None:
    from loadtests.results import ResultsError

    with pytest.raises((CompareError, ResultsError), match=message):
        run.check(_args(*argv))


def test_a_bad_open_rate_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--open-rate", "-3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--open-rate" in err


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"]])
def test_help_is_printed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(argv)
    assert exc.value.code == 0
    assert "--max-regression" in capsys.readouterr().out
