"""Business metrics of the orders service: what the Orders & saga dashboard shows."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from telemetry import REGISTRY

ORDERS_COMPLETED = Counter(
    "orders_completed",
    "Orders that reached a final state, by outcome and (for cancellations) reason.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
SAGA_STEP_FAILURES = Counter(
    "saga_step_failures",
    "Saga steps that did not succeed (a definite refusal or an unknown outcome).",
    ["step"],
    registry=REGISTRY,
)
SAGA_COMPENSATIONS = Counter(
    "saga_compensations",
    "Compensating actions the saga ran (refunds and stock releases).",
    ["step"],
    registry=REGISTRY,
)
SAGA_RECOVERIES = Counter(
    "saga_recoveries",
    "Interrupted sagas the recovery loop finished, by what it did.",
    ["action"],
    registry=REGISTRY,
)
ORDERS_IN_FLIGHT = Gauge(
    "orders_in_flight",
    "Sagas this process is driving right now.",
    registry=REGISTRY,
)
ORDER_VALUE = Histogram(
    "order_value_usd",
    "Value of confirmed orders, in US dollars.",
    buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500),
    registry=REGISTRY,
)
PRICE_LOOKUPS = Counter(
    "orders_price_lookups",
    "Product prices an order needed, by where they came from: the cache, or the catalog.",
    ["source"],
    registry=REGISTRY,
)

# Series that exist from the start, so dashboards show 0 rather than "No data".
for _step in ("reserve_inventory", "charge_payment", "commit_inventory"):
    SAGA_STEP_FAILURES.labels(_step)
for _step in ("refund_payment", "release_inventory"):
    SAGA_COMPENSATIONS.labels(_step)
for _action in ("resumed", "compensated"):
    SAGA_RECOVERIES.labels(_action)
ORDERS_COMPLETED.labels("confirmed", "")
for _source in ("cache", "catalog"):
    PRICE_LOOKUPS.labels(_source)
