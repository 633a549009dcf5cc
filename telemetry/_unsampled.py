"""The span the SDK would make for a request it does not sample, made for less.

At 10 % sampling nine requests in ten get a ``NonRecordingSpan``, and the SDK's
``Tracer.start_span`` spends about 4.7 µs in a tight loop deciding so: a
context lookup, the parent-based sampler's delegation and its
``SamplingResult``, flags built twice. For the samplers that decide from the
trace id and the parent's flags alone, which are the ``parentbased_*`` ones
``OTEL_TRACES_SAMPLER`` offers, the same decision and the same span context
cost about 1.3 µs here. End to end, at 10 % sampling, it took the hello route
from 435k to 407k instructions per request (benchmarks/instruction_counts.py).

The shortcut must not change what is sampled. A root span's trace id is drawn
here, decided on, and, when the span is sampled after all, handed to the SDK
through ``PresetIdGenerator`` so the SDK builds the span with the very id the
decision was made on; drawing twice would sample ``ratio²`` of the requests.
tests/test_unsampled_shortcut.py checks, from the same random seed, that the
shortcut and the SDK give equal span contexts for every case.
"""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider

_getrandbits = random.getrandbits
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_ALWAYS = _TRACE_ID_LIMIT + 1  # a bound every trace id is below
# What the SDK gives an unsampled span: its random ids keep the W3C random flag.
_UNSAMPLED_RANDOM = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_ROOT_BOUNDS = {"AlwaysOnSampler": _ALWAYS, "AlwaysOffSampler": 0}
# The delegates ParentBased has unless told otherwise; only then is the
# parent's sampled flag the whole decision.
_DEFAULT_DELEGATES = (
    ",remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
    "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"
)


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except for one trace id handed in just before a span is started."""

    def __init__(self) -> None:
        self._preset = threading.local()

    def preset_trace_id(self, trace_id: int) -> None:
        self._preset.trace_id = trace_id

    def generate_trace_id(self) -> int:
        preset: int = getattr(self._preset, "trace_id", 0)
        if preset:
            self._preset.trace_id = 0
            return preset
        return super().generate_trace_id()


def _root_bound(provider: TracerProvider) -> int | None:
    """The trace-id bound the provider's sampler samples roots below; None if not that kind."""
    sampler = provider.sampler
    if (
        not isinstance(sampler, ParentBased)
        or type(sampler).should_sample is not ParentBased.should_sample
    ):
        return None
    # The delegates are private; the description names them (and is public).
    description: str = sampler.get_description()  # type: ignore[no-untyped-call]
    prefix = "ParentBased{root:"
    if not (description.startswith(prefix) and description.endswith(_DEFAULT_DELEGATES)):
        return None
    root = description[len(prefix) : -len(_DEFAULT_DELEGATES)]
    if root in _ROOT_BOUNDS:
        return _ROOT_BOUNDS[root]
    if root.startswith("TraceIdRatioBased{") and root.endswith("}"):
        try:
            rate = float(root[len("TraceIdRatioBased{") : -1])
        except ValueError:
            return None
        return TraceIdRatioBased.get_bound_for_rate(rate)
    return None


class UnsampledShortcut:
    """Makes the span for requests the provider's sampler would drop; None for the others."""

    def __init__(self, ids: PresetIdGenerator, root_bound: int) -> None:
        self._ids = ids
        self._bound = root_bound

    @classmethod
    def for_provider(cls, provider: object) -> UnsampledShortcut | None:
        """A shortcut exactly equivalent to the provider's sampling, or None."""
        ids = getattr(provider, "id_generator", None)
        if not isinstance(ids, PresetIdGenerator):
            return None
        bound = _root_bound(provider)  # type: ignore[arg-type]
        return None if bound is None else cls(ids, bound)

    def span(self, parent: Context | None) -> NonRecordingSpan | None:
        """The span for a request whose parent context is ``parent``, when it is unsampled.

        Returns None when the SDK must make the span (it is sampled); a root's
        trace id is then already handed to the SDK.
        """
        if parent is not None:
            parent_ctx = trace.get_current_span(parent).get_span_context()
            if parent_ctx.is_valid:
                if parent_ctx.trace_flags.sampled:
                    return None
                flags = _UNSAMPLED_RANDOM if parent_ctx.trace_flags.random_trace_id else _UNSAMPLED
                return NonRecordingSpan(
                    SpanContext(
                        parent_ctx.trace_id,
                        self._span_id(),
                        is_remote=False,
                        trace_flags=flags,
                        trace_state=parent_ctx.trace_state,
                    )
                )
        trace_id = _getrandbits(128)
        while not trace_id:
            trace_id = _getrandbits(128)
        if trace_id & _TRACE_ID_LIMIT < self._bound:
            self._ids.preset_trace_id(trace_id)
            return None
        return NonRecordingSpan(
            SpanContext(trace_id, self._span_id(), is_remote=False, trace_flags=_UNSAMPLED_RANDOM)
        )

    @staticmethod
    def _span_id() -> int:
        span_id = _getrandbits(64)
        while not span_id:
            span_id = _getrandbits(64)
        return span_id
