"""Redline's load test: ``locust -f loadtests/locustfile.py --host http://127.0.0.1:8000``.

The users are in :mod:`loadtests.journeys`; this file wires Redline's
additions into Locust's events:

- ``--shape``: one ``LoadTestShape`` (Locust allows one per file) that
  delegates to the profile named on the command line (:mod:`loadtests.shapes`);
  ``--shape none`` removes it, leaving Locust's own ``-u``/``-r``/``-t``.
- trace ids of the slowest and failed requests (:mod:`loadtests.tracing`):
  workers ship theirs with every stats report, the master merges; printed and
  written (``--trace-report``, default ``<--csv>_traces.json``) at the end.
  With an OTLP endpoint in the environment, each process that sends requests
  (the local one, or each worker) also exports a CLIENT span per request, marked
  ``redline.load.slowest`` when the request entered the slowest lists, so a tail
  sampler keeps every trace listed; flushed as the process quits.
- commit → mail delays of the notifications the journeys listed
  (:mod:`loadtests.notification_delays`): shipped and merged the same way;
  their p50/p95/p99 printed and written with the trace report.
- Prometheus metrics on ``--prometheus-port`` (:mod:`loadtests.metrics`),
  from the master or the single local process.
- thresholds (:mod:`loadtests.thresholds`): broken ones set the exit code and
  end the output with one line saying why.

See loadtests/README.md for the command lines.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.runners import MasterRunner, WorkerRunner

from loadtests import (
    metrics,
    notification_delays,
    open_model,
    options,
    results,
    shapes,
    summary,
    thresholds,
    tracing,
)
from loadtests.arrivals import LAG, OpenArrivals
from loadtests.journeys import Browser, Shopper
from loadtests.timeline import Timeline
from loadtests.tracing import TraceRecorder

# Locust runs the User and LoadTestShape classes it finds among this module's names
# (_on_init keeps either the journeys or, with --open-rate, the open model's user).
__all__ = ["Browser", "OpenArrivals", "SelectedShape", "Shopper"]

_log = logging.getLogger("redline.loadtest")
MESSAGE_KEY = "redline_traces"
LAG_KEY = "redline_open_model"
TIMELINE_KEY = "redline_timeline"
DELAYS_KEY = "redline_notification_delays"
FINAL_REPORTS_TIMEOUT = 10.0


def _profile(parsed: Any) -> shapes.Profile:
    return shapes.profile(
        parsed.shape,
        users=int(parsed.num_users or 1),
        spawn_rate=float(parsed.spawn_rate) if parsed.spawn_rate else None,
        duration=shapes.parse_timespan(parsed.run_time) if parsed.run_time else None,
        steps=int(parsed.shape_steps),
    )


class SelectedShape(LoadTestShape):
    """The ``--shape`` profile, built when a run starts (the web UI may have changed -u/-r/-t)."""

    use_common_options = True

    # LoadTestShape's methods are unannotated, hence the ignores.
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._profile: shapes.Profile | None = None

    def reset_time(self) -> None:
        super().reset_time()  # type: ignore[no-untyped-call]
        self._profile = None

    def tick(self) -> tuple[int, float] | None:
        if self._profile is None:
            assert self.runner is not None
            self._profile = _profile(self.runner.environment.parsed_options)
        return self._profile.tick(self.get_run_time())  # type: ignore[no-untyped-call]


@dataclass
class _Run:
    recorder: TraceRecorder = field(default_factory=TraceRecorder)
    timeline: Timeline = field(default_factory=Timeline)
    limits: thresholds.Thresholds = field(default_factory=thresholds.Thresholds)
    worker_requests: dict[str, int] = field(default_factory=dict)
    exporter: Any = None
    verdict: str = ""
    started_at: float = 0.0
    stopped_at: float = 0.0


RUN = _Run()


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    """``hook.add_listener(handler)``; Locust's EventHook is unannotated."""
    hook.add_listener(handler)


