"""NATS with JetStream, from Debian's ``nats-server`` package, as the stack runs it.

One server, JetStream on, its file store in the state folder, the monitoring
endpoint on its own port (``/healthz`` gates readiness: it answers 200 only
once JetStream is up; ``/varz``, ``/jsz`` for operators). ``redline up`` and
the tests build the same command line here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE = "nats-server"  # Debian's package, and the command it installs


def binary() -> str | None:
    """``nats-server`` on PATH, or where Debian installs it (``/usr/sbin``)."""
    return shutil.which(PACKAGE) or shutil.which(PACKAGE, path="/usr/sbin:/usr/local/sbin")


def command_line(
    binary_path: str, *, host: str, port: int, monitor_port: int, store_dir: Path
) -> list[str]:
    return [
        binary_path,
        "--addr",
        host,
        "--port",
        str(port),
        "--http_port",
        str(monitor_port),
        "--jetstream",
        "--store_dir",
        str(store_dir),
        "--server_name",
        "redline",
    ]


def health_url(host: str, monitor_port: int) -> str:
    return f"http://{host}:{monitor_port}/healthz"
