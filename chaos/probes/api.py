"""Probes of the services' own API: health, readiness, restarts, fault flags, the fault proxy."""

from __future__ import annotations

import time
from typing import Any

import httpx

from chaos.context import SIGNALLED, Configuration, setting, stack
from chaos.probes._common import TIMEOUT, get, poll, seconds_since
from services.topology import SERVICES


def health(service: str, configuration: Configuration | None = None) -> dict[str, Any]:
    """Liveness and readiness status codes, and why it is not ready (failing checks)."""
    base = stack(configuration).url(service)
    out: dict[str, Any] = {"service": service, "live": 0, "ready": 0, "failing": []}
    try:
        out["live"] = get(f"{base}/health/live", timeout=2).status_code
        ready = get(f"{base}/health/ready", timeout=2)
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
    for _ in poll(seconds, 0.2):
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
    """Which services are not ready (waiting up to ``within`` for all to be).

    Every instance of each service (``inventory``, ``inventory-2`` with replicas)."""
    instances = stack(configuration).state.get("instances", {})
    names = [i for n in services or list(SERVICES) for i in instances.get(n, [n])]
    not_ready: list[str] = names
    started = time.time()
    for _ in poll(within, 0.25):
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
    for _ in poll(within, 0.1):
        pid = stack(configuration).pid(service)
        if old is None:
            old = pid
        elif pid and pid != old:
            return {"old_pid": old, "pid": pid, "seconds": seconds_since(since_mark, started)}
    return {"old_pid": old, "pid": old, "seconds": None, "waited": within}


def faults_active(configuration: Configuration | None = None) -> dict[str, Any]:
    """Fault flags currently set on any service (none in steady state)."""
    info = stack(configuration)
    active: dict[str, Any] = {}
    for name in SERVICES:
        try:
            faults = get(
                f"{info.ops_url(name)}/admin/faults", headers=info.admin_headers, timeout=TIMEOUT
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
    proxies = httpx.get(f"{url}/proxies", timeout=TIMEOUT).json()
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
        described = httpx.get(f"{url}/proxies/{proxy}", timeout=TIMEOUT).json()
    except (httpx.HTTPError, ValueError):
        return {"in_path": 0, "why": f"fault proxy API at {url} does not answer"}
    upstream = described.get("upstream", "")
    expected = f"{stack(configuration).host}:{stack(configuration).port(dependency)}"
    if upstream != expected:
        return {"in_path": 0, "why": f"proxy {proxy} forwards to {upstream}, not {expected}"}
    return {"in_path": 1, "listen": described["listen"], "upstream": upstream, "service": service}
