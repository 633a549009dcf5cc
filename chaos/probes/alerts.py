"""Probes of alerts: when one fired (Alertmanager, or Prometheus' ALERTS series), how many fire."""

from __future__ import annotations

import time
from typing import Any

import httpx

from chaos.context import Configuration, stack
from chaos.probes._common import TIMEOUT, mark_time, matches, poll
from chaos.probes.prometheus import prom_query


def alertmanager_alerts(
    alertname: str, labels: dict[str, str] | None = None, configuration: Configuration | None = None
) -> list[dict[str, Any]]:
    """Active alerts Alertmanager holds with this name and labels (its API v2)."""
    r = httpx.get(
        f"{stack(configuration).alertmanager}/api/v2/alerts",
        params={"filter": f'alertname="{alertname}"'},
        timeout=TIMEOUT,
    )
    r.raise_for_status()
    return [a for a in r.json() if matches(a.get("labels", {}), labels or {})]


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
    origin = mark_time(since_mark) or started
    selector = ",".join(
        [f'alertname="{alertname}"', 'alertstate="firing"']
        + [f'{k}="{v}"' for k, v in labels.items()]
    )
    for _ in poll(within, 0.25):
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
    for _ in poll(within, 0.5):
        count = len(prom_query(f"ALERTS{{{selector}}}", configuration))
        if not count:
            break
    return {"alertname": alertname, "count": count, "seconds": round(time.time() - started, 2)}
