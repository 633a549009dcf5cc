"""Runs Chaos Toolkit experiment files directly, so CI needs no ``chaos`` CLI.

The order is Chaos Toolkit's with ``--rollback-strategy always``: the
steady-state hypothesis, the method, the hypothesis again, then the rollbacks
— whatever happened before them, including an interruption (Ctrl-C, SIGTERM)
or a hypothesis that failed at the start. Two additions, both recorded in the
journal under ``redline``:

* a method probe that carries a ``tolerance`` is judged, as hypothesis probes
  are ("the breaker opened within 15 s"); a violated one deviates the
  experiment. (Chaos Toolkit records method probes without judging them.)
* after the rollbacks, any fault still in ``chaos.context.ACTIVE_FAULTS`` —
  a rollback that failed, was forgotten, or never ran — is reverted, and the
  journal says which.

Signals: SIGTERM is turned into an interruption like SIGINT's
KeyboardInterrupt; while rollbacks run, both are held back (counted, not
acted on), so a second Ctrl-C cannot leave a fault in place.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import platform
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from chaos import tolerance as tolerances
from chaos.context import ACTIVE_FAULTS, MARKS, Configuration
from chaos.grafana import Annotator
from chaos.probes import ProbeSkipped

Log = Callable[[str], None]
VERSION = "1"


class InvalidExperiment(ValueError):
    pass


class Interrupted(BaseException):
    """A termination signal arrived during the experiment."""


class ExperimentFailed(AssertionError):
    """For tests: the experiment's verdict, with every violation spelled out."""


def load_experiment(path: Path) -> dict[str, Any]:
    text = Path(path).read_text()
    data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise InvalidExperiment(f"{path}: an experiment is a mapping")
    return data


# -- validation ---------------------------------------------------------------------------


def _function(provider: dict[str, Any]) -> Callable[..., Any]:
    if provider.get("type") != "python":
        raise InvalidExperiment(
            f"only python providers are supported, not {provider.get('type')!r}"
        )
    module = importlib.import_module(provider["module"])
    func = getattr(module, provider["func"], None)
    if not callable(func):
        raise InvalidExperiment(f"{provider['module']} has no function {provider['func']!r}")
    found: Callable[..., Any] = func
    return found


def validate(experiment: dict[str, Any]) -> list[str]:
    """What is wrong with an experiment, before anything runs (empty when nothing)."""
    problems = [
        f"missing {key!r}" for key in ("title", "description", "method") if key not in experiment
    ]
    hypothesis = experiment.get("steady-state-hypothesis", {})
    activities = [
        *(("hypothesis", a) for a in hypothesis.get("probes", [])),
        *(("method", a) for a in experiment.get("method", [])),
        *(("rollbacks", a) for a in experiment.get("rollbacks", [])),
    ]
    for where, activity in activities:
        name = activity.get("name", "?")
        if activity.get("type") not in ("probe", "action"):
            problems.append(f"{where}/{name}: type must be probe or action")
        if where == "hypothesis" and "tolerance" not in activity:
            problems.append(f"{where}/{name}: a hypothesis probe needs a tolerance")
        if "tolerance" in activity:
            problems += [f"{where}/{name}: {p}" for p in tolerances.validate(activity["tolerance"])]
        try:
            func = _function(activity.get("provider", {}))
        except (InvalidExperiment, ImportError, KeyError) as exc:
            problems.append(f"{where}/{name}: {exc}")
            continue
        arguments = set(activity["provider"].get("arguments", {}))
        params = inspect.signature(func).parameters
        unknown = arguments - set(params)
        if unknown:
            problems.append(f"{where}/{name}: {func.__name__} takes no {sorted(unknown)}")
        missing = {
            p.name
            for p in params.values()
            if p.default is inspect.Parameter.empty and p.name not in ("configuration", "value")
        } - arguments
        if missing:
            problems.append(f"{where}/{name}: {func.__name__} needs {sorted(missing)}")
    return problems


# -- running activities -------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def substitute(value: Any, configuration: Configuration) -> Any:
    """``${name}`` in strings, from the configuration (Chaos Toolkit's substitution)."""
    if isinstance(value, str):
        whole = _VARIABLE.fullmatch(value)
        if whole and whole.group(1) in configuration:
            return configuration[whole.group(1)]
        return _VARIABLE.sub(lambda m: str(configuration.get(m.group(1), m.group(0))), value)
    if isinstance(value, dict):
        return {k: substitute(v, configuration) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, configuration) for v in value]
    return value


