"""Redline's own Locust options (``locust -f loadtests/locustfile.py --help`` lists them).

Plain argparse calls, so they also work on a bare ``argparse.ArgumentParser``
in tests. Locust also reads them from its config files (``locust.conf``),
forwards them from the master to its workers, and, as they live in an
argument group, keeps them out of the web UI's form (they are for the command
line; the shape's users, spawn rate and run time are the form's own fields).
"""

from __future__ import annotations

import argparse
from typing import Any

from loadtests.open_model import PROCESSES
from loadtests.shapes import SHAPES

DEFAULT_PROMETHEUS_PORT = 9646


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("Redline (loadtests/README.md)")
    add = group.add_argument

    add(
        "--shape",
        choices=("none", *SHAPES),
        default="none",
        help="Load shape; none: Locust's own -u/-r/-t behaviour. Shapes read -u (peak users), "
        "-r (spawn rate) and -t (duration; default 60s, soak 1h).",
    )
    add("--shape-steps", type=int, default=5, help="Plateaus of the step shape (default 5).")
    add(
        "--think-scale",
        type=float,
        default=1.0,
        help="Multiply every journey's think time (1: realistic, 0: none, for capacity runs).",
    )
    add(
        "--rate-limited-ok",
        action="store_true",
        default=False,
        help="Count 429 answers as expected (for shapes that overload on purpose).",
    )
    add("--slowest", type=int, default=20, help="Slowest requests to list with trace ids.")
    add("--failures-listed", type=int, default=50, help="Failed requests to list, at most.")
    add(
        "--trace-report",
        default="",
        help="JSON file for the slow/failed request list (default: <--csv prefix>_traces.json).",
    )
    add("--jaeger-url", default="", help="Jaeger UI base URL, for links in the trace report.")
    add(
        "--prometheus-port",
        type=int,
        default=DEFAULT_PROMETHEUS_PORT,
        help=f"Serve Locust's metrics here (master/local only; 0: off; default "
        f"{DEFAULT_PROMETHEUS_PORT}).",
    )
    add("--prometheus-host", default="127.0.0.1", help="Address the metrics endpoint binds to.")
    add(
        "--max-error-ratio", default=None, help="Fail the run above this failure ratio (0.01, 1%%)."
    )
    add(
        "--max-p95",
        action="append",
        default=None,
        help='Fail the run above these p95s: "[METHOD ]name=duration[,...]", repeatable; '
        'name "Aggregated" is the whole run.',
    )
    add("--max-p99", action="append", default=None, help="As --max-p95, for p99.")
    add("--thresholds", default="", help="TOML file of thresholds (see loadtests/README.md).")
    add(
        "--open-rate",
        type=float,
        default=0.0,
        help="Open model: offer this many requests per second in all, whatever the answers' "
        "times (0: the closed-model journeys). -u is then the number of arrival streams.",
    )
    add(
        "--arrivals",
        choices=PROCESSES,
        default="poisson",
        help="Open model: inter-arrival times, exponential (poisson) or equal (constant).",
    )
    add(
        "--max-in-flight",
        type=int,
        default=256,
        help="Open model: requests waiting at once per stream; arrivals beyond are dropped.",
    )
    add(
        "--results",
        default="",
        help="JSON file of the run's window and per-request response-time histograms, for "
        "`redline load compare` (default: <--csv prefix>_results.json).",
    )


def parser() -> argparse.ArgumentParser:
    """A stand-alone parser with just these options (for tests and run.py's checks)."""
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    return p
