"""How fast one Locust process can send requests here, and what 2 service workers buy.

1. Locust's ceiling: one Locust process against a static responder (a raw
   asyncio protocol, no framework) pinned to the other core, as a bare
   ``FastHttpUser`` and through the load test's own request path
   (``RedlineUser.call``: traceparent, status checks).
2. The platform: a product page (``GET /api/v1/products/{product_id}``:
   gateway -> inventory -> one indexed query) with gateway and inventory under
   ``uvicorn --workers 1`` vs ``2``, Locust as 1 process vs ``--processes 2``.
3. Coordinated omission: Locust is closed-loop (a user sends its next request
   only after the answer), so when the server slows down it sends less and its
   percentiles look better than what a stream of independent users would see.
   Compared at Locust's maximum rate and at 70% of it with two fixed-rate
   generators: a wrk2-style open loop (here, asyncio: request i is due at
   i/rate and its latency counts from then, so a stall shows in every request
   it delays) and ``hey -q`` (many workers at 5/s each; their ticks are in step,
   so its "fixed rate" arrives in bursts of one request per worker). Then the
   textbook case: the gateway frozen (SIGSTOP) for a second mid-run. Locust's
   users each wait on one request and send nothing else, so the stall costs
   them one slow request apiece; the open loop counts every request that fell
   due during it.

Rounds interleave the variants so machine noise hits all alike; medians are
reported. Locust's CPU is sampled from its process tree after start-up, so
"rps per Locust core" is its steady-state cost. Everything shares this
machine's cores (and whatever else runs on it): the numbers are relative, not
a capacity plan. Rate limits are lifted (one load generator is one client IP).
With ``--workers 2`` each uvicorn worker has its own Prometheus registry, and a
scrape reads whichever worker answers (prometheus-client's multiprocess mode,
the fix, drops exemplars): why the services run one worker per process by
design, and why this is only a benchmark.

    .venv/bin/python benchmarks/locust_throughput.py [--rounds 3] [--seconds 10] [--users 16]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import io
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from _report import wait_http

from services.chassis.db import ensure_database
from tests.conftest import throwaway_postgres
from tests.harness import Platform, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCUSTFILE = HERE / "locust_product_page.py"
PRODUCT_ID = 17
PATH = f"/api/v1/products/{PRODUCT_ID}"
UNLIMITED = {
    "REDLINE_RATE_LIMIT_IP_PER_SECOND": "1000000",
    "REDLINE_RATE_LIMIT_IP_BURST": "1000000",
    "REDLINE_RATE_LIMIT_USER_PER_SECOND": "1000000",
    "REDLINE_RATE_LIMIT_USER_BURST": "1000000",
}
FACTORIES = {"gateway": "services.gateway.app:create", "inventory": "services.inventory.app:create"}
# hey's per-worker rate: slow enough that one late answer delays only its own worker.
HEY_WORKER_RATE = 5
# Locust's import and start-up are not load generation: CPU is sampled after this.
WARMUP_SECONDS = 2.5
LOCUST_CPU, STUB_CPU = "0", "1"
STALL_SECONDS = 1.0


@dataclass(frozen=True)
class Sample:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failures: int
    client_cores: float  # the load generator's steady-state CPU, in cores
    machine_busy: float  # share of all cores busy over the same window


def pinned(cpu: str, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *argv]
    return argv


def _machine() -> tuple[float, float]:
    t = psutil.cpu_times()
    return t.idle + getattr(t, "iowait", 0.0), sum(t)


class TreeCpu:
    """CPU seconds of a process and its descendants, keeping what exited children used."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, float] = {}

    def __call__(self) -> float:
        for p in (self.root, *self.root.children(recursive=True)):
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            self.seen[p.pid] = t.user + t.system
        return sum(self.seen.values())


def run_sampled(argv: list[str]) -> tuple[str, float, float]:
    """Run ``argv``; (stdout, its steady-state cores, machine busy share) after the warm-up."""
    with tempfile.TemporaryFile() as out:
        # A file, not a pipe: nothing is read until the end, and a full pipe would block it.
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL)
        cpu = TreeCpu(proc.pid)
        started = time.monotonic()
        first: tuple[float, float, tuple[float, float]] | None = None
        last = first
        while proc.poll() is None:
            try:
                sample = (time.monotonic(), cpu(), _machine())
            except psutil.NoSuchProcess:
                break
            if sample[0] - started >= WARMUP_SECONDS:
                first = first or sample
                last = sample
            time.sleep(0.5)  # sampling is not free on a 2-core machine
        proc.wait()
        out.seek(0)
        text = out.read().decode()
    if proc.returncode:
        raise SystemExit(f"benchmark: {argv[:4]}... exited with {proc.returncode}")
    if first is None or last is None or last[0] - first[0] < 1:
        return text, 0.0, 0.0
    span = last[0] - first[0]
    idle = last[2][0] - first[2][0]
    total = last[2][1] - first[2][1]
    return text, (last[1] - first[1]) / span, (1 - idle / total) if total else 0.0


