"""Response times per endpoint and per second of the run: what the block bootstrap resamples.

Requests of one run are not independent draws: those sent in the same second
share the machine's state (another process's burst, a GC pause, a full
connection pool). Resampling single requests ignores that and calls
ordinary run-to-run differences significant (measured: up to 57 % of the
percentile changes between two runs of one build on a shared machine; 42 %
with blocks, see loadtests/README.md). So
each request is also counted in its second's histogram, and a comparison
resamples whole blocks of seconds (:mod:`loadtests.bootstrap`).

Cheap enough for every request (two dictionary look-ups); workers drain theirs
into every stats report and the master merges them. Milliseconds are rounded
as Locust rounds them, so the per-second histograms add up to Locust's own.
"""

from __future__ import annotations

from typing import Any


def locust_rounded(ms: float) -> int:
    """Locust's rounding of a response time (``locust.stats.bucket_response_time``)."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    if ms < 10000:
        return int(round(ms, -2))
    return int(round(ms, -3))


class Timeline:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, str, int], dict[int, int]] = {}

    def observe(self, method: str, name: str, started_at: float, response_ms: float) -> None:
        key = (method, name, int(started_at))
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = {}
        ms = locust_rounded(response_ms)
        cell[ms] = cell.get(ms, 0) + 1

    def reset(self) -> None:
        self.cells = {}

    def drain(self) -> list[list[Any]]:
        payload = [[m, n, s, list(cell.items())] for (m, n, s), cell in self.cells.items()]
        self.reset()
        return payload

    def merge(self, payload: list[list[Any]]) -> None:
        for method, name, second, items in payload:
            key = (str(method), str(name), int(second))
            cell = self.cells.setdefault(key, {})
            for ms, n in items:
                cell[int(ms)] = cell.get(int(ms), 0) + int(n)

    def seconds(self, method: str, name: str, started_at: float) -> list[list[Any]]:
        """``[[second since the start, {"ms": count}], ...]`` of one endpoint, for results.json."""
        origin = int(started_at)
        rows = [
            [second - origin, {str(ms): count for ms, count in sorted(cell.items())}]
            for (m, endpoint, second), cell in self.cells.items()
            if m == method and endpoint == name
        ]
        return sorted(rows, key=lambda row: int(row[0]))