def call_provider(
    provider: dict[str, Any], configuration: Configuration, extra: dict[str, Any] | None = None
) -> Any:
    func = _function(provider)
    arguments = substitute(dict(provider.get("arguments", {})), configuration)
    arguments.update(extra or {})
    if "configuration" in inspect.signature(func).parameters:
        arguments["configuration"] = dict(configuration)
    return func(**arguments)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _short(value: Any, limit: int = 240) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Run:
    """One experiment run: the journal it fills in, and how it reports as it goes."""

    def __init__(
        self,
        experiment: dict[str, Any],
        configuration: Configuration,
        run_dir: Path,
        log: Log,
    ) -> None:
        self.experiment = experiment
        self.configuration = dict(configuration)
        self.configuration["run_dir"] = str(run_dir)
        self.run_dir = run_dir
        self.log = log
        self.started = time.time()
        self.grafana = Annotator.from_configuration(self.configuration, experiment.get("title", ""))
        self.journal: dict[str, Any] = {
            "chaoslib-version": None,
            "platform": platform.platform(),
            "node": platform.node(),
            "experiment": experiment,
            "start": _now(),
            "status": None,
            "deviated": False,
            "steady_states": {"before": None, "after": None, "during": []},
            "run": [],
            "rollbacks": [],
            "redline": {
                "runner": VERSION,
                "run_dir": str(run_dir),
                "violations": [],
                "failures": [],
                "skipped": [],
                "safety_net": [],
                "annotations": [],
            },
        }

    @property
    def notes(self) -> dict[str, Any]:
        notes: dict[str, Any] = self.journal["redline"]
        return notes

    def _offset(self) -> str:
        return f"t+{time.time() - self.started:5.1f}s"

    def execute(self, activity: dict[str, Any], phase: str) -> dict[str, Any]:
        """Run one activity; judge its tolerance if it has one. Interruptions propagate."""
        name = activity.get("name", "?")
        pauses = activity.get("pauses", {}) or {}
        if pauses.get("before"):
            time.sleep(float(pauses["before"]))
        run: dict[str, Any] = {"activity": activity, "output": None, "start": _now()}
        began = time.time()
        self.log(f"{self._offset()} {phase:<9} {activity.get('type', '?'):<6} {name}")
        try:
            run["output"] = call_provider(activity["provider"], self.configuration)
            run["status"] = "succeeded"
        except ProbeSkipped as exc:
            run["status"] = "skipped"
            run["skipped"] = str(exc)
            self.notes["skipped"].append(f"{name}: {exc}")
        except Exception as exc:
            run["status"] = "failed"
            run["exception"] = traceback.format_exception_only(type(exc), exc)
        finally:
            run["end"] = _now()
            run["duration"] = round(time.time() - began, 3)
            run["t"] = round(began - self.started, 3)
        if phase != "rollback":
            self.grafana.annotate(
                f"{phase}: {name}", [phase, activity.get("type", "")], began, time.time()
            )
        if run["status"] == "failed":
            error = run["exception"][-1].strip()
            self.log(f"             ✘ {activity.get('type')} failed: {error}")
            if phase in ("before", "after"):
                # A probe that cannot answer does not show the steady state.
                self.notes["violations"].append(f"[{phase}] probe {name!r} failed: {error}")
            elif phase == "method":
                self.notes["failures"].append(f"{name}: {activity.get('type')} failed: {error}")
        elif run["status"] == "skipped":
            self.log(f"             - skipped: {run['skipped']}")
        elif "tolerance" in activity:
            met, why = tolerances.check(activity["tolerance"], run["output"], self._tolerance_probe)
            run["tolerance_met"] = met
            run["verdict"] = why
            self.log(f"             {'✔' if met else '✘'} {why}")
            if not met:
                self.notes["violations"].append(f"[{phase}] probe {name!r}: {why}")
        elif run["output"] is not None:
            self.log(f"             → {_short(run['output'], 160)}")
        return run

    def _tolerance_probe(self, tolerance: dict[str, Any], value: Any) -> Any:
        return call_provider(tolerance["provider"], self.configuration, {"value": value})

    def hypothesis(self, phase: str) -> bool:
        hypothesis = self.experiment.get("steady-state-hypothesis")
        if not hypothesis:
            return True
        state: dict[str, Any] = {"steady_state_met": None, "probes": []}
        self.journal["steady_states"][phase] = state
        self.log(f"{self._offset()} steady state ({phase}): {hypothesis.get('title', '')}")
        met = True
        for probe in hypothesis.get("probes", []):
            run = self.execute(probe, phase)
            state["probes"].append(run)
            met = met and run["status"] == "succeeded" and bool(run.get("tolerance_met"))
        state["steady_state_met"] = met
        return met

    def method(self) -> None:
        background: list[tuple[threading.Thread, dict[str, Any]]] = []
        for activity in self.experiment.get("method", []):
            if activity.get("background"):
                holder: dict[str, Any] = {}

                def run_in_background(
                    a: dict[str, Any] = activity, h: dict[str, Any] = holder
                ) -> None:
                    h["run"] = self.execute(a, "method")

                thread = threading.Thread(target=run_in_background, daemon=True)
                thread.start()
                background.append((thread, holder))
                continue
            self.journal["run"].append(self.execute(activity, "method"))
            pause = (activity.get("pauses") or {}).get("after")
            if pause:
                time.sleep(float(pause))
        for thread, holder in background:
            thread.join()
            if "run" in holder:
                self.journal["run"].append(holder["run"])

    def rollbacks(self) -> None:
        for activity in self.experiment.get("rollbacks", []):
            self.journal["rollbacks"].append(self.execute(activity, "rollback"))
        leftovers = ACTIVE_FAULTS.revert_all()
        if leftovers:
            self.notes["safety_net"] = leftovers
            for entry in leftovers:
                failed = f" (failed: {entry['error']})" if "error" in entry else ""
                self.log(f"             safety net reverted: {entry['description']}{failed}")


