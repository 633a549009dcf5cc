"""Generated dashboard JSON is current, and grafanalib's quirks are corrected in it."""

from __future__ import annotations

from dashboards import generate
from dashboards._grafana import SCHEMA_VERSION, finalize
from dashboards.links import TITLES
from tests.dashboards.support import generated


def test_generated_json_matches_the_python_sources() -> None:
    stale = generate.stale()
    assert not stale, f"regenerate with `python -m dashboards`: {[str(p) for p in stale]}"


def test_each_file_is_named_after_its_uid_and_every_uid_is_known() -> None:
    uids = [d["uid"] for d in generated()]
    assert sorted(uids) == sorted(TITLES)
    assert sorted(p.stem for p in generate.GENERATED_DIR.glob("*.json")) == sorted(uids)


def test_dashboards_use_a_current_schema_and_no_legacy_layout() -> None:
    for d in generated():
        assert d["schemaVersion"] == SCHEMA_VERSION
        assert "rows" not in d


def test_finalize_corrects_what_grafanalib_gets_wrong() -> None:
    raw = {
        "schemaVersion": 12,
        "rows": [],
        "panels": [
            {
                "type": "stat",
                "maxDataPoints": 100,
                "span": None,
                "fieldConfig": {"defaults": {"thresholds": {"steps": ""}, "decimals": None}},
                "targets": [{"expr": "up"}],
            },
            {"type": "heatmap", "xAxis": {}, "cards": {}, "options": {"calculate": False}},
        ],
        "templating": {
            "list": [
                {"type": "query", "query": "label_values(up, job)", "current": {"value": "$__all"}}
            ]
        },
    }
    d = finalize(raw)
    panel = d["panels"][0]
    assert d["schemaVersion"] == SCHEMA_VERSION
    assert "rows" not in d
    assert "maxDataPoints" not in panel
    assert "span" not in panel
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"] == [
        {"color": "green", "value": None}
    ]
    assert "decimals" not in panel["fieldConfig"]["defaults"]
    assert panel["datasource"]["uid"] == "prometheus"
    assert panel["targets"][0]["refId"] == "A"
    assert d["templating"]["list"][0]["current"]["text"] == ["All"]
    assert d["panels"][1].keys() >= {"options"}
    assert not d["panels"][1].keys() & {"xAxis", "cards"}


def test_finalize_keeps_only_what_grafanas_dashboard_schema_has() -> None:
    raw = {
        "__inputs": [],
        "timepicker": {"refresh_intervals": ["5s"], "time_options": ["5m"]},
        "panels": [
            {"type": "row", "title": "R", "editable": True, "targets": [], "links": []},
            {
                "type": "stat",
                "editable": True,
                "options": {"legend": {"displayMode": "hidden"}, "tooltip": {"mode": "single"}},
            },
            {"type": "heatmap", "options": {"tooltip": {"show": True}, "color": {}}},
        ],
        "templating": {"list": [{"type": "custom", "useTags": False, "current": {"tags": []}}]},
    }
    d = finalize(raw)
    row, stat, heatmap = d["panels"]
    assert "__inputs" not in d
    assert d["timepicker"] == {"refresh_intervals": ["5s"]}
    assert row == {"type": "row", "title": "R"}
    assert "editable" not in stat
    assert stat["options"]["wideLayout"] is True
    assert stat["options"]["legend"] == {"displayMode": "hidden", "showLegend": False, "calcs": []}
    assert stat["options"]["tooltip"] == {"mode": "single", "sort": "none"}
    assert heatmap["options"]["tooltip"] == {"mode": "single"}
    assert heatmap["options"]["color"]["exponent"] == 0.5
    assert d["templating"]["list"][0] == {"type": "custom", "current": {}}
