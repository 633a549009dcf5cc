"""The server span of each request: the SDK's sampling and pipeline, a lighter span object.

Measured on the hello route (benchmarks/instruction_counts.py, README
"Performance"), the SDK's ``Tracer.start_span`` and its ``Span`` were the
largest part of what instrumentation added to a request:

* an unsampled span (nine requests in ten at 10 %) cost 3.6 µs in a tight
  loop, mostly to decide so: a context lookup, the parent-based sampler's
  delegation and its ``SamplingResult``, flags built twice;
* a sampled span cost 28 µs from start to hand-over to the batch processor:
  every attribute validated under a lock, four locks, two bounded lists and a
  ``ReadableSpan`` copy at the end.

For the ``parentbased_*`` samplers ``OTEL_TRACES_SAMPLER`` offers, the decision
follows from the trace id and the parent's flags alone, so ``ServerSpans``
takes it itself, exactly as the SDK would (same random draws, same flags, same
trace state), and makes either the ``NonRecordingSpan`` the SDK would make or a
``ServerSpan``: a recording span that keeps plain containers and, when it ends,
hands the provider's span processors itself as the ``ReadableSpan``, as the
SDK's span does: 1.2 µs and 7.4 µs (benchmarks/server_span.py). The
resilient client's CLIENT spans are made the same way (the gateway makes one
per proxied call; telemetry/_http_client.py). Everything else stays the SDK's:
the provider, its processors and exporter, and every other span (database,
the services' own), which parent to these as to any other.

Any other sampler, a custom id generator, or an attribute length limit send
every request through the SDK unchanged. tests/test_server_span.py checks,
from the same random seed, that both give the same span contexts and the same
exported spans.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.util import types

_logger = logging.getLogger(__name__)

_getrandbits = random.getrandbits
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_ALWAYS = _TRACE_ID_LIMIT + 1  # a bound every trace id is below
# The SDK's flags: its random ids carry the W3C random-trace-id flag.
_UNSAMPLED_RANDOM = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_ROOT_BOUNDS = {"AlwaysOnSampler": _ALWAYS, "AlwaysOffSampler": 0}
# The delegates ParentBased has unless told otherwise; only then is the
# parent's sampled flag the whole decision.
_DEFAULT_DELEGATES = (
    ",remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
    "localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}"
)
# Values stored as given; anything else is validated the SDK's way.
_PLAIN = frozenset({str, bool, int, float})
_UNSET = Status(StatusCode.UNSET)


def _root_bound(sampler: object) -> int | None:
    """The trace-id bound the sampler samples roots below; None if it is not that kind."""
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


def _span_id() -> int:
    span_id = _getrandbits(64)
    while not span_id:
        span_id = _getrandbits(64)
    return span_id


class ServerSpans:
    """Makes the server span of each request for one SDK tracer."""

    def __init__(self, tracer: SdkTracer, root_bound: int, name: str, limits: SpanLimits) -> None:
        self._bound = root_bound
        self.processor: SpanProcessor = tracer.span_processor
        self.resource: Resource = tracer.resource
        self.scope = InstrumentationScope(name)
        self.limits = limits

    @classmethod
    def for_tracer(cls, tracer: object, name: str) -> ServerSpans | None:
        """Spans exactly equivalent to the tracer's own, or None when that cannot be promised."""
        if not isinstance(tracer, SdkTracer) or type(tracer.id_generator) is not RandomIdGenerator:
            return None
        limits = SpanLimits()
        if limits.max_span_attribute_length is not None:
            return None  # values would need truncating: leave that to the SDK
        bound = _root_bound(tracer.sampler)
        return None if bound is None else cls(tracer, bound, name, limits)

    def span(
        self, name: str, parent: Context | None, kind: SpanKind = SpanKind.SERVER
    ) -> NonRecordingSpan | ServerSpan:
        """The span for a request whose parent context is ``parent``.

        A ``ServerSpan`` comes back not yet started: ``start`` it with its
        attributes. ``kind``: the resilient client's CLIENT spans are made the
        same way (telemetry/_http_client.py), under the request's span as
        their local parent; so are the load generator's CLIENT roots
        (loadtests/tracing.py).
        """
        if parent is not None:
            parent_ctx = trace.get_current_span(parent).get_span_context()
            if parent_ctx.is_valid:
                random_id = parent_ctx.trace_flags.random_trace_id
                if parent_ctx.trace_flags.sampled:
                    flags = _SAMPLED_RANDOM if random_id else _SAMPLED
                else:
                    flags = _UNSAMPLED_RANDOM if random_id else _UNSAMPLED
                context = SpanContext(
                    parent_ctx.trace_id,
                    _span_id(),
                    is_remote=False,
                    trace_flags=flags,
                    trace_state=parent_ctx.trace_state,
                )
                if flags.sampled:
                    return ServerSpan(self, name, context, parent_ctx, kind)
                return NonRecordingSpan(context)
        trace_id = _getrandbits(128)
        while not trace_id:
            trace_id = _getrandbits(128)
        if trace_id & _TRACE_ID_LIMIT < self._bound:
            context = SpanContext(
                trace_id, _span_id(), is_remote=False, trace_flags=_SAMPLED_RANDOM
            )
            return ServerSpan(self, name, context, None, kind)
        return NonRecordingSpan(
            SpanContext(trace_id, _span_id(), is_remote=False, trace_flags=_UNSAMPLED_RANDOM)
        )


