"""Instructions per request on the hello route, counted by valgrind: plain vs instrumented.

The wall-clock benchmark (instrumentation_overhead.py) is the one the targets
are judged by, but on a shared virtual machine its rounds wander by ±20 %.
Instruction counts do not: callgrind counts every instruction the server
process executes (all threads, so the span exporter's too) while ``hey`` sends
a fixed number of requests, and the same build gives the same count to within
about 1 %. Use it to tell whether a change saved work; use the wall-clock
benchmark to tell what that is worth in requests per second (an instruction
in the request path costs more than one in a tight loop: caches are cold).

    .venv/bin/python benchmarks/instruction_counts.py [--requests 4096]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import SAMPLED_10, SAMPLED_100, otlp_env, wait_http

from tests.harness import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def count(app: str, env: dict[str, str], requests: int, workdir: Path) -> float:
    """Instructions per request for one hello_app variant under callgrind."""
    port = free_port()
    out = workdir / f"callgrind.{port}"
    server = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(HERE / "hello_app.py"),
            app,
            str(port),
        ],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/hello"
    try:
        wait_http(url, timeout=180, proc=server)  # Python under valgrind starts slowly
        hey = ["hey", "-c", "16", url]
        subprocess.run([*hey[:1], "-n", "600", *hey[1:]], check=True, capture_output=True)
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(server.pid)], check=True, capture_output=True)
        report = subprocess.run(
            [*hey[:1], "-n", str(requests), *hey[1:]], check=True, capture_output=True, text=True
        ).stdout
        subprocess.run([*control, "off", str(server.pid)], check=True, capture_output=True)
        ok = re.search(r"\[200\]\s+(\d+) responses", report)
        if not ok or int(ok.group(1)) != requests:
            raise SystemExit(f"benchmark: not every request to {app} answered 200:\n{report}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    totals = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise SystemExit(f"benchmark: no totals in {out}")
    return int(totals.group(1)) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=4096,
        help="requests counted per variant (a multiple of the exporter's 512-span batch)",
    )
    args = parser.parse_args()
    for tool, package in (("valgrind", "valgrind"), ("hey", "hey")):
        if not shutil.which(tool):
            raise SystemExit(f"benchmark: {tool} is not installed (Debian package {package})")

    sink_port = free_port()
    otlp = otlp_env(sink_port)
    variants = [
        ("plain", "plain", {}),
        (
            "instrumented, 100% sampled",
            "instrumented",
            SAMPLED_100,
        ),
        (
            "instrumented, 10% sampled",
            "instrumented",
            SAMPLED_10,
        ),
        (
            "instrumented, 0% sampled",
            "instrumented",
            {"OTEL_TRACES_SAMPLER": "parentbased_always_off"},
        ),
    ]
    sink = subprocess.Popen(
        [sys.executable, str(HERE / "otlp_sink.py"), str(sink_port), "--no-count"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: list[tuple[str, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="redline-callgrind-") as tmp:
            for name, app, env in variants:
                per_request = count(app, {**otlp, **env}, args.requests, Path(tmp))
                results.append((name, per_request))
                print(f"{name:<28} {per_request:>10,.0f} instructions/request", flush=True)
    finally:
        sink.terminate()
        sink.wait()

    base = results[0][1]
    print()
    print(f"hello route, {args.requests} requests per variant (hey -c 16), callgrind")
    print()
    print("| variant | instructions/request | added | ratio vs plain |")
    print("|---|---:|---:|---:|")
    for name, per_request in results:
        print(
            f"| {name} | {per_request:,.0f} | {per_request - base:+,.0f} | "
            f"{base / per_request:.2f}× |"
        )


if __name__ == "__main__":
    main()
