"""The ``redline`` command: run the platform, look at it, load it, break it."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from redline.console.cli import add_commands as add_console_commands
from redline.stack import (
    DEFAULT_PORTS,
    DEFAULT_STATE_DIR,
    StackError,
    StackOptions,
    run_foreground,
)
from redline.state import pid_alive, read_state, state_file
from services.topology import MAX_REPLICAS, SERVICES, instance_of


def _replicas(value: str | None) -> dict[str, int]:
    """``inventory=2,orders=2`` -> {"inventory": 2, "orders": 2}."""
    out: dict[str, int] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        name, sep, count = item.strip().partition("=")
        if not sep or name not in SERVICES or not count.isdigit():
            raise StackError(
                f"--replicas {value!r}: expected SERVICE=N[,...] with SERVICE one of "
                f"{', '.join(SERVICES)}"
            )
        if not 1 <= int(count) <= MAX_REPLICAS:
            raise StackError(f"--replicas {item!r}: N must be within 1..{MAX_REPLICAS}")
        out[name] = int(count)
    return out


def _ports(values: list[str], replicas: dict[str, int] | None = None) -> dict[str, int]:
    ports = dict(DEFAULT_PORTS)
    for value in values:
        name, sep, port = value.partition("=")
        # A replica's port (inventory-2, inventory-2-ops) once --replicas names it.
        instance = instance_of(name.removesuffix("-ops"))
        replica = instance is not None and instance[1] <= (replicas or {}).get(instance[0], 1)
        known_name = name in ports or replica
        if not sep or not known_name or not port.isdigit() or not 0 < int(port) < 65536:
            known = ", ".join(sorted(ports))
            raise StackError(
                f"--port {value!r}: expected NAME=PORT with NAME one of {known} "
                "(or a replica's, e.g. inventory-2, inventory-2-ops)"
            )
        ports[name] = int(port)
    return ports


def _service_env(values: list[str]) -> dict[str, dict[str, str]]:
    """``--env orders:REDLINE_PAYMENTS_URL=http://127.0.0.1:9999`` → {"orders": {...}}."""
    out: dict[str, dict[str, str]] = {}
    for value in values:
        service, sep, assignment = value.partition(":")
        name, eq, setting = assignment.partition("=")
        if not sep or not eq or not name or service not in SERVICES:
            raise StackError(
                f"--env {value!r}: expected SERVICE:NAME=VALUE with SERVICE one of "
                f"{', '.join(SERVICES)}"
            )
        out.setdefault(service, {})[name] = setting
    return out


