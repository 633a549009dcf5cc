"""Every panel query of a dashboard, with template variables replaced by values.

For the live test that runs each query against a real Prometheus and names the
panel that comes back empty::

    for title, expr in expand(dashboard_json, LIVE_TEST_VARIABLES.get(uid, {})):
        ...

Values are substituted as given. A variable not given takes its "All" value
(``allValue``) when it has one, else its default. Grafana's built-ins get
fixed stand-ins: ``$__rate_interval`` and ``$__interval`` become
``rate_interval``, ``$__range`` becomes ``range``. ``${__...}`` macros only
appear in links, never in queries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# Variable values under which every panel should have data after a short load:
# orders has a database, calls other services and runs breakers. (For the
# gateway the database panels are empty by design: it has no database.)
LIVE_TEST_VARIABLES: dict[str, dict[str, str]] = {"redline-service": {"service": "orders"}}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


class UnknownVariableError(KeyError):
    """A query names a variable that is neither given nor defined by the dashboard."""


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variable_values(
    dashboard: Mapping[str, Any],
    given: Mapping[str, str],
    *,
    rate_interval: str = "1m",
    range_: str = "1h",
) -> dict[str, str]:
    values = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": range_}
    for var in dashboard.get("templating", {}).get("list", []):
        name = var["name"]
        current = var.get("current", {}).get("value")
        if isinstance(current, list):
            current = current[0] if current else None
        if var.get("includeAll") and var.get("allValue") and current in (None, "$__all"):
            values[name] = var["allValue"]
        elif current is not None:
            values[name] = str(current)
    values.update(given)
    return values


def substitute(text: str, values: Mapping[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        name = m[1] or m[2] or m[3]
        if name.isdigit():
            return m[0]  # "$1" in label_replace is a capture group, not a variable
        if name not in values:
            raise UnknownVariableError(f"${name} in {text!r}")
        return values[name]

    return _VARIABLE.sub(replace, text)


def expand(
    dashboard: Mapping[str, Any],
    variables: Mapping[str, str] | None = None,
    *,
    rate_interval: str = "1m",
    range_: str = "1h",
) -> list[tuple[str, str]]:
    """``(panel title, expanded expr)`` for every target of every panel, in order.

    A panel with several targets appears once per target; the title then has
    `` [legend]`` appended so the pair still names one query.
    """
    values = variable_values(dashboard, variables or {}, rate_interval=rate_interval, range_=range_)
    out: list[tuple[str, str]] = []
    for panel in panels(dashboard):
        targets = [t for t in panel.get("targets", []) if t.get("expr")]
        for t in targets:
            title = panel.get("title", "")
            if len(targets) > 1:
                title = f"{title} [{t.get('legendFormat', t.get('refId', ''))}]"
            out.append((title, substitute(t["expr"], values)))
    return out


def variable_queries(
    dashboard: Mapping[str, Any], variables: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """``(variable name, expanded query)`` for the dashboard's query variables."""
    values = variable_values(dashboard, variables or {})
    return [
        (var["name"], substitute(var["query"], values))
        for var in dashboard.get("templating", {}).get("list", [])
        if var.get("type") == "query"
    ]
