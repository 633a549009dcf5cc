"""Probes of the resilience admin API: breaker states and transitions, bulkhead occupancy."""

from __future__ import annotations

import time
from typing import Any

from chaos.context import Configuration, stack
from chaos.probes._common import TIMEOUT, get, poll, seconds_since
from services.topology import SERVICES


def resilience(service: str, configuration: Configuration | None = None) -> dict[str, Any]:
    info = stack(configuration)
    r = get(
        f"{info.ops_url(service)}/admin/resilience", headers=info.admin_headers, timeout=TIMEOUT
    )
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item["name"] == name:
            return item
    raise KeyError(f"no {name!r} among {[i['name'] for i in items]}")


def breaker_state(service: str, breaker: str, configuration: Configuration | None = None) -> str:
    state: str = _named(resilience(service, configuration)["circuit_breakers"], breaker)["state"]
    return state


def breaker_reaches(
    service: str,
    breaker: str,
    state: str,
    within: float,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Wait for the breaker to be in ``state``; ``seconds`` from the mark (None: it never was)."""
    started = time.time()
    seen: list[str] = []
    first: dict[str, int] | None = None
    for _ in poll(within, 0.1):
        snap = _named(resilience(service, configuration)["circuit_breakers"], breaker)
        current = snap["state"]
        if first is None:
            first = snap["transitions_total"]
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == state:
            return {
                "state": current,
                "seconds": seconds_since(since_mark, started),
                "path": seen,
                # The breaker's own count: a half-open phase shorter than the
                # polling interval is missing from "path" but not from here.
                "transitions": _delta(first, snap["transitions_total"]),
                "failure_rate": snap["failure_rate"],
                "slow_call_rate": snap["slow_call_rate"],
            }
    return {"state": seen[-1] if seen else None, "seconds": None, "path": seen, "waited": within}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def breakers_closed(
    within: float = 0.0,
    services: list[str] | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Breakers not closed, across the callers (waiting up to ``within`` for all to close)."""
    names = services or [n for n, s in SERVICES.items() if s.calls]
    started = time.time()
    not_closed: dict[str, str] = {}
    for _ in poll(within, 0.25):
        not_closed = {}
        for name in names:
            for b in resilience(name, configuration)["circuit_breakers"]:
                if b["state"] != "closed":
                    not_closed[f"{name}->{b['name']}"] = b["state"]
        if not not_closed:
            break
    return {
        "not_closed": not_closed,
        "count": len(not_closed),
        "seconds": round(time.time() - started, 2),
    }


def bulkhead_peak(
    service: str, bulkhead: str, seconds: float, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Sample a bulkhead for ``seconds`` (every 50 ms): the most calls it held, its capacity."""
    peak = 0
    snap: dict[str, Any] = {}
    first_rejected: int | None = None
    for _ in poll(seconds, 0.05):
        snap = _named(resilience(service, configuration)["bulkheads"], bulkhead)
        peak = max(peak, int(snap["in_flight"]))
        if first_rejected is None:
            first_rejected = int(snap["rejected_total"])
    return {
        "peak_in_flight": peak,
        "capacity": snap.get("capacity"),
        "over_capacity": max(0, peak - int(snap.get("capacity", peak))),
        "rejected": int(snap.get("rejected_total", 0)) - (first_rejected or 0),
    }
