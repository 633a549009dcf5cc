"""`redline restart SERVICE [--rolling]`: replace a service's processes in a running stack.

No channel to the running `redline up` is needed: its supervisor restarts
whatever exits (redline/supervisor.py). So a restart is SIGTERM to an
instance — which drains (services/chassis/server.py: readiness 503, every
answer `Connection: close`, then the listener closes and in-flight requests
finish) and exits — then waiting for the supervisor's new process to be
ready. ``rolling``: one instance at a time, the next only once the previous
one's successor is ready, so the others serve meanwhile and callers fail
over to them (a refused connection is retried on another instance at once).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from redline.stack import StackError
from redline.state import pid_alive, read_state


class RestartError(StackError):
    """The stack cannot restart the service, or an instance did not come back."""


def _state(state_dir: Path) -> dict[str, Any]:
    state = read_state(state_dir)
    if not state or not pid_alive(state.get("pid")):
        raise RestartError(f"no stack running from {state_dir}")
    return state


def _pid(state_dir: Path, name: str) -> int | None:
    pid = (read_state(state_dir) or {}).get("components", {}).get(name, {}).get("pid")
    return int(pid) if pid else None


def _ready(url: str | None) -> bool:
    if not url:
        return False
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_replaced(state_dir: Path, name: str, old: int, url: str | None, deadline: float) -> int:
    while True:
        new = _pid(state_dir, name)
        if new is not None and new != old and pid_alive(new) and _ready(url):
            return new
        if time.monotonic() > deadline:
            raise RestartError(f"{name} was not back and ready in time")
        time.sleep(0.1)


def restart_service(
    state_dir: Path,
    service: str,
    *,
    rolling: bool,
    timeout: float = 60.0,
    say: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Restart every instance of ``service``; one row per instance (old pid, new pid, seconds)."""
    state = _state(state_dir)
    if not state.get("restart", True):
        raise RestartError("the stack runs with --no-restart: nothing would start them again")
    instances: list[str] = state.get("instances", {}).get(service) or [service]
    components = state["components"]
    if rolling and len(instances) == 1:
        say(f"{service} has one instance: its callers will see it restart")
    groups = [[name] for name in instances] if rolling else [instances]
    rows = []
    for group in groups:
        started = time.monotonic()
        olds = {name: int(components[name]["pid"]) for name in group}
        for pid in olds.values():
            os.kill(pid, signal.SIGTERM)
        for name, old in olds.items():
            new = _wait_replaced(
                state_dir, name, old, components[name].get("ready_url"), started + timeout
            )
            seconds = round(time.monotonic() - started, 1)
            say(f"{name}: pid {old} -> {new}, ready after {seconds:.1f}s")
            rows.append({"instance": name, "old_pid": old, "new_pid": new, "seconds": seconds})
    return rows
