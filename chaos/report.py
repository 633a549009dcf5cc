"""The summary an SRE reads after a run: what was injected when, what the metrics did,
which alerts fired, what the evidence was, and the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The actions that inject a fault (as opposed to load, marks and removals).
INJECTORS = {
    "set_faults",
    "add_toxic",
    "kill_service",
    "freeze_service",
    "stop_postgres",
    "terminate_db_connections",
    "hold_table_lock",
    "cpu_hog",
    "pause_sagas",
}
EVIDENCE = {"alert_fires": "alert", "panel_shows": "dashboard panel", "trace_shows": "trace"}


def _func(run: dict[str, Any]) -> str:
    return str(run["activity"].get("provider", {}).get("func", ""))


def _value(output: Any, limit: int = 180) -> str:
    text = json.dumps(output, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _verdict(run: dict[str, Any]) -> str:
    if run.get("status") == "failed":
        return f"✘ failed: {str(run.get('exception', ['?'])[-1]).strip()}"
    if run.get("status") == "skipped":
        return f"– skipped: {run.get('skipped', '')}"
    if "tolerance_met" in run:
        return f"{'✔' if run['tolerance_met'] else '✘'} {run.get('verdict', '')}"
    return "✔"


def _evidence_line(run: dict[str, Any]) -> str:
    out = run.get("output") or {}
    func = _func(run)
    args = run["activity"]["provider"].get("arguments", {})
    if func == "alert_fires":
        if out.get("seconds") is None:
            return f"alert **{args.get('alertname')}** did NOT fire within {out.get('waited')} s"
        return (
            f"alert **{out.get('alertname')}** firing in {out.get('seen_in')} "
            f"{out.get('seconds')} s after `{args.get('since_mark')}`"
            + (f" (startsAt +{out['starts_after_s']} s)" if "starts_after_s" in out else "")
            + (f", to {', '.join(out['receivers'])}" if out.get("receivers") else "")
        )
    if func == "panel_shows":
        return (
            f"panel **{args.get('panel')}** ({args.get('dashboard')}): "
            f"{out.get('series')} series, max {out.get('max')}, min {out.get('min')}"
        )
    if func == "trace_shows":
        if run.get("status") == "skipped":
            return f"trace: {run.get('skipped')}"
        if out.get("found"):
            return (
                f"trace `{out.get('trace_id')}` (from a `{args.get('metric')}` exemplar): "
                f"{out.get('spans')} spans across {', '.join(out.get('services', []))}; "
                f"shows {', '.join(k for k, v in out.get('matched', {}).items() if v)}"
            )
        return f"no trace among {out.get('exemplars')} exemplars showed what was expected"
    return _value(out)


def render(journal: dict[str, Any]) -> str:
    notes = journal["redline"]
    experiment = journal["experiment"]
    passed = notes.get("passed")
    lines = [
        f"# {experiment['title']} — {'PASSED' if passed else 'FAILED'}",
        "",
        experiment.get("description", "").strip(),
        "",
        f"Started {journal['start']}, {journal.get('duration', 0):.1f} s; status "
        f"{journal['status']}{', deviated' if journal['deviated'] else ''}. "
        f"Journal: `journal.json`.",
        "",
    ]
    if notes["violations"] or notes["failures"]:
        lines += ["## What went wrong", ""]
        lines += [f"- {v}" for v in notes["violations"] + notes["failures"]]
        lines.append("")
    if notes.get("interrupted_by"):
        lines += [f"Interrupted by {notes['interrupted_by']}; rollbacks ran.", ""]
    injected = [r for r in journal["run"] if _func(r) in INJECTORS]
    lines += ["## Injected", ""]
    lines += [
        f"- t+{r.get('t', 0):.1f} s: {r['activity']['name']} (`{_func(r)}` "
        f"{_value(r['activity']['provider'].get('arguments', {}), 140)})"
        for r in injected
    ] or ["- nothing"]
    lines += ["", "## Evidence", ""]
    evidence = [r for r in journal["run"] if _func(r) in EVIDENCE]
    lines += [f"- {_evidence_line(r)}" for r in evidence] or ["- none checked"]
    for phase in ("before", "after"):
        state = journal["steady_states"].get(phase)
        if not state:
            continue
        lines += [
            "",
            f"## Steady state {phase}: {'met' if state['steady_state_met'] else 'NOT met'}",
            "",
        ]
        lines += [f"- {r['activity']['name']}: {_verdict(r)}" for r in state["probes"]]
    lines += ["", "## Timeline", "", "| t (s) | activity | result |", "|---|---|---|"]
    for r in journal["run"]:
        shown = r.get("verdict") or _value(r.get("output"), 120)
        mark = {"failed": "✘ ", "skipped": "– "}.get(r.get("status", ""), "")
        if "tolerance_met" in r:
            mark = "✔ " if r["tolerance_met"] else "✘ "
        lines.append(f"| {r.get('t', 0):.1f} | {r['activity']['name']} | {mark}{shown} |")
    lines += ["", "## Rollbacks", ""]
    lines += [f"- {r['activity']['name']}: {r.get('status')}" for r in journal["rollbacks"]] or [
        "- none declared"
    ]
    if notes.get("safety_net"):
        lines += ["", "Reverted by the safety net (still active after the rollbacks):"]
        lines += [f"- {e['description']} {e.get('error', '')}" for e in notes["safety_net"]]
    if notes.get("skipped"):
        lines += ["", "## Not checked", ""] + [f"- {s}" for s in notes["skipped"]]
    return "\n".join(lines) + "\n"


def write_report(journal: dict[str, Any], path: Path) -> Path:
    path.write_text(render(journal))
    return path
