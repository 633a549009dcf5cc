"""Liveness, readiness and health detail.

* ``/health/live``  — the process and its event loop answer. Never depends on
  a dependency: restarting a service because its database is down only adds a
  crash loop to an outage.
* ``/health/ready`` — the service can serve: start-up finished, not draining,
  every critical check passes. 503 otherwise, so load balancers move traffic.
* ``/health``       — every check with its latency, ``healthy``/``degraded``/
  ``unhealthy``. Results are cached for ``cache_seconds`` and concurrent probes
  share one evaluation, so probes cannot overload the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["healthy", "degraded", "unhealthy"]


@dataclass(frozen=True)
class HealthCheck:
    name: str
    check: Callable[[], Awaitable[Any]]
    # A failing critical check makes the service unready; a non-critical one
    # only degrades it.
    critical: bool = True
    timeout_seconds: float = 1.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    critical: bool
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class HealthReport:
    status: Status
    checks: tuple[CheckResult, ...]
    started: bool
    draining: bool
    checked_at: float

    @property
    def ready(self) -> bool:
        return self.started and not self.draining and all(c.ok for c in self.checks if c.critical)

    def reasons(self) -> list[str]:
        out = []
        if not self.started:
            out.append("start-up not finished")
        if self.draining:
            out.append("draining: shutting down")
        out.extend(f"{c.name}: {c.error}" for c in self.checks if c.critical and not c.ok)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ready": self.ready,
            "started": self.started,
            "draining": self.draining,
            "checks": {
                c.name: {
                    "status": "pass" if c.ok else "fail",
                    "critical": c.critical,
                    "latency_ms": round(c.latency_ms, 3),
                    **({"error": c.error} if c.error else {}),
                }
                for c in self.checks
            },
        }


@dataclass
class Health:
    """The health state of one service process."""

    cache_seconds: float = 1.0
    checks: list[HealthCheck] = field(default_factory=list)
    started: bool = False
    draining: bool = False
    _cached: HealthReport | None = None
    _inflight: asyncio.Future[HealthReport] | None = None
    _clock: Callable[[], float] = time.monotonic

    def add_check(self, check: HealthCheck) -> None:
        self.checks.append(check)
        self._cached = None

    def mark_started(self) -> None:
        self.started = True
        self._cached = None

    def mark_draining(self) -> None:
        self.draining = True
        self._cached = None

    async def _run_one(self, check: HealthCheck) -> CheckResult:
        start = self._clock()
        error: str | None
        try:
            await asyncio.wait_for(check.check(), timeout=check.timeout_seconds)
        except TimeoutError:
            error = f"timed out after {check.timeout_seconds:g}s"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            error = None
        return CheckResult(
            name=check.name,
            ok=error is None,
            critical=check.critical,
            latency_ms=(self._clock() - start) * 1000,
            error=error,
        )

    async def _evaluate(self) -> HealthReport:
        results = await asyncio.gather(*(self._run_one(c) for c in self.checks))
        critical_fail = any(not r.ok for r in results if r.critical)
        any_fail = any(not r.ok for r in results)
        status: Status = (
            "unhealthy"
            if critical_fail or not self.started
            else "degraded"
            if any_fail or self.draining
            else "healthy"
        )
        return HealthReport(
            status=status,
            checks=tuple(results),
            started=self.started,
            draining=self.draining,
            checked_at=self._clock(),
        )

    async def report(self) -> HealthReport:
        cached = self._cached
        if cached is not None and self._clock() - cached.checked_at < self.cache_seconds:
            return cached
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._evaluate())
            try:
                self._cached = await asyncio.shield(self._inflight)
            finally:
                self._inflight = None
            return self._cached
        return await asyncio.shield(self._inflight)
