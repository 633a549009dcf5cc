"""`redline logs`: every component's lines, merged in time order, filtered, optionally followed.

The supervisor keeps each component's output as written in
``<state>/logs/<name>.log`` (see :mod:`redline.supervisor`). The services'
lines are JSON with a ``timestamp``; other lines (Prometheus's logfmt,
PostgreSQL) take the ``ts=`` they carry or the time of the line before them.

``--trace ID`` takes a trace id (or the 8-digit prefix the concise lines
show), a request id or an order id: the lines that carry it name their trace
ids, and every line of those traces is shown — the whole request across
services.
"""

from __future__ import annotations

import heapq
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from redline.console.logfmt import concise, parse
from services.topology import SERVICES, instance_of

_LOGFMT_TS = re.compile(r"\bts=(\S+)")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``5m`` → 300.0 seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"expected a duration like 30s, 5m, 2h: {text!r}")
    return float(m[1]) * _UNITS[m[2]]


def _epoch(timestamp: str) -> float | None:
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, order=True)
class Line:
    at: float
    source: str
    text: str
    fields: dict[str, Any] | None = field(default=None, compare=False)


def read_lines(path: Path, source: str, *, start: int = 0) -> tuple[list[Line], int]:
    """Lines of ``path`` from byte ``start``; and the offset after the last whole line."""
    out: list[Line] = []
    last = 0.0
    try:
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return [], start
    end = data.rfind(b"\n") + 1
    for raw in data[:end].decode(errors="replace").splitlines():
        fields = parse(raw)
        at: float | None = None
        if fields is not None:
            at = _epoch(str(fields.get("timestamp", "")))
        else:
            m = _LOGFMT_TS.search(raw)
            at = _epoch(m[1]) if m else None
        last = at if at is not None else last
        out.append(Line(last, source, raw, fields))
    return out, start + end


def sources(log_dir: Path, names: Iterable[str]) -> dict[str, Path]:
    """``{name: file}``: the services by default, any component by name.

    A service stands for every instance of it (``inventory``, ``inventory-2``
    with `redline up --replicas`): a request may have been served by any.
    """
    wanted = list(names) or list(SERVICES)
    available = {p.stem: p for p in sorted(log_dir.glob("*.log"))}
    unknown = [n for n in wanted if n not in available and n not in SERVICES]
    if unknown:
        known = ", ".join(available) or "none yet"
        raise ValueError(f"no log for {', '.join(unknown)} in {log_dir} (logs: {known})")
    out: dict[str, Path] = {}
    for name in wanted:
        out[name] = log_dir / f"{name}.log"
        for stem, path in available.items():
            instance = instance_of(stem)
            if name in SERVICES and instance is not None and instance[0] == name:
                out[stem] = path
    return out


_IDS = ("request_id", "order_id")


def trace_ids_for(lines: Iterable[Line], ident: str) -> set[str]:
    """The trace ids of lines whose trace id starts with ``ident`` or that carry it as an id."""
    ident = ident.lower()
    found = set()
    for line in lines:
        f = line.fields
        if not f or not f.get("trace_id"):
            continue
        tid = str(f["trace_id"])
        if (
            tid.startswith(ident)
            or any(str(f.get(k, "")).lower() == ident for k in _IDS)
            # An order id is in the paths of the calls about it (/reservations/{id}/commit).
            or (len(ident) >= 16 and ident in str(f.get("path", "")).lower())
        ):
            found.add(tid)
    return found


class Matcher:
    def __init__(self, since: float | None, trace_ids: set[str] | None) -> None:
        self.since = since
        self.trace_ids = trace_ids

    def __call__(self, line: Line) -> bool:
        if self.since is not None and line.at < self.since:
            return False
        if self.trace_ids is None:
            return True
        return bool(line.fields and line.fields.get("trace_id") in self.trace_ids)


def format_line(line: Line, *, width: int, readable: bool, colour: bool) -> str:
    if not readable:
        return line.text
    text = concise(line.fields, colour=colour) if line.fields else line.text
    return f"{line.source:<{width}} | {text}"


def show(
    log_dir: Path,
    names: Iterable[str],
    *,
    since: float | None = None,
    trace: str | None = None,
    follow: bool = False,
    readable: bool | None = None,
    out: IO[str] | None = None,
    poll: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Print the matching lines; with ``follow``, keep printing new ones until ``stop()``."""
    out = out or sys.stdout
    tty = out.isatty()
    readable = tty if readable is None else readable
    files = sources(log_dir, names)
    width = max(len(n) for n in files)
    offsets: dict[str, int] = {}
    per_file: dict[str, list[Line]] = {}
    for name, path in files.items():
        per_file[name], offsets[name] = read_lines(path, name)
    trace_ids: set[str] | None = None
    if trace:
        trace_ids = trace_ids_for((ln for lines in per_file.values() for ln in lines), trace)
        if not trace_ids and not follow:
            print(f"redline: no log line carries {trace!r}", file=sys.stderr)
            return 1
    cutoff = None if since is None else time.time() - since
    match = Matcher(cutoff, trace_ids)
    merged: Iterator[Line] = heapq.merge(*per_file.values())
    for line in merged:
        if match(line):
            out.write(format_line(line, width=width, readable=readable, colour=tty) + "\n")
    out.flush()
    while follow and not stop():
        time.sleep(poll)
        fresh: list[Line] = []
        for name, path in files.items():
            lines, offsets[name] = read_lines(path, name, start=offsets[name])
            fresh += lines
        if trace and trace_ids is not None:
            trace_ids |= trace_ids_for(fresh, trace)
        for line in sorted(fresh):
            if match(line):
                out.write(format_line(line, width=width, readable=readable, colour=tty) + "\n")
        out.flush()
    return 0
