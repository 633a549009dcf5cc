"""Deadlines: arithmetic on the monotonic clock, the contextvar, and the header codec."""

from __future__ import annotations

import pytest

from services.chassis.resilience import (
    DEADLINE_HEADER,
    MAX_DEADLINE_MS,
    Deadline,
    DeadlineExceeded,
    ManualClock,
    ResilienceError,
    deadline_scope,
    from_header,
    get_deadline,
    to_header,
)


def test_remaining_expired_and_timeout_for(clock: ManualClock) -> None:
    deadline = Deadline.after(2.0, clock)
    assert deadline.remaining() == 2.0
    assert deadline.timeout_for(5.0) == 2.0
    assert deadline.timeout_for(0.5) == 0.5
    assert deadline.timeout_for(None) == 2.0
    clock.advance(1.9)
    assert not deadline.expired
    clock.advance(0.6)
    assert (deadline.remaining(), deadline.expired) == (0.0, True)
    with pytest.raises(DeadlineExceeded, match="inventory lookup") as caught:
        deadline.check("inventory lookup")
    assert isinstance(caught.value, ResilienceError)


def test_budget_must_be_non_negative(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Deadline.after(-1.0, clock)
    with pytest.raises(ValueError, match="non-negative"):
        Deadline.after(float("nan"), clock)


def test_header_round_trip(clock: ManualClock) -> None:
    assert DEADLINE_HEADER == "x-deadline-remaining-ms"
    sent = Deadline.after(2.5, clock)
    clock.advance(0.5)
    value = to_header(sent)
    assert value == "2000"
    other_host = ManualClock(start=42.0)  # a different monotonic origin: only the budget travels
    received = from_header(value, other_host)
    assert received is not None
    assert received.remaining() == pytest.approx(2.0)


def test_header_rounds_down_so_the_budget_never_grows(clock: ManualClock) -> None:
    assert to_header(Deadline.after(0.0019, clock)) == "1"
    assert to_header(Deadline.after(0.0, clock)) == "0"


def test_zero_header_is_an_already_expired_deadline(clock: ManualClock) -> None:
    received = from_header("0", clock)
    assert received is not None
    assert received.expired


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "",
        "  ",
        "abc",
        "-5",
        "+5",
        "1.5",
        "1e3",
        "1_000",
        "٣",
        "0x10",
        "10ms",
        "99999999999",
        str(MAX_DEADLINE_MS + 1),
    ],
)
def test_header_garbage_is_rejected(clock: ManualClock, garbage: str | None) -> None:
    assert from_header(garbage, clock) is None


def test_header_tolerates_surrounding_whitespace(clock: ManualClock) -> None:
    received = from_header(" 1500 ", clock)
    assert received is not None
    assert received.remaining() == pytest.approx(1.5)


def test_nested_scope_can_shorten_but_never_extend(clock: ManualClock) -> None:
    assert get_deadline() is None
    with deadline_scope(5.0, clock) as outer:
        assert get_deadline() is outer
        with deadline_scope(10.0, clock) as inner:
            assert inner is outer  # the caller's 5 s still bind
        with deadline_scope(1.0, clock) as tighter:
            assert tighter.remaining() == 1.0
            assert get_deadline() is tighter
        assert get_deadline() is outer
    assert get_deadline() is None
