"""Render every dashboard to ``dashboards/generated/<uid>.json``; ``--check`` finds stale ones.

The JSON is committed: Grafana provisions it as-is, and a diff shows what a
change to the Python did to the dashboards.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafanalib import core as g

from dashboards import orders, overview, pipeline, resilience, service
from dashboards._grafana import render

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


def stale() -> list[Path]:
    """Generated files that differ from what the sources render now, or have no source."""
    expected = outputs()
    changed = [p for p, text in expected.items() if not p.exists() or p.read_text("utf-8") != text]
    leftovers = sorted(set(GENERATED_DIR.glob("*.json")) - set(expected))
    return changed + leftovers


def write() -> list[Path]:
    expected = outputs()
    GENERATED_DIR.mkdir(exist_ok=True)
    for leftover in set(GENERATED_DIR.glob("*.json")) - set(expected):
        leftover.unlink()
    for path, text in expected.items():
        path.write_text(text, encoding="utf-8")
    return list(expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if out_of_date else 0
    for path in write():
        print(f"wrote {path}")
    return 0
