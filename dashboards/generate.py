"""Render every dashboard to ``dashboards/generated/<uid>.json``; ``--check`` finds stale ones.

The JSON is committed: Grafana provisions it as-is, and a diff shows what a
change to the Python did to the dashboards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafanalib import core as g

from dashboards import orders, overview, pipeline, resilience, service
from dashboards._grafana import render
from redline import generated

GENERATED_DIR = Path(__file__).resolve().parent / "generated"

BUILDERS: tuple[Callable[[], g.Dashboard], ...] = (
    overview.build,
    service.build,
    resilience.build,
    orders.build,
    pipeline.build,
)


def dashboards() -> dict[str, dict[str, Any]]:
    """uid → finished dashboard JSON."""
    out: dict[str, dict[str, Any]] = {}
    for build in BUILDERS:
        d = render(build())
        out[d["uid"]] = d
    return out


def to_text(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    return {GENERATED_DIR / f"{uid}.json": to_text(d) for uid, d in dashboards().items()}


def _owned() -> list[Path]:
    return sorted(GENERATED_DIR.glob("*.json"))


def stale() -> list[Path]:
    """Generated files that differ from what the sources render now, or have no source."""
    return generated.stale(outputs(), _owned())


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv, prog="python -m dashboards", description=__doc__, outputs=outputs, owned=_owned
    )