@contextlib.contextmanager
def _signals(run: Run) -> Iterator[Callable[[], None]]:
    """SIGINT and SIGTERM interrupt; ``shield()`` then holds both back (for rollbacks).

    SIGINT gets a handler of its own too: a run started as a background job of
    a shell script inherits SIGINT ignored, and Python then never raises
    ``KeyboardInterrupt``; a ``kill -INT`` must still roll the faults back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    def held(signum: int, frame: FrameType | None) -> None:
        run.notes.setdefault("signals_held_during_rollback", []).append(signal.Signals(signum).name)

    def shield() -> None:
        signal.signal(signal.SIGINT, held)
        signal.signal(signal.SIGTERM, held)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield shield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_experiment(
    experiment: dict[str, Any],
    configuration: Configuration,
    run_dir: Path,
    *,
    log: Log = print,
) -> dict[str, Any]:
    """Run one experiment; write ``journal.json`` and ``report.md`` into ``run_dir``."""
    from chaos.report import write_report

    problems = validate(experiment)
    if problems:
        raise InvalidExperiment("; ".join(problems))
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(experiment, configuration, run_dir, log)
    MARKS.clear()
    MARKS.set("experiment-start", run.started)
    log(f"experiment: {experiment['title']}")
    with _signals(run) as shield:
        try:
            if run.hypothesis("before"):
                run.method()
                after = run.hypothesis("after")
                # Deviated: the system did not behave as the hypothesis says, during or after.
                run.journal["deviated"] = not after or bool(run.notes["violations"])
                run.journal["status"] = "failed" if run.notes["failures"] else "completed"
            else:
                run.journal["status"] = "failed"
                run.notes["violations"].insert(
                    0, "the steady state did not hold before the method ran"
                )
        except (KeyboardInterrupt, Interrupted) as exc:
            run.journal["status"] = "interrupted"
            run.notes["interrupted_by"] = str(exc) or "SIGINT"
            log(f"{run._offset()} interrupted ({run.notes['interrupted_by']}): rolling back")
        finally:
            shield()
            run.rollbacks()
    run.notes["marks"] = {name: MARKS.get(name) for name in MARKS.names()}
    run.journal["end"] = _now()
    run.journal["duration"] = round(time.time() - run.started, 3)
    run.notes["passed"] = run.journal["status"] == "completed" and not run.journal["deviated"]
    run.grafana.annotate(
        f"experiment {'passed' if run.notes['passed'] else 'FAILED'}: {experiment['title']}",
        ["experiment"],
        run.started,
        time.time(),
    )
    run.notes["annotations"] = run.grafana.written
    (run_dir / "journal.json").write_text(json.dumps(run.journal, indent=2, default=str))
    write_report(run.journal, run_dir / "report.md")
    verdict = "PASSED" if run.notes["passed"] else f"FAILED ({run.journal['status']})"
    log(f"verdict: {verdict} — {experiment['title']} ({run.journal['duration']:.1f}s)")
    for line in run.notes["violations"] + run.notes["failures"]:
        log(f"  ✘ {line}")
    return run.journal


def assert_passed(journal: dict[str, Any]) -> None:
    """Raise ``ExperimentFailed`` naming every violated probe and failed activity."""
    notes = journal["redline"]
    if notes["passed"]:
        return
    lines = [f"experiment {journal['experiment']['title']!r} {journal['status']}"]
    lines += [f"  {v}" for v in notes["violations"] + notes["failures"]]
    lines.append(f"  journal: {notes['run_dir']}/journal.json")
    raise ExperimentFailed("\n".join(lines))


def outputs(journal: dict[str, Any]) -> dict[str, Any]:
    """Every activity's output by name; hypothesis probes as ``before:<name>``, ``after:<name>``."""
    found: dict[str, Any] = {}
    for phase in ("before", "after"):
        state = journal["steady_states"].get(phase) or {}
        for run in state.get("probes", []):
            found[f"{phase}:{run['activity']['name']}"] = run.get("output")
    for run in journal["run"] + journal["rollbacks"]:
        found[run["activity"]["name"]] = run.get("output")
    return found
