"""Orders & saga: what the business sees, and what the order saga had to undo.

The order saga reserves stock, charges the card, commits the reservation; when
a step fails it compensates the ones before it (refund, release). Cancelled
orders for business reasons (out of stock, card declined) are normal; for
system reasons (payment_unavailable, inventory_unavailable, interrupted) they
are failures of ours.
"""

from __future__ import annotations

from grafanalib import core as g

from alerts.slo_rules import BUDGET_REMAINING
from alerts.slos import ORDERS_AVAILABILITY, PAYMENTS_AVAILABILITY
from dashboards import links
from dashboards._grafana import place, target
from dashboards._panels import stat, timeseries
from dashboards._promql import RATE, quantile, ratio, sum_rate
from dashboards.nav import dashboard_links

ORDERS = '{job="orders"}'
PAYMENTS = '{job="payments"}'
PER_MINUTE = "suffix: /min"


def _orders() -> list[object]:
    return [
        timeseries(
            "Orders completed per minute by outcome and reason",
            "Orders the saga finished: confirmed, or cancelled with the reason. out_of_stock, "
            "payment_declined and price_changed (the catalog changed a price orders had "
            "cached) are business as usual; payment_unavailable, inventory_unavailable "
            "and interrupted are our failures.",
            [
                target(
                    f"60 * {sum_rate('orders_completed_total', ORDERS, 'outcome, reason')}",
                    "{{outcome}} {{reason}}",
                )
            ],
            PER_MINUTE,
            stacked=True,
        ),
        timeseries(
            "Order confirmation ratio",
            "Share of completed orders that were confirmed.",
            [
                target(
                    "1 - "
                    + ratio("orders_completed_total", 'outcome="cancelled"', ORDERS).replace(
                        "\n", "\n    "
                    ),
                    "confirmed",
                )
            ],
            "percentunit",
            max_value=1,
        ),
        timeseries(
            "Orders in flight",
            "Orders whose saga is running right now. A plateau with no completions means "
            "sagas are stuck waiting on a dependency.",
            [target(f"sum(orders_in_flight{ORDERS})", "in flight")],
            "short",
        ),
        stat(
            "Orders availability error budget left",
            f"{ORDERS_AVAILABILITY.description}: share of the 30-day error budget left.",
            [target(f'{BUDGET_REMAINING}{{slo="{ORDERS_AVAILABILITY.name}"}}', "orders")],
            "percentunit",
            decimals=1,
            thresholds=(("red", None), ("orange", 0.25), ("green", 0.5)),
        ),
    ]


def _saga() -> list[object]:
    return [
        timeseries(
            "Saga step failures per minute by step",
            "Steps that failed: reserve_inventory (out of stock or inventory down), "
            "charge_payment (declined or payments down), commit_inventory.",
            [target(f"60 * {sum_rate('saga_step_failures_total', ORDERS, 'step')}", "{{step}}")],
            PER_MINUTE,
            bars=True,
        ),
        timeseries(
            "Compensations per minute by step",
            "Undo steps the saga ran: refund_payment after a charge, release_inventory after a "
            "reservation. SagaCompensationsHigh fires above 0.2 per completed order.",
            [target(f"60 * {sum_rate('saga_compensations_total', ORDERS, 'step')}", "{{step}}")],
            PER_MINUTE,
            bars=True,
        ),
        timeseries(
            "Saga recoveries after restart",
            "Sagas an orders process found unfinished at start-up and resumed or compensated "
            "(a crash or a deploy in the middle of an order), per interval.",
            [
                target(
                    # A restarted process recovers sagas before its first scrape,
                    # after its old series went stale: increase() cannot see a
                    # counter that starts above zero, so a series that is new
                    # within the interval counts in full (checked with promtool).
                    f"sum by (action) ((increase(saga_recoveries_total{ORDERS}[{RATE}])"
                    f" and saga_recoveries_total{ORDERS} offset {RATE})"
                    f" or (saga_recoveries_total{ORDERS}"
                    f" unless saga_recoveries_total{ORDERS} offset {RATE}))",
                    "{{action}}",
                )
            ],
            "short",
            bars=True,
        ),
    ]


def _payments() -> list[object]:
    return [
        timeseries(
            "Payments per minute by operation and outcome",
            "Charges and refunds the payments service handled: charged, declined, replayed "
            "(an idempotent retry answered from the ledger), refunded, noop.",
            [
                target(
                    f"60 * {sum_rate('payments_total', PAYMENTS, 'operation, outcome')}",
                    "{{operation}} {{outcome}}",
                )
            ],
            PER_MINUTE,
            stacked=True,
        ),
        timeseries(
            "Card declines per minute by reason",
            "Charges the (simulated) card processor declined, by its reason code.",
            [
                target(
                    f"60 * {sum_rate('payments_declined_total', PAYMENTS, 'reason')}", "{{reason}}"
                )
            ],
            PER_MINUTE,
        ),
        timeseries(
            "Card processor p99 latency",
            "The slowest 1% of calls to the card processor, by operation.",
            [
                target(
                    quantile(0.99, "payments_processor_duration_seconds", PAYMENTS, "operation"),
                    "{{operation}}",
                    exemplar=True,
                )
            ],
            "s",
        ),
        stat(
            "Payments availability error budget left",
            f"{PAYMENTS_AVAILABILITY.description}: share of the 30-day error budget left.",
            [target(f'{BUDGET_REMAINING}{{slo="{PAYMENTS_AVAILABILITY.name}"}}', "payments")],
            "percentunit",
            decimals=1,
            thresholds=(("red", None), ("orange", 0.25), ("green", 0.5)),
        ),
    ]


