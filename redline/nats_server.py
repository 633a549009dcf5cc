"""NATS with JetStream, from Debian's ``nats-server`` package, as the stack runs it.

One server, JetStream on, its file store in the state folder, the monitoring
endpoint on its own port (``/healthz`` gates readiness: it answers 200 only
once JetStream is up; ``/varz``, ``/jsz`` for operators, and for
``redline/nats_exporter.py``, which Prometheus scrapes). ``redline up`` and
the tests build the same command lines here.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

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


def component(*, host: str, port: int, monitor_port: int, state_dir: Path, restart: bool) -> Any:
    """The supervisor's component for ``redline up``; None when nats-server is missing."""
    from redline.supervisor import Component

    path = binary()
    if path is None:
        return None
    store = state_dir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    return Component(
        name="nats",
        argv=command_line(path, host=host, port=port, monitor_port=monitor_port, store_dir=store),
        ready_url=health_url(host, monitor_port),
        url=f"nats://{host}:{port}",
        role=f"event bus (JetStream; monitoring http://{host}:{monitor_port})",
        restart=restart,
    )


# Prometheus's job for redline/nats_exporter.py, natively and in compose.
PROMETHEUS_JOB = "nats"


def exporter_component(*, host: str, port: int, monitor_port: int, restart: bool) -> Any:
    """The supervisor's component for the NATS exporter (``/metrics`` from ``/varz``, ``/jsz``)."""
    from redline.supervisor import Component

    return Component(
        name="nats-exporter",
        argv=[
            sys.executable,
            "-m",
            "redline.nats_exporter",
            "--monitor",
            f"http://{host}:{monitor_port}",
            "--host",
            host,
            "--port",
            str(port),
        ],
        ready_url=f"http://{host}:{port}/metrics",
        url=f"http://{host}:{port}/metrics",
        role="NATS's /varz and /jsz as Prometheus metrics (job nats)",
        cwd=str(Path(__file__).resolve().parent.parent),
        restart=restart,
    )


MISSING_HINT = "`nats-server` not installed: apt-get install nats-server (make up does)"
