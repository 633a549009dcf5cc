"""Run the load test headless with a named shape and keep everything in a run folder.

    python -m loadtests.run --host http://127.0.0.1:8000 --shape ramp --users 50 --duration 60s

(meant to be ``redline load ...``). The folder, ``runs/<UTC time>-<shape>/``,
receives Locust's HTML report (``report.html``), its CSV statistics
(``stats_stats.csv``, ``stats_stats_history.csv``, ``stats_failures.csv``,
``stats_exceptions.csv``), the slowest and failed requests with trace ids
(``traces.json``), the exact Locust command (``command.txt``), the run's
window and response times for comparisons (``results.json``), the gateway's
own numbers over the run when Prometheus answers (``server.json``) and, with
``--baseline``, the comparison (``compare.html``). The exit code is Locust's:
0 when the run passed (its thresholds, if any were given; otherwise no
failure at all); with ``--baseline``, 1 also when an endpoint regressed.

Locust runs as a child process: it monkey-patches the interpreter with gevent
on import, which the caller's process must not suffer.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from loadtests import compare, server, tracing
from loadtests.open_model import PROCESSES
from loadtests.options import DEFAULT_PROMETHEUS_PORT
from loadtests.results import ResultsError
from loadtests.shapes import SHAPES, parse_timespan

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_HOST = os.environ.get("REDLINE_GATEWAY_URL", "http://127.0.0.1:8000")


@dataclass(frozen=True)
class Plan:
    command: list[str]
    folder: Path

    @property
    def html(self) -> Path:
        return self.folder / "report.html"

    @property
    def stats_csv(self) -> Path:
        return self.folder / "stats_stats.csv"

    @property
    def traces(self) -> Path:
        return self.folder / "traces.json"

    @property
    def results(self) -> Path:
        return self.folder / "results.json"


def _duration(text: str) -> str:
    try:
        parse_timespan(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def _host(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected http(s)://host:port, got {text!r}")
    return text.rstrip("/")


def _otlp_url(text: str) -> str:
    return text if text == "none" else _host(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``redline load`` (for wiring as a subcommand)."""
    parser.add_argument(
        "--host", type=_host, default=DEFAULT_HOST, help=f"gateway URL (default {DEFAULT_HOST})"
    )
    parser.add_argument("--shape", choices=SHAPES, default="steady", help="load shape")
    parser.add_argument("--users", "-u", type=int, default=10, help="peak simulated users")
    parser.add_argument(
        "--spawn-rate", "-r", type=float, default=None,
        help="users started per second (default: --users / 10; ramp, step, spike set their own)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", "-t", type=_duration, default=None,
        help="run time, e.g. 90s, 5m, 1h30m (default 60s; soak 1h)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=0,
        help="Locust worker processes on this machine (0: one process; -1: one per core)",
    )  # fmt: skip
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go")
    parser.add_argument(
        "--think-scale", type=float, default=1.0, help="scale think times (0: none)"
    )
    parser.add_argument("--jaeger-url", default="", help="Jaeger UI URL, for trace links")
    parser.add_argument(
        "--prometheus-port", type=int, default=DEFAULT_PROMETHEUS_PORT,
        help=f"Locust's metrics port (0: off; default {DEFAULT_PROMETHEUS_PORT})",
    )  # fmt: skip
    parser.add_argument("--prometheus-host", default="127.0.0.1")
    parser.add_argument("--max-error-ratio", default=None, help="fail above this (0.01 or 1%%)")
    parser.add_argument(
        "--max-p95", action="append", default=[], metavar="[METHOD ]NAME=DURATION",
        help='fail above this p95, e.g. "/api/v1/products=200ms" (repeatable)',
    )  # fmt: skip
    parser.add_argument(
        "--max-p99", action="append", default=[], metavar="[METHOD ]NAME=DURATION",
        help="as --max-p95, for p99",
    )  # fmt: skip
    parser.add_argument("--thresholds", type=Path, default=None, help="TOML thresholds file")
    parser.add_argument(
        "--rate-limited-ok", action="store_true", help="count 429 answers as expected"
    )
    parser.add_argument(
        "--live-stats", action="store_true", help="print Locust's table every few seconds"
    )
    parser.add_argument(
        "--open-rate", type=_positive, default=None, metavar="PER_SECOND",
        help="open model: offer this many requests per second, independent of response times "
        "(instead of the journeys' closed loop)",
    )  # fmt: skip
    parser.add_argument(
        "--arrivals", choices=PROCESSES, default="poisson",
        help="open model: poisson (exponential gaps, default) or constant inter-arrival times",
    )  # fmt: skip
    parser.add_argument(
        "--max-in-flight", type=int, default=256,
        help="open model: requests waiting at once; arrivals beyond are dropped and counted",
    )  # fmt: skip
    parser.add_argument(
        "--prometheus-url", default=None,
        help="read the gateway's RED numbers over the run's window from here into server.json "
        "(default: $REDLINE_PROMETHEUS_URL, else the running `redline up`'s, else :9090; "
        "skipped when it does not answer; 'none': never)",
    )  # fmt: skip
    parser.add_argument(
        "--otlp-endpoint", type=_otlp_url, default=None, metavar="URL",
        help="export each request's CLIENT span (the trace's root) to this OTLP/HTTP base URL "
        "(default: $OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, else the running `redline up`'s "
        "Collector, else none; 'none': no spans)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, default=None, metavar="RUN",
        help="after the run, compare it with this run folder and fail on a regression",
    )  # fmt: skip
    compare.add_gate_arguments(parser, jaeger=False)  # --jaeger-url is above
    parser.add_argument(
        "locust_args", nargs="*", metavar="-- LOCUST_ARG",
        help="anything after -- goes to Locust as is (e.g. -- --slowest 50)",
    )  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="redline load",
        description=__doc__.split("\n\n")[0],
        epilog="redline load compare BASELINE_RUN CURRENT_RUN: compare two runs "
        "(redline load compare --help)",
    )
    add_arguments(parser)
    return parser


