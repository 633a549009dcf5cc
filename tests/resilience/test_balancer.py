"""The balancer: power of two choices, outlier ejection and return, on a manual clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.chassis.resilience import Balancer, ManualClock, OutlierPolicy
from tests.resilience.support import RecordingHooks

A, B, C = "http://10.0.0.1:8002", "http://10.0.0.2:8002", "http://10.0.0.3:8002"


def make(
    urls: list[str], policy: OutlierPolicy | None = None, seed: int = 1
) -> tuple[Balancer, ManualClock, RecordingHooks]:
    clock = ManualClock()
    hooks = RecordingHooks()
    rng = random.Random(seed)
    return (
        Balancer("inventory", urls, policy, clock=clock, random=rng.random, hooks=hooks),
        clock,
        hooks,
    )


def fail(balancer: Balancer, address: str, times: int) -> None:
    endpoint = next(e for e in balancer.endpoints if e.address == address)
    for _ in range(times):
        balancer.begin(endpoint)
        balancer.end(endpoint, failed=True)


def test_a_single_endpoint_is_always_picked_and_never_ejected() -> None:
    balancer, _, hooks = make([A])
    fail(balancer, "10.0.0.1:8002", 100)
    assert balancer.pick().address == "10.0.0.1:8002"
    assert not [e for e in hooks.events if e[0] == "ejection"]


def test_idle_endpoints_share_the_load_evenly() -> None:
    balancer, _, _ = make([A, B, C])
    counts = Counter(balancer.pick().address for _ in range(3000))
    assert set(counts) == {"10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"}
    assert min(counts.values()) > 800, counts


def test_the_endpoint_with_fewer_in_flight_wins_the_two_choices() -> None:
    balancer, _, _ = make([A, B])
    busy, idle = balancer.endpoints
    for _ in range(3):
        balancer.begin(busy)
    # With two endpoints, both are drawn every time: the idle one always wins.
    assert {balancer.pick().address for _ in range(100)} == {idle.address}


def test_p2c_sends_a_slow_endpoint_less_than_its_share() -> None:
    balancer, _, _ = make([A, B, C])
    slow = balancer.endpoints[0]
    for _ in range(5):
        balancer.begin(slow)  # stuck requests
    counts = Counter(balancer.pick().address for _ in range(3000))
    # Picked only when drawn against... never: the other two always have fewer in flight.
    assert counts[slow.address] == 0


def test_consecutive_failures_eject_and_the_endpoint_returns_after_the_backoff() -> None:
    balancer, clock, hooks = make([A, B], OutlierPolicy(consecutive_failures=3, base_ejection=5))
    fail(balancer, "10.0.0.1:8002", 2)
    assert "10.0.0.1:8002" in {balancer.pick().address for _ in range(50)}
    fail(balancer, "10.0.0.1:8002", 1)
    assert hooks.events[-1] == ("ejection", "inventory", "10.0.0.1:8002", 5.0)
    assert {balancer.pick().address for _ in range(50)} == {"10.0.0.2:8002"}
    clock.advance(4.9)
    assert {balancer.pick().address for _ in range(50)} == {"10.0.0.2:8002"}
    clock.advance(0.2)
    assert "10.0.0.1:8002" in {balancer.pick().address for _ in range(50)}
    assert ("return", "inventory", "10.0.0.1:8002") in hooks.events


def test_a_success_resets_the_failure_streak() -> None:
    balancer, _, hooks = make([A, B], OutlierPolicy(consecutive_failures=3))
    a = balancer.endpoints[0]
    for _ in range(10):
        fail(balancer, a.address, 2)
        balancer.begin(a)
        balancer.end(a, failed=False)
    assert not [e for e in hooks.events if e[0] == "ejection"]


def test_a_repeat_offender_stays_out_longer_until_it_behaves() -> None:
    policy = OutlierPolicy(consecutive_failures=1, base_ejection=5, max_ejection=12)
    balancer, clock, hooks = make([A, B], policy)
    seconds = []
    for _ in range(4):
        fail(balancer, "10.0.0.1:8002", 1)
        seconds.append(hooks.events[-1][3])
        clock.advance(seconds[-1])
        balancer.pick()  # notices the return
    assert seconds == [5.0, 10.0, 12.0, 12.0]
    clock.advance(12.0)  # in for max_ejection: starts over
    fail(balancer, "10.0.0.1:8002", 1)
    assert hooks.events[-1][3] == 5.0


@pytest.mark.parametrize(("endpoints", "most_out"), [(2, 1), (3, 1), (4, 2), (10, 5)])
def test_at_most_half_the_endpoints_are_ejected_at_once(endpoints: int, most_out: int) -> None:
    urls = [f"http://10.0.0.{i}:8002" for i in range(1, endpoints + 1)]
    balancer, _, _ = make(urls, OutlierPolicy(consecutive_failures=1))
    for e in balancer.endpoints:
        fail(balancer, e.address, 1)
    assert sum(s.ejected for s in balancer.snapshot().endpoints) == most_out
    assert len({balancer.pick().address for _ in range(200)}) == endpoints - most_out


def test_a_retry_avoids_the_endpoints_the_call_tried() -> None:
    balancer, _, _ = make([A, B, C])
    first = balancer.pick()
    second = balancer.pick(exclude=[first])
    third = balancer.pick(exclude=[first, second])
    assert len({first.address, second.address, third.address}) == 3
    # All tried: a retry goes back to one of them rather than nowhere.
    assert balancer.pick(exclude=[first, second, third]) in balancer.endpoints


def test_an_update_keeps_the_state_of_endpoints_that_stay() -> None:
    balancer, _, _ = make([A, B], OutlierPolicy(consecutive_failures=1))
    fail(balancer, "10.0.0.2:8002", 1)
    b = balancer.endpoints[1]
    balancer.update([B, C])
    assert balancer.endpoints[0] is b
    assert b.ejected_until is not None
    assert [e.address for e in balancer.endpoints] == ["10.0.0.2:8002", "10.0.0.3:8002"]
    with pytest.raises(ValueError, match="at least one"):
        balancer.update([])


def test_counts_per_endpoint_are_in_the_snapshot() -> None:
    balancer, _, _ = make([A, B], OutlierPolicy(consecutive_failures=2))
    a = balancer.endpoints[0]
    balancer.begin(a)
    balancer.end(a, failed=False)
    fail(balancer, a.address, 2)
    snap = {e.address: e for e in balancer.snapshot().endpoints}
    assert snap[a.address].successes_total == 1
    assert snap[a.address].failures_total == 2
    assert snap[a.address].ejections_total == 1
    assert snap[a.address].ejected
    assert snap["10.0.0.2:8002"].ejections_total == 0


def test_a_call_that_tried_every_live_endpoint_falls_back_to_an_ejected_one() -> None:
    """The restarted replica may still be ejected when its sibling is the one restarting."""
    balancer, _, hooks = make([A, B], OutlierPolicy(consecutive_failures=1, base_ejection=15))
    fail(balancer, "10.0.0.1:8002", 1)
    ejected, live = balancer.endpoints
    assert balancer.pick() is live
    assert balancer.pick(exclude=[live]) is ejected
    # It answers: back in at once, not 15 s later.
    balancer.begin(ejected)
    balancer.end(ejected, failed=False)
    assert hooks.events[-1] == ("return", "inventory", "10.0.0.1:8002")
    assert {balancer.pick().address for _ in range(50)} == {"10.0.0.1:8002", "10.0.0.2:8002"}
