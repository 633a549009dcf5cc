"""Background load during an experiment: open-loop, bounded in rate, concurrency and time.

Requests start on a fixed schedule whatever the answers do (open loop), so a
fault shows as latency and errors at a constant arrival rate rather than as a
client that politely slows down. Every request is recorded — kind, start,
latency, status, and for orders the idempotency key and order id — so probes
can compute latency and error ratios over windows of the run, and the audit
can account for every order a client was told about.

Light on purpose (asyncio + httpx in one thread): the experiments need tens
of requests per second on a two-core machine, next to the stack itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

# The seeded catalog has products 1..320; every 25th is a limited edition with
# a handful in stock, which the load avoids so "out of stock" is not noise.
CATALOG_SIZE = 320
PRODUCTS = [p for p in range(1, CATALOG_SIZE + 1) if p % 25]


@dataclass
class Sample:
    kind: str
    started: float
    latency: float = 0.0
    status: int = 0  # 0: no HTTP answer at all (refused, reset, client timeout)
    error: str = ""
    done: bool = False
    # Orders only.
    key: str = ""
    user: int = -1
    order_id: str = ""
    product_id: int = 0


@dataclass
class LoadUser:
    id: str
    email: str
    headers: dict[str, str] = field(repr=False)


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (no interpolation: a p99 is a latency some request saw)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarize(samples: list[Sample]) -> dict[str, Any]:
    done = [s for s in samples if s.done]
    latencies = [s.latency * 1000 for s in done]
    statuses: dict[str, int] = {}
    for s in done:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    errors = sum(1 for s in done if s.status == 0 or s.status >= 500)
    return {
        "count": len(done),
        "unfinished": len(samples) - len(done),
        "statuses": statuses,
        "error_ratio": round(errors / len(done), 4) if done else 0.0,
        "no_answer": sum(1 for s in done if s.status == 0),
        "p50_ms": round(quantile(latencies, 0.50), 1),
        "p95_ms": round(quantile(latencies, 0.95), 1),
        "p99_ms": round(quantile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
    }


def status_ratio(samples: list[Sample], statuses: list[int]) -> float:
    done = [s for s in samples if s.done]
    return round(sum(1 for s in done if s.status in statuses) / len(done), 4) if done else 0.0


def sign_up(gateway: str, client: httpx.Client) -> LoadUser:
    email = f"chaos-{uuid.uuid4().hex[:10]}@example.com"
    password = "chaos engineering is safe"  # noqa: S105 - a throwaway load-test user
    r = client.post(
        f"{gateway}/api/v1/users", json={"email": email, "password": password, "name": "Chaos"}
    )
    r.raise_for_status()
    t = client.post(f"{gateway}/api/v1/auth/tokens", json={"email": email, "password": password})
    t.raise_for_status()
    token = t.json()
    return LoadUser(token["user_id"], email, {"authorization": f"Bearer {token['access_token']}"})


@dataclass
class LoadSpec:
    gateway: str
    catalog_rps: float = 0.0
    order_rps: float = 0.0
    # Orders go to the gateway's /api/v1/orders unless this names the orders service itself.
    orders_url: str | None = None
    # Orders fired all at once when the load starts.
    burst_orders: int = 0
    users: int = 3
    timeout: float = 10.0
    max_in_flight: int = 300
    seed: int | None = None


class LoadDriver:
    """Start, observe windows, stop. One asyncio loop in one daemon thread."""

    def __init__(self, name: str, spec: LoadSpec) -> None:
        self.name = name
        self.spec = spec
        self.users: list[LoadUser] = []
        self.samples: list[Sample] = []
        self.windows: dict[str, dict[str, Any]] = {}
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.dropped = 0  # not sent: max_in_flight reached
        self._rng = random.Random(spec.seed)  # noqa: S311 - picks products, not secrets
        self._stop = threading.Event()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- control -------------------------------------------------------------------------
    def start(self) -> LoadDriver:
        if self.spec.order_rps or self.spec.burst_orders:
            with httpx.Client(timeout=10) as client:
                self.users = [sign_up(self.spec.gateway, client) for _ in range(self.spec.users)]
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"load-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sending; wait (bounded) for answers to what was sent; return the summary."""
        self._stop.set()
        if self._wake is not None:
            loop, stopping = self._wake
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=self.spec.timeout + 5)
        self.stopped_at = self.stopped_at or time.time()
        return self.summary()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def observe(self, window: str, seconds: float) -> dict[str, Any]:
        """Record a window of ``seconds`` from now; return its stats once its requests ended."""
        t0 = time.time()
        time.sleep(seconds)
        t1 = time.time()
        deadline = time.monotonic() + self.spec.timeout + 1
        while time.monotonic() < deadline and any(not s.done for s in self._between(t0, t1)):
            time.sleep(0.05)
        stats: dict[str, Any] = {"start": t0, "end": t1}
        for kind in ("catalog", "order"):
            chosen = [s for s in self._between(t0, t1) if s.kind == kind]
            if chosen:
                stats[kind] = summarize(chosen)
        self.windows[window] = stats
        return stats

    def between(self, t0: float, t1: float, kind: str | None = None) -> list[Sample]:
        return [s for s in self._between(t0, t1) if kind is None or s.kind == kind]

    def _between(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in list(self.samples) if t0 <= s.started <= t1]

    def window_samples(self, window: str, kind: str) -> list[Sample]:
        w = self.windows[window]
        return self.between(w["start"], w["end"], kind)

    def summary(self) -> dict[str, Any]:
        samples = list(self.samples)
        out: dict[str, Any] = {
            "name": self.name,
            "duration_s": round((self.stopped_at or time.time()) - self.started_at, 2),
            "dropped": self.dropped,
            "windows": self.windows,
        }
        for kind in ("catalog", "order"):
            chosen = [s for s in samples if s.kind == kind]
            if chosen:
                out[kind] = summarize(chosen)
        if self._error is not None:
            out["error"] = repr(self._error)
        return out

    def write_log(self, directory: Path) -> Path:
        path = directory / f"load-{self.name}.json"
        spec = asdict(self.spec)
        body = {
            "spec": spec,
            "users": [{"id": u.id, "email": u.email} for u in self.users],
            "summary": self.summary(),
            "samples": [asdict(s) for s in self.samples],
        }
        path.write_text(json.dumps(body, indent=1))
        return path

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced in the summary, never lost in a thread
            self._error = exc
        finally:
            self.stopped_at = time.time()

    async def _main(self) -> None:
        spec = self.spec
        limits = httpx.Limits(max_connections=spec.max_in_flight, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=spec.timeout, limits=limits) as client:
            in_flight: set[asyncio.Task[None]] = set()

            def launch(kind: str) -> None:
                if len(in_flight) >= spec.max_in_flight:
                    self.dropped += 1
                    return
                coro = self._order(client) if kind == "order" else self._catalog(client)
                task = asyncio.ensure_future(coro)
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

            for _ in range(spec.burst_orders):
                launch("order")
            tickers = [
                asyncio.ensure_future(self._tick(kind, rps, launch))
                for kind, rps in (("catalog", spec.catalog_rps), ("order", spec.order_rps))
                if rps > 0
            ]
            stopping = asyncio.Event()
            self._wake = (asyncio.get_running_loop(), stopping)
            if not self._stop.is_set():  # stop() may have come before the loop was listening
                await stopping.wait()
            for ticker in tickers:
                ticker.cancel()
            self.stopped_at = time.time()
            if in_flight:
                await asyncio.wait(list(in_flight), timeout=spec.timeout + 1)

    async def _tick(self, kind: str, rps: float, launch: Any) -> None:
        interval = 1.0 / rps
        next_at = time.monotonic()
        while True:
            launch(kind)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _catalog(self, client: httpx.AsyncClient) -> None:
        sample = Sample("catalog", time.time(), product_id=self._rng.choice(PRODUCTS))
        self.samples.append(sample)
        url = f"{self.spec.gateway}/api/v1/products/{sample.product_id}"
        await self._send(sample, client, "GET", url)

    async def _order(self, client: httpx.AsyncClient) -> None:
        user_index = self._rng.randrange(len(self.users))
        sample = Sample(
            "order",
            time.time(),
            key=str(uuid.uuid4()),
            user=user_index,
            product_id=self._rng.choice(PRODUCTS),
        )
        self.samples.append(sample)
        url = (
            f"{self.spec.orders_url}/orders"
            if self.spec.orders_url
            else f"{self.spec.gateway}/api/v1/orders"
        )
        headers = {**self.users[user_index].headers, "idempotency-key": sample.key}
        body = order_body(sample.product_id)
        response = await self._send(sample, client, "POST", url, json=body, headers=headers)
        if response is not None:
            with contextlib.suppress(ValueError, AttributeError):
                data = response.json()
                sample.order_id = str(data.get("id") or data.get("order_id") or "")

    async def _send(
        self, sample: Sample, client: httpx.AsyncClient, method: str, url: str, **kw: Any
    ) -> httpx.Response | None:
        t0 = time.perf_counter()
        response: httpx.Response | None = None
        try:
            response = await client.request(method, url, **kw)
            sample.status = response.status_code
        except httpx.HTTPError as exc:
            sample.error = type(exc).__name__
        finally:
            sample.latency = time.perf_counter() - t0
            sample.done = True
        return response


def order_body(product_id: int) -> dict[str, Any]:
    return {"items": [{"product_id": product_id, "quantity": 1}]}


# -- the registry the actions and probes share -------------------------------------------

LOADS: dict[str, LoadDriver] = {}


def get(name: str) -> LoadDriver:
    try:
        return LOADS[name]
    except KeyError:
        raise KeyError(f"no load named {name!r} was started (loads: {sorted(LOADS)})") from None
