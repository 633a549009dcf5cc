"""The simulated people: anonymous browsers and signed-in shoppers, weighted 2:1.

Every request goes through :meth:`RedlineUser.call`, which names it by its
route template (so Locust's table lines up with the dashboards' ``http_route``),
sends a fresh sampled ``traceparent`` (the context of the generator's own CLIENT
span when spans are exported: :mod:`loadtests.tracing`), and decides success by
what the journey expects (:mod:`loadtests.checks`), not by the status class.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from locust import FastHttpUser, task

from loadtests import checks, data, notification_delays, tracing

PRODUCTS = "/api/v1/products"
PRODUCT = "/api/v1/products/{product_id}"
USERS = "/api/v1/users"
TOKENS = "/api/v1/auth/tokens"
ME = "/api/v1/users/me"
ORDERS = "/api/v1/orders"
ORDER = "/api/v1/orders/{order_id}"
NOTIFICATIONS = "/api/v1/notifications"
# Log in again this long before the token expires (the default lifetime is 15 min).
TOKEN_MARGIN_SECONDS = 30.0
# Honour the gateway's Retry-After, but a simulated user gives up waiting sooner.
MAX_BACKOFF_SECONDS = 5.0


@dataclass
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; empty if it is not one."""
        return checks.json_object(self.body)

    def header(self, name: str) -> str:
        """A response header by its lower-case name."""
        return self.headers.get(name, "")


Check = Callable[[Reply], str | None]


def _order_id(reply: Reply) -> str:
    """The order an answer is about: its id, or a problem's ``order_id``."""
    body = reply.json()
    return str(body.get("id") or body.get("order_id") or "")


class RedlineUser(FastHttpUser):
    abstract = True
    # Seconds between actions, before --think-scale.
    think: tuple[float, float] = (1.0, 4.0)

    def wait_time(self) -> float:
        return random.uniform(*self.think) * float(self._option("think_scale", 1.0))

    def _option(self, name: str, default: Any) -> Any:
        options = self.environment.parsed_options
        value = getattr(options, name, None) if options is not None else None
        if value is None:
            return default
        return value if isinstance(default, bool) else type(default)(value)

    def call(
        self,
        method: str,
        path: str,
        name: str,
        expected: Collection[int],
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        conflicts: Collection[str] = (),
        check: Check | None = None,
    ) -> Reply:
        """One request, traced, named ``name``, a failure unless ``expected`` (and ``check``)."""
        trace = tracing.TRACER.start(method, name, self.host or "", path)
        url = f"{path}?{urlencode(params)}" if params else path
        status, problem, error = 0, None, None
        try:
            with self.client.request(
                method,
                url,
                name=name,
                json=json,
                headers={"traceparent": trace.header, **(headers or {})},
                catch_response=True,
                # The locustfile's request listener reads both (and sets trace.slowest).
                context={"trace_id": trace.trace_id, "trace": trace},
            ) as response:
                status = int(response.status_code or 0)
                try:
                    body = bytes(response.content or b"")
                except Exception:  # a broken connection has no body to read
                    body = b""
                # geventhttpclient's Headers: items() gives (name, value) pairs, dict() does not.
                received = {k.lower(): v for k, v in (response.headers or {}).items()}
                reply = Reply(status, body, received)
                error = getattr(response, "error", None)
                problem = checks.verdict(
                    status,
                    expected,
                    body,
                    conflicts=conflicts,
                    rate_limited_ok=self._option("rate_limited_ok", False),
                    error=None if error is None else repr(error),
                )
                if problem is None and check is not None:
                    problem = check(reply)
                if problem is None:
                    response.success()
                else:
                    response.failure(problem)
        except Exception as exc:  # the journey's own code failed (a stopped user is no error)
            problem = problem or f"{type(exc).__name__}: {exc}"
            error = error or exc
            raise
        finally:
            # After Locust's request event: its listener has judged the request by now.
            tracing.TRACER.end(trace, status, problem, error)
        if status == 429:  # back off as told (time.sleep is gevent's under Locust)
            retry_after = reply.header("retry-after")
            time.sleep(
                min(float(retry_after) if retry_after.isdigit() else 1.0, MAX_BACKOFF_SECONDS)
            )
        return reply

    # -- the catalog, shared by both kinds of visitor ---------------------------------
    def list_products(self, **params: Any) -> list[int]:
        reply = self.call("GET", PRODUCTS, PRODUCTS, {200}, params=params)
        items = reply.json().get("items", []) if reply.status == 200 else []
        return [int(item["id"]) for item in items if isinstance(item, dict) and "id" in item]

    def view_product(self, product_id: int) -> None:
        self.call("GET", f"{PRODUCTS}/{product_id}", PRODUCT, {200})

    def search(self) -> list[int]:
        return self.list_products(q=data.search_term())

    def browse_category(self) -> list[int]:
        category = random.choice(data.CATEGORIES)
        found = self.list_products(category=category, limit=20)
        if found and random.random() < 0.3:  # some look at the next page
            found = self.list_products(category=category, limit=20, offset=20)
        return found


