"""Start processes in order, gate each on readiness, stream their logs, restart, stop in reverse.

Why not honcho or circus: honcho starts every process at once and stops them
all at once (no readiness gates, no dependency order, no restarts), and circus
brings a ZeroMQ daemon and its own config format for what is, here, one
foreground process tree. What the platform needs — ordered start, a readiness
URL per process, one prefixed coloured log stream, restart with backoff when a
process dies (chaos experiments kill services on purpose), reverse-order
graceful stop with a kill deadline — is this module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

COLOURS = [36, 32, 35, 33, 34, 91, 92, 96, 93, 95, 94, 90]

# Restart backoff: 1 s, doubling to 30 s; reset after a minute of health.
RESTART_MIN_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
HEALTHY_RESET_SECONDS = 60.0


@dataclass
class Component:
    """One process of the platform."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    url: str | None = None  # what the ready table shows
    role: str = ""  # what the ready table says it is
    cwd: str | None = None
    stop_timeout: float = 15.0
    restart: bool = True
    # Components started side by side (a wave of services and their replicas)
    # share a group: they are stopped together, their drains overlapping,
    # rather than one drain after another.
    group: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    # Restart bookkeeping.
    restarts: int = 0
    started_at: float = 0.0
    next_restart_at: float | None = None
    delay: float = RESTART_MIN_DELAY


class StartupError(RuntimeError):
    pass


class Supervisor:
    def __init__(
        self,
        *,
        out: IO[str] | None = None,
        colour: bool | None = None,
        log_dir: Path | None = None,
        render: Callable[[str], str] | None = None,
    ) -> None:
        self.components: list[Component] = []
        # Each process's lines also go, as written, to <log_dir>/<name>.log: the
        # Collector's file_log receiver reads them (as it reads Docker's files in
        # compose), and so can anyone after the terminal scrolled away.
        # The supervisor's own lines go to <log_dir>/redline.log; the terminal
        # shows each line through ``render`` (e.g. concise instead of JSON).
        self._log_dir = log_dir
        self._render = render
        self._own_log: IO[str] | None = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            self._own_log = (log_dir / "redline.log").open("a", buffering=1, errors="replace")
        self._out = out or sys.stdout
        self._colour = self._out.isatty() if colour is None else colour
        self._width = 10
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def _prefix(self, name: str, index: int) -> str:
        label = name.ljust(self._width)
        if self._colour:
            return f"\x1b[{COLOURS[index % len(COLOURS)]}m{label} |\x1b[0m "
        return f"{label} | "

    def say(self, text: str, *, source: str = "redline") -> None:
        with self._write_lock:
            self._out.write(f"{self._prefix(source, len(COLOURS) - 1)}{text}\n")
            self._out.flush()
            if self._own_log is not None and not self._own_log.closed:
                self._own_log.write(text + "\n" if source == "redline" else f"{source}: {text}\n")

    def _pump(self, comp: Component, proc: subprocess.Popen[bytes], index: int) -> None:
        assert proc.stdout is not None
        prefix = self._prefix(comp.name, index)
        with contextlib.ExitStack() as stack:
            log = None
            if self._log_dir is not None:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context((self._log_dir / f"{comp.name}.log").open("ab"))
            for raw in iter(proc.stdout.readline, b""):
                if log is not None:
                    log.write(raw if raw.endswith(b"\n") else raw + b"\n")
                    log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                shown = self._render(line) if self._render is not None else line
                with self._write_lock:
                    self._out.write(prefix + shown + "\n")
                    self._out.flush()

    def _spawn(self, comp: Component) -> None:
        index = self.components.index(comp)
        comp.proc = subprocess.Popen(
            list(comp.argv),
            env={**os.environ, **comp.env},
            cwd=comp.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session: Ctrl-C in the terminal reaches only the supervisor,
            # which stops the children in order.
            start_new_session=True,
        )
        comp.started_at = time.monotonic()
        thread = threading.Thread(target=self._pump, args=(comp, comp.proc, index), daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self, comp: Component, *, timeout: float = 60.0) -> None:
        self.start_together([comp], timeout=timeout)

    def start_together(self, comps: Sequence[Component], *, timeout: float = 60.0) -> None:
        """Spawn every one of ``comps``, then wait until each is ready: they start side by side."""
        for comp in comps:
            self._width = max(self._width, len(comp.name))
            self.components.append(comp)
            self._spawn(comp)
        for comp in comps:
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

    def tend(self, on_change: Callable[[], None] | None = None) -> None:
        """Restart components that died, with backoff. Call periodically."""
        now = time.monotonic()
        changed = False
        for comp in self.components:
            proc = comp.proc
            if proc is None or self._stopping:
                continue
            code = proc.poll()
            if code is None:
                if now - comp.started_at > HEALTHY_RESET_SECONDS:
                    comp.delay = RESTART_MIN_DELAY
                continue
            if not comp.restart:
                continue
            if comp.next_restart_at is None:
                comp.next_restart_at = now + comp.delay
                self.say(f"{comp.name} exited with status {code}; restarting in {comp.delay:g}s")
                comp.delay = min(comp.delay * 2, RESTART_MAX_DELAY)
            elif now >= comp.next_restart_at:
                comp.next_restart_at = None
                comp.restarts += 1
                self._spawn(comp)
                self.say(f"{comp.name} restarted (pid {comp.proc.pid if comp.proc else '?'})")
                changed = True
        if changed and on_change is not None:
            on_change()

    def stop_all(self, on_stopped: Callable[[Component, int | None], None] | None = None) -> None:
        """SIGTERM each process in reverse start order; SIGKILL after its timeout."""
        self._stopping = True
        groups: list[list[Component]] = []
        for comp in reversed(self.components):
            if groups and comp.group is not None and groups[-1][0].group == comp.group:
                groups[-1].append(comp)
            else:
                groups.append([comp])
        for group in groups:
            for comp in group:
                if comp.proc is not None and comp.proc.poll() is None:
                    comp.proc.send_signal(signal.SIGTERM)
                    # A SIGSTOPped process (chaos) must wake up to hear SIGTERM.
                    comp.proc.send_signal(signal.SIGCONT)
            for comp in group:
                proc = comp.proc
                if proc is None:
                    continue
                code: int | None
                try:
                    code = proc.wait(timeout=comp.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait(timeout=5)
                if on_stopped:
                    on_stopped(comp, code)
        for thread in self._threads:
            thread.join(timeout=2)
        if self._own_log is not None:
            with self._write_lock:
                self._own_log.close()
