"""promtool accepts every rules file, and every alert's unit tests pass.

The unit tests are alerts/tests/**/*.test.yml: hand-written ones for the
symptom and cause alerts, generated ones (tests/generated/) for the SLO
burn-rate alerts of both profiles.
"""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alerts.paths import ALERTS_DIR, all_rule_files, rule_test_files
from tests.alerts.support import alert_rules, load_yaml, output, run, tool

TEST_FILES = rule_test_files()


def _relative(path: Path) -> str:
    return str(path.relative_to(ALERTS_DIR))


@pytest.fixture(scope="module")
def unit_test_results() -> dict[Path, subprocess.CompletedProcess[str]]:
    """Every test file through `promtool test rules`, in parallel (they take seconds each)."""
    promtool = tool("promtool")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {
            path: pool.submit(run, promtool, "test", "rules", path.name, cwd=path.parent)
            for path in TEST_FILES
        }
        return {path: f.result() for path, f in futures.items()}


def test_promtool_accepts_every_rules_file() -> None:
    result = run(tool("promtool"), "check", "rules", *map(str, all_rule_files()))
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize("test_file", TEST_FILES, ids=_relative)
def test_promtool_unit_tests_pass(
    test_file: Path, unit_test_results: dict[Path, subprocess.CompletedProcess[str]]
) -> None:
    result = unit_test_results[test_file]
    assert result.returncode == 0, output(result)


def _cases_by_rule_file() -> dict[Path, dict[str, list[list[dict[str, object]]]]]:
    """rules file → alertname → the exp_alerts of every check of that alert."""
    cases: dict[Path, dict[str, list[list[dict[str, object]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for test_file in TEST_FILES:
        doc = load_yaml(test_file)
        for rules in doc["rule_files"]:
            target = (test_file.parent / rules).resolve()
            for test in doc["tests"]:
                for check in test.get("alert_rule_test", []):
                    cases[target][check["alertname"]].append(check.get("exp_alerts") or [])
    return cases


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = _cases_by_rule_file()
    missing = []
    for rule in alert_rules():
        if rule.file.name.startswith("handwritten-"):
            # A mechanical, time-compressed copy of a rule tested as written
            # (tests/alerts/test_compress.py checks the transformation).
            continue
        checks = cases[rule.file.resolve()][rule.name]
        severity = rule.labels["severity"]
        fires = any(
            any(dict(a.get("exp_labels", {})).get("severity") == severity for a in exp)  # type: ignore[call-overload]
            for exp in checks
        )
        quiet = any(not exp for exp in checks)
        if not (fires and quiet):
            missing.append(
                f"{_relative(rule.file)}: {rule.name} (severity {severity}): "
                f"{'' if fires else 'no firing test '}{'' if quiet else 'no quiet test'}"
            )
    assert not missing, "\n".join(missing)


def test_firing_tests_check_labels_and_every_annotation() -> None:
    incomplete = []
    for test_file in TEST_FILES:
        for test in load_yaml(test_file)["tests"]:
            for check in test.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    labels = alert.get("exp_labels", {})
                    notes = alert.get("exp_annotations", {})
                    if (
                        not {"severity", "service"} <= labels.keys()
                        or not {
                            "summary",
                            "description",
                            "runbook_url",
                            "dashboard",
                        }
                        <= notes.keys()
                    ):
                        incomplete.append(f"{_relative(test_file)}: {test['name']}")
    assert not incomplete, "\n".join(incomplete)
