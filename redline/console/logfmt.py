"""One JSON log line → one short line for a person at a terminal.

``21:47:08.444 INFO  request GET /api/v1/products 200 15.5ms trace=94371494``:
time (local), level, event, the access line's essentials or the event's own
key=value pairs, and the first 8 hex digits of the trace id (enough to find
it, ``redline trace`` takes the full one from ``redline logs --trace``).
The service is the supervisor's prefix. Lines that are not a JSON object
(Prometheus, Alertmanager, PostgreSQL) pass through unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

# Fields every line has, shown elsewhere (the prefix) or not worth a column.
_HIDDEN = frozenset(
    {
        "timestamp",
        "level",
        "event",
        "logger",
        "service",
        "service_version",
        "instance",
        "span_id",
        "trace_id",
        "request_id",
    }
)
_ACCESS = ("method", "route", "path", "status", "duration_ms", "client")
_LEVEL_COLOUR = {
    "debug": 90,
    "info": 32,
    "warning": 33,
    "error": 31,
    "critical": 41,
    "exception": 31,
}


def parse(line: str) -> dict[str, Any] | None:
    """The line's fields when it is one of the services' JSON lines, else None."""
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "event" not in data:
        return None
    return data


def local_time(timestamp: str) -> str:
    try:
        t = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    return t.astimezone().strftime("%H:%M:%S.%f")[:-3]


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v if v and " " not in v and '"' not in v else json.dumps(v)
    return json.dumps(v, separators=(",", ":"), default=str)


def concise(data: dict[str, Any], *, colour: bool = False) -> str:
    level = str(data.get("level", "info")).lower()
    parts = [local_time(str(data.get("timestamp", ""))), f"{level.upper():<5}", str(data["event"])]
    if data.get("logger") == "access":
        route = data.get("route") or data.get("path", "")
        path = data.get("path", "")
        parts += [
            str(data.get("method", "")),
            str(path if path and path != route else route),
            str(data.get("status", "")),
            f"{data.get('duration_ms', 0):.1f}ms",
        ]
        extra = {k: v for k, v in data.items() if k not in _HIDDEN and k not in _ACCESS}
    else:
        extra = {k: v for k, v in data.items() if k not in _HIDDEN}
    parts += [f"{k}={_value(v)}" for k, v in extra.items()]
    if data.get("trace_id"):
        parts.append(f"trace={str(data['trace_id'])[:8]}")
    text = " ".join(p for p in parts if p)
    if colour:
        code = _LEVEL_COLOUR.get(level, 0)
        if level in ("warning", "error", "critical", "exception"):
            return f"\x1b[{code}m{text}\x1b[0m"
        return text.replace(f"{level.upper():<5}", f"\x1b[{code}m{level.upper():<5}\x1b[0m", 1)
    return text


def render(line: str, *, colour: bool = False) -> str:
    """The concise form of a JSON line; anything else unchanged."""
    data = parse(line)
    return line if data is None else concise(data, colour=colour)
