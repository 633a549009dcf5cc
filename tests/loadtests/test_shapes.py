"""Load shapes, as users and spawn rate over time, without Locust."""

from __future__ import annotations

import itertools

import pytest

from loadtests.shapes import SHAPES, Profile, Soak, Spike, parse_timespan, profile


def _users(p: Profile, at: list[float]) -> list[int]:
    """Users at each time (-1 once the shape has ended)."""
    return [-1 if (t := p.tick(s)) is None else t[0] for s in at]


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_stops_at_its_duration(name: str) -> None:
    p = profile(name, users=10, duration=30)
    assert p.tick(0) is not None
    assert p.tick(29.9) is not None
    assert p.tick(30) is None


def test_steady_holds_the_users_at_the_given_spawn_rate() -> None:
    p = profile("steady", users=8, spawn_rate=2, duration=60)
    assert {p.tick(t) for t in (0, 10, 59)} == {(8, 2.0)}


def test_ramp_grows_one_user_at_a_time_to_the_peak() -> None:
    users = _users(profile("ramp", users=20, duration=60), [float(t) for t in range(60)])
    assert users[0] == 1
    assert users[-1] == 20
    steps = {b - a for a, b in itertools.pairwise(users)}
    assert steps <= {0, 1}, "a ramp, not jumps"


def test_step_climbs_in_equal_plateaus() -> None:
    step = profile("step", users=10, duration=60, steps=5)
    assert _users(step, [0, 11, 13, 25, 37, 49, 59, 60]) == [2, 2, 4, 6, 8, 10, 10, -1]


def test_spike_jumps_to_the_peak_for_the_middle_fifth_and_back() -> None:
    spike = profile("spike", users=50, duration=100)
    assert isinstance(spike, Spike)
    assert [spike.tick(t) for t in (0, 39, 40, 59, 60, 99)] == [
        (10, 50.0), (10, 50.0), (50, 50.0), (50, 50.0), (10, 50.0), (10, 50.0)
    ]  # fmt: skip


def test_soak_ramps_gently_and_lasts_an_hour_by_default() -> None:
    soak = profile("soak", users=100)
    assert isinstance(soak, Soak)
    assert soak.duration == 3600
    users, rate = soak.tick(0) or (0, 0.0)
    assert users == 100
    assert users / rate == pytest.approx(300), "ramp over 5 minutes"


def test_shapes_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        profile("sawtooth", users=1)
    with pytest.raises(ValueError, match="at least one user"):
        profile("steady", users=0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), (45, 45)]
)
def test_timespans_read_like_locusts_run_time(text: str | int, seconds: float) -> None:
    assert parse_timespan(text) == seconds


def test_a_timespan_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_timespan("soon")
