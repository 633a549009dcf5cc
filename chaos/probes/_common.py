"""What every probe module shares: the HTTP timeout, the skip signal, polling and marks."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import httpx

from chaos.context import MARKS

TIMEOUT = 5.0


@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


def get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get`` through one client shared by the probes.

    A new client (its SSL context) costs ~25 ms, more than a GET to a local
    service: a steady-state check makes dozens. No keep-alive, so every GET
    still opens its own connection: a killed or restarted process is never
    asked on a connection it held before.
    """
    return _client().get(url, **kwargs)


class ProbeSkipped(Exception):
    """The probe cannot be made here (a backend is not configured); not a deviation."""


def poll(seconds: float, interval: float = 0.25) -> Iterator[float]:
    """Yield elapsed seconds until ``seconds`` have passed (the last yield is at or past it)."""
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        yield elapsed
        if elapsed >= seconds:
            return
        time.sleep(interval)


def mark_time(mark: str | None) -> float | None:
    """The wall time of a mark, or None when no mark is named."""
    return MARKS.get(mark) if mark else None


def seconds_since(mark: str | None, started: float) -> float:
    """Seconds from the mark (or from ``started``, a wall time) until now, rounded."""
    origin = mark_time(mark) or started
    return round(time.time() - origin, 2)


def matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    """Every wanted label has the wanted value."""
    return all(labels.get(k) == v for k, v in wanted.items())
