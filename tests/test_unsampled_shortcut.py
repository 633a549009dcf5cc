"""The unsampled-span shortcut must decide, and name spans, exactly as the SDK does.

Both paths draw their ids from the ``random`` module in the same order, so from
one seed the SDK's ``start_span`` and the shortcut (with the SDK behind it for
sampled spans) must give identical span contexts.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry._unsampled import PresetIdGenerator, UnsampledShortcut

SUPPORTED = {
    "parentbased_traceidratio 0.1": ParentBasedTraceIdRatio(0.1),
    "parentbased_traceidratio 0.5": ParentBasedTraceIdRatio(0.5),
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}

PARENTS = {
    "root": None,
    "remote unsampled": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "remote unsampled, random flag": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02",
    "remote sampled": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "invalid": "00-00000000000000000000000000000000-b7ad6b7169203331-01",
}


def _parent_context(traceparent: str | None) -> Context | None:
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent, "tracestate": "vendor=value"}
    return TraceContextTextMapPropagator().extract(carrier)


def _fields(span: trace.Span) -> tuple[object, ...]:
    ctx = span.get_span_context()
    return (
        span.is_recording(),
        ctx.trace_id,
        ctx.span_id,
        int(ctx.trace_flags),
        ctx.is_remote,
        ctx.trace_state.to_header(),
    )


@pytest.mark.parametrize("sampler_name", SUPPORTED)
@pytest.mark.parametrize("parent_name", PARENTS)
def test_same_span_contexts_as_the_sdk(sampler_name: str, parent_name: str) -> None:
    provider = TracerProvider(sampler=SUPPORTED[sampler_name], id_generator=PresetIdGenerator())
    tracer = provider.get_tracer("test")
    shortcut = UnsampledShortcut.for_provider(provider)
    assert shortcut is not None
    parent = _parent_context(PARENTS[parent_name])
    decisions: Counter[bool] = Counter()
    for seed in range(300):
        random.seed(seed)
        expected = _fields(tracer.start_span("GET", context=parent, kind=SpanKind.SERVER))
        random.seed(seed)
        span: trace.Span | None = shortcut.span(parent)
        if span is None:
            span = tracer.start_span("GET", context=parent, kind=SpanKind.SERVER)
        else:
            assert isinstance(span, NonRecordingSpan)
        assert _fields(span) == expected, f"seed {seed}"
        decisions[span.is_recording()] += 1
    if sampler_name.endswith("0.1") and parent_name in ("root", "invalid"):
        # Both decisions were exercised, near the configured ratio.
        assert 10 <= decisions[True] <= 60, decisions


def test_sampled_root_keeps_the_trace_id_it_was_decided_on() -> None:
    # Drawing the id twice would sample ratio² of the roots: 1 % instead of 10 %.
    provider = TracerProvider(
        sampler=ParentBasedTraceIdRatio(0.1), id_generator=PresetIdGenerator()
    )
    tracer = provider.get_tracer("test")
    shortcut = UnsampledShortcut.for_provider(provider)
    assert shortcut is not None
    random.seed(7)
    sampled = 0
    for _ in range(4000):
        span = shortcut.span(None) or tracer.start_span("GET", kind=SpanKind.SERVER)
        if span.is_recording():
            sampled += 1
            bound = TraceIdRatioBased.get_bound_for_rate(0.1)
            assert span.get_span_context().trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < bound
        span.end()
    assert 320 <= sampled <= 480, sampled


class _CustomRoot(Sampler):
    def should_sample(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        return ALWAYS_ON.should_sample(*args, **kwargs)  # type: ignore[arg-type]

    def get_description(self) -> str:
        return "Custom"


@pytest.mark.parametrize(
    "sampler",
    [
        ALWAYS_ON,
        ALWAYS_OFF,
        TraceIdRatioBased(0.1),  # not parent-based: the parent's flag is not the decision
        ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
        ParentBased(_CustomRoot()),
    ],
    ids=["always_on", "always_off", "traceidratio", "other delegates", "custom root"],
)
def test_no_shortcut_for_samplers_it_cannot_reproduce(sampler: Sampler) -> None:
    provider = TracerProvider(sampler=sampler, id_generator=PresetIdGenerator())
    assert UnsampledShortcut.for_provider(provider) is None


def test_no_shortcut_without_the_preset_id_generator() -> None:
    assert UnsampledShortcut.for_provider(TracerProvider(sampler=DEFAULT_ON)) is None


def test_unsampled_child_of_unsampled_parent_keeps_trace_state() -> None:
    provider = TracerProvider(
        sampler=ParentBasedTraceIdRatio(0.1), id_generator=PresetIdGenerator()
    )
    shortcut = UnsampledShortcut.for_provider(provider)
    assert shortcut is not None
    parent = trace.set_span_in_context(
        NonRecordingSpan(
            SpanContext(
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
                trace_state=TraceState([("k", "v")]),
            )
        )
    )
    span = shortcut.span(parent)
    assert span is not None
    ctx = span.get_span_context()
    assert ctx.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert ctx.span_id != 0xB7AD6B7169203331
    assert not ctx.trace_flags.sampled
    assert ctx.trace_state.to_header() == "k=v"
