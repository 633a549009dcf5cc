"""What the benchmark scripts share: the OTLP sink's settings and the ratio table."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

# The two samplings the overhead targets are stated for.
SAMPLED_100 = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
SAMPLED_10 = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}


def otlp_env(sink_port: int) -> dict[str, str]:
    """Export spans over OTLP/HTTP to benchmarks/otlp_sink.py on this port."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
    }


def print_ratio_table(title: str, unit: str, results: Mapping[str, Sequence[float]]) -> None:
    """Each entry's median, and its ratio to the first entry's (the baseline)."""
    base = statistics.median(next(iter(results.values())))
    print(f"| {title} | {unit} | ratio |")
    print("|---|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / base:.2f}× |")
