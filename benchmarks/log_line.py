"""Per-request cost of the access line: through structlog vs telemetry's AccessLog.

Both render the same JSON with the same processors' fields, to /dev/null,
timed in one process, interleaved, medians.

    .venv/bin/python benchmarks/log_line.py
"""

from __future__ import annotations

import os
import time

import structlog
from _report import print_ratio_table
from structlog.contextvars import bind_contextvars

from telemetry._logging import FdWriter, access_log, configure_logging

N = 50_000
ROUNDS = 7
FIELDS = {
    "method": "GET",
    "route": "/products/{product_id}",
    "path": "/products/7",
    "status": 200,
    "duration_ms": 0.412,
    "client": "127.0.0.1:50312",
}


def main() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    configure_logging(
        static_fields={"service": "bench", "service_version": "0", "instance": "x"},
        stream=FdWriter(devnull),
    )
    via_structlog = structlog.get_logger().bind(logger="access")
    fast = access_log()
    bind_contextvars(request_id="0123456789abcdef0123456789abcdef")

    def structlog_line() -> float:
        t = time.process_time()
        for _ in range(N):
            via_structlog.info("request", **FIELDS)
        return (time.process_time() - t) / N * 1e6

    def access_line() -> float:
        t = time.process_time()
        for _ in range(N):
            fast.write(
                "GET",
                "/products/{product_id}",
                "/products/7",
                200,
                0.412,
                "127.0.0.1:50312",
                "0123456789abcdef0123456789abcdef",
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
            )
        return (time.process_time() - t) / N * 1e6

    results: dict[str, list[float]] = {"structlog bound logger": [], "AccessLog": []}
    for _ in range(ROUNDS):
        results["structlog bound logger"].append(structlog_line())
        results["AccessLog"].append(access_line())
    print_ratio_table("one access line to /dev/null", "µs", results)


if __name__ == "__main__":
    main()