def _scrape(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        job, sep, target = value.partition("=")
        host, colon, port = target.rpartition(":")
        if not sep or not job or not colon or not host or not port.isdigit():
            raise StackError(f"--scrape {value!r}: expected JOB=HOST:PORT")
        out[job] = target
    return out


def _options(args: argparse.Namespace) -> StackOptions:
    replicas = _replicas(args.replicas)
    return StackOptions(
        state_dir=Path(args.state_dir).resolve(),
        host=args.host,
        ports=_ports(args.port, replicas),
        replicas=replicas,
        database_url=args.database_url,
        rules_profile=args.rules,
        otlp_endpoint=args.otlp_endpoint,
        trace_sample_percent=args.trace_sample_percent,
        scrape_interval=args.scrape_interval,
        restart=not args.no_restart,
        admin_token=os.environ.get("REDLINE_ADMIN_TOKEN"),
        with_prometheus=not args.no_prometheus,
        service_env=_service_env(args.env),
        alert_webhook=args.alert_webhook,
        extra_scrape=_scrape(args.scrape),
    )


def cmd_up(args: argparse.Namespace) -> int:
    options = _options(args)
    if not args.detach:
        return run_foreground(options, json_logs=args.json)
    # Detached: the same command in its own session, logging to a file; wait for "ready".
    state = read_state(options.state_dir)
    if state and pid_alive(state.get("pid")):
        raise StackError(
            f"a stack is already running from {options.state_dir} (pid {state['pid']}); "
            "see `redline status`, stop it with `redline down`"
        )
    options.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.state_dir / "stack.log"
    argv = [sys.executable, "-m", "redline", *[a for a in args.raw_argv if a != "--detach"]]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = read_state(options.state_dir)
        if state and state.get("pid") == proc.pid and state.get("status") == "ready":
            _print_table(state)
            print(f"Logs: {log_path}   Stop: redline down --state-dir {options.state_dir}")
            return 0
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise StackError(f"the stack exited with {proc.returncode}: {' | '.join(tail)}")
        time.sleep(0.2)
    raise StackError(f"the stack was not ready within {args.timeout:g}s; see {log_path}")


def _print_table(state: dict[str, Any]) -> None:
    rows = state.get("table", [])
    width = max((len(r[0]) for r in rows), default=10)
    uwidth = max((len(r[1]) for r in rows), default=20)
    print("Redline is up:")
    for name, url, what in rows:
        print(f"  {name:<{width}}  {url:<{uwidth}}  {what}")
    for skipped in state.get("skipped", []):
        print(f"  not started: {skipped['name']}: {skipped['hint']}")


def memory(pid: int | None, *, children: bool = True) -> int:
    """Memory of a process and its descendants, in bytes: PSS where readable, else RSS.

    PSS (proportional set size) splits shared pages among the processes that
    share them, so PostgreSQL's shared buffers are counted once across its
    backends instead of once per backend, as RSS would.
    """
    if not pid:
        return 0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += p.memory_info().rss
    return total


def _uptime(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _create_time(pid: int | None) -> float | None:
    try:
        return psutil.Process(pid).create_time() if pid else None
    except psutil.Error:
        return None


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    if not state or not pid_alive(state.get("pid")):
        print(f"redline: no stack running from {state_dir}")
        return 3
    now = time.time()
    print(f"Stack pid {state['pid']}, {state['status']}, up {_uptime(now - state['started_at'])}")
    # The supervisor's own process (it also runs the alert sink); its children are rows below.
    total = memory(state["pid"], children=False)
    rows = [
        (
            "supervisor",
            state["pid"],
            "running",
            "-",
            0,
            _uptime(now - state["started_at"]),
            total,
            "",
        )
    ]
    for name, comp in state["components"].items():
        alive = pid_alive(comp.get("pid"))
        ready = "-"
        if alive and comp.get("ready_url"):
            try:
                ready = (
                    "ready"
                    if httpx.get(comp["ready_url"], timeout=1).status_code == 200
                    else "not ready"
                )
            except httpx.HTTPError:
                ready = "no answer"
        rss = memory(comp.get("pid")) if alive else 0
        total += rss
        started = comp.get("started_at") or _create_time(comp.get("pid"))
        rows.append(
            (
                name,
                comp.get("pid") or "-",
                "running" if alive else "down",
                ready,
                comp.get("restarts", 0),
                _uptime(now - started) if alive and started else "-",
                rss,
                comp.get("url") or "",
            )
        )
    print(
        f"  {'component':<14} {'pid':>7} {'process':<8} {'probe':<10} {'restarts':>8} "
        f"{'uptime':>8} {'memory':>9}  url"
    )
    for name, pid, proc_state, ready, restarts, up, rss, url in rows:
        print(
            f"  {name:<14} {pid!s:>7} {proc_state:<8} {ready:<10} {restarts:>8} {up:>8} "
            f"{rss / 2**20:8.1f}M  {url}"
        )
    print(f"  {'total':<14} {'':>7} {'':<8} {'':<10} {'':>8} {'':>8} {total / 2**20:8.1f}M")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    """Restart a service's instances: all at once, or ``--rolling`` one at a time."""
    from redline.restart import restart_service

    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    if not state or not pid_alive(state.get("pid")):
        print(f"redline: no stack running from {state_dir}")
        return 3
    restart_service(state_dir, args.service, rolling=args.rolling, timeout=args.timeout, say=print)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    pid = state.get("pid") if state else None
    if not pid or not pid_alive(pid):
        print(f"redline: no stack running from {state_dir}")
        state_file(state_dir).unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise StackError(f"the stack (pid {pid}) did not stop within {args.timeout:g}s")
        time.sleep(0.2)
    print("redline: stopped")
    return 0


def cmd_load(argv: list[str]) -> int:
    from loadtests.run import main as load_main

    return load_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redline",
        description="Run the Redline platform on this machine, look at it, load it, break it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def state_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            default=os.environ.get("REDLINE_STATE_DIR", str(DEFAULT_STATE_DIR)),
            help="where the stack keeps its data, configs and state file (default: .redline)",
        )

    up = sub.add_parser("up", help="start PostgreSQL, the services, Prometheus and Alertmanager")
    state_dir_arg(up)
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help=f"override a port (names: {', '.join(DEFAULT_PORTS)})",
    )
    up.add_argument(
        "--replicas",
        default=None,
        metavar="SERVICE=N,...",
        help="run N instances of a service, e.g. inventory=2,orders=2,payments=2 "
        "(replica k: component SERVICE-k on the service's port + 10*(k-1)); "
        "dependents balance over them",
    )
    up.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="use this PostgreSQL server instead of the embedded one",
    )
    up.add_argument(
        "--rules",
        choices=["normal", "compressed"],
        default="normal",
        help="alert windows: production, or compressed to minutes for demos",
    )
    up.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        help="send spans here instead of the local Collector (then no Collector or Jaeger runs)",
    )
    up.add_argument(
        "--trace-sample-percent",
        type=float,
        default=10.0,
        metavar="P",
        help="share of ordinary traces Jaeger keeps; errors, slow requests, cancelled "
        "orders and exemplars' traces are always kept (default: 10)",
    )
    up.add_argument("--scrape-interval", default="2s")
    up.add_argument(
        "--alert-webhook",
        default=None,
        metavar="URL",
        help="send Alertmanager notifications here (default: print them in this log)",
    )
    up.add_argument(
        "--scrape",
        action="append",
        default=[],
        metavar="JOB=HOST:PORT",
        help="an extra Prometheus scrape job, e.g. a Locust exporter",
    )
    up.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="SERVICE:NAME=VALUE",
        help="set an environment variable for one service (e.g. to route a dependency via a proxy)",
    )
    up.add_argument(
        "--json", action="store_true", help="show the services' log lines as JSON on a terminal too"
    )
    up.add_argument("--no-restart", action="store_true", help="do not restart crashed processes")
    up.add_argument("--no-prometheus", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--timeout", type=float, default=120.0, help="--detach: how long to wait")
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="what runs, whether it is ready, how much memory")
    state_dir_arg(status)
    status.set_defaults(func=cmd_status)

    restart = sub.add_parser(
        "restart",
        help="restart a service's instances (--rolling: one at a time, each drained, "
        "the next once it is ready)",
    )
    state_dir_arg(restart)
    restart.add_argument("service", choices=list(SERVICES))
    restart.add_argument("--rolling", action="store_true", help="one instance at a time")
    restart.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per instance to be ready again"
    )
    restart.set_defaults(func=cmd_restart)

    down = sub.add_parser("down", help="stop a detached stack")
    state_dir_arg(down)
    down.add_argument("--timeout", type=float, default=60.0)
    down.set_defaults(func=cmd_down)

    add_console_commands(sub, state_dir_arg)

    sub.add_parser(
        "load", help="run a Locust load test (see `redline load --help`)", add_help=False
    )
    sub.add_parser(
        "chaos", help="run chaos experiments (see `redline chaos --help`)", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["load"]:
            sys.exit(cmd_load(argv[1:]))
        if argv[:1] == ["chaos"]:
            from chaos.cli import main as chaos_main

            sys.exit(chaos_main(argv[1:]))
        args = build_parser().parse_args(argv)
        args.raw_argv = argv
        sys.exit(args.func(args))
    except StackError as exc:
        print(f"redline: {exc}", file=sys.stderr)
        sys.exit(1)
