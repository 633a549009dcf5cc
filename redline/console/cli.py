"""The console's commands: `redline top`, `alerts`, `logs`, `exemplars`, `trace`."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from redline.console import alerts, exemplars, logs, top, trace
from redline.console._sources import Alertmanager, Endpoints, Jaeger, Prometheus, SourceError
from redline.stack import StackError, log_dir

AddStateDir = Callable[[argparse.ArgumentParser], None]


def _endpoints(args: argparse.Namespace) -> Endpoints:
    return Endpoints.discover(
        Path(args.state_dir).resolve(),
        prometheus=getattr(args, "prometheus", None),
        alertmanager=getattr(args, "alertmanager", None),
        jaeger=getattr(args, "jaeger", None),
    )


def _duration(text: str) -> float:
    try:
        return logs.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_top(args: argparse.Namespace) -> int:
    ep = _endpoints(args)
    prom, am = Prometheus(ep.prometheus), Alertmanager(ep.alertmanager)
    try:
        collector = top.Collector(prom, am, window=args.window)
        return top.run(collector, interval=args.interval, once=args.once, as_json=args.json)
    finally:
        prom.close()
        am.close()


def cmd_alerts(args: argparse.Namespace) -> int:
    ep = _endpoints(args)
    prom, am = Prometheus(ep.prometheus), Alertmanager(ep.alertmanager)
    try:
        found, note = alerts.collect(prom, am)
    except SourceError as exc:
        raise StackError(str(exc)) from None
    finally:
        prom.close()
        am.close()
    if args.json:
        print(json.dumps([asdict(a) for a in found]))
    else:
        print("\n".join(alerts.lines(found)))
    if note:
        print(f"redline: {note}", file=sys.stderr)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    try:
        return logs.show(
            log_dir(state_dir),
            args.service,
            since=args.since,
            trace=args.trace,
            follow=args.follow,
            readable=False if args.json else None,
        )
    except ValueError as exc:
        raise StackError(str(exc)) from None
    except KeyboardInterrupt:
        return 0


def cmd_exemplars(args: argparse.Namespace) -> int:
    prom = Prometheus(_endpoints(args).prometheus)
    try:
        found = exemplars.collect(
            prom, args.route, args.service, since=args.since, limit=args.limit
        )
    except SourceError as exc:
        raise StackError(str(exc)) from None
    finally:
        prom.close()
    print("\n".join(exemplars.lines(found)))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    ep = _endpoints(args)
    jaeger = Jaeger(ep.jaeger)
    try:
        width = shutil.get_terminal_size((120, 24)).columns
        status, lines = trace.show(
            args.id, jaeger, log_dir(ep.state_dir), width=width, colour=sys.stdout.isatty()
        )
    finally:
        jaeger.close()
    stream = sys.stdout if status == 0 else sys.stderr
    print("\n".join(lines).rstrip("\n"), file=stream)
    return status


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], state_dir_arg: AddStateDir
) -> None:
    def backends(p: argparse.ArgumentParser, *names: str) -> None:
        for name in names:
            p.add_argument(
                f"--{name}",
                metavar="URL",
                help=f"{name} URL (default: $REDLINE_{name.upper()}_URL, else the running stack's)",
            )

    t = sub.add_parser(
        "top", help="live console: RED per service and route, SLOs, resilience, alerts"
    )
    state_dir_arg(t)
    backends(t, "prometheus", "alertmanager")
    t.add_argument("--interval", type=float, default=3.0, help="seconds between refreshes")
    t.add_argument("--window", default="1m", help="rate window (the dashboards' $__rate_interval)")
    t.add_argument("--once", action="store_true", help="print one snapshot as plain lines and exit")
    t.add_argument("--json", action="store_true", help="print snapshots as JSON lines")
    t.set_defaults(func=cmd_top)

    a = sub.add_parser("alerts", help="firing, pending and silenced alerts with their runbooks")
    state_dir_arg(a)
    backends(a, "prometheus", "alertmanager")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_alerts)

    lg = sub.add_parser("logs", help="the services' logs, merged; by trace, request or order id")
    state_dir_arg(lg)
    lg.add_argument("service", nargs="*", help="services or components (default: the services)")
    lg.add_argument("--trace", metavar="ID", help="a trace id (or prefix), request id or order id")
    lg.add_argument("--since", type=_duration, metavar="DURATION", help="e.g. 30s, 5m, 2h")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("--json", action="store_true", help="the lines as written, even on a terminal")
    lg.set_defaults(func=cmd_logs)

    e = sub.add_parser("exemplars", help="the slowest recent requests with a trace, slowest first")
    state_dir_arg(e)
    backends(e, "prometheus")
    e.add_argument("route", nargs="?", help="a route template or regex, e.g. /api/v1/orders")
    e.add_argument("--service", help="only this service's histogram")
    e.add_argument("--since", type=_duration, default=900.0, metavar="DURATION")
    e.add_argument("--limit", type=int, default=20)
    e.set_defaults(func=cmd_exemplars)

    tr = sub.add_parser("trace", help="a trace as a waterfall: by trace, request or order id")
    state_dir_arg(tr)
    backends(tr, "jaeger")
    tr.add_argument(
        "id", metavar="ID", help="a trace id (or 8-digit prefix), request id or order id"
    )
    tr.set_defaults(func=cmd_trace)
