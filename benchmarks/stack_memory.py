"""Memory of the whole native stack at rest, and its time to first signal.

Starts `redline up --detach` on free ports in a throw-away state directory,
measures how long after the ready table Prometheus has data for every service,
lets the stack settle, prints each component's memory (PSS: shared pages split
among the processes sharing them, so PostgreSQL's shared buffers count once),
and stops it. The budget is 1.5 GB for PostgreSQL, the six services, NATS,
Prometheus, Alertmanager, the Collector and Jaeger together.

    .venv/bin/python benchmarks/stack_memory.py [--settle 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from redline.cli import memory
from redline.stack import DEFAULT_PORTS
from redline.state import read_state
from services.topology import SERVICES
from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
BUDGET_BYTES = 1.5 * 2**30
# Every port `redline up` may open (with the Collector and Jaeger when built).
PORTS = tuple(DEFAULT_PORTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--settle", type=float, default=20.0, help="seconds at rest before measuring"
    )
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="redline-mem-"))
    ports = {name: free_port() for name in PORTS}
    argv = [sys.executable, "-m", "redline", "up", "--detach", "--state-dir", str(state_dir)]
    for name, port in ports.items():
        argv += ["--port", f"{name}={port}"]
    started = time.monotonic()
    up = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        print(up.stdout + up.stderr, file=sys.stderr)
        return 1
    ready = time.monotonic()
    try:
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        first_signal = None
        while time.monotonic() - ready < 60:
            result = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up == 1"}).json()
            jobs = {r["metric"]["job"] for r in result["data"]["result"]}
            if set(SERVICES) <= jobs:
                first_signal = time.monotonic() - ready
                break
            time.sleep(0.25)
        time.sleep(args.settle)
        state = read_state(state_dir) or {}
        # The supervisor itself, without its children (counted below).
        import psutil

        supervisor = psutil.Process(state["pid"]).memory_full_info().pss
        rows = [("redline (supervisor)", supervisor)]
        for name, comp in state.get("components", {}).items():
            rows.append((name, memory(comp.get("pid"))))
        total = sum(m for _, m in rows)
        print(
            f"redline up: ready in {ready - started:.1f} s; every service in Prometheus "
            f"{first_signal:.1f} s after the ready table"
            if first_signal is not None
            else "redline up: a service never showed up in Prometheus within 60 s"
        )
        print()
        print(f"| component | memory (PSS, at rest after {args.settle:g} s) |")
        print("|---|---:|")
        for name, mem in rows:
            print(f"| {name} | {mem / 2**20:.0f} MiB |")
        print(
            f"| **total** | **{total / 2**20:.0f} MiB** (budget {BUDGET_BYTES / 2**30:.1f} GiB) |"
        )
        return 0 if total < BUDGET_BYTES and first_signal is not None else 1
    finally:
        subprocess.run(
            [sys.executable, "-m", "redline", "down", "--state-dir", str(state_dir)],
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )


if __name__ == "__main__":
    sys.exit(main())
