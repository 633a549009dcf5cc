"""The open-model user: requests offered at ``--open-rate`` per second, never waiting for answers.

One :class:`OpenArrivals` user per Locust process follows the schedule of
:mod:`loadtests.open_model`: it sleeps until the next arrival's time and hands
the request to a greenlet of its own, so a slow answer delays nothing that
comes after it. At most ``--max-in-flight`` requests wait at once (the
connection pool is as large); an arrival beyond that is dropped and counted,
as is how late each request left against its scheduled time.

Each arrival is one request from a mix of what the closed-model journeys do
(catalog pages, searches, product pages, orders, order lists), dealt from a
shuffled deck so every 16 arrivals hold the mix's exact proportions (two
runs then offer the same requests, not just the same rate),
named by route template like theirs, so statistics, thresholds, trace lists
and comparisons read the same in both models. Orders and order lists are
signed in as one of a few shoppers created at the start.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.pool import Pool

from loadtests import checks, data
from loadtests.journeys import ORDERS, TOKENS, USERS, RedlineUser
from loadtests.open_model import LagRecorder, Process, gaps

DEFAULT_MAX_IN_FLIGHT = 256
# A shopper signs up once; the gateway limits each user (50/s by default), so
# the signed-in share of the rate is spread over enough of them.
SIGNED_IN_PER_SHOPPER_PER_SECOND = 4.0
# The whole run's lag bookkeeping in this process (the locustfile ships and reports it).
LAG = LagRecorder()


@dataclass
class _Shopper:
    email: str
    token: str = ""
    expires: float = 0.0


def _option(user: RedlineUser, name: str, default: Any) -> Any:
    options = user.environment.parsed_options
    value = getattr(options, name, None) if options is not None else None
    return default if value in (None, "") else value


class OpenArrivals(RedlineUser):
    """Requests at a rate, each on its own greenlet (``--open-rate``; the locustfile selects it)."""

    weight = 1
    concurrency = DEFAULT_MAX_IN_FLIGHT  # FastHttpUser's connection pool
    think = (0.0, 0.0)

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        limit = getattr(options, "max_in_flight", None) if options is not None else None
        self.concurrency = int(limit or DEFAULT_MAX_IN_FLIGHT)  # read by FastHttpUser.__init__
        super().__init__(environment)

    def on_start(self) -> None:
        users = max(1, int(_option(self, "open_users", 1)))
        self.rate = float(_option(self, "open_rate", 1.0)) / users
        self.process: Process = _option(self, "arrivals", "poisson")
        self.pool = Pool(self.concurrency)
        self.deck: list[Callable[[OpenArrivals], None]] = []
        signed_in_rate = self.rate * sum(w for w, _, auth in MIX if auth) / TOTAL_WEIGHT
        count = max(1, math.ceil(signed_in_rate / SIGNED_IN_PER_SHOPPER_PER_SECOND))
        self.shoppers = [_Shopper(data.new_email()) for _ in range(count)]
        for shopper in self.shoppers:
            body = {"email": shopper.email, "password": data.PASSWORD, "name": "Load Test"}
            self.call("POST", USERS, USERS, {202}, json=body)
            self._log_in(shopper)

    def on_stop(self) -> None:
        self.pool.kill(block=False)

    def _log_in(self, shopper: _Shopper) -> None:
        credentials = {"email": shopper.email, "password": data.PASSWORD}
        reply = self.call("POST", TOKENS, TOKENS, {200}, json=credentials)
        answer = reply.json()
        if reply.status == 200 and answer.get("access_token"):
            shopper.token = str(answer["access_token"])
            shopper.expires = time.monotonic() + float(answer.get("expires_in", 900)) / 2

    def signed_in(self) -> dict[str, str] | None:
        """A shopper's credentials (logged in again when its token is half spent)."""
        shopper = random.choice(self.shoppers)
        if not shopper.token or time.monotonic() >= shopper.expires:
            self._log_in(shopper)
        return {"authorization": f"Bearer {shopper.token}"} if shopper.token else None

    def wait_time(self) -> float:
        return 0.0

    # A task that runs the whole test: Locust stops it by killing this greenlet.
    def offer(self) -> None:
        LAG.begin(time.time())
        due = time.monotonic()
        for gap in gaps(self.rate, self.process, random.Random()):
            due += gap
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            if self.pool.full():
                LAG.drop()
                continue
            self.pool.spawn(self._arrive, due)

    tasks = [offer]

    def _arrive(self, due: float) -> None:
        LAG.observe((time.monotonic() - due) * 1000, len(self.pool))
        if not self.deck:  # the mix's exact proportions in every 16 arrivals, in random order
            self.deck = [request for weight, request, _ in MIX for _ in range(weight)]
            random.shuffle(self.deck)
        request = self.deck.pop()
        try:
            request(self)
        except Exception as exc:  # a request's own greenlet: report as Locust would
            self.environment.events.user_error.fire(
                user_instance=self, exception=exc, tb=exc.__traceback__
            )


# -- the mix: (weight, request, signed in) ------------------------------------------


def _catalog_page(user: OpenArrivals) -> None:
    user.list_products(limit=20, offset=random.choice((0, 0, 0, 20, 40, 100)))


def _search(user: OpenArrivals) -> None:
    user.search()


def _category(user: OpenArrivals) -> None:
    user.list_products(category=random.choice(data.CATEGORIES), limit=20)


def _product(user: OpenArrivals) -> None:
    user.view_product(data.popular_product())


def _order(user: OpenArrivals) -> None:
    auth = user.signed_in()
    if auth is None:
        return
    items = [{"product_id": data.regular_product(), "quantity": 1}]
    user.call(
        "POST", ORDERS, ORDERS, checks.ORDER_PLACED,
        json={"items": items, "payment_method": data.VISA},
        headers={**auth, "idempotency-key": data.idempotency_key()},
        conflicts=(checks.OUT_OF_STOCK,),
    )  # fmt: skip


def _my_orders(user: OpenArrivals) -> None:
    auth = user.signed_in()
    if auth is not None:
        user.call("GET", ORDERS, ORDERS, {200}, params={"limit": 10}, headers=auth)


MIX: tuple[tuple[int, Callable[[OpenArrivals], None], bool], ...] = (
    (3, _catalog_page, False),
    (3, _search, False),
    (2, _category, False),
    (5, _product, False),
    (2, _order, True),
    (1, _my_orders, True),
)
TOTAL_WEIGHT = sum(w for w, _, _ in MIX)
