"""Start processes in order, gate each on readiness, stream their logs, stop in reverse.

Why not honcho or circus: honcho starts every process at once and stops them
all at once (no readiness gates, no dependency order), and circus brings a
ZeroMQ daemon for what is, here, one foreground process tree. What the platform
needs — ordered start, a readiness URL per process, one prefixed coloured log
stream, reverse-order graceful stop with a kill deadline — is this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import httpx

COLOURS = [36, 32, 35, 33, 34, 91, 92, 96, 93, 95]


@dataclass
class Component:
    """One process of the platform."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    url: str | None = None  # what the ready table shows
    kind: str = "service"
    cwd: str | None = None
    stop_timeout: float = 15.0
    proc: subprocess.Popen[bytes] | None = None


class StartupError(RuntimeError):
    pass


class Supervisor:
    def __init__(self, *, out: IO[str] | None = None, colour: bool | None = None) -> None:
        self.components: list[Component] = []
        self._out = out or sys.stdout
        self._colour = self._out.isatty() if colour is None else colour
        self._width = 10
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _prefix(self, name: str, index: int) -> str:
        label = name.ljust(self._width)
        if self._colour:
            return f"\x1b[{COLOURS[index % len(COLOURS)]}m{label} |\x1b[0m "
        return f"{label} | "

    def say(self, text: str) -> None:
        with self._write_lock:
            self._out.write(f"{self._prefix('redline', 9)}{text}\n")
            self._out.flush()

    def _pump(self, comp: Component, index: int) -> None:
        assert comp.proc is not None
        assert comp.proc.stdout is not None
        prefix = self._prefix(comp.name, index)
        for raw in iter(comp.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._write_lock:
                self._out.write(prefix + line + "\n")
                self._out.flush()

    def start(self, comp: Component, *, timeout: float = 60.0) -> None:
        self._width = max(self._width, len(comp.name))
        index = len(self.components)
        comp.proc = subprocess.Popen(
            list(comp.argv),
            env={**os.environ, **comp.env},
            cwd=comp.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C in the terminal reaches only us, and we
            # stop the children in order.
            start_new_session=True,
        )
        self.components.append(comp)
        thread = threading.Thread(target=self._pump, args=(comp, index), daemon=True)
        thread.start()
        self._threads.append(thread)
        if comp.ready_url:
            self._wait_ready(comp, timeout)

    def _wait_ready(self, comp: Component, timeout: float) -> None:
        assert comp.proc is not None
        assert comp.ready_url is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                code = comp.proc.poll()
                if code is not None:
                    raise StartupError(f"{comp.name} exited with status {code} while starting")
                try:
                    if client.get(comp.ready_url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"{comp.name} not ready after {timeout:g}s ({comp.ready_url})"
                    )
                time.sleep(0.1)

    def alive(self) -> list[Component]:
        return [c for c in self.components if c.proc is not None and c.proc.poll() is None]

    def first_exited(self) -> Component | None:
        for comp in self.components:
            if comp.proc is not None and comp.proc.poll() is not None:
                return comp
        return None

    def stop_all(self, on_stopped: Callable[[Component, int | None], None] | None = None) -> None:
        """SIGTERM each process in reverse start order; SIGKILL after its timeout."""
        for comp in reversed(self.components):
            proc = comp.proc
            if proc is None:
                continue
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    code: int | None = proc.wait(timeout=comp.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait(timeout=5)
            else:
                code = proc.returncode
            if on_stopped:
                on_stopped(comp, code)
        for thread in self._threads:
            thread.join(timeout=2)
