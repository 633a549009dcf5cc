"""Reading the alerting files, and running the Prometheus tools on them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.paths import all_rule_files

# Debian package of each command, for the failure message.
_PACKAGES = {
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "prometheus-alertmanager": "prometheus-alertmanager",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: apt-get install {_PACKAGES[name]} (or `make system-deps`)"
        )
    return path


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@dataclass(frozen=True)
class AlertRule:
    file: Path
    rule: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.rule["alert"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.rule.get("labels", {}))

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.rule.get("annotations", {}))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules(files: list[Path] | None = None) -> list[dict[str, Any]]:
    return [
        rule
        for path in files or all_rule_files()
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def alert_rules(files: list[Path] | None = None) -> list[AlertRule]:
    return [
        AlertRule(path, rule)
        for path in files or all_rule_files()
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
