"""Probes of the load's own view (its per-request records), and the steady state's canaries."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from chaos import load as load_module
from chaos.context import MARKS, Configuration, stack
from chaos.load import order_body
from chaos.probes._common import poll


def _statistic(
    samples: list[load_module.Sample], stat: str | None, statuses: list[int] | None
) -> Any:
    if statuses is not None:
        return load_module.status_ratio(samples, statuses)
    summary = load_module.summarize(samples)
    return summary if stat is None else summary[stat]


def load_window(
    load: str,
    window: str,
    kind: str,
    stat: str | None = None,
    statuses: list[int] | None = None,
    configuration: Configuration | None = None,
) -> Any:
    """A statistic of one kind of request in an observed window of the load.

    ``stat``: count, error_ratio, p50_ms, p95_ms, p99_ms, max_ms, no_answer; or
    with ``statuses``, the share of answers with one of those status codes.
    Without either, the whole summary.
    """
    return _statistic(load_module.get(load).window_samples(window, kind), stat, statuses)


def load_between(
    load: str,
    kind: str,
    since_mark: str,
    until_mark: str | None = None,
    stat: str | None = None,
    statuses: list[int] | None = None,
    answered: list[int] | None = None,
    configuration: Configuration | None = None,
) -> Any:
    """Like ``load_window``, over the requests started between two marks.

    ``answered`` keeps only the answers with those statuses first ("how fast
    did the 503s come?"). Waits (bounded) for those requests to finish.
    """
    driver = load_module.get(load)
    t1 = MARKS.get(until_mark) if until_mark else time.time()
    for _ in poll(driver.spec.timeout + 1, 0.05):
        samples = driver.between(MARKS.get(since_mark), t1, kind)
        if all(s.done for s in samples):
            break
    if answered is not None:
        samples = [s for s in samples if s.status in answered]
    return _statistic(samples, stat, statuses)


def load_compare(
    load: str,
    kind: str,
    stat: str,
    baseline: str,
    window: str | None = None,
    since_mark: str | None = None,
    until_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """A statistic during a fault against the same statistic in a ``baseline`` window.

    The window under test is an observed ``window`` or the span between two
    marks. ``excess`` is how much worse it got (during - baseline): "the
    catalog's p99 rose by 12 ms" judges the fault, not how busy the machine is.
    """
    before = load_window(load, baseline, kind, stat, configuration=configuration)
    if window is not None:
        during = load_window(load, window, kind, stat, configuration=configuration)
    elif since_mark is not None:
        during = load_between(load, kind, since_mark, until_mark, stat, configuration=configuration)
    else:
        raise ValueError("compare with a window or with marks")
    return {
        "baseline": before,
        "during": during,
        "excess": round(during - before, 3),
        "ratio": round(during / before, 3) if before else None,
    }


_CANARY: dict[str, Any] = {}


def canary_orders(
    count: int = 3, within: float = 20.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Place ``count`` orders through the gateway, each retried (new key) until confirmed.

    The steady state includes "a customer can buy": this also gives
    half-open breakers on the order path the trial calls they wait for.
    """
    info = stack(configuration)
    gateway = info.url("gateway")
    started = time.time()
    attempts: dict[str, int] = {}
    placed = 0
    with httpx.Client(timeout=10) as client:
        user = _CANARY.get(gateway)
        if user is None:
            user = _CANARY[gateway] = load_module.sign_up(gateway, client)
        for index in range(count):
            for _ in poll(max(0.0, within - (time.time() - started)), 0.5):
                try:
                    r = client.post(
                        f"{gateway}/api/v1/orders",
                        json=order_body(1 + index),
                        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
                    )
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                attempts[status] = attempts.get(status, 0) + 1
                if status == "201":
                    placed += 1
                    break
    return {"placed": placed, "answers": attempts, "seconds": round(time.time() - started, 2)}


def catalog_answers(
    requests: int = 10, within: float = 15.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Rounds of catalog reads through the gateway until one round has no error.

    ``errors`` is the last round's count (0 once the catalog answers); a
    breaker still open from a fault gets its trial calls from these reads.
    """
    base = stack(configuration).url("gateway")
    started = time.time()
    errors, slowest, rounds = requests, 0.0, 0
    with httpx.Client(timeout=5) as client:
        for _ in poll(within, 0.5):
            rounds += 1
            errors, slowest = 0, 0.0
            for i in range(requests):
                t0 = time.perf_counter()
                try:
                    ok = client.get(f"{base}/api/v1/products/{1 + i % 24}").status_code == 200
                except httpx.HTTPError:
                    ok = False
                slowest = max(slowest, (time.perf_counter() - t0) * 1000)
                errors += 0 if ok else 1
            if not errors:
                break
    return {
        "requests": requests,
        "errors": errors,
        "max_ms": round(slowest, 1),
        "rounds": rounds,
        "seconds": round(time.time() - started, 2),
    }
