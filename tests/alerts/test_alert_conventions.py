"""Every alert carries what a responder needs, and its links lead somewhere real."""

from __future__ import annotations

import json

import pytest

from alerts.links import dashboard_uid, runbook_file
from alerts.paths import RUNBOOKS_DIR
from dashboards.generate import GENERATED_DIR
from tests.alerts.support import AlertRule, alert_rules

ALERTS = alert_rules()
SEVERITIES = {"page", "ticket", "info"}
ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard"}
# What every runbook walks a responder through.
RUNBOOK_SECTIONS = ("## What it means", "## Look first", "## Mitigate")


def _id(rule: AlertRule) -> str:
    return f"{rule.file.parent.name}/{rule.file.name}:{rule.name}:{rule.labels.get('severity')}"


def _dashboard_uids() -> set[str]:
    return {json.loads(p.read_text("utf-8"))["uid"] for p in GENERATED_DIR.glob("*.json")}


@pytest.mark.parametrize("rule", ALERTS, ids=_id)
def test_alert_has_severity_service_and_every_annotation(rule: AlertRule) -> None:
    assert rule.labels.get("severity") in SEVERITIES
    assert rule.labels.get("service"), "service label routes and groups the alert"
    assert rule.annotations.keys() >= ANNOTATIONS
    # The values that matter: a description that quotes no label or value is boilerplate.
    assert "{{" in rule.annotations["description"]


@pytest.mark.parametrize("rule", ALERTS, ids=_id)
def test_runbook_url_names_a_runbook_in_the_repo(rule: AlertRule) -> None:
    name = runbook_file(rule.annotations["runbook_url"])
    assert name is not None, rule.annotations["runbook_url"]
    assert (RUNBOOKS_DIR / name).is_file(), f"missing alerts/runbooks/{name}"
    assert name == f"{rule.name}.md"


@pytest.mark.parametrize("rule", ALERTS, ids=_id)
def test_dashboard_link_names_a_generated_dashboard(rule: AlertRule) -> None:
    uid = dashboard_uid(rule.annotations["dashboard"])
    assert uid is not None, rule.annotations["dashboard"]
    assert uid in _dashboard_uids()


def test_every_runbook_belongs_to_an_alert() -> None:
    names = {f"{r.name}.md" for r in ALERTS}
    orphans = sorted(p.name for p in RUNBOOKS_DIR.glob("*.md") if p.name not in names)
    assert not orphans


@pytest.mark.parametrize("name", sorted({r.name for r in ALERTS}))
def test_runbook_says_what_it_means_what_to_look_at_and_how_to_mitigate(name: str) -> None:
    text = (RUNBOOKS_DIR / f"{name}.md").read_text("utf-8")
    assert text.startswith(f"# {name}\n")
    missing = [s for s in RUNBOOK_SECTIONS if s not in text]
    assert not missing


def test_link_parsers_reject_urls_outside_the_repo_and_grafana() -> None:
    assert runbook_file("https://example.com/alerts/runbooks/TargetDown.md") is None
    assert dashboard_uid("https://example.com/d/redline-overview") is None
    assert dashboard_uid("http://localhost:3000/d/redline-service?var-service=orders") == (
        "redline-service"
    )
