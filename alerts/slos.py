"""The platform's service-level objectives: the one place their numbers live.

Python rather than YAML: the objectives are typed and checked by mypy, and the
rule generator, the promtool test generator and the overview dashboard import
the same objects, so a renamed SLO cannot leave one of them behind.

Why these numbers:

* The gateway is what users see. 99.5 % non-5xx over 30 days is a budget of
  3.6 hours of full outage a month, enough for a small team to deploy daily.
* 99 % of gateway requests under 0.5 s: 0.5 s is a bucket boundary of
  ``http_server_request_duration_seconds`` (a threshold between boundaries
  would be interpolated), and the order path makes up to five downstream calls.
* Orders and payments sit behind the gateway on the money path. A dependency
  must be more reliable than its callers, or their budget is spent by it: orders
  99.8 %, payments 99.9 %. Accounts and inventory are covered by the gateway SLO
  and the per-service symptom alerts; an SLO nobody would act on separately is
  noise.
"""

from __future__ import annotations

from alerts.slo import SLO, AvailabilitySLI, LatencySLI, Requests

# Probe and scrape requests are not counted by the middleware at all; the admin
# API (fault flags) and unmatched paths (scanners, typos) are not user traffic.
_NOT_USER_TRAFFIC = 'http_route!~"/admin/.*|unmatched"'

GATEWAY_API = Requests("gateway", 'http_route=~"/api/v1/.*"', "/api/v1/orders")
ORDERS = Requests("orders", _NOT_USER_TRAFFIC, "/orders")
PAYMENTS = Requests("payments", _NOT_USER_TRAFFIC, "/charges")

OVERVIEW_UID = "redline-overview"
ORDERS_UID = "redline-orders"

GATEWAY_AVAILABILITY = SLO(
    name="gateway-availability",
    service="gateway",
    objective=0.995,
    sli=AvailabilitySLI(GATEWAY_API),
    description="99.5% of public API requests (/api/v1/...) succeed (non-5xx)",
    alert_name="GatewayAvailabilityBudgetBurn",
    dashboard_uid=OVERVIEW_UID,
)
GATEWAY_LATENCY = SLO(
    name="gateway-latency",
    service="gateway",
    objective=0.99,
    sli=LatencySLI(GATEWAY_API, threshold_seconds=0.5),
    description="99% of public API requests (/api/v1/...) complete within 0.5 s",
    alert_name="GatewayLatencyBudgetBurn",
    dashboard_uid=OVERVIEW_UID,
)
ORDERS_AVAILABILITY = SLO(
    name="orders-availability",
    service="orders",
    objective=0.998,
    sli=AvailabilitySLI(ORDERS),
    description="99.8% of requests to the orders service succeed (non-5xx)",
    alert_name="OrdersAvailabilityBudgetBurn",
    dashboard_uid=ORDERS_UID,
)
PAYMENTS_AVAILABILITY = SLO(
    name="payments-availability",
    service="payments",
    objective=0.999,
    sli=AvailabilitySLI(PAYMENTS),
    description="99.9% of requests to the payments service succeed (non-5xx)",
    alert_name="PaymentsAvailabilityBudgetBurn",
    dashboard_uid=ORDERS_UID,
)

SLOS: tuple[SLO, ...] = (
    GATEWAY_AVAILABILITY,
    GATEWAY_LATENCY,
    ORDERS_AVAILABILITY,
    PAYMENTS_AVAILABILITY,
)
