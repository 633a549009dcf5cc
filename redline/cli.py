"""The ``redline`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from redline.supervisor import Component, StartupError, Supervisor
from services.chassis import database_name
from services.chassis.db import ensure_database
from services.chassis.pgserver import EmbeddedPostgres, EmbeddedPostgresError

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".redline"

# Start order: every service after the ones it calls.
SERVICES: list[tuple[str, int]] = [("inventory", 8002)]


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmd_up(args: argparse.Namespace) -> int:
    sup = Supervisor()
    host = args.host
    wanted = {name: port for name, port in SERVICES}
    pg: EmbeddedPostgres | None = None
    if not args.database_url:
        pg = EmbeddedPostgres(STATE_DIR / "pgdata", port=args.pg_port, host=host)
        if not pg.running():  # a server left by an earlier run is reused
            wanted["postgres"] = args.pg_port
    for name, port in wanted.items():
        if not _port_free(host, port):
            print(f"redline: port {port} ({name}) is already in use", file=sys.stderr)
            return 1

    stop = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rows: list[tuple[str, str]] = []
    try:
        if pg is None:
            base = args.database_url.rsplit("/", 1)[0]
        else:
            sup.say(f"starting embedded PostgreSQL in {pg.data_dir}")
            pg.ensure_running()
            base = pg.dsn().rsplit("/", 1)[0]
            rows.append(("postgres", f"postgresql://postgres@{host}:{args.pg_port}"))
        for name, port in SERVICES:
            dsn = f"{base}/{database_name(name)}"
            asyncio.run(ensure_database(f"{base}/postgres", database_name(name)))
            url = f"http://{host}:{port}"
            sup.start(
                Component(
                    name=name,
                    argv=[sys.executable, "-m", f"services.{name}"],
                    env={
                        "REDLINE_HOST": host,
                        "REDLINE_PORT": str(port),
                        "DATABASE_URL": dsn,
                        "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
                    },
                    ready_url=f"{url}/health/ready",
                    url=url,
                ),
            )
            rows.append((name, url))
        sup.say("ready:")
        for name, where in rows:
            sup.say(f"  {name:<12} {where}")
        while not stop.wait(0.5):
            exited = sup.first_exited()
            if exited is not None:
                sup.say(f"{exited.name} exited unexpectedly; stopping everything")
                break
        return 0
    except (StartupError, EmbeddedPostgresError) as exc:
        sup.say(f"error: {exc}")
        return 1
    finally:
        sup.say("stopping")
        sup.stop_all(lambda c, code: sup.say(f"stopped {c.name} (exit {code})"))
        if pg is not None:
            pg.stop()
            sup.say("stopped postgres")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="redline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the platform in the foreground")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--pg-port", type=int, default=54329)
    up.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    up.set_defaults(func=cmd_up)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))
