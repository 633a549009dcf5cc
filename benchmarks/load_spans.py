"""What the load generator's own span per request costs it: Locust's CPU per request.

One Locust process (pinned to CPU 0), closed loop as fast as it goes, against a
static responder (CPU 1), through the load test's request path and listeners
(``RedlineUser.call``, the trace recorder; benchmarks/locust_load_spans.py):

* ``main``: main's loadtests (a hand-made traceparent per request), from
  ``git archive main`` into a temporary folder;
* ``no spans``: this branch without an OTLP endpoint (the same hand-made ids);
* ``spans``: this branch exporting a CLIENT span per request over OTLP/HTTP to
  benchmarks/otlp_sink.py (``--no-count``);
* ``spans, 2 processes``: the same with ``--processes 2``.

Then one run of each span variant against a counting sink checks one span per
request Locust counted (within one per user, at the stop): every worker exports.

First, the trace context alone, in a loop (gevent-patched, as under Locust): µs of
CPU per request to start and end the span and, with spans, to export it.

Rounds interleave the variants; medians. CPU is Locust's process tree after
its start-up; µs per request = cores / requests per second.

    .venv/bin/python benchmarks/load_spans.py [--rounds 3] [--seconds 8] [--users 16]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
from _report import wait_http
from locust_throughput import WARMUP_SECONDS, TreeCpu, pinned, static_responder

from tests.harness import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCUSTFILE = "benchmarks/locust_load_spans.py"


def run(
    cwd: Path, host: str, seconds: float, users: int, env: dict[str, str], processes: int = 0
) -> tuple[float, float, int]:
    """(requests/s, Locust's cores, requests) of one run."""
    with tempfile.TemporaryDirectory(prefix="redline-bench-") as tmp:
        argv = [
            sys.executable, "-m", "locust", "--locustfile", LOCUSTFILE, "--headless",
            "--host", host, "--users", str(users), "--spawn-rate", str(users),
            "--run-time", f"{seconds:g}s", "--csv", f"{tmp}/s", "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "0", "--prometheus-port", "0",
        ]  # fmt: skip
        if processes:
            argv += ["--processes", str(processes)]
        argv = [*(pinned("0", argv) if not processes else argv), "ProductPage"]
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cpu = TreeCpu(proc.pid)
        started = time.monotonic()
        first = last = None
        while proc.poll() is None:
            sample = (time.monotonic(), cpu())
            if sample[0] - started >= WARMUP_SECONDS:
                first, last = first or sample, sample
            time.sleep(0.5)
        assert first is not None
        assert last is not None
        with open(f"{tmp}/s_stats.csv", newline="") as f:
            total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    cores = (last[1] - first[1]) / (last[0] - first[0])
    return float(total["Requests/s"]), cores, int(total["Request Count"])


MICRO = r"""
import sys, time
from gevent import monkey; monkey.patch_all()  # as under Locust
from loadtests import tracing
tracer = tracing.configure()
n = int(sys.argv[1])
host, path = "http://127.0.0.1:8000", "/api/v1/products/17"
start = time.process_time()
for i in range(n):
    request = tracer.start("GET", "/api/v1/products/{product_id}", host, path)
    request.slowest = i % 20 == 0
    tracer.end(request, 200)
    if i % 256 == 0:
        time.sleep(0)  # the export greenlet's turn, as Locust's I/O gives it
tracer.shutdown()  # the rest exported: all of it counted
print((time.process_time() - start) / n * 1e6)
"""


def micro(env: dict[str, str], n: int = 20000) -> float:
    """µs of CPU per request for the trace context alone (and, with spans, their export)."""
    out = subprocess.run(
        [sys.executable, "-c", MICRO, str(n)], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args()
    main_copy = Path(tempfile.mkdtemp(prefix="redline-bench-main-"))
    archive = subprocess.run(["git", "archive", "main"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(main_copy)], input=archive.stdout, check=True)
    (main_copy / LOCUSTFILE).write_text((ROOT / LOCUSTFILE).read_text())
    # Counting parses every request on the responder's core: the timed rounds send to a
    # sink that does not; a last run checks the counts.
    sinks, urls = [], []
    for extra in (["--no-count"], []):
        port = free_port()
        sink_argv = [sys.executable, str(HERE / "otlp_sink.py"), str(port), *extra]
        sinks.append(subprocess.Popen(pinned("1", sink_argv)))
        urls.append(f"http://127.0.0.1:{port}")
    spans = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{urls[0]}/v1/traces"}
    variants = {
        "main": (main_copy, {}, 0),
        "no spans": (ROOT, {}, 0),
        "spans": (ROOT, spans, 0),
        "spans, 2 processes": (ROOT, spans, 2),
    }
    us: dict[str, list[float]] = defaultdict(list)
    rps: dict[str, list[float]] = defaultdict(list)
    try:
        for url, sink in zip(urls, sinks, strict=True):
            wait_http(f"{url}/spans", 30, sink)
        alone: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            alone["no spans"].append(micro({}))
            alone["spans"].append(micro(spans))
        print(
            "the trace context alone, µs CPU per request (medians): "
            + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in alone.items()),
            flush=True,
        )
        with static_responder() as stub:
            for r in range(args.rounds):
                names = list(variants) if r % 2 == 0 else list(variants)[::-1]
                for name in names:
                    cwd, env, processes = variants[name]
                    rate, cores, _ = run(cwd, stub, args.seconds, args.users, env, processes)
                    if not rate:
                        print(f"round {r + 1} {name}: no requests counted; left out", flush=True)
                        continue
                    us[name].append(cores / rate * 1e6)
                    rps[name].append(rate)
                    print(
                        f"round {r + 1} {name}: {rate:.0f} rps, {cores:.2f} cores, "
                        f"{cores / rate * 1e6:.0f} µs CPU per request",
                        flush=True,
                    )
            for processes in (0, 2):
                counting = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{urls[1]}/v1/traces"}
                before = int(httpx.get(f"{urls[1]}/spans").text)
                _, _, count = run(ROOT, stub, 4, args.users, counting, processes)
                exported = int(httpx.get(f"{urls[1]}/spans").text) - before
                # Within one per user: at the stop, a request cut off ends its span but is
                # not counted by Locust, and a worker counts a few more than it sent.
                if abs(exported - count) > args.users:
                    raise SystemExit(f"{exported} spans for {count} requests ({processes=})")
                print(f"--processes {processes}: {exported} spans for {count} requests")
    finally:
        for sink in sinks:
            sink.terminate()
            sink.wait()
    base = statistics.median(us["main"])
    print(
        f"\nmedians of {args.rounds} rounds, {os.cpu_count()} cores shared with other work "
        f"(load average {os.getloadavg()[0]:.1f}):"
    )
    print(f"{'variant':<20} {'rps':>7} {'µs CPU/request':>15} {'vs main':>8}")
    for name in variants:
        m = statistics.median(us[name])
        print(f"{name:<20} {statistics.median(rps[name]):>7.0f} {m:>15.0f} {m / base:>8.2f}")


if __name__ == "__main__":
    main()
