"""`redline alerts`: firing, pending and silenced alerts with their runbooks.

Prometheus knows which rules are pending or firing; Alertmanager knows which
firing alerts are silenced or inhibited. Natively there is no Alertmanager UI
(Debian's package ships none), so this joins the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.links import runbook_file
from alerts.paths import ALERTS_DIR, RUNBOOKS_DIR
from redline.console._sources import Alertmanager, Prometheus, SourceError

ROOT = ALERTS_DIR.parent
# Most urgent first.
_ORDER = {"firing": 0, "pending": 1, "silenced": 2, "inhibited": 3}


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing | pending | silenced | inhibited
    severity: str
    labels: Mapping[str, str]
    summary: str
    since: str  # RFC 3339, when it went pending/firing
    runbook: str  # a path in this repository, or the URL as given
    value: str = ""
    silenced_by: tuple[str, ...] = field(default=())

    @property
    def subject(self) -> str:
        """The labels that say what is affected, without the ones every alert has."""
        skip = {"alertname", "severity", "instance"}
        return " ".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k not in skip)


def runbook_path(url: str) -> str:
    """``alerts/runbooks/TargetDown.md`` for a runbook URL of this repository."""
    name = runbook_file(url) if url else None
    if name and (RUNBOOKS_DIR / name).exists():
        return str((RUNBOOKS_DIR / name).relative_to(ROOT))
    return url


def _matches(prom_labels: Mapping[str, str], am_labels: Mapping[str, str]) -> bool:
    # Alertmanager's copy may carry external labels on top of the rule's.
    return all(am_labels.get(k) == v for k, v in prom_labels.items())


def merge(prom: Iterable[Mapping[str, Any]], am: Iterable[Mapping[str, Any]]) -> list[Alert]:
    """Prometheus's pending/firing alerts, marked silenced or inhibited per Alertmanager."""
    am_alerts = list(am)
    out = []
    for a in prom:
        labels: dict[str, str] = dict(a.get("labels", {}))
        annotations = a.get("annotations", {})
        state = str(a.get("state", "firing"))
        silenced: tuple[str, ...] = ()
        if state == "firing":
            for m in am_alerts:
                if not _matches(labels, m.get("labels", {})):
                    continue
                status = m.get("status", {})
                if status.get("silencedBy"):
                    state, silenced = "silenced", tuple(status["silencedBy"])
                elif status.get("inhibitedBy"):
                    state, silenced = "inhibited", tuple(status["inhibitedBy"])
                break
        out.append(
            Alert(
                name=labels.get("alertname", "?"),
                state=state,
                severity=labels.get("severity", ""),
                labels=labels,
                summary=annotations.get("summary", ""),
                since=str(a.get("activeAt", "")),
                runbook=runbook_path(annotations.get("runbook_url", "")),
                value=str(a.get("value", "")),
                silenced_by=silenced,
            )
        )
    out.sort(key=lambda x: (_ORDER.get(x.state, 9), x.severity != "page", x.name, x.subject))
    return out


def collect(prometheus: Prometheus, alertmanager: Alertmanager | None) -> tuple[list[Alert], str]:
    """The alerts, and a note when Alertmanager could not be asked (silences unknown)."""
    prom = prometheus.alerts()
    note = ""
    am: list[dict[str, Any]] = []
    if alertmanager is not None:
        try:
            am = alertmanager.alerts()
        except SourceError as exc:
            note = f"{exc} (silences unknown)"
    return merge(prom, am), note


def lines(alerts: list[Alert]) -> list[str]:
    if not alerts:
        return ["no alerts firing or pending"]
    out = []
    for a in alerts:
        since = a.since[:19].replace("T", " ")
        out.append(
            f"{a.state:<9} {a.name:<32} {a.severity or '-':<7} since {since}  {a.subject}".rstrip()
        )
        if a.summary:
            out.append(f"          {a.summary}")
        if a.runbook:
            out.append(f"          runbook: {a.runbook}")
    return out
