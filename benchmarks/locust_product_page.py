"""One product page, over and over: the locustfile of benchmarks/locust_throughput.py.

``ProductPage`` uses the load test's own request path
(:meth:`loadtests.journeys.RedlineUser.call`: a traceparent per request,
expected-status checks), so its numbers are what the real journeys cost per
request, minus think time; ``BareProductPage`` is a plain ``FastHttpUser``
``get``, Locust's own ceiling. Pick one by class name on the command line.
``--user-rate`` paces each user (requests per second; 0: as fast as the
answers come, i.e. closed loop).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from locust import FastHttpUser, events, task

from loadtests.journeys import PRODUCT, PRODUCTS, RedlineUser

PRODUCT_ID = int(os.environ.get("REDLINE_BENCH_PRODUCT", "17"))


def _add_options(parser: Any, **_: Any) -> None:
    parser.add_argument("--user-rate", type=float, default=0.0, help="requests/s per user")


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)


_listen(events.init_command_line_parser, _add_options)


class Paced:
    """``wait_time`` for ``--user-rate``: a fixed schedule per user (late answers eat the wait)."""

    environment: Any
    _next: float = 0.0

    def wait_time(self) -> float:
        rate = float(getattr(self.environment.parsed_options, "user_rate", 0) or 0)
        if not rate:
            return 0.0
        now = time.monotonic()
        self._next = max(self._next, now - 1 / rate) + 1 / rate
        return max(0.0, self._next - now)


class ProductPage(Paced, RedlineUser):
    @task
    def product_page(self) -> None:
        self.call("GET", f"{PRODUCTS}/{PRODUCT_ID}", PRODUCT, {200})


class BareProductPage(Paced, FastHttpUser):
    @task
    def product_page(self) -> None:
        self.client.get(f"{PRODUCTS}/{PRODUCT_ID}", name=PRODUCT)