class Browser(RedlineUser):
    """Anonymous visitors: the catalog, searches, categories, product pages."""

    weight = 2
    think = (2.0, 6.0)

    def on_start(self) -> None:
        self.seen: list[int] = []

    @task(3)
    def catalog_page(self) -> None:
        offset = random.choice((0, 0, 0, 20, 40, 60, 100, 200, 300))
        self.seen = (
            self.list_products(limit=random.choice((20, 20, 50)), offset=offset) or self.seen
        )

    @task(3)
    def search_catalog(self) -> None:
        self.seen = self.search() or self.seen

    @task(2)
    def category_page(self) -> None:
        self.seen = self.browse_category() or self.seen

    @task(5)
    def product_page(self) -> None:
        # Usually a click on something just listed, otherwise a popular product.
        seen = self.seen
        pick = random.choice(seen) if seen and random.random() < 0.7 else data.popular_product()
        self.view_product(pick)


class Shopper(RedlineUser):
    """Signed-in customers: sign up or log in, look around, buy, check their orders.

    Some buy limited editions (sold out is a 409 they expect), some pay with a
    card that is declined (402), some resend an order with the same
    Idempotency-Key and must get the first answer replayed.
    """

    weight = 1
    think = (1.0, 4.0)

    def on_start(self) -> None:
        self.email = ""
        self.token = ""
        self.token_expires = 0.0
        self.orders: deque[str] = deque(maxlen=20)
        self.start_session(new_account=True)

    # -- sessions ------------------------------------------------------------------
    def start_session(self, *, new_account: bool) -> bool:
        if new_account or not self.email:
            email = data.new_email()
            body = {"email": email, "password": data.PASSWORD, "name": "Load Test"}
            if self.call("POST", USERS, USERS, {202}, json=body).status != 202:
                return False
            self.email = email
            self.orders.clear()
        credentials = {"email": self.email, "password": data.PASSWORD}
        reply = self.call("POST", TOKENS, TOKENS, {200}, json=credentials)
        if reply.status != 200:
            return False
        answer = reply.json()
        self.token = str(answer.get("access_token", ""))
        ttl = float(answer.get("expires_in", 900))
        self.token_expires = time.monotonic() + ttl - min(TOKEN_MARGIN_SECONDS, ttl / 2)
        return bool(self.token)

    def signed_in(self) -> bool:
        if self.token and time.monotonic() < self.token_expires:
            return True
        return self.start_session(new_account=False)

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    # -- orders --------------------------------------------------------------------
    def order(
        self,
        items: list[tuple[int, int]],
        *,
        card: str = data.VISA,
        key: str | None = None,
        expected: Collection[int] = checks.ORDER_PLACED,
        conflicts: Collection[str] = (checks.OUT_OF_STOCK,),
        check: Check | None = None,
    ) -> tuple[Reply, str, dict[str, Any]]:
        key = key or data.idempotency_key()
        body = {
            "items": [{"product_id": p, "quantity": q} for p, q in items],
            "payment_method": card,
        }
        reply = self.call(
            "POST", ORDERS, ORDERS, expected, json=body,
            headers={**self.auth, "idempotency-key": key},
            conflicts=conflicts, check=check,
        )  # fmt: skip
        if reply.status in (201, 202) and "id" in (placed := reply.json()):
            self.orders.append(str(placed["id"]))
        return reply, key, body

    def basket(self) -> list[tuple[int, int]]:
        products = {data.regular_product() for _ in range(random.choice((1, 1, 1, 2, 2, 3)))}
        return [(p, random.choice((1, 1, 1, 2, 3))) for p in sorted(products)]

    # -- tasks ---------------------------------------------------------------------
    @task(4)
    def look_around(self) -> None:
        found = self.search() if random.random() < 0.5 else self.browse_category()
        self.view_product(random.choice(found) if found else data.popular_product())

    @task(4)
    def buy(self) -> None:
        if self.signed_in():
            self.order(self.basket())

    @task(1)
    def buy_limited_edition(self) -> None:
        if self.signed_in():
            product = random.choice(data.LIMITED_EDITIONS)
            self.view_product(product)
            self.order([(product, 1)])

    @task(1)
    def buy_with_declining_card(self) -> None:
        if self.signed_in():
            # 409 only if this popular product sold out during a long run.
            self.order(self.basket(), card=random.choice(data.DECLINING_CARDS), expected={402, 409})

    @task(1)
    def resend_order(self) -> None:
        """A client that lost the answer sends the same order with the same key again."""
        if not self.signed_in():
            return
        first, key, body = self.order(self.basket())
        if first.status not in checks.ORDER_PLACED:
            return  # already a failure; without an answer, the resend would be a first try

        def replayed(second: Reply) -> str | None:
            if first.status == 202 and second.status == 409:
                return None  # the first is still completing: "in progress" is right
            if second.header("idempotent-replayed") != "true":
                return "a resent Idempotency-Key was not replayed"
            if _order_id(second) != _order_id(first):
                return "the replay is of another order"
            # A pending order may have completed since: its final answer is replayed.
            if second.status != first.status and first.status != 202:
                return f"the replay answered {second.status}, the first answer was {first.status}"
            return None

        items = [(int(i["product_id"]), int(i["quantity"])) for i in body["items"]]
        conflicts = (checks.OUT_OF_STOCK, checks.IN_PROGRESS)
        self.order(items, key=key, check=replayed, conflicts=conflicts)

    @task(3)
    def check_orders(self) -> None:
        if not self.signed_in():
            return
        listing = self.call("GET", ORDERS, ORDERS, {200}, params={"limit": 10}, headers=self.auth)
        ids = [str(o["id"]) for o in listing.json().get("items", []) if "id" in o]
        if ids or self.orders:
            order_id = random.choice(ids or list(self.orders))
            self.call("GET", f"{ORDERS}/{order_id}", ORDER, {200}, headers=self.auth)

    @task(1)
    def check_notifications(self) -> None:
        """The mails about their orders, as the notifications service recorded them.

        Each sent one's commit → mail delay goes into the run's summary.
        """
        if self.signed_in():
            reply = self.call(
                "GET", NOTIFICATIONS, NOTIFICATIONS, {200}, params={"limit": 10}, headers=self.auth
            )
            if reply.status == 200:
                notification_delays.RECORDER.observe(reply.json().get("items") or [])

    @task(1)
    def view_profile(self) -> None:
        if self.signed_in():
            self.call("GET", ME, ME, {200}, headers=self.auth)

    @task(1)
    def new_session(self) -> None:
        """The session ends; the same person comes back (or, sometimes, a new one signs up)."""
        self.start_session(new_account=random.random() < 0.3)