def _open_users(processes: int) -> int:
    if processes < 0:
        return os.cpu_count() or 1
    return max(1, processes)


def _new_folder(runs_dir: Path, shape: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = runs_dir / f"{stamp}-{shape}"
    n = 2
    while folder.exists():
        folder = runs_dir / f"{stamp}-{shape}-{n}"
        n += 1
    return folder


def plan(args: argparse.Namespace, folder: Path | None = None) -> Plan:
    """The Locust command for ``args`` and the run folder it writes to (not yet created)."""
    folder = folder or _new_folder(args.runs_dir, "open" if args.open_rate else args.shape)
    users = args.users
    spawn_rate = args.spawn_rate or max(1.0, args.users / 10)
    if args.open_rate:
        # One arrival stream per Locust process, started at once; the rate is theirs to share.
        users = _open_users(args.processes)
        spawn_rate = float(users)
    command = [
        sys.executable, "-m", "locust",
        "--locustfile", str(LOCUSTFILE),
        "--headless",
        "--host", args.host,
        "--shape", args.shape,
        "--users", str(users),
        "--spawn-rate", f"{spawn_rate:g}",
        "--think-scale", f"{args.think_scale:g}",
        "--html", str(folder / "report.html"),
        "--csv", str(folder / "stats"),
        "--csv-full-history",
        "--trace-report", str(folder / "traces.json"),
        "--results", str(folder / "results.json"),
        "--prometheus-port", str(args.prometheus_port),
        "--prometheus-host", args.prometheus_host,
    ]  # fmt: skip
    if args.duration:
        command += ["--run-time", args.duration]
    if args.processes:
        command += ["--processes", str(args.processes)]
    if not args.live_stats:
        command.append("--only-summary")
    if args.jaeger_url:
        command += ["--jaeger-url", args.jaeger_url]
    if args.max_error_ratio is not None:
        command += ["--max-error-ratio", str(args.max_error_ratio)]
    for spec in args.max_p95:
        command += ["--max-p95", spec]
    for spec in args.max_p99:
        command += ["--max-p99", spec]
    if args.thresholds is not None:
        command += ["--thresholds", str(args.thresholds)]
    if args.rate_limited_ok:
        command.append("--rate-limited-ok")
    if args.open_rate:
        command += ["--open-rate", f"{args.open_rate:g}", "--arrivals", args.arrivals]
        command += ["--max-in-flight", str(args.max_in_flight)]
    return Plan([*command, *args.locust_args], folder)


def check(args: argparse.Namespace) -> None:
    """What can be wrong with the arguments, found before a run is spent; CompareError."""
    if args.open_rate and args.shape != "steady":
        raise compare.CompareError(
            f"--shape {args.shape}: the open model offers one constant rate (--open-rate); "
            "shapes are for the closed model"
        )
    if args.max_in_flight < 1:
        raise compare.CompareError(f"--max-in-flight {args.max_in_flight}: at least 1")
    if args.min_requests < 1:
        raise compare.CompareError(f"--min-requests {args.min_requests}: at least 1")
    if not 0.5 <= args.confidence < 1:
        raise compare.CompareError(f"--confidence {args.confidence:g}: between 0.5 and 1")
    if args.max_regression and args.baseline is None:
        raise compare.CompareError("--max-regression needs --baseline RUN")
    for spec in args.max_regression:
        compare.parse_allowance(spec)
    if args.baseline is not None:
        from loadtests import results

        results.load(args.baseline)


def _state_dir(env: Mapping[str, str] = os.environ) -> Path:
    from redline.stack import DEFAULT_STATE_DIR

    return Path(env.get("REDLINE_STATE_DIR", str(DEFAULT_STATE_DIR)))


def _stack_collector(env: Mapping[str, str]) -> str | None:
    """The running `redline up`'s Collector (OTLP/HTTP), from its state file; None if none runs."""
    from redline.state import pid_alive, read_state

    state = read_state(_state_dir(env)) or {}
    collector = (state.get("components") or {}).get("collector") or {}
    url = collector.get("url")
    return str(url) if url and pid_alive(collector.get("pid")) else None


def span_environment(
    given: str | None, env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], str | None]:
    """Locust's environment, and where its request spans go (None: nowhere).

    ``--otlp-endpoint`` (``none``: no spans), else the standard variables as
    they are (``OTEL_TRACES_EXPORTER=none`` and ``OTEL_SDK_DISABLED`` too), else
    the running stack's Collector.
    """
    env = dict(os.environ if env is None else env)
    if given == "none":
        for name in tracing.ENDPOINT_VARIABLES:
            env.pop(name, None)
        return env, None
    if not given:
        switched_off = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or (
            env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"
        )
        if switched_off or (endpoint := tracing.otlp_endpoint(env)) is not None:
            return env, None if switched_off else endpoint
        given = _stack_collector(env)
        if given is None:
            return env, None
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{given.rstrip('/')}/v1/traces"
    env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
    env["OTEL_TRACES_EXPORTER"] = "otlp"
    env.pop("OTEL_SDK_DISABLED", None)
    return env, env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]