def _fatal(message: str) -> None:
    print(f"redline: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _add_options(parser: Any, **_: Any) -> None:
    options.add_arguments(parser)


def _on_init(environment: Any, runner: Any, **_: Any) -> None:
    parsed = environment.parsed_options
    if parsed is None:  # used as a library, without Locust's command line
        return
    RUN.recorder = TraceRecorder(parsed.slowest, parsed.failures_listed)
    if not isinstance(runner, MasterRunner):  # the processes that send requests
        try:
            tracing.configure()
        except ValueError as exc:  # telemetry's ConfigError: a bad OTEL_* value
            _fatal(f"request spans: {exc}")
    if parsed.shape == "none":
        environment.shape_class = None
    else:
        try:
            _profile(parsed)
        except ValueError as exc:
            _fatal(str(exc))
    try:
        RUN.limits = thresholds.from_options(
            max_error_ratio=parsed.max_error_ratio,
            max_p95=parsed.max_p95,
            max_p99=parsed.max_p99,
            file=parsed.thresholds or None,
        )
    except thresholds.ThresholdError as exc:
        _fatal(f"thresholds: {exc}")
    if isinstance(runner, WorkerRunner):
        # Workers keep every class: the master picks which ones run, by name.
        _listen(events.report_to_master, _ship_traces)
        return
    _select_users(environment, parsed)
    if isinstance(runner, MasterRunner):
        _listen(events.worker_report, _receive_traces)
        _quit_after_final_reports(runner)
    if parsed.prometheus_port:
        try:
            RUN.exporter = metrics.serve(
                environment, parsed.prometheus_port, parsed.prometheus_host, lag=LAG
            )
        except OSError as exc:
            _fatal(f"--prometheus-port {parsed.prometheus_port}: {exc}")
        _log.info(
            "Prometheus metrics on http://%s:%s/metrics",
            parsed.prometheus_host,
            parsed.prometheus_port,
        )


def _select_users(environment: Any, parsed: Any) -> None:
    """The journeys (closed model), or with ``--open-rate`` the arrival streams (open model)."""
    if parsed.open_rate and parsed.open_rate < 0:
        _fatal(f"--open-rate must be positive, got {parsed.open_rate:g}")
    if parsed.max_in_flight < 1:
        _fatal(f"--max-in-flight must be at least 1, got {parsed.max_in_flight}")
    if parsed.open_rate:
        environment.user_classes = [OpenArrivals]
        # Each stream offers its share; forwarded to workers with the other custom options.
        parsed.open_users = max(1, int(parsed.num_users or 1))
    else:
        environment.user_classes = [c for c in environment.user_classes if c is not OpenArrivals]


def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response: Any,
    context: dict[str, Any] | None,
    exception: BaseException | None,
    start_time: float,
    **_: Any,
) -> None:
    context = context or {}
    slowest = RUN.recorder.observe(
        response_time or 0.0,
        request_type,
        name,
        int(getattr(response, "status_code", 0) or 0),
        context.get("trace_id", ""),
        start_time,
        None if exception is None else str(exception)[:300],
    )
    if slowest and (trace := context.get("trace")) is not None:
        trace.slowest = True  # its span, ended after this, asks the tail sampler to keep it
    RUN.timeline.observe(request_type, name, start_time, response_time or 0.0)


def _on_test_start(**_: Any) -> None:
    RUN.recorder.reset()
    RUN.recorder.requests = 0
    RUN.worker_requests.clear()
    LAG.reset()
    RUN.timeline.reset()
    RUN.started_at, RUN.stopped_at = time.time(), 0.0
    notification_delays.RECORDER.reset()


def _on_test_stop(**_: Any) -> None:
    RUN.stopped_at = time.time()


