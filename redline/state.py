"""The stack's state file, ``<state>/stack.json``: what runs where, and who wrote it.

`redline up` writes it; `redline status` and `down`, chaos experiments,
benchmarks and tests read it. Only the standard library here, so a reader of
the state does not import the launcher (PostgreSQL, the services, Prometheus's
config) to learn a port.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def state_file(state_dir: Path) -> Path:
    return state_dir / "stack.json"


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(state_file(state_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Replace the state file at once (readers never see half of it), readable by us only."""
    path = state_file(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)  # it holds the admin token
    tmp.replace(path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(FileNotFoundError, IndexError):
        # A zombie (exited, not yet reaped) is not running.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    return True