class ServerSpan(trace.Span, ReadableSpan):
    """A recording server span with the SDK span's behaviour and plain containers.

    Like the SDK's span it is also the ``ReadableSpan`` its processors read,
    but it hands them itself at the end rather than a copy: once ended it
    refuses every change, as the SDK's does. It runs on the event loop that
    serves the request, so, unlike the SDK's span, it takes no locks.
    """

    def __init__(
        self,
        spans: ServerSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind = SpanKind.SERVER,
    ) -> None:
        # ReadableSpan's fields, set directly: its __init__ would build a Resource.
        self._spans = spans
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._resource = spans.resource
        self._instrumentation_scope = spans.scope
        self._instrumentation_info = None
        self._attributes: dict[str, AttributeValue] = {}
        self._dropped_attributes = 0
        self._events: Sequence[Event] = ()
        self._links: Sequence[Link] = ()
        self._status = _UNSET
        self._start_time: int | None = None
        self._end_time: int | None = None

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    def start(
        self, attributes: Mapping[str, AttributeValue], parent_context: Context | None
    ) -> None:
        self.set_attributes(attributes)
        self._start_time = time_ns()
        self._spans.processor.on_start(self, parent_context=parent_context)  # type: ignore[arg-type]

    # -- the trace.Span API ---------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # never None here

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        for key, value in attributes.items():
            self._set(key, value)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        self._set(key, value)

    def _set(self, key: str, value: AttributeValue) -> None:
        limit = self._spans.limits.max_span_attributes
        if type(value) not in _PLAIN or type(key) is not str or not key or limit == 0:
            # Sequences, bad keys and values, no room: the SDK's own validation,
            # with its warnings and its count of dropped attributes.
            cleaned = BoundedAttributes(limit, {key: value}, immutable=False)
            self._dropped_attributes += cleaned.dropped
            if key not in cleaned:
                return
            value = cleaned[key]
        attributes = self._attributes
        if key in attributes:
            del attributes[key]  # as the SDK does: an updated key moves to the end
        elif limit is not None and len(attributes) >= limit:
            _logger.warning(
                "Attributes dict is full. Dropping the oldest key-value pair from attributes "
                "to make space for the new key-value pair."
            )
            del attributes[next(iter(attributes))]
            self._dropped_attributes += 1
        attributes[key] = value

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if self._ended("add_event"):
            return
        limits = self._spans.limits
        if not isinstance(self._events, BoundedList):
            self._events = BoundedList(limits.max_events)
        event_attributes = BoundedAttributes(
            limits.max_event_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
            immutable=True,
        )
        self._events.append(Event(name=name, attributes=event_attributes, timestamp=timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        if self._ended("add_link"):
            return
        limits = self._spans.limits
        if not isinstance(self._links, BoundedList):
            self._links = BoundedList(limits.max_links)
        link_attributes = BoundedAttributes(
            limits.max_link_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
            immutable=True,
        )
        self._links.append(Link(context=context, attributes=link_attributes))

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("set_status"):
            return
        # As the SDK: OK is final, UNSET is ignored.
        if self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event_attributes: dict[str, AttributeValue] = {
            "exception.type": (
                f"{module}.{qualname}" if module and module != "builtins" else qualname
            ),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._start_time is None:
            raise RuntimeError("Calling end() on a not started span.")
        if self._end_time is not None:
            _logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._spans.processor.on_end(self)

    def _ended(self, method: str) -> bool:
        if self._end_time is None:
            return False
        _logger.warning("Tried calling %s on an ended span.", method)
        return True
