"""What the benchmarks share: waiting for a server, CPU time, the OTLP sink, the ratio table."""

from __future__ import annotations

import contextlib
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import psutil

# The two samplings the overhead targets are stated for.
SAMPLED_100 = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
SAMPLED_10 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
# Telemetry at the minimum configuration allows: no span recorded (an unsampled
# parent-based root, no exporter) and no access line. The RED metrics, the
# request id and the middleware stay: the plugin cannot be configured away.
TELEMETRY_MINIMUM = {
    "OTEL_TRACES_SAMPLER": "parentbased_always_off",
    "OTEL_TRACES_EXPORTER": "none",
    "REDLINE_LOG_LEVEL": "WARNING",
}


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; a one-line exit if it does not (or ``proc`` dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"benchmark: {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"benchmark: {url} did not answer within {timeout}s")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds a process has used, all its threads (this one by default).

    This process's own from getrusage, to the microsecond; another's from
    /proc through psutil, to the clock tick (10 ms): count enough requests.
    """
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def otlp_env(sink_port: int) -> dict[str, str]:
    """Export spans over OTLP/HTTP to benchmarks/otlp_sink.py on this port."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
    }


@contextlib.contextmanager
def otlp_sink(*flags: str) -> Iterator[int]:
    """``otlp_sink.py`` on a free port (``flags``: e.g. ``--no-count``), ready; yields
    the port and stops the sink on the way out."""
    from tests.harness import free_port

    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("otlp_sink.py")), str(port), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/spans", proc=sink)
        yield port
    finally:
        sink.terminate()
        sink.wait()


def print_ratio_table(title: str, unit: str, results: Mapping[str, Sequence[float]]) -> None:
    """Each entry's median, and its ratio to the first entry's (the baseline)."""
    base = statistics.median(next(iter(results.values())))
    print(f"| {title} | {unit} | ratio |")
    print("|---|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / base:.2f}× |")
