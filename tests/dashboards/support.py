"""The generated dashboards as JSON, and what the static tests need to read them."""

from __future__ import annotations

import json
from typing import Any

from dashboards.generate import GENERATED_DIR
from dashboards.queries import LIVE_TEST_VARIABLES, panels

Dashboard = dict[str, Any]
Panel = dict[str, Any]

# The values the live tests use: no panel is legitimately empty under them.
RICHEST_VALUES = LIVE_TEST_VARIABLES


def generated() -> list[Dashboard]:
    return [json.loads(p.read_text("utf-8")) for p in sorted(GENERATED_DIR.glob("*.json"))]


def all_panels() -> list[tuple[str, Panel]]:
    """(dashboard uid, panel) for every non-row panel."""
    return [(d["uid"], dict(p)) for d in generated() for p in panels(d) if p.get("type") != "row"]


def panel_id(item: tuple[str, Panel]) -> str:
    return f"{item[0]}:{item[1].get('title', '?')}"
