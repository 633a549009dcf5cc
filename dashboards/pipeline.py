"""The telemetry pipeline: spans from the services through the Collector to Jaeger.

What an SRE checks before trusting a trace search: are spans flowing at every
hop, is anything queued or lost, and what does tail sampling keep. Also the
call rate and latency per service that the Collector derives from every span
(the same numbers Jaeger's Monitor tab shows), before any sampling.
"""

from __future__ import annotations

from grafanalib import core as g

from dashboards import links
from dashboards._grafana import place, target
from dashboards._panels import timeseries
from dashboards._promql import RATE, quantile, sel, sum_rate
from dashboards.nav import dashboard_links

COLLECTOR = 'job="otel-collector"'
JAEGER = 'job="jaeger"'
SPAN_METRICS = 'job="spanmetrics"'
SERVER_SPANS = sel(SPAN_METRICS, 'span_kind="SPAN_KIND_SERVER"')
KEPT = "otelcol_processor_tail_sampling_count_traces_sampled_total"
KEPT_SEL = sel(JAEGER, 'sampled="true"')


def _flow() -> list[object]:
    return [
        timeseries(
            "Spans at each hop",
            "Spans per second: exported by the services, accepted and sent on by the Collector, "
            "accepted by Jaeger. The lines lie on top of each other when nothing is lost.",
            [
                target(
                    sum_rate("otel_sdk_exporter_span_exported_total", sel('error_type=""')),
                    "services exported",
                ),
                target(
                    sum_rate("otelcol_receiver_accepted_spans_total", sel(COLLECTOR)),
                    "Collector accepted",
                ),
                target(
                    sum_rate("otelcol_exporter_sent_spans_total", sel(COLLECTOR)),
                    "Collector sent",
                ),
                target(
                    sum_rate("otelcol_receiver_accepted_spans_total", sel(JAEGER)),
                    "Jaeger accepted",
                ),
            ],
            "short",
        ),
        timeseries(
            "Spans lost, by stage",
            "Spans per second that will never reach Jaeger: the services' export failures, the "
            "Collector refusing (memory limit), its queue full, its sends failing after retries. "
            "CollectorLosingSpans and SpanExportFailing fire on these.",
            [
                target(
                    sum_rate("otel_sdk_exporter_span_exported_total", sel('error_type!=""'), "job"),
                    "{{job}}: export failed",
                ),
                target(
                    sum_rate("otelcol_receiver_refused_spans_total", sel(), "job"),
                    "{{job}}: refused",
                ),
                target(
                    sum_rate("otelcol_processor_refused_spans_total", sel(), "job"),
                    "{{job}}: memory limiter refused",
                ),
                target(
                    sum_rate("otelcol_exporter_enqueue_failed_spans_total", sel(), "job"),
                    "{{job}}: queue full",
                ),
                target(
                    sum_rate("otelcol_exporter_send_failed_spans_total", sel(), "job"),
                    "{{job}}: send failed",
                ),
            ],
            "short",
        ),
        timeseries(
            "Collector queue to Jaeger",
            "Batches waiting in the Collector's sending queue, against its capacity. Above zero "
            "while Jaeger is slow or away; spans are lost only when it reaches the capacity.",
            [
                target(
                    f"max by (exporter) (otelcol_exporter_queue_size{sel(COLLECTOR)})",
                    "queued {{exporter}}",
                ),
                target(
                    f"max by (exporter) (otelcol_exporter_queue_capacity{sel(COLLECTOR)})",
                    "capacity {{exporter}}",
                ),
            ],
            "short",
        ),
    ]


def _sampling_and_red() -> list[object]:
    return [
        timeseries(
            "Traces kept by tail sampling, by policy",
            "Traces per second Jaeger keeps, by the policy that kept them (a trace can match "
            "several): errors, slow, orders, exemplars, and the baseline share of the rest.",
            [
                target(
                    f"sum by (policy) (rate({KEPT}{KEPT_SEL}[{RATE}]))",
                    "{{policy}}",
                )
            ],
            "short",
            stacked=True,
        ),
        timeseries(
            "Calls per service, from every span",
            "SERVER spans per second per service, counted by the Collector before sampling: "
            "what Jaeger's Monitor tab shows.",
            [
                target(
                    sum_rate("traces_span_metrics_calls_total", SERVER_SPANS, "service_name"),
                    "{{service_name}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            "p95 span duration per service",
            "95th percentile of SERVER span durations per service, from the span metrics.",
            [
                target(
                    quantile(
                        0.95,
                        "traces_span_metrics_duration_milliseconds",
                        SERVER_SPANS,
                        "service_name",
                    ),
                    "{{service_name}}",
                )
            ],
            "ms",
        ),
    ]


def build() -> g.Dashboard:
    return g.Dashboard(
        title=links.TITLES[links.PIPELINE],
        uid=links.PIPELINE,
        description="Spans through the OpenTelemetry Collector to Jaeger: flow, loss, sampling.",
        tags=["redline"],
        timezone="browser",
        refresh="30s",
        time=g.Time("now-1h", "now"),
        graphTooltip=1,
        links=dashboard_links(links.PIPELINE),
        panels=place(
            [
                ("Span flow and loss", _flow(), 3),
                ("Tail sampling and span metrics", _sampling_and_red(), 3),
            ]
        ),
    )
