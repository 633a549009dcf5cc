"""Locust as a child process, and reading what it leaves behind.

Locust monkey-patches the interpreter with gevent when imported, so tests
never import it (nor ``loadtests.locustfile``/``journeys``): they run it.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import ROOT

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
# Every request name the journeys use, with its method: the dashboards' routes.
NAMED_REQUESTS = {
    ("GET", "/api/v1/products"),
    ("GET", "/api/v1/products/{product_id}"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/v1/auth/tokens"),
    ("GET", "/api/v1/users/me"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/orders/{order_id}"),
    ("GET", "/api/v1/notifications"),
}


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "--locustfile", str(LOCUSTFILE), *args]


@dataclass
class LocustProcess:
    """One Locust process (local, master or worker), its output in a file."""

    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> LocustProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"locust still running after {timeout}s:\n{self.tail()}") from None

    def stop(self) -> None:
        if not self.running():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


@contextlib.contextmanager
def running(*processes: LocustProcess) -> Iterator[tuple[LocustProcess, ...]]:
    """Start in order; stop whatever still runs on the way out."""
    try:
        for p in processes:
            p.start()
        yield processes
    finally:
        for p in reversed(processes):
            p.stop()


@dataclass(frozen=True)
class StatsRow:
    method: str
    name: str
    requests: int
    failures: int


def stats(csv_path: Path) -> dict[tuple[str, str], StatsRow]:
    """Locust's ``*_stats.csv`` by (method, name); the total is ("", "Aggregated")."""
    with csv_path.open(newline="") as f:
        return {
            (r["Type"], r["Name"]): StatsRow(
                r["Type"], r["Name"], int(r["Request Count"]), int(r["Failure Count"])
            )
            for r in csv.DictReader(f)
        }


def failures(csv_path: Path) -> list[str]:
    """Locust's ``*_failures.csv`` as readable lines."""
    with csv_path.open(newline="") as f:
        return [
            f"{r['Method']} {r['Name']}: {r['Error']} (x{r['Occurrences']})"
            for r in csv.DictReader(f)
        ]
