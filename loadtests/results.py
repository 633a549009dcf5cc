"""A run's results as one JSON file: its time window and every request's response time.

Written by the locustfile at the end of a run (``results.json`` in a run
folder), read by ``redline load compare`` and ``--baseline``. A baseline kept
in the repository is this file, copied (``loadtests/baselines/``). Format
``redline-load-results/1``::

    {
      "format": "redline-load-results/1",
      "started_at": 1796500000.123,   # Unix seconds: when the test started...
      "stopped_at": 1796500060.456,   # ...and stopped (the window server-side numbers cover)
      "host": "http://127.0.0.1:8000",
      "model": "closed" | "open",
      "shape": "steady", "users": 20,
      "open_model": null | {"rate": 40, "process": "poisson", "sent": ..., "lag_ms": {...}, ...},
      "endpoints": [
        {"method": "GET", "name": "/api/v1/products", "requests": 1200, "failures": 0,
         "response_times_ms": {"3": 100, "4": 410, "110": 2, ...},
         "seconds": [[0, {"3": 2, "4": 7}], [1, {"4": 9, "110": 1}], ...]}
      ]
    }

``response_times_ms`` is Locust's own histogram of the whole run (every
request, workers' included): milliseconds rounded as Locust rounds them (to
the millisecond below 100 ms, to two significant digits above) → how many
requests took that long. Failed requests are in it too, as Locust counts them.
``seconds`` splits the same requests by the second (since ``started_at``) in
which they were sent, for the block bootstrap (:mod:`loadtests.timeline`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loadtests.timeline import Timeline

FORMAT = "redline-load-results/1"
FILE_NAME = "results.json"


class ResultsError(ValueError):
    """A results file or run folder that cannot be read; the message says which and why."""


class StatsEntry(Protocol):
    """What is kept of ``locust.stats.StatsEntry``."""

    name: str
    method: str
    num_requests: int
    num_failures: int
    response_times: Mapping[int, int]


@dataclass(frozen=True)
class Endpoint:
    method: str
    name: str
    requests: int
    failures: int
    histogram: tuple[tuple[float, int], ...]  # (ms, count), ascending
    # (second since the start, its histogram): the requests sent in each second
    seconds: tuple[tuple[int, tuple[tuple[float, int], ...]], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method} {self.name}"

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Results:
    source: Path
    started_at: float
    stopped_at: float
    model: str
    endpoints: dict[str, Endpoint]
    meta: dict[str, Any]

    @property
    def seconds(self) -> float:
        return max(self.stopped_at - self.started_at, 1e-9)


def to_json(
    entries: Iterable[StatsEntry],
    *,
    started_at: float,
    stopped_at: float,
    meta: Mapping[str, Any],
    timeline: Timeline | None = None,
) -> dict[str, Any]:
    endpoints = [
        {
            "method": e.method,
            "name": e.name,
            "requests": e.num_requests,
            "failures": e.num_failures,
            "response_times_ms": {str(ms): n for ms, n in sorted(e.response_times.items())},
            "seconds": timeline.seconds(e.method, e.name, started_at) if timeline else [],
        }
        for e in sorted(entries, key=lambda e: (e.name, e.method))
        if e.num_requests
    ]
    return {
        "format": FORMAT,
        "started_at": round(started_at, 3),
        "stopped_at": round(stopped_at, 3),
        **meta,
        "endpoints": endpoints,
    }


def write(path: Path, doc: Mapping[str, Any]) -> None:
    """Indented, but one line per endpoint: a baseline in the repository diffs readably."""
    head = {k: v for k, v in doc.items() if k != "endpoints"}
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    rows = ",\n".join(f"    {json.dumps(e)}" for e in doc.get("endpoints", []))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "{\n" + "\n".join(lines) + f'\n  "endpoints": [\n{rows}\n  ]\n}}\n', encoding="utf-8"
    )


def results_path(run: Path) -> Path:
    """A run folder's results file, or the file itself."""
    return run / FILE_NAME if run.is_dir() else run


def _histogram(cell: Mapping[str, Any]) -> tuple[tuple[float, int], ...]:
    return tuple(sorted((float(ms), int(n)) for ms, n in cell.items() if int(n)))


def load(run: Path) -> Results:
    path = results_path(run)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        what = "run folder without results.json" if run.is_dir() else "no such run folder or file"
        raise ResultsError(f"{run}: {what}") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a results file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ResultsError(f"{path}: not a {FORMAT} file")
    try:
        endpoints = {}
        for e in doc["endpoints"]:
            seconds = tuple(
                (int(second), _histogram(cell)) for second, cell in e.get("seconds", [])
            )
            endpoint = Endpoint(
                str(e["method"]), str(e["name"]), int(e["requests"]), int(e["failures"]),
                _histogram(e["response_times_ms"]), seconds,
            )  # fmt: skip
            endpoints[endpoint.key] = endpoint
        started, stopped = float(doc["started_at"]), float(doc["stopped_at"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: malformed ({exc!r})") from None
    meta = {k: v for k, v in doc.items() if k not in ("endpoints", "format")}
    return Results(path, started, stopped, str(doc.get("model", "closed")), endpoints, meta)
