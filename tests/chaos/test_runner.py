"""The experiment runner, the tolerances, the report and the CLI, without a stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chaos import tolerance
from chaos.cli import EXPERIMENTS, experiment_files, resolve_configuration
from chaos.context import ACTIVE_FAULTS
from chaos.runner import (
    ExperimentFailed,
    InvalidExperiment,
    assert_passed,
    run_experiment,
    substitute,
    validate,
)
from tests.chaos import fakes
from tests.harness import ROOT


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    fakes.CALLS.clear()
    yield
    ACTIVE_FAULTS.revert_all()


def step(name: str, func: str, kind: str = "action", **arguments: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "provider": {
            "type": "python",
            "module": "tests.chaos.fakes",
            "func": func,
            "arguments": arguments,
        },
    }


def probe(name: str, result: Any, tolerance: Any) -> dict[str, Any]:
    return {**step(name, "value", "probe", result=result), "tolerance": tolerance}


def experiment(
    method: list[dict[str, Any]],
    *,
    hypothesis: list[dict[str, Any]] | None = None,
    rollbacks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "title": "a test experiment",
        "description": "exercises the runner",
        "steady-state-hypothesis": {
            "title": "fine",
            "probes": hypothesis or [probe("always-fine", True, True)],
        },
        "method": method,
        "rollbacks": rollbacks or [],
    }


def run(exp: dict[str, Any], tmp_path: Path, **configuration: Any) -> dict[str, Any]:
    return run_experiment(exp, configuration, tmp_path / "run", log=lambda _: None)


# -- verdicts ---------------------------------------------------------------------------


def test_a_violated_method_tolerance_names_the_probe_and_by_how_much(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [
                probe(
                    "orders-fail-fast",
                    {"p99_ms": 1832.0},
                    {"type": "range", "target": "p99_ms", "range": [0, 300]},
                )
            ]
        ),
        tmp_path,
    )
    assert journal["deviated"] is True
    with pytest.raises(ExperimentFailed) as failure:
        assert_passed(journal)
    message = str(failure.value)
    assert "probe 'orders-fail-fast'" in message
    assert "p99_ms=1832.0 is above 300 by 1532.0" in message


def test_a_steady_state_that_does_not_hold_keeps_the_method_from_running(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [step("inject", "inject", fault="x")],
            hypothesis=[probe("count", 3, {"type": "range", "target": "count", "range": [0, 0]})],
        ),
        tmp_path,
    )
    assert journal["status"] == "failed"
    assert journal["deviated"] is False, "nothing ran that could deviate"
    assert "the steady state did not hold before the method ran" in journal["redline"]["violations"]
    assert (
        "[before] probe 'count': the probe returned no 'count': 3"
        in journal["redline"]["violations"]
    )
    assert fakes.CALLS == [], "the method does not run on a broken steady state"


def test_a_fault_left_in_place_deviates_the_steady_state_after_the_method(
    tmp_path: Path,
) -> None:
    quiet = {**step("faults", "faults_in_force", "probe"), "tolerance": 0}
    journal = run(experiment([step("inject", "inject", fault="x")], hypothesis=[quiet]), tmp_path)
    assert journal["deviated"] is True
    assert journal["redline"]["violations"] == ["[after] probe 'faults': value=1 is above 0 by 1"]
    assert fakes.CALLS == ["inject x", "undo x"]


def test_a_method_that_keeps_every_tolerance_passes(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [
                step("inject", "inject", fault="x"),
                probe("fast", 120.5, {"type": "range", "range": [0, 300]}),
                step("revert", "revert", fault="x"),
            ]
        ),
        tmp_path,
    )
    assert_passed(journal)
    assert journal["status"] == "completed"
    assert journal["redline"]["safety_net"] == []
    assert fakes.CALLS == ["inject x", "revert x"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.startswith("# a test experiment — PASSED")
    assert json.loads((tmp_path / "run" / "journal.json").read_text())["status"] == "completed"


def test_a_probe_that_raises_in_the_steady_state_fails_it_with_the_error(tmp_path: Path) -> None:
    broken = {**step("broken", "boom", "probe"), "tolerance": True}
    journal = run(experiment([step("inject", "inject", fault="x")], hypothesis=[broken]), tmp_path)
    assert journal["status"] == "failed"
    assert "[before] probe 'broken' failed: RuntimeError: boom" in journal["redline"]["violations"]
    assert fakes.CALLS == []


def test_a_failed_action_fails_the_experiment_and_the_rollbacks_still_run(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [step("inject", "inject", fault="x"), step("explode", "boom")],
            rollbacks=[step("undo", "revert", fault="x")],
        ),
        tmp_path,
    )
    assert journal["status"] == "failed"
    assert journal["redline"]["failures"] == ["explode: action failed: RuntimeError: boom"]
    assert fakes.CALLS == ["inject x", "revert x"]


def test_the_safety_net_reverts_a_fault_no_rollback_mentions(tmp_path: Path) -> None:
    journal = run(experiment([step("inject", "inject", fault="forgotten")]), tmp_path)
    assert fakes.CALLS == ["inject forgotten", "undo forgotten"]
    assert [e["key"] for e in journal["redline"]["safety_net"]] == ["fake:forgotten"]
    assert ACTIVE_FAULTS.in_force() == []


def test_a_skipped_probe_is_reported_not_a_deviation(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [
                {
                    **step("trace", "skip", "probe"),
                    "tolerance": {"type": "range", "target": "found", "range": [1, 1]},
                }
            ]
        ),
        tmp_path,
    )
    assert_passed(journal)
    assert journal["redline"]["skipped"] == ["trace: no backend configured"]


# -- interruptions ------------------------------------------------------------------------


def test_ctrl_c_in_the_middle_of_the_method_rolls_back(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [
                step("inject", "inject", fault="a"),
                step("inject-b", "inject", fault="b"),
                step("ctrl-c", "ctrl_c"),
                step("never", "inject", fault="c"),
            ],
            rollbacks=[step("undo-a", "revert", fault="a")],
        ),
        tmp_path,
    )
    assert journal["status"] == "interrupted"
    assert journal["redline"]["interrupted_by"] == "SIGINT"
    assert fakes.CALLS == ["inject a", "inject b", "revert a", "undo b"]
    assert ACTIVE_FAULTS.in_force() == []


def test_sigterm_in_the_middle_of_the_method_rolls_back(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    journal = run(
        experiment(
            [step("inject", "inject", fault="a"), step("terminate", "terminate_me", seconds=5)],
            rollbacks=[step("undo-a", "revert", fault="a")],
        ),
        tmp_path,
    )
    assert journal["status"] == "interrupted"
    assert journal["redline"]["interrupted_by"] == "SIGTERM"
    assert "slept through SIGTERM" not in fakes.CALLS
    assert fakes.CALLS == ["inject a", "revert a"]
    assert signal.getsignal(signal.SIGTERM) is before, "the runner puts the handler back"


def test_ctrl_c_during_the_rollbacks_is_held_until_they_are_done(tmp_path: Path) -> None:
    journal = run(
        experiment(
            [step("inject-a", "inject", fault="a"), step("inject-b", "inject", fault="b")],
            rollbacks=[
                step("undo-a", "interrupt_during_rollback", fault="a"),
                step("undo-b", "revert", fault="b"),
            ],
        ),
        tmp_path,
    )
    assert fakes.CALLS == ["inject a", "inject b", "revert a", "revert b"]
    assert journal["redline"]["signals_held_during_rollback"] == ["SIGINT"]
    assert journal["status"] == "completed"


# -- tolerances ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "met", "why"),
    [
        (True, True, True, "value=True, expected True"),
        (0, 2, False, "value=2 is above 0 by 2"),
        (200, {"status": 503}, False, "value=503 is above 200 by 303"),
        ("closed", "open", False, "value='open', expected 'closed'"),
        ([0, 10], 11, False, "value=11 is above 10 by 1"),
        (["closed", "half_open"], "open", False, "expected one of ['closed', 'half_open']"),
        (
            {"type": "range", "range": [0.5, 1], "target": "rate"},
            {"rate": 0.25},
            False,
            "rate=0.25 is below 0.5 by 0.25",
        ),
        (
            {"type": "range", "range": [0, 15], "target": "seconds"},
            {"seconds": None},
            False,
            "seconds=None is not a number",
        ),
        ({"type": "regex", "pattern": "^ok"}, "ok then", True, "matches"),
        (
            {"type": "jsonpath", "path": "$.a.b[1]", "expect": 2},
            {"a": {"b": [1, 2]}},
            True,
            "$.a.b[1]=[2]",
        ),
    ],
)
def test_tolerances_judge_like_chaos_toolkit_and_explain(
    rule: Any, value: Any, met: bool, why: str
) -> None:
    got, explanation = tolerance.check(rule, value)
    assert got is met
    assert why in explanation


def test_a_probe_tolerance_calls_a_function_with_the_value(tmp_path: Path) -> None:
    rule = {**step("positive", "is_positive", "probe"), "type": "probe"}
    journal = run(
        experiment([{**step("v", "value", "probe", result=-1), "tolerance": rule}]), tmp_path
    )
    assert journal["deviated"] is True


def test_an_invalid_experiment_is_refused_before_anything_runs(tmp_path: Path) -> None:
    exp = experiment(
        [
            step("typo", "inject", falt="x"),
            {**step("gone", "no_such_function"), "type": "action"},
        ],
        hypothesis=[step("no-tolerance", "value", "probe", result=1)],
    )
    problems = validate(exp)
    assert "hypothesis/no-tolerance: a hypothesis probe needs a tolerance" in problems
    assert "method/typo: inject takes no ['falt']" in problems
    assert "method/typo: inject needs ['fault']" in problems
    assert "method/gone: tests.chaos.fakes has no function 'no_such_function'" in problems
    with pytest.raises(InvalidExperiment):
        run(exp, tmp_path)
    assert fakes.CALLS == []


def test_configuration_values_are_substituted_and_passed(tmp_path: Path) -> None:
    assert substitute({"path": "${run_dir}/x", "n": "${n}"}, {"run_dir": "/r", "n": 3}) == {
        "path": "/r/x",
        "n": 3,
    }
    journal = run(experiment([step("cfg", "echo_configuration", "probe", key="run_dir")]), tmp_path)
    assert journal["run"][0]["output"] == str(tmp_path / "run")


def test_configuration_comes_from_the_environment_then_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exp = {
        "configuration": {
            "a": {"type": "env", "key": "CHAOS_TEST_A", "default": "d"},
            "b": "literal",
        }
    }
    assert resolve_configuration(exp, {}) == {"a": "d", "b": "literal"}
    monkeypatch.setenv("CHAOS_TEST_A", "from-env")
    assert resolve_configuration(exp, {"b": "flag", "c": None}) == {"a": "from-env", "b": "flag"}


# -- Grafana annotations ------------------------------------------------------------------


class FakeGrafana:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                grafana.received.append({"path": self.path, **body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_every_step_becomes_a_grafana_annotation_when_grafana_is_configured(tmp_path: Path) -> None:
    grafana = FakeGrafana()
    try:
        journal = run(
            experiment([step("inject", "inject", fault="x"), step("revert", "revert", fault="x")]),
            tmp_path,
            grafana_url=grafana.url,
        )
    finally:
        grafana.server.shutdown()
    texts = [a["text"] for a in grafana.received]
    assert texts == [
        "before: always-fine",
        "method: inject",
        "method: revert",
        "after: always-fine",
        "experiment passed: a test experiment",
    ]
    assert all(a["path"] == "/api/annotations" and "chaos" in a["tags"] for a in grafana.received)
    assert all(a["timeEnd"] >= a["time"] for a in grafana.received)
    assert len(journal["redline"]["annotations"]) == 5


# -- the experiment files and the CLI ----------------------------------------------------


def test_every_experiment_file_is_valid_and_maps_its_fault_to_alert_panel_and_trace() -> None:
    import yaml

    files = experiment_files()
    assert len(files) >= 7
    for path in files:
        exp = yaml.safe_load(path.read_text())
        assert validate(exp) == [], path.name
        evidence = next(e for e in exp["extensions"] if e["name"] == "redline")
        assert {"fault", "alert", "dashboard", "trace"} <= set(evidence), path.name
        funcs = [a["provider"]["func"] for a in exp["method"]]
        # An experiment whose fault must page no one says so ("none: ...") and
        # checks that the alert stays quiet instead.
        alert_check = "alerts_firing" if evidence["alert"].startswith("none") else "alert_fires"
        for needed in (alert_check, "panel_shows", "trace_shows"):
            assert needed in funcs, f"{path.name} does not check its {needed}"


def test_redline_chaos_lists_the_experiments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redline", "chaos", "list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for path in experiment_files(EXPERIMENTS):
        assert path.stem in result.stdout
    assert "alert: CircuitBreakerOpen" in result.stdout


def test_running_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "run", "payments-slow", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"no running stack in {tmp_path}" in result.stderr
    assert "redline up" in result.stderr


def test_an_experiment_needing_replicas_is_refused_by_name_and_skipped_by_all(
    tmp_path: Path,
) -> None:
    """A single-instance stack: `run rolling-restart` says what it lacks; `--all` skips it."""
    import shutil

    from redline.state import write_state

    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_state(state_dir, {"ports": {}, "components": {"inventory": {"pid": 1}}})
    folder = tmp_path / "experiments"
    folder.mkdir()
    for name in ("replica-killed", "rolling-restart"):
        shutil.copy(EXPERIMENTS / f"{name}.yaml", folder)

    def chaos(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "redline", "chaos", "run", *args, "--dir", str(folder)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "REDLINE_STATE_DIR": str(state_dir)},
        )

    named = chaos("rolling-restart")
    assert named.returncode == 1
    assert named.stderr.strip().splitlines() == [
        "redline chaos: rolling-restart needs inventory-2, which this stack does not run "
        "(`redline up --replicas ...`, see the experiment's description)"
    ]
    everything = chaos("--all")
    assert "SKIP  replica-killed" in everything.stdout
    assert "SKIP  rolling-restart        needs inventory-2" in everything.stdout
    assert "PASS" not in everything.stdout
    assert "FAIL" not in everything.stdout


def test_a_trace_probe_that_finds_no_exemplar_says_how_many_requests_there_were(
    tmp_path: Path,
) -> None:
    """No exemplar since the mark: `observed` tells "no such request" from "no exemplar"."""
    from chaos.context import MARKS
    from chaos.probes.traces import trace_shows
    from redline.state import write_state

    asked: list[str] = []

    class Prometheus(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlsplit

            url = urlsplit(self.path)
            asked.append(parse_qs(url.query)["query"][0])
            data: Any = []
            if url.path == "/api/v1/query":
                data = {"resultType": "vector", "result": [{"metric": {}, "value": [0, "7"]}]}
            body = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        write_state(tmp_path, {"ports": {"prometheus": server.server_address[1]}})
        MARKS.set("outage")
        out = trace_shows(
            "http_server_request_duration_seconds",
            {"job": "inventory", "http_response_status_code": "503"},
            since_mark="outage",
            within=0.1,
            configuration={"redline_state_dir": str(tmp_path), "jaeger_url": "http://unused"},
        )
    finally:
        server.shutdown()
    assert out["found"] == 0
    assert out["exemplars"] == 0
    assert out["observed"] == 7.0
    assert asked[-1].startswith(
        'sum(increase(http_server_request_duration_seconds_count{job="inventory",'
        'http_response_status_code="503"}['
    )