def _value() -> list[object]:
    return [
        timeseries(
            "Confirmed order value per minute",
            "US dollars of confirmed orders per minute (sum of order_value_usd).",
            [target(f"60 * sum(rate(order_value_usd_sum{ORDERS}[{RATE}]))", "USD per minute")],
            "currencyUSD",
        ),
        timeseries(
            "Order value: median and p90",
            "Value of confirmed orders, estimated from the histogram buckets "
            "(5, 10, 25, ... 2500 USD): exact at bucket edges, interpolated between.",
            [
                target(quantile(0.5, "order_value_usd", ORDERS), "median", exemplar=True),
                target(quantile(0.9, "order_value_usd", ORDERS), "p90", exemplar=True),
            ],
            "currencyUSD",
        ),
        timeseries(
            "Average order value",
            "Mean value of the confirmed orders in each interval.",
            [
                target(
                    f"sum(rate(order_value_usd_sum{ORDERS}[{RATE}]))\n"
                    f"/ sum(rate(order_value_usd_count{ORDERS}[{RATE}]))",
                    "average",
                )
            ],
            "currencyUSD",
        ),
    ]


OUTBOXES = '{job=~"orders|accounts"}'
NOTIFICATIONS = '{job="notifications"}'
NATS = '{job="nats"}'


def _events() -> list[object]:
    """Outbox → NATS JetStream → notifications → mail (services/events, services/notifications)."""
    return [
        timeseries(
            "Outbox backlog and oldest unsent event",
            "Events committed with their change and not yet published to NATS, and how old "
            "the oldest is. Grows while NATS is away; drains oldest first when it is back.",
            [
                target(f"sum by (job) (outbox_backlog_events{OUTBOXES})", "{{job}} backlog"),
                target(
                    f"max by (job) (outbox_oldest_unsent_age_seconds{OUTBOXES})",
                    "{{job}} oldest age (s)",
                ),
            ],
            "short",
        ),
        timeseries(
            "Publish latency p99 and failures",
            "One JetStream publish until the broker's ack (p99), and relay rounds that could "
            "not publish per minute.",
            [
                target(
                    quantile(0.99, "outbox_publish_duration_seconds", OUTBOXES, "job"),
                    "{{job}} p99",
                    exemplar=True,
                ),
                target(
                    f"60 * {sum_rate('outbox_publish_failures_total', OUTBOXES, 'job')}",
                    "{{job}} failed rounds/min",
                ),
            ],
            "s",
        ),
        timeseries(
            "Consumer pending, unacked, redelivered",
            "From JetStream: events the notifications consumer has not been given yet, "
            "given and not acked, and delivered more than once.",
            [
                target(f"max(notifications_consumer_pending_messages{NOTIFICATIONS})", "pending"),
                target(
                    f"max(notifications_consumer_ack_pending_messages{NOTIFICATIONS})", "unacked"
                ),
                target(
                    f"max(notifications_consumer_redelivered_messages{NOTIFICATIONS})",
                    "redelivered",
                ),
            ],
            "short",
        ),
        timeseries(
            "Commit to mail: p50 and p99",
            "From the event's commit (in orders or accounts) to the mail accepted by the SMTP "
            "server, through the outbox, NATS and notifications.",
            [
                target(
                    quantile(0.5, "notifications_delivery_delay_seconds", NOTIFICATIONS),
                    "p50",
                    exemplar=True,
                ),
                target(
                    quantile(0.99, "notifications_delivery_delay_seconds", NOTIFICATIONS),
                    "p99",
                    exemplar=True,
                ),
            ],
            "s",
        ),
        timeseries(
            "Events handled per minute by outcome, and dead letters",
            "sent, duplicate (a redelivery found its notification sent), retried, "
            "dead_lettered (given up after the maximum deliveries: see deadletter.notifications).",
            [
                target(
                    "60 * "
                    + sum_rate("notifications_events_processed_total", NOTIFICATIONS, "outcome"),
                    "{{outcome}}",
                ),
                target(
                    f"60 * {sum_rate('notifications_dead_letters_total', NOTIFICATIONS)}",
                    "dead letters",
                ),
            ],
            PER_MINUTE,
        ),
        timeseries(
            "NATS server: up, messages in and out, stored",
            "The broker's own view (its /varz and /jsz, through redline/nats_exporter.py): "
            "0 on up while NATS does not answer; messages per second it received and sent; "
            "messages its streams hold (EVENTS keeps every event, DEADLETTER the given-up ones).",
            [
                target(f"max(nats_up{NATS})", "up"),
                target(sum_rate("nats_in_messages_total", NATS), "in/s"),
                target(sum_rate("nats_out_messages_total", NATS), "out/s"),
                target(
                    f"sum by (stream) (nats_jetstream_stream_messages{NATS})",
                    "{{stream}} stored",
                ),
            ],
            "short",
        ),
    ]


def build() -> g.Dashboard:
    return g.Dashboard(
        title=links.TITLES[links.ORDERS],
        uid=links.ORDERS,
        description="Orders by outcome, the saga's failures and compensations, payments, "
        "order value.",
        tags=["redline"],
        timezone="browser",
        refresh="30s",
        time=g.Time("now-6h", "now"),
        graphTooltip=1,
        links=dashboard_links(links.ORDERS, service="orders"),
        panels=place(
            [
                ("Orders", _orders(), 4),
                ("Order saga", _saga(), 3),
                ("Payments", _payments(), 4),
                ("Order value", _value(), 3),
                ("Events and notifications", _events(), 3),
            ]
        ),
    )