Run = Callable[[], Sample]


def locust(
    host: str,
    *,
    seconds: float,
    users: int,
    processes: int = 1,
    user_rate: float = 0,
    user_class: str = "ProductPage",
    cpu: str | None = None,
) -> Run:
    def run() -> Sample:
        with tempfile.TemporaryDirectory(prefix="redline-bench-") as tmp:
            argv = [
                sys.executable, "-m", "locust", "--locustfile", str(LOCUSTFILE), "--headless",
                "--host", host, "--users", str(users), "--spawn-rate", str(users),
                "--run-time", f"{seconds:g}s", "--csv", f"{tmp}/s", "--only-summary",
                "--loglevel", "WARNING", "--user-rate", f"{user_rate:g}",
                "--exit-code-on-error", "0",
            ]  # fmt: skip
            if processes > 1:
                argv += ["--processes", str(processes)]
            argv.append(user_class)
            _, cores, busy = run_sampled(pinned(cpu, argv) if cpu else argv)
            with open(f"{tmp}/s_stats.csv", newline="") as f:
                total = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
        return Sample(
            float(total["Requests/s"]), float(total["50%"]), float(total["95%"]),
            float(total["99%"]), int(total["Failure Count"]), cores, busy,
        )  # fmt: skip

    return run


def hey(url: str, *, seconds: float, rate: float) -> Run:
    """hey at ``rate`` requests/s; percentiles of the 200s, other answers counted as failures."""

    def run() -> Sample:
        workers = max(1, round(rate / HEY_WORKER_RATE))
        argv = ["hey", "-z", f"{seconds:g}s", "-c", str(workers), "-q", str(HEY_WORKER_RATE)]
        out, cores, busy = run_sampled([*argv, "-o", "csv", url])
        rows = list(csv.DictReader(io.StringIO(out)))
        ok = [float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200"]
        sample = _from_latencies(ok, len(rows), seconds, f"hey at {rate:.0f}/s")
        return dataclasses.replace(sample, client_cores=cores, machine_busy=busy)

    return run


class _Connections:
    """Keep-alive connections for the open-loop generator, opened on demand, at most ``cap``."""

    def __init__(self, host: str, port: int, cap: int = 512) -> None:
        self.host, self.port, self.cap, self.opened = host, port, cap, 0
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.cap:
            self.opened += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.opened -= 1
                raise
        return await self.idle.get()


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = re.search(r"(?im)^content-length:\s*(\d+)", head)
    if length:
        await reader.readexactly(int(length[1]))
    elif re.search(r"(?im)^transfer-encoding:\s*chunked", head):
        while size := int((await reader.readline()).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    return status


async def _open_loop(url: str, rate: float, seconds: float) -> list[tuple[float, int]]:
    """wrk2-style: request i is due at start + i/rate, sent then whatever came back before,
    and its latency counts from when it was due, so a stall shows in every request it delays."""
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    request = f"GET {split.path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    pool = _Connections(host, port)
    loop = asyncio.get_running_loop()
    results: list[tuple[float, int]] = []

    async def one(due: float) -> None:
        try:
            reader, writer = await pool.take()
        except OSError:
            results.append((loop.time() - due, 0))
            return
        try:
            writer.write(request)
            status = await _read_status(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            pool.opened -= 1
            results.append((loop.time() - due, 0))
            return
        results.append((loop.time() - due, status))
        pool.idle.put_nowait((reader, writer))

    start = loop.time() + 0.2
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    while not pool.idle.empty():
        pool.idle.get_nowait()[1].close()
    return results


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _from_latencies(ms: list[float], answered: int, seconds: float, what: str) -> Sample:
    """A sample from the 200s' latencies; the other answers count as failures."""
    ok = sorted(ms)
    if not ok:
        raise SystemExit(f"benchmark: no successful answers from {what}")
    return Sample(
        len(ok) / seconds, _percentile(ok, 0.5), _percentile(ok, 0.95), _percentile(ok, 0.99),
        answered - len(ok), 0.0, 0.0,
    )  # fmt: skip


def open_loop(url: str, *, seconds: float, rate: float) -> Run:
    """A fixed-rate open stream (in this process); percentiles of the 200s."""

    def run() -> Sample:
        results = asyncio.run(_open_loop(url, rate, seconds))
        ok = [latency * 1000 for latency, status in results if status == 200]
        return _from_latencies(ok, len(results), seconds, f"the open loop at {rate:.0f}/s")

    return run


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def served(platform: Platform, workers: int, log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Gateway and inventory under ``uvicorn --workers N`` on their usual ports; the gateway."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("inventory", "gateway"):
            svc = platform[name]
            env = {**os.environ, **svc.env, "REDLINE_HOST": "127.0.0.1"}
            argv = [
                sys.executable, "-m", "uvicorn", "--factory", FACTORIES[name],
                "--workers", str(workers), "--host", "127.0.0.1", "--port", str(svc.port),
                "--no-access-log", "--no-proxy-headers", "--log-level", "warning",
            ]  # fmt: skip
            with (log_dir / f"{name}-{workers}w.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
            wait_http(f"{svc.url}/health/ready", 60, procs[-1])
        # Every worker process has started and served before anything is measured.
        subprocess.run(
            ["hey", "-z", "2s", "-c", "8", platform.gateway + PATH], check=True, capture_output=True
        )
        yield procs[-1]
    finally:
        _stop(procs)


STUB = r"""
import asyncio, sys
import uvloop
BODY = b'{"id":17,"name":"Classic Pour-Over Kettle","price_cents":19199}'
REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
         + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
class Static(asyncio.Protocol):
    def connection_made(self, transport): self.t, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")  # GETs without bodies: one request per header block
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.t.write(REPLY * n)
async def main():
    server = await asyncio.get_running_loop().create_server(Static, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""


@contextmanager
def static_responder() -> Iterator[str]:
    """A static HTTP responder on its own core: far faster than Locust, so Locust is the limit."""
    port = free_port()
    proc = subprocess.Popen(pinned(STUB_CPU, [sys.executable, "-c", STUB, str(port)]))
    try:
        wait_http(f"http://127.0.0.1:{port}{PATH}", 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop([proc])


def stalled(run: Run, gateway: subprocess.Popen[bytes], *, at: float, pause: float) -> Run:
    """``run`` with the gateway frozen (SIGSTOP) for ``pause`` seconds, ``at`` seconds in:
    the textbook way to see coordinated omission (a GC pause, a blocked event loop)."""

    def freeze() -> None:
        tree = [psutil.Process(gateway.pid), *psutil.Process(gateway.pid).children(recursive=True)]
        try:
            for p in tree:
                p.suspend()
            time.sleep(pause)
        finally:
            for p in tree:
                p.resume()

    def with_stall() -> Sample:
        timer = threading.Timer(at, freeze)
        timer.start()
        try:
            return run()
        finally:
            timer.join()

    return with_stall


def _ms(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
    """(aligned text, markdown) of the same table."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    plain = "\n".join(
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    )
    md = "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    )
    return plain, md


def median(samples: list[Sample]) -> Sample:
    return Sample(
        **{f.name: statistics.median(getattr(s, f.name) for s in samples) for f in fields(Sample)}
    )


def per_core(s: Sample) -> str:
    return f"{s.rps / s.client_cores:.0f}" if s.client_cores > 0.05 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--users", type=int, default=16, help="Locust users (concurrency)")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("benchmark: hey is not installed (apt-get install hey)")
    seconds, users = args.seconds, args.users
    load_before = os.getloadavg()[0]

    ceiling: dict[str, list[Sample]] = defaultdict(list)
    with static_responder() as stub:
        for r in range(args.rounds):
            classes = ("BareProductPage", "ProductPage")
            for user_class in classes if r % 2 == 0 else classes[::-1]:
                s = locust(
                    stub, seconds=seconds, users=users, user_class=user_class, cpu=LOCUST_CPU
                )()
                ceiling[user_class].append(s)
                print(
                    f"ceiling round {r + 1}, {user_class}: {s.rps:.0f} rps, "
                    f"{s.client_cores:.2f} cores",
                    flush=True,
                )

    log_dir = Path(tempfile.mkdtemp(prefix="redline-bench-logs-"))
    matrix: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    co: dict[str, list[Sample]] = defaultdict(list)
    with throwaway_postgres() as pg:
        counter = itertools.count()

        def database(prefix: str) -> str:
            name = f"{prefix}_{next(counter)}"
            asyncio.run(ensure_database(pg.dsn(), name))
            return pg.dsn(name)

        platform = Platform.build(
            databases=database, logs=log_dir, otlp_endpoint=None, extra_env={"gateway": UNLIMITED}
        )
        platform.start()  # migrations run once, by the usual single-process services
        try:
            platform["gateway"].stop()
            platform["inventory"].stop()
            host = platform.gateway
            for r in range(args.rounds):
                order = (1, 2) if r % 2 == 0 else (2, 1)
                for service_workers in order:
                    with served(platform, service_workers, log_dir):
                        for processes in order:
                            s = locust(host, seconds=seconds, users=users, processes=processes)()
                            matrix[(service_workers, processes)].append(s)
                            print(
                                f"round {r + 1}: services x{service_workers}, locust x{processes}: "
                                f"{s.rps:.0f} rps, p99 {s.p99_ms:.0f} ms, "
                                f"locust {s.client_cores:.2f} cores, machine {s.machine_busy:.0%}",
                                flush=True,
                            )
            with served(platform, 1, log_dir) as gateway:
                # Each round compares at the rate its own closed-loop run reached.
                for r in range(args.rounds):
                    closed = locust(host, seconds=seconds, users=users)()
                    target = 0.7 * closed.rps
                    url = host + PATH
                    paced = locust(host, seconds=seconds, users=users, user_rate=target / users)
                    stall = {"gateway": gateway, "at": seconds / 2, "pause": STALL_SECONDS}
                    row = {
                        "Locust, closed loop (its maximum)": closed,
                        "open loop at that rate": open_loop(
                            url, seconds=seconds, rate=closed.rps
                        )(),
                        "hey -q at that rate": hey(url, seconds=seconds, rate=closed.rps)(),
                        "Locust, paced to 70% of it": paced(),
                        "open loop at 70%": open_loop(url, seconds=seconds, rate=target)(),
                        "hey -q at 70%": hey(url, seconds=seconds, rate=target)(),
                        f"Locust, paced to 70%, gateway frozen {STALL_SECONDS:g} s": stalled(
                            paced, **stall
                        )(),
                        f"open loop at 70%, gateway frozen {STALL_SECONDS:g} s": stalled(
                            open_loop(url, seconds=seconds, rate=target), **stall
                        )(),
                    }
                    for name, sample in row.items():
                        co[name].append(sample)
                    print(
                        f"omission round {r + 1}: "
                        + "; ".join(
                            f"{n}: {s.rps:.0f} rps, p99 {s.p99_ms:.0f} ms" for n, s in row.items()
                        ),
                        flush=True,
                    )
        finally:
            platform.stop()
            shutil.rmtree(log_dir, ignore_errors=True)

    print(
        f"\n{psutil.cpu_count()} cores, shared by everything (load average {load_before:.1f} "
        f"before the run); {users} Locust users, no think time; {args.rounds} interleaved "
        f"rounds of {seconds:g}s, medians.\n"
    )
    rows = []
    for name, samples in ceiling.items():
        m = median(samples)
        what = (
            "bare FastHttpUser.get"
            if name == "BareProductPage"
            else "RedlineUser.call (traceparent, checks)"
        )
        rows.append([what, f"{m.rps:.0f}", f"{m.client_cores:.2f}", per_core(m)])
    plain, md = table(["request path", "rps", "Locust cores", "rps per Locust core"], rows)
    tables = [("One Locust process (CPU 0) against a static responder (CPU 1)", plain, md)]

    rows = []
    for (service_workers, processes), samples in sorted(matrix.items()):
        m = median(samples)
        rows.append(
            [
                f"{service_workers} worker{'s' if service_workers > 1 else ''} / "
                f"{processes} Locust process{'es' if processes > 1 else ''}",
                f"{m.rps:.0f}", _ms(m.p50_ms), _ms(m.p99_ms), f"{m.client_cores:.2f}",
                f"{m.machine_busy:.0%}", f"{m.failures:.0f}",
            ]
        )  # fmt: skip
    plain, md = table(
        ["gateway+inventory uvicorn workers / Locust", "rps", "p50 ms", "p99 ms",
         "Locust cores", "machine busy", "failures"],
        rows,
    )  # fmt: skip
    tables.append(
        (f"GET {PATH.replace(str(PRODUCT_ID), '{product_id}')} through the platform", plain, md)
    )

    rows = [
        [name, f"{m.rps:.0f}", _ms(m.p50_ms), _ms(m.p95_ms), _ms(m.p99_ms), f"{m.failures:.0f}"]
        for name, m in ((name, median(samples)) for name, samples in co.items())
    ]
    plain, md = table(
        ["1 uvicorn worker each", "rps (200s)", "p50 ms", "p95 ms", "p99 ms", "not 200"], rows
    )
    tables.append(
        (
            "Coordinated omission: closed-loop Locust vs fixed-rate generators at the same "
            f"rate (open loop: latency from the due time; hey: {HEY_WORKER_RATE}/s per worker; "
            "percentiles of the 200s)",
            plain,
            md,
        )
    )
    for title, plain, _ in tables:
        print(f"{title}\n{plain}\n")
    print("Markdown:\n")
    for title, _, md in tables:
        print(f"{title}:\n\n{md}\n")


if __name__ == "__main__":
    main()
