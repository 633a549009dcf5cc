"""The hello route the overhead benchmark serves, plain or instrumented.

``python benchmarks/hello_app.py plain|instrumented PORT`` — one uvicorn
worker, same server options for both, so the difference is the telemetry.
"""

from __future__ import annotations

import sys

import uvicorn
from litestar import Litestar, get


@get("/hello", sync_to_thread=False)
def hello() -> str:
    return "hello, world"


def build(variant: str) -> Litestar:
    if variant == "plain":
        return Litestar(route_handlers=[hello], logging_config=None)
    if variant == "instrumented":
        from telemetry import TelemetryConfig, TelemetryPlugin

        plugin = TelemetryPlugin(TelemetryConfig(service_name="bench", instrument_asyncpg=False))
        return Litestar(route_handlers=[hello], plugins=[plugin], logging_config=None)
    raise SystemExit(f"unknown variant {variant!r}: expected plain or instrumented")


if __name__ == "__main__":
    variant, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        build(variant), host="127.0.0.1", port=port, log_config=None, access_log=False, workers=1
    )
