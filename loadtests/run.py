"""Run the load test headless with a named shape and keep everything in a run folder.

    python -m loadtests.run --host http://127.0.0.1:8000 --shape ramp --users 50 --duration 60s

(meant to be ``redline load ...``). The folder, ``runs/<UTC time>-<shape>/``,
receives Locust's HTML report (``report.html``), its CSV statistics
(``stats_stats.csv``, ``stats_stats_history.csv``, ``stats_failures.csv``,
``stats_exceptions.csv``), the slowest and failed requests with trace ids
(``traces.json``) and the exact Locust command (``command.txt``). The exit code
is Locust's: 0 when the run passed (its thresholds, if any were given;
otherwise no failure at all).

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
from dataclasses import dataclass
from pathlib import Path

from loadtests.options import DEFAULT_PROMETHEUS_PORT
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


def _duration(text: str) -> str:
    try:
        parse_timespan(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _host(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected http(s)://host:port, got {text!r}")
    return text.rstrip("/")


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
        "locust_args", nargs="*", metavar="-- LOCUST_ARG",
        help="anything after -- goes to Locust as is (e.g. -- --slowest 50)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redline load", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser


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
    folder = folder or _new_folder(args.runs_dir, args.shape)
    spawn_rate = args.spawn_rate or max(1.0, args.users / 10)
    command = [
        sys.executable, "-m", "locust",
        "--locustfile", str(LOCUSTFILE),
        "--headless",
        "--host", args.host,
        "--shape", args.shape,
        "--users", str(args.users),
        "--spawn-rate", f"{spawn_rate:g}",
        "--think-scale", f"{args.think_scale:g}",
        "--html", str(folder / "report.html"),
        "--csv", str(folder / "stats"),
        "--csv-full-history",
        "--trace-report", str(folder / "traces.json"),
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
    return Plan([*command, *args.locust_args], folder)


def run(args: argparse.Namespace) -> int:
    """Run the plan for ``args``; Locust's exit code."""
    p = plan(args)
    p.folder.mkdir(parents=True)
    (p.folder / "command.txt").write_text(shlex.join(p.command) + "\n", encoding="utf-8")
    print(f"redline load: {args.shape} against {args.host}, results in {p.folder}/", flush=True)
    proc = subprocess.Popen(p.command)
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
    return code


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
