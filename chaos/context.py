"""What an experiment's functions know: the running stack, marks in time, the active faults.

Probe and action functions receive Chaos Toolkit's ``configuration`` mapping
and find everything else from it:

``redline_state_dir``
    The stack's state directory (``redline up --state-dir``, default
    ``.redline``): its ``stack.json`` gives ports, pids (re-read at every call:
    restarts change them) and the admin token.
``fault_proxy_url``
    The fault proxy's API (``redline chaos proxy``), for network toxics.
``jaeger_url``
    A Jaeger query API (``/api/traces/<id>``), to check that a trace shows a fault.
``grafana_url``
    Grafana, for annotations (written by the runner).
``run_dir``
    Where this run writes its journal, report and load logs.

Process-wide registries, shared by the runner and the functions it calls
(and by the ``chaos`` CLI, which runs them in one process too):

* ``MARKS``: named instants ("payments errors injected") that later probes
  measure from ("the alert fired 7.2 s after ...");
* ``ACTIVE_FAULTS``: every fault injected and not yet reverted, with how to
  revert it. Rollbacks discharge them; whatever is left when an experiment
  ends — rollbacks forgotten, failed, or never reached — the runner reverts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redline.state import read_state

Configuration = Mapping[str, Any]

DEFAULT_STATE_DIR = ".redline"


class StackNotRunning(RuntimeError):
    """No readable state file where the configuration says the stack is."""


@dataclass(frozen=True)
class StackInfo:
    state_dir: Path
    state: dict[str, Any]

    @property
    def host(self) -> str:
        return str(self.state.get("host", "127.0.0.1"))

    def port(self, name: str) -> int:
        return int(self.state["ports"][name])

    def url(self, name: str) -> str:
        """Base URL of a component (the gateway's without its /api/v1 prefix)."""
        return f"http://{self.host}:{self.port(name)}"

    def ops_url(self, service: str) -> str:
        """Base URL of a service's ops listener, where its /admin API is."""
        return f"http://127.0.0.1:{self.port(f'{service}-ops')}"

    @property
    def prometheus(self) -> str:
        return self.url("prometheus")

    @property
    def alertmanager(self) -> str:
        return self.url("alertmanager")

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.state['admin_token']}"}

    def component(self, name: str) -> dict[str, Any]:
        comp: dict[str, Any] = self.state.get("components", {}).get(name, {})
        return comp

    def pid(self, name: str) -> int | None:
        pid = self.component(name).get("pid")
        return int(pid) if pid else None

    def restarts(self, name: str) -> int:
        return int(self.component(name).get("restarts", 0))

    def running(self, name: str) -> bool:
        return name in self.state.get("components", {})

    @property
    def pg_data_dir(self) -> Path:
        data_dir = self.component("postgres").get("data_dir")
        return Path(data_dir) if data_dir else self.state_dir / "pgdata"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port('postgres')}/{database}"


def state_dir(configuration: Configuration | None) -> Path:
    value = (configuration or {}).get("redline_state_dir") or os.environ.get(
        "REDLINE_STATE_DIR", DEFAULT_STATE_DIR
    )
    return Path(str(value)).resolve()


def stack(configuration: Configuration | None) -> StackInfo:
    """The stack as its state file says now."""
    directory = state_dir(configuration)
    data = read_state(directory)
    if data is None:
        raise StackNotRunning(
            f"no running stack in {directory} (no readable stack.json); start one with "
            f"`redline up --state-dir {directory}` or pass --state-dir"
        )
    return StackInfo(directory, data)


def setting(configuration: Configuration | None, key: str) -> str | None:
    value = (configuration or {}).get(key)
    return str(value) if value else None


def run_dir(configuration: Configuration | None) -> Path:
    path = Path(setting(configuration, "run_dir") or ".")
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- marks -------------------------------------------------------------------------------


class Marks:
    """Named wall-clock instants, set by actions and read by later probes."""

    def __init__(self) -> None:
        self._marks: dict[str, float] = {}
        self._lock = threading.Lock()

    def set(self, name: str, at: float | None = None) -> float:
        with self._lock:
            self._marks[name] = time.time() if at is None else at
            return self._marks[name]

    def get(self, name: str) -> float:
        with self._lock:
            if name not in self._marks:
                known = ", ".join(sorted(self._marks)) or "none"
                raise KeyError(f"no mark named {name!r} (marks set so far: {known})")
            return self._marks[name]

    def since(self, name: str) -> float:
        """Seconds from the mark until now."""
        return time.time() - self.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._marks)

    def clear(self) -> None:
        with self._lock:
            self._marks.clear()


MARKS = Marks()

# The last pid each service was sent a signal at, so "a new process" can be told apart.
SIGNALLED: dict[str, int] = {}


# -- the fault ledger --------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveFault:
    key: str
    description: str
    undo: Callable[[], Any]
    injected_at: float


class ActiveFaults:
    """Faults in force; ``revert_all`` is the runner's last line of defence."""

    def __init__(self) -> None:
        self._faults: dict[str, ActiveFault] = {}
        self._lock = threading.Lock()

    def add(self, key: str, description: str, undo: Callable[[], Any]) -> None:
        with self._lock:
            # Re-injecting the same fault keeps the first undo: it restores the original state.
            if key not in self._faults:
                self._faults[key] = ActiveFault(key, description, undo, time.time())

    def discharge(self, key: str) -> None:
        with self._lock:
            self._faults.pop(key, None)

    def in_force(self) -> list[str]:
        with self._lock:
            return list(self._faults)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"key": f.key, "description": f.description, "injected_at": f.injected_at}
                for f in self._faults.values()
            ]

    def revert_all(self) -> list[dict[str, Any]]:
        """Undo every fault still in force, newest first; report each (and any failure)."""
        with self._lock:
            pending = list(reversed(self._faults.values()))
        reverted = []
        for fault in pending:
            entry: dict[str, Any] = {"key": fault.key, "description": fault.description}
            try:
                fault.undo()
            except Exception as exc:  # one failed undo must not keep the others from running
                entry["error"] = f"{type(exc).__name__}: {exc}"
            else:
                self.discharge(fault.key)
            reverted.append(entry)
        return reverted


ACTIVE_FAULTS = ActiveFaults()
