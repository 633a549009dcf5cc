"""The generated dashboards against Grafana's own dashboard schema.

Grafana publishes its dashboard schema (CUE, in grafana/grafana) through the
Grafana Foundation SDK, generated from it for Go, TypeScript, Python, Java and
PHP. None of its registry packages ships the JSON Schema form (that lives only
in the SDK's repository), but the Go module does ship a validator: every type
has a strict decoder (``UnmarshalJSONStrict``: unknown fields and missing
required ones are errors, panel options and queries decoded by their plugin's
own type) and a ``Validate()`` for the schema's constraints. The npm and PyPI
packages have the same types without either check.

``grafana_schema/`` is a ``main`` that feeds files to those two calls, with the
SDK pinned by go.mod/go.sum (v0.0.22). It is built here with Go, as the
Collector and Jaeger are; the first build downloads and compiles the SDK
(about a minute on 2 cores), later ones come from Go's build cache.
What it does not check: enum values (the Go types are plain strings), and
anything a Grafana server adds when it loads a dashboard.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from redline.binaries import HOW_TO_GET_GO
from tests.stack_config.stack import DASHBOARDS_DIR

CHECKER_MODULE = Path(__file__).parent / "grafana_schema"
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))


@pytest.fixture(scope="session")
def schema_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"the Grafana schema check is built with Go: {HOW_TO_GET_GO}")
    binary = tmp_path_factory.mktemp("grafana-schema") / "grafana-schema-check"
    result = subprocess.run(
        [go, "build", "-trimpath", "-o", str(binary), "."],
        cwd=CHECKER_MODULE,
        env={**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return binary


def check(binary: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *map(str, paths)], capture_output=True, text=True, timeout=60
    )


def test_every_generated_dashboard_passes_grafanas_dashboard_schema(schema_check: Path) -> None:
    assert len(DASHBOARDS) >= 4
    result = check(schema_check, *DASHBOARDS)
    assert result.returncode == 0, result.stdout + result.stderr


def _first(dashboard: dict[str, Any], kind: str) -> dict[str, Any]:
    panel = next(p for p in dashboard["panels"] if p.get("type") == kind)
    assert isinstance(panel, dict)
    return panel


def test_schema_check_names_unknown_fields_and_missing_required_options(
    schema_check: Path, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARDS[0].read_text())
    broken = copy.deepcopy(dashboard)
    timeseries = _first(broken, "timeseries")
    timeseries["targets"][0]["exprr"] = "up"  # a typo in a Prometheus query
    timeseries["editable"] = True  # a key the schema's Panel does not have
    del timeseries["options"]["legend"]["showLegend"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = check(schema_check, path)
    assert result.returncode == 1
    assert "unexpected field 'exprr'" in result.stdout
    assert "unexpected field 'editable'" in result.stdout
    assert "legend.showLegend: required field is missing" in result.stdout
