"""Probes: what an experiment measures, against the API, Prometheus, Alertmanager and traces.

Chaos Toolkit ``python`` providers (``module: chaos.probes``). Each returns
a value the experiment's tolerance judges: a number, a string, or a dict
whose ``target`` key the tolerance names (``{type: range, target: seconds,
range: [0, 15]}``). Probes that wait ("the breaker opens within 15 s")
return how long it took, or ``None`` in the target when it never happened,
so a violated tolerance says by how much.

Windows in PromQL: ``$window`` in a query becomes the time since a mark,
``increase(x[$window])`` since ``since_mark``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from chaos import load as load_module
from chaos.context import MARKS, SIGNALLED, Configuration, setting, stack
from chaos.load import CATALOG_SIZE, order_body
from services.topology import SERVICES

_TIMEOUT = 5.0
DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards" / "generated"


class ProbeSkipped(Exception):
    """The probe cannot be made here (a backend is not configured); not a deviation."""


def _poll(seconds: float, interval: float = 0.25) -> Iterator[float]:
    """Yield elapsed seconds until ``seconds`` have passed (the last yield is at or past it)."""
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        yield elapsed
        if elapsed >= seconds:
            return
        time.sleep(interval)


def _since(mark: str | None) -> float | None:
    return MARKS.get(mark) if mark else None


def _seconds_since(mark: str | None, started: float) -> float:
    """Seconds from the mark (or from ``started``, a wall time) until now, rounded."""
    origin = _since(mark) or started
    return round(time.time() - origin, 2)


# -- the API ------------------------------------------------------------------------------


def health(service: str, configuration: Configuration | None = None) -> dict[str, Any]:
    """Liveness and readiness status codes, and why it is not ready (failing checks)."""
    base = stack(configuration).url(service)
    out: dict[str, Any] = {"service": service, "live": 0, "ready": 0, "failing": []}
    try:
        out["live"] = httpx.get(f"{base}/health/live", timeout=2).status_code
        ready = httpx.get(f"{base}/health/ready", timeout=2)
        out["ready"] = ready.status_code
        body = ready.json() if "json" in ready.headers.get("content-type", "") else {}
        # Reasons read "postgres: <error>" for a failing check.
        out["failing"] = sorted({r.split(":")[0] for r in body.get("reasons", [])})
    except (httpx.HTTPError, ValueError, TypeError, KeyError):
        pass
    return out


def health_while(
    services: list[str], seconds: float, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Sample liveness and readiness of ``services`` for ``seconds``.

    Per service, the share of samples that answered live 200 and ready 503;
    ``min_live_200`` and ``min_ready_503`` are the worst across the services.
    """
    counts = {name: {"samples": 0, "live_200": 0, "ready_503": 0} for name in services}
    failing: dict[str, set[str]] = {name: set() for name in services}
    for _ in _poll(seconds, 0.2):
        for name in services:
            h = health(name, configuration)
            c = counts[name]
            c["samples"] += 1
            c["live_200"] += h["live"] == 200
            c["ready_503"] += h["ready"] == 503
            failing[name].update(h["failing"])
    ratios: dict[str, dict[str, Any]] = {
        name: {
            "live_200": round(c["live_200"] / c["samples"], 3),
            "ready_503": round(c["ready_503"] / c["samples"], 3),
            "failing_checks": sorted(failing[name]),
        }
        for name, c in counts.items()
    }
    return {
        "services": ratios,
        "min_live_200": min(r["live_200"] for r in ratios.values()),
        "min_ready_503": min(r["ready_503"] for r in ratios.values()),
    }