def _stack_prometheus() -> str:
    """$REDLINE_PROMETHEUS_URL, else the running `redline up`'s Prometheus (its state file)."""
    from redline.console._sources import Endpoints

    return Endpoints.discover(_state_dir()).prometheus


def record_server_side(args: argparse.Namespace, p: Plan) -> None:
    """server.json: the gateway's numbers over the run's window, when Prometheus answers."""
    if args.prometheus_url in ("", "none") or not p.results.exists():
        return
    from loadtests import results

    url = args.prometheus_url or _stack_prometheus()
    r = results.load(p.results)
    try:
        doc = server.record(url, r.started_at, r.stopped_at)
    except server.SourceError as exc:
        print(f"redline load: no server-side numbers: {exc}", flush=True)
        return
    path = server.write(p.folder, doc)
    print(f"redline load: the gateway's RED numbers over the run in {path}", flush=True)


def gate(args: argparse.Namespace, p: Plan) -> int:
    """Compare with --baseline; 1 when an endpoint regressed beyond the allowance."""
    specs = args.max_regression or [compare.DEFAULT_ALLOWANCE]
    try:
        c, text = compare.run_comparison(
            args.baseline, p.folder, specs, confidence=args.confidence,
            html=args.html or p.folder / "compare.html", jaeger_url=args.jaeger_url,
            min_requests=args.min_requests,
        )  # fmt: skip
    except (compare.CompareError, ResultsError) as exc:
        print(f"redline load: cannot compare with the baseline: {exc}", flush=True)
        return 2
    print(text, flush=True)
    for line in compare.verdict_lines(c):
        print(line, flush=True)
    return 1 if c.regressed else 0


def run(args: argparse.Namespace) -> int:
    """Run the plan for ``args``; Locust's exit code (or the baseline gate's, when it fails)."""
    try:
        check(args)
    except (compare.CompareError, ResultsError) as exc:
        print(f"redline load: error: {exc}", file=sys.stderr)
        return 2
    p = plan(args)
    p.folder.mkdir(parents=True)
    (p.folder / "command.txt").write_text(shlex.join(p.command) + "\n", encoding="utf-8")
    model = f"open model {args.open_rate:g}/s" if args.open_rate else args.shape
    print(f"redline load: {model} against {args.host}, results in {p.folder}/", flush=True)
    env, spans_to = span_environment(args.otlp_endpoint)
    if spans_to is not None:
        print(f"redline load: request spans ({tracing.SERVICE_NAME}) to {spans_to}", flush=True)
    proc = subprocess.Popen(p.command, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached Locust too; it stops and still writes its reports.
        code = proc.wait()
    finally:
        if proc.poll() is None:  # we are failing for another reason: do not leave it running
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"redline load: exit code {code}; report {p.html}", flush=True)
    record_server_side(args, p)
    if args.baseline is not None and p.results.exists():
        gate_code = gate(args, p)
        code = code or gate_code
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