def _ship_traces(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data[MESSAGE_KEY] = RUN.recorder.drain()
    data[TIMELINE_KEY] = RUN.timeline.drain()
    if LAG.scheduled:
        data[LAG_KEY] = LAG.drain()
    data[DELAYS_KEY] = notification_delays.RECORDER.drain()


def _receive_traces(client_id: str, data: dict[str, Any], **_: Any) -> None:
    notification_delays.RECORDER.merge(data.get(DELAYS_KEY) or [])
    payload = data.get(MESSAGE_KEY)
    if payload:
        RUN.recorder.merge(payload)
        RUN.worker_requests[client_id] = int(payload.get("requests", 0))
    if lag := data.get(LAG_KEY):
        LAG.merge(lag)
    if timeline := data.get(TIMELINE_KEY):
        RUN.timeline.merge(timeline)


def _quit_after_final_reports(runner: Any) -> None:
    """Make the master wait for every worker's last stats before it quits.

    Locust's master sends "quit" and allows 0.5 s for the workers' final
    reports; on a busy machine they come later and the run's totals lose
    requests. A worker sends its final stats and only then its own "quit", so:
    ask first, wait until every worker has quit (bounded), then quit as usual.
    """
    locust_quit = runner.quit

    def quit() -> None:
        if runner.clients.all:
            runner.send_message("quit")
            deadline = time.monotonic() + FINAL_REPORTS_TIMEOUT
            while runner.clients.all and time.monotonic() < deadline:
                time.sleep(0.05)  # gevent's sleep: Locust patched time, messages get through
        locust_quit()

    runner.quit = quit


def _trace_report_path(parsed: Any) -> Path | None:
    if parsed.trace_report:
        return Path(parsed.trace_report)
    if parsed.csv_prefix:
        return Path(f"{parsed.csv_prefix}_traces.json")
    return None


def _results_path(parsed: Any) -> Path | None:
    if parsed.results:
        return Path(parsed.results)
    if parsed.csv_prefix:
        return Path(f"{parsed.csv_prefix}_results.json")
    return None


def _write_results(environment: Any, parsed: Any) -> None:
    """The open model's line, and results.json for `redline load compare`."""
    started = RUN.started_at or time.time()
    stopped = RUN.stopped_at or time.time()
    open_report = None
    if parsed.open_rate:
        since = LAG.offering_since or started
        open_report = open_model.report(
            LAG, parsed.open_rate, parsed.arrivals, stopped - since, parsed.max_in_flight
        )
        print(open_report.line(), flush=True)
    path = _results_path(parsed)
    if path is None:
        return
    meta = {
        "host": environment.host,
        "model": "open" if parsed.open_rate else "closed",
        "shape": parsed.shape,
        "users": parsed.num_users,
        "open_model": open_report.to_json() if open_report else None,
    }
    entries = list(environment.stats.entries.values())
    doc = results.to_json(
        entries, started_at=started, stopped_at=stopped, meta=meta, timeline=RUN.timeline
    )
    results.write(path, doc)


def _on_quitting(environment: Any, **_: Any) -> None:
    # The last request spans, before the process ends.
    if (exported := tracing.TRACER.shutdown()) is not None:
        print(f"redline: {exported}", flush=True)
    parsed = environment.parsed_options
    runner = environment.runner
    if parsed is None or runner is None:
        return
    if isinstance(runner, WorkerRunner):
        print(f"redline: this worker made {RUN.recorder.requests} requests", flush=True)
        return
    report = summary.report(RUN.recorder, parsed.jaeger_url)
    report["notification_delay"] = notification_delays.RECORDER.summary()
    print(summary.render(report), flush=True)
    print(notification_delays.render(report["notification_delay"]), flush=True)
    path = _trace_report_path(parsed)
    if path is not None:
        summary.write(path, report)
        print(f"redline: slowest and failed requests with trace ids in {path}", flush=True)
    _write_results(environment, parsed)
    if isinstance(runner, MasterRunner) and RUN.worker_requests:
        counts = sorted(RUN.worker_requests.values())
        print(
            f"redline: {len(counts)} workers made "
            f"{' + '.join(map(str, counts))} = {sum(counts)} requests",
            flush=True,
        )
    _judge(environment, runner, parsed)


def _judge(environment: Any, runner: Any, parsed: Any) -> None:
    if not RUN.limits:
        return
    stats = environment.stats
    broken = thresholds.evaluate(RUN.limits, list(stats.entries.values()), stats.total)
    RUN.verdict = thresholds.verdict(broken, len(RUN.limits))
    if broken:
        environment.process_exit_code = parsed.exit_code_on_error or 1
    elif runner.exceptions:
        # Within the thresholds, but the locustfile itself crashed: Locust fails the run.
        RUN.verdict += f", but user code raised {len(runner.exceptions)} kind(s) of exception"
    else:
        environment.process_exit_code = 0  # failures within the allowed ratio pass


def _on_quit(**_: Any) -> None:
    # After Locust's own tables, so the verdict is the last line of the output.
    if RUN.verdict:
        print(RUN.verdict, flush=True)


_listen(events.init_command_line_parser, _add_options)
_listen(events.init, _on_init)
_listen(events.request, _on_request)
_listen(events.test_start, _on_test_start)
_listen(events.test_stop, _on_test_stop)
_listen(events.quitting, _on_quitting)
_listen(events.quit, _on_quit)