def services_ready(
    within: float = 0.0,
    services: list[str] | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Which services are not ready (waiting up to ``within`` for all to be)."""
    names = services or list(SERVICES)
    not_ready: list[str] = names
    started = time.time()
    for _ in _poll(within, 0.25):
        not_ready = [n for n in names if health(n, configuration)["ready"] != 200]
        if not not_ready:
            break
    return {
        "not_ready": not_ready,
        "count": len(not_ready),
        "seconds": round(time.time() - started, 2),
    }


_RESTART_BASELINES: dict[str, dict[str, dict[str, Any]]] = {}


def restarts(
    baseline: str, services: list[str] | None = None, configuration: Configuration | None = None
) -> dict[str, Any]:
    """New restarts and new pids since the first call with this ``baseline`` name.

    ``redline up`` restarts a service that exits; a crash loop shows here as
    ``new_restarts`` > 0 (the state file's counts) or a changed pid.
    """
    info = stack(configuration)
    names = services or list(SERVICES)
    now: dict[str, dict[str, Any]] = {
        "restarts": {n: info.restarts(n) for n in names},
        "pids": {n: info.pid(n) for n in names},
    }
    first = _RESTART_BASELINES.setdefault(baseline, now)
    new = {n: now["restarts"][n] - first["restarts"].get(n, 0) for n in names}
    changed = [n for n in names if now["pids"][n] != first["pids"].get(n)]
    return {
        "new_restarts": sum(new.values()),
        "by_service": {n: c for n, c in new.items() if c},
        "pids_changed": changed,
        "violations": sum(new.values()) + len(changed),
    }


def pid_changed(
    service: str,
    within: float,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Wait for a process other than the one last signalled to run ``service``; how long it took."""
    old = SIGNALLED.get(service)
    started = time.time()
    for _ in _poll(within, 0.1):
        pid = stack(configuration).pid(service)
        if old is None:
            old = pid
        elif pid and pid != old:
            return {"old_pid": old, "pid": pid, "seconds": _seconds_since(since_mark, started)}
    return {"old_pid": old, "pid": old, "seconds": None, "waited": within}


def faults_active(configuration: Configuration | None = None) -> dict[str, Any]:
    """Fault flags currently set on any service (none in steady state)."""
    info = stack(configuration)
    active: dict[str, Any] = {}
    for name in SERVICES:
        try:
            faults = httpx.get(
                f"{info.url(name)}/admin/faults", headers=info.admin_headers, timeout=_TIMEOUT
            ).json()["faults"]
        except (httpx.HTTPError, ValueError, KeyError):
            continue
        if faults:
            active[name] = faults
    return {"services": active, "count": sum(len(v) for v in active.values())}


def toxics_active(configuration: Configuration | None = None) -> dict[str, Any]:
    url = setting(configuration, "fault_proxy_url")
    if not url:
        return {"configured": False, "count": 0}
    proxies = httpx.get(f"{url}/proxies", timeout=_TIMEOUT).json()
    toxics = {name: p["toxics"] for name, p in proxies.items() if p["toxics"]}
    return {"configured": True, "toxics": toxics, "count": sum(len(t) for t in toxics.values())}


def fault_proxy(
    proxy: str, service: str, dependency: str, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Is ``service``'s traffic to ``dependency`` going through the proxy? (1 when it is.)"""
    url = setting(configuration, "fault_proxy_url")
    if not url:
        return {"in_path": 0, "why": "no fault_proxy_url configured"}
    try:
        described = httpx.get(f"{url}/proxies/{proxy}", timeout=_TIMEOUT).json()
    except (httpx.HTTPError, ValueError):
        return {"in_path": 0, "why": f"fault proxy API at {url} does not answer"}
    upstream = described.get("upstream", "")
    expected = f"{stack(configuration).host}:{stack(configuration).port(dependency)}"
    if upstream != expected:
        return {"in_path": 0, "why": f"proxy {proxy} forwards to {upstream}, not {expected}"}
    return {"in_path": 1, "listen": described["listen"], "upstream": upstream, "service": service}


# -- the resilience admin API -------------------------------------------------------------


def resilience(service: str, configuration: Configuration | None = None) -> dict[str, Any]:
    info = stack(configuration)
    r = httpx.get(
        f"{info.url(service)}/admin/resilience", headers=info.admin_headers, timeout=_TIMEOUT
    )
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item["name"] == name:
            return item
    raise KeyError(f"no {name!r} among {[i['name'] for i in items]}")


def breaker_state(service: str, breaker: str, configuration: Configuration | None = None) -> str:
    state: str = _named(resilience(service, configuration)["circuit_breakers"], breaker)["state"]
    return state


def breaker_reaches(
    service: str,
    breaker: str,
    state: str,
    within: float,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Wait for the breaker to be in ``state``; ``seconds`` from the mark (None: it never was)."""
    started = time.time()
    seen: list[str] = []
    first: dict[str, int] | None = None
    for _ in _poll(within, 0.1):
        snap = _named(resilience(service, configuration)["circuit_breakers"], breaker)
        current = snap["state"]
        if first is None:
            first = snap["transitions_total"]
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == state:
            return {
                "state": current,
                "seconds": _seconds_since(since_mark, started),
                "path": seen,
                # The breaker's own count: a half-open phase shorter than the
                # polling interval is missing from "path" but not from here.
                "transitions": _delta(first, snap["transitions_total"]),
                "failure_rate": snap["failure_rate"],
                "slow_call_rate": snap["slow_call_rate"],
            }
    return {"state": seen[-1] if seen else None, "seconds": None, "path": seen, "waited": within}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def breakers_closed(
    within: float = 0.0,
    services: list[str] | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Breakers not closed, across the callers (waiting up to ``within`` for all to close)."""
    names = services or [n for n, s in SERVICES.items() if s.calls]
    started = time.time()
    not_closed: dict[str, str] = {}
    for _ in _poll(within, 0.25):
        not_closed = {}
        for name in names:
            for b in resilience(name, configuration)["circuit_breakers"]:
                if b["state"] != "closed":
                    not_closed[f"{name}->{b['name']}"] = b["state"]
        if not not_closed:
            break
    return {
        "not_closed": not_closed,
        "count": len(not_closed),
        "seconds": round(time.time() - started, 2),
    }


def bulkhead_peak(
    service: str, bulkhead: str, seconds: float, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Sample a bulkhead for ``seconds`` (every 50 ms): the most calls it held, its capacity."""
    peak = 0
    snap: dict[str, Any] = {}
    first_rejected: int | None = None
    for _ in _poll(seconds, 0.05):
        snap = _named(resilience(service, configuration)["bulkheads"], bulkhead)
        peak = max(peak, int(snap["in_flight"]))
        if first_rejected is None:
            first_rejected = int(snap["rejected_total"])
    return {
        "peak_in_flight": peak,
        "capacity": snap.get("capacity"),
        "over_capacity": max(0, peak - int(snap.get("capacity", peak))),
        "rejected": int(snap.get("rejected_total", 0)) - (first_rejected or 0),
    }


# -- Prometheus ---------------------------------------------------------------------------


def _window(since_mark: str | None) -> str:
    if not since_mark:
        return "1m"
    return f"{max(2, math.ceil(MARKS.since(since_mark)) + 1)}s"


def prom_query(query: str, configuration: Configuration | None = None) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{stack(configuration).prometheus}/api/v1/query", params={"query": query}, timeout=10
    )
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def promql(
    query: str, since_mark: str | None = None, configuration: Configuration | None = None
) -> float | None:
    """The value of a query that yields one series (``$window``: the time since the mark)."""
    result = prom_query(query.replace("$window", _window(since_mark)), configuration)
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else round(value, 6)


def promql_eventually(
    query: str,
    within: float,
    at_least: float | None = None,
    at_most: float | None = None,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Wait until the query's value is in [at_least, at_most]; ``seconds`` from the mark."""
    started = time.time()
    value: float | None = None
    for _ in _poll(within, 0.5):
        value = promql(query, since_mark, configuration)
        if (
            value is not None
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)
        ):
            return {"value": value, "seconds": _seconds_since(since_mark, started)}
    return {"value": value, "seconds": None, "waited": within}


# A scrape: {(sample name, sorted label pairs): value}.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(service: str, configuration: Configuration | None = None) -> Samples:
    """A service's own ``/metrics``, as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{stack(configuration).url(service)}/metrics", timeout=_TIMEOUT).text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def _total(
    samples: Samples,
    name: str,
    labels: dict[str, str],
    by: str | None = None,
) -> dict[str, float]:
    out: dict[str, float] = {}
    for (sample, sample_labels), value in samples.items():
        found = dict(sample_labels)
        if sample == name and _matches(found, labels):
            key = found.get(by, "") if by else ""
            out[key] = out.get(key, 0.0) + value
    return out


_COUNTER_BASELINES: dict[str, dict[str, Any]] = {}


def _retry_counters(
    caller: str, dependency: str, route: str, configuration: Configuration | None
) -> dict[str, Any]:
    by_outcome = _total(
        scrape(caller, configuration),
        "resilience_retry_attempts_total",
        {"retrier": dependency},
        by="outcome",
    )
    served = _total(
        scrape(dependency, configuration),
        "http_server_request_duration_seconds_count",
        {"http_route": route},
    ).get("", 0.0)
    return {"by_outcome": by_outcome, "served": served, "at": time.time()}


def retry_counters(
    name: str,
    caller: str,
    dependency: str,
    route: str,
    ttl: float = 10.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Record ``caller``'s retry counters for ``dependency`` and the dependency's request count.

    Also how many calls the caller made in the ``ttl`` before now (from
    Prometheus): the retry budget's window reaches back that far, so those
    calls' deposits count towards what it allows next.
    """
    counters = _retry_counters(caller, dependency, route, configuration)
    prior = promql(
        f'sum(increase(resilience_retry_attempts_total{{job="{caller}",retrier="{dependency}",'
        f'outcome!="retry"}}[{int(ttl)}s]))',
        configuration=configuration,
    )
    counters["prior_calls"] = round(prior or 0.0, 1)
    _COUNTER_BASELINES[name] = counters
    return counters


def retry_amplification(
    baseline: str,
    caller: str,
    dependency: str,
    route: str,
    ratio: float = 0.2,
    floor_per_second: float = 10.0,
    ttl: float = 10.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Attempts per call by ``caller``'s retrier for ``dependency`` since ``retry_counters``.

    Read from the services' own counters (exact, where Prometheus' increase()
    extrapolates). Every call ends in exactly one outcome that is not
    ``retry``, so calls = attempts - retries. The retry budget allows, in any
    ``ttl`` window, ``ratio`` retries per call (this span's calls and the
    ``ttl`` before it) plus ``floor_per_second`` × ``ttl``: that is
    ``retries_allowed``, and ``over_budget`` the retries beyond it (0 when
    the guard holds). ``dependency_amplification`` is the dependency's own
    count of requests on ``route`` per call.
    """
    before = _COUNTER_BASELINES[baseline]
    after = _retry_counters(caller, dependency, route, configuration)
    by_outcome = {
        k: after["by_outcome"].get(k, 0.0) - before["by_outcome"].get(k, 0.0)
        for k in after["by_outcome"]
    }
    attempts = sum(by_outcome.values())
    retries = by_outcome.get("retry", 0.0)
    calls = attempts - retries
    served = after["served"] - before["served"]
    windows = max(1, math.ceil((after["at"] - before["at"]) / ttl))
    allowed = ratio * (calls + before.get("prior_calls", 0.0)) + floor_per_second * ttl * windows
    return {
        "calls": int(calls),
        "attempts": int(attempts),
        "retries": int(retries),
        "by_outcome": {k: int(v) for k, v in by_outcome.items() if v},
        "budget_exhausted": int(by_outcome.get("budget_exhausted", 0)),
        "amplification": round(attempts / calls, 3) if calls else None,
        "dependency_requests": int(served),
        "dependency_amplification": round(served / calls, 3) if calls else None,
        "retries_allowed": round(allowed, 1),
        "over_budget": round(max(0.0, retries - allowed), 1),
    }


def service_metric(
    service: str,
    metric: str,
    labels: dict[str, str] | None = None,
    at_least: float | None = None,
    within: float = 0.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """A sample summed over ``labels`` from the service's own /metrics (no scrape delay).

    With ``at_least``, waits up to ``within`` for the value to get there.
    """
    started = time.time()
    value = 0.0
    for _ in _poll(within, 0.1):
        value = _total(scrape(service, configuration), metric, labels or {}).get("", 0.0)
        if at_least is None or value >= at_least:
            return {"value": value, "seconds": round(time.time() - started, 2)}
    return {"value": value, "seconds": None, "waited": within}


# -- Alertmanager and alerts --------------------------------------------------------------


def _matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def alertmanager_alerts(
    alertname: str, labels: dict[str, str] | None = None, configuration: Configuration | None = None
) -> list[dict[str, Any]]:
    """Active alerts Alertmanager holds with this name and labels (its API v2)."""
    r = httpx.get(
        f"{stack(configuration).alertmanager}/api/v2/alerts",
        params={"filter": f'alertname="{alertname}"'},
        timeout=_TIMEOUT,
    )
    r.raise_for_status()
    return [a for a in r.json() if _matches(a.get("labels", {}), labels or {})]


def _parse_time(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _first_firing(selector: str, since: float, configuration: Configuration | None) -> float | None:
    """When Prometheus first had the alert firing after ``since`` (its ALERTS series)."""
    r = httpx.get(
        f"{stack(configuration).prometheus}/api/v1/query_range",
        params={"query": f"ALERTS{{{selector}}}", "start": since, "end": time.time(), "step": "1s"},
        timeout=10,
    )
    r.raise_for_status()
    times = [float(t) for series in r.json()["data"]["result"] for t, _ in series["values"]]
    return min(times) if times else None


def alert_fires(
    alertname: str,
    within: float,
    labels: dict[str, str] | None = None,
    since_mark: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Wait for the alert to fire; ``seconds`` from the mark to when Prometheus fired it.

    Looks in Alertmanager (where the notification goes; ``receivers`` are who
    is told) and in Prometheus' ALERTS series, so an alert that fired and
    resolved between two polls is not missed (``seen_in`` says where it was found).
    """
    labels = labels or {}
    started = time.time()
    origin = _since(since_mark) or started
    selector = ",".join(
        [f'alertname="{alertname}"', 'alertstate="firing"']
        + [f'{k}="{v}"' for k, v in labels.items()]
    )
    for _ in _poll(within, 0.25):
        fired_at = _first_firing(selector, origin, configuration)
        found = alertmanager_alerts(alertname, labels, configuration)
        if found or fired_at is not None:
            out: dict[str, Any] = {
                "alertname": alertname,
                "seen_in": "alertmanager" if found else "prometheus",
                "seconds": round((fired_at or time.time()) - origin, 2),
                "observed_after_s": round(time.time() - origin, 2),
            }
            if found:
                alert = found[0]
                out["receivers"] = [r["name"] for r in alert.get("receivers", [])]
                out["summary"] = alert.get("annotations", {}).get("summary")
                out["labels"] = alert.get("labels")
            return out
    return {"alertname": alertname, "seconds": None, "waited": within, "labels": labels}


def alerts_firing(
    alertname: str,
    labels: dict[str, str] | None = None,
    within: float = 0.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """How many of these alerts Prometheus has firing (waiting up to ``within`` for none)."""
    selector = ",".join(
        [f'alertname="{alertname}"', 'alertstate="firing"']
        + [f'{k}="{v}"' for k, v in (labels or {}).items()]
    )
    count = 0
    started = time.time()
    for _ in _poll(within, 0.5):
        count = len(prom_query(f"ALERTS{{{selector}}}", configuration))
        if not count:
            break
    return {"alertname": alertname, "count": count, "seconds": round(time.time() - started, 2)}


# -- dashboards ---------------------------------------------------------------------------


def _panel(dashboard: str, title: str) -> dict[str, Any]:
    data = json.loads((DASHBOARDS / f"{dashboard}.json").read_text())
    for panel in data["panels"]:
        if panel.get("title") == title:
            found: dict[str, Any] = panel
            return found
    titles = [p.get("title") for p in data["panels"] if p.get("type") != "row"]
    raise KeyError(f"dashboard {dashboard} has no panel {title!r}; panels: {titles}")


def panel_shows(
    dashboard: str,
    panel: str,
    since_mark: str,
    variables: dict[str, str] | None = None,
    series: dict[str, str] | None = None,
    legend: str | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """What a dashboard panel drew since the mark: its own queries, run over that range.

    Template variables are filled in as a user would pick them (``variables``),
    ``$__rate_interval`` as Grafana would for a 1 s scrape. ``legend`` keeps
    the panel's queries whose legend contains it ("in flight", not the
    capacity line beside it); ``series`` the series whose labels match.
    ``max``/``min`` are over every point drawn.
    """
    spec = _panel(dashboard, panel)
    values = {"$__rate_interval": "5s", "$__interval": "1s", "$route": ".*"}
    values.update({f"${k}": v for k, v in (variables or {}).items()})
    start = MARKS.get(since_mark)
    end = time.time()
    points: list[float] = []
    drawn = 0
    for target in spec.get("targets", []):
        if legend is not None and legend not in target.get("legendFormat", ""):
            continue
        expr = target["expr"]
        for name in sorted(values, key=len, reverse=True):
            expr = expr.replace(name, values[name])
        r = httpx.get(
            f"{stack(configuration).prometheus}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": "1s"},
            timeout=10,
        )
        r.raise_for_status()
        for result in r.json()["data"]["result"]:
            if not _matches(result["metric"], series or {}):
                continue
            drawn += 1
            points += [float(v) for _, v in result["values"] if not math.isnan(float(v))]
    return {
        "dashboard": dashboard,
        "panel": panel,
        "series": drawn,
        "points": len(points),
        "max": max(points) if points else None,
        "min": min(points) if points else None,
    }


# -- traces -------------------------------------------------------------------------------


def _exemplar_traces(
    metric: str, labels: dict[str, str], since: float, configuration: Configuration | None
) -> list[str]:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    r = httpx.get(
        f"{stack(configuration).prometheus}/api/v1/query_exemplars",
        params={"query": f"{metric}_bucket{{{selector}}}", "start": since, "end": time.time() + 1},
        timeout=10,
    )
    r.raise_for_status()
    found: list[tuple[float, str]] = []
    for series in r.json()["data"]:
        for e in series["exemplars"]:
            if "trace_id" in e["labels"]:
                found.append((float(e["timestamp"]), e["labels"]["trace_id"]))
    return [t for _, t in sorted(found, reverse=True)]


def _jaeger_trace(url: str, trace_id: str) -> dict[str, Any] | None:
    r = httpx.get(f"{url}/api/traces/{trace_id}", timeout=_TIMEOUT)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    data = r.json().get("data") or []
    trace: dict[str, Any] | None = data[0] if data else None
    return trace


def _describe_trace(trace: dict[str, Any]) -> dict[str, Any]:
    processes = trace.get("processes", {})
    spans = []
    for span in trace.get("spans", []):
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        events = [
            f["value"]
            for log in span.get("logs", [])
            for f in log.get("fields", [])
            if f["key"] == "event"
        ]
        spans.append(
            {
                "service": processes.get(span.get("processID"), {}).get("serviceName", "?"),
                "name": span["operationName"],
                "error": tags.get("error") is True or tags.get("otel.status_code") == "ERROR",
                "events": events,
            }
        )
    return {"spans": spans}


def trace_shows(
    metric: str,
    labels: dict[str, str],
    since_mark: str,
    expect_event: str | list[str] | None = None,
    expect_span: str | None = None,
    expect_error_in: str | None = None,
    within: float = 15.0,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """From a metric's exemplar to its trace, as an SRE would click through; does it show why?

    Takes the exemplars Prometheus stored since the mark for ``metric``'s
    buckets with ``labels``, fetches their traces from the Jaeger query API,
    and looks for a span named ``expect_span``, a span event
    ``expect_event`` (or any of a list of them), and an error span in service
    ``expect_error_in``. ``found`` is 1 when one trace shows all that was asked.
    """
    events = [expect_event] if isinstance(expect_event, str) else expect_event
    url = setting(configuration, "jaeger_url")
    since = MARKS.get(since_mark)
    checked: list[dict[str, Any]] = []
    trace_ids: list[str] = []
    for _ in _poll(within, 0.5):
        trace_ids = _exemplar_traces(metric, labels, since, configuration)
        if not url:
            if trace_ids:
                raise ProbeSkipped(
                    f"exemplar trace {trace_ids[0]} found, but no trace backend is configured "
                    "(jaeger_url) to check what it shows"
                )
            continue
        for trace_id in trace_ids[:5]:
            trace = _jaeger_trace(url, trace_id)
            if trace is None:
                continue
            described = _describe_trace(trace)
            spans = described["spans"]
            matched = {
                "span": expect_span is None or any(s["name"] == expect_span for s in spans),
                "event": events is None or any(e in s["events"] for s in spans for e in events),
                "error": expect_error_in is None
                or any(s["error"] and s["service"] == expect_error_in for s in spans),
            }
            summary = {
                "trace_id": trace_id,
                "spans": len(spans),
                "services": sorted({s["service"] for s in spans}),
                "matched": matched,
            }
            if all(matched.values()):
                return {"found": 1, **summary, "exemplars": len(trace_ids)}
            if trace_id not in [c["trace_id"] for c in checked]:
                checked.append(summary)
    return {"found": 0, "exemplars": len(trace_ids), "checked": checked[:5]}


# -- money and stock ----------------------------------------------------------------------


def _get_json(url: str, **kw: Any) -> Any:
    r = httpx.get(url, timeout=10, **kw)
    r.raise_for_status()
    return r.json()


def orders_settle(within: float, configuration: Configuration | None = None) -> dict[str, Any]:
    """Wait until no order is pending (every saga terminal); ``pending`` left after ``within``."""
    info = stack(configuration)
    started = time.time()
    ledger: dict[str, Any] = {}
    for _ in _poll(within, 0.5):
        try:
            ledger = _get_json(f"{info.url('orders')}/orders/ledger")
        except httpx.HTTPError:
            continue
        if ledger.get("pending_count", 1) == 0:
            break
    return {
        "pending": ledger.get("pending_count"),
        "seconds": round(time.time() - started, 2),
        "ledger": ledger,
    }


def ledger_balance(
    within: float = 30.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Once orders settle, the money charged equals the money of confirmed orders.

    ``difference`` in cents (0 when it balances); a charge kept for a cancelled
    order, or a confirmed order never charged, shows here.
    """
    settled = orders_settle(within, configuration)
    info = stack(configuration)
    orders = settled["ledger"]
    payments = _get_json(f"{info.url('payments')}/charges/ledger")
    return {
        "pending": settled["pending"],
        "orders_confirmed_count": orders.get("confirmed_count", 0),
        "orders_confirmed_cents": orders.get("confirmed_cents", 0),
        "payments_charged_count": payments.get("charged_count", 0),
        "payments_charged_cents": payments.get("charged_cents", 0),
        "payments_refunded_count": payments.get("refunded_count", 0),
        "difference": abs(orders.get("confirmed_cents", 0) - payments.get("charged_cents", 0)),
    }


async def _stock(base: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        gate = asyncio.Semaphore(16)

        async def one(product_id: int) -> dict[str, Any]:
            async with gate:
                r = await client.get(f"/products/{product_id}/stock")
                r.raise_for_status()
                result: dict[str, Any] = r.json()
                return result

        return list(await asyncio.gather(*(one(p) for p in range(1, CATALOG_SIZE + 1))))


_STOCK_BASELINES: dict[str, int] = {}


def stock_ledger(
    baseline: str = "catalog", configuration: Configuration | None = None
) -> dict[str, Any]:
    """available + reserved + sold over the catalog, and negative columns: neither may move.

    The first call for a ``baseline`` name records the total; later calls
    compare with it (nothing restocks, so the total is constant for as long
    as the stack runs): ``difference`` is how many units appeared or vanished.
    """
    rows = asyncio.run(_stock(stack(configuration).url("inventory")))
    total = sum(r["available"] + r["reserved"] + r["sold"] for r in rows)
    negative = [r["product_id"] for r in rows if min(r["available"], r["reserved"], r["sold"]) < 0]
    recorded = _STOCK_BASELINES.setdefault(baseline, total)
    difference = abs(total - recorded)
    return {
        "total": total,
        "baseline": recorded,
        "difference": difference,
        "reserved": sum(r["reserved"] for r in rows),
        "negative": len(negative),
        "negative_products": negative[:10],
        "violations": len(negative) + difference,
    }


async def _audit(
    load_name: str, orders_url: str, payments_url: str, inventory_url: str
) -> dict[str, Any]:
    driver = load_module.get(load_name)
    samples = [s for s in driver.samples if s.kind == "order"]
    problems: dict[str, list[str]] = {
        "lost": [],  # a 201 whose order does not exist, or is not confirmed
        "changed": [],  # the key now names another order than its 201 said
        "duplicated": [],  # orders no key accounts for (a key that made two)
        "not_terminal": [],
        "charged_but_cancelled": [],
        "confirmed_not_charged": [],
        "stock_not_settled": [],
    }
    key_to_order: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=15) as client:
        gate = asyncio.Semaphore(12)

        async def replay(sample: load_module.Sample) -> None:
            # What a client does with an answer it did not get: ask again, same key.
            headers = {**driver.users[sample.user].headers, "idempotency-key": sample.key}
            async with gate:
                r = await client.post(
                    f"{orders_url}/orders", json=order_body(sample.product_id), headers=headers
                )
            body = r.json()
            order_id = str(body.get("id") or body.get("order_id") or "")
            if order_id:
                key_to_order[sample.key] = order_id
            if sample.status == 201 and order_id != sample.order_id:
                problems["changed"].append(f"{sample.key}: {sample.order_id} -> {order_id}")

        await asyncio.gather(*(replay(s) for s in samples))

        listed: dict[str, dict[str, Any]] = {}
        for user in driver.users:
            offset = 0
            while True:
                page = (
                    await client.get(
                        f"{orders_url}/orders",
                        params={"limit": 100, "offset": offset},
                        headers=user.headers,
                    )
                ).json()["items"]
                listed.update({o["id"]: o for o in page})
                if len(page) < 100:
                    break
                offset += 100

        for sample in samples:
            if sample.status == 201:
                order = listed.get(sample.order_id)
                if order is None or order["status"] != "confirmed":
                    problems["lost"].append(sample.order_id)
        accounted = set(key_to_order.values())
        problems["duplicated"] = sorted(set(listed) - accounted)

        async def check(order: dict[str, Any]) -> None:
            async with gate:
                charge = await client.get(f"{payments_url}/charges/{order['id']}")
                reservation = await client.get(f"{inventory_url}/reservations/{order['id']}")
            charged = charge.status_code == 200 and charge.json().get("status") == "charged"
            held = reservation.status_code == 200 and reservation.json().get("status") == "reserved"
            if order["status"] == "pending":
                problems["not_terminal"].append(order["id"])
            elif order["status"] == "cancelled" and charged:
                problems["charged_but_cancelled"].append(order["id"])
            elif order["status"] == "confirmed" and not charged:
                problems["confirmed_not_charged"].append(order["id"])
            if order["status"] != "pending" and held:
                problems["stock_not_settled"].append(order["id"])

        await asyncio.gather(*(check(o) for o in listed.values()))

    statuses: dict[str, int] = {}
    for order in listed.values():
        statuses[order["status"]] = statuses.get(order["status"], 0) + 1
    return {
        "requests": len(samples),
        "answered_201": sum(1 for s in samples if s.status == 201),
        "unanswered_or_5xx": sum(1 for s in samples if s.status == 0 or s.status >= 500),
        "orders": len(listed),
        "orders_by_status": statuses,
        **{k: len(v) for k, v in problems.items()},
        "examples": {k: v[:3] for k, v in problems.items() if v},
        "violations": sum(len(v) for v in problems.values()),
    }


def audit_orders(
    load: str, settle_within: float = 30.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Account for every order the load placed; ``violations`` counts what must never happen.

    Every key is sent again (as a client retries an answer it did not get):
    a key names exactly one order, and a 201 names the order it first said.
    Every order of the load's users is terminal; a 201 is confirmed; a
    cancelled order holds no charge; a confirmed one is charged; no finished
    order still holds reserved stock.
    """
    settled = orders_settle(settle_within, configuration)
    info = stack(configuration)
    result = asyncio.run(
        _audit(load, info.url("orders"), info.url("payments"), info.url("inventory"))
    )
    result["settled_in_s"] = settled["seconds"]
    return result


# -- the load's own view ------------------------------------------------------------------


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
    samples = load_module.get(load).window_samples(window, kind)
    if statuses is not None:
        return load_module.status_ratio(samples, statuses)
    summary = load_module.summarize(samples)
    return summary if stat is None else summary[stat]


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
    for _ in _poll(driver.spec.timeout + 1, 0.05):
        samples = driver.between(MARKS.get(since_mark), t1, kind)
        if all(s.done for s in samples):
            break
    if answered is not None:
        samples = [s for s in samples if s.status in answered]
    if statuses is not None:
        return load_module.status_ratio(samples, statuses)
    summary = load_module.summarize(samples)
    return summary if stat is None else summary[stat]


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
            for _ in _poll(max(0.0, within - (time.time() - started)), 0.5):
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
        for _ in _poll(within, 0.5):
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
