"""Span batches encoded by the thread that ends the spans, POSTed by a sender thread.

Why not the SDK's ``BatchSpanProcessor``: its worker thread encodes each batch
(~8 µs a span, telemetry/_otlp.py) while holding the GIL the service's event
loop needs, and the loop pays for the hand-overs. On inventory's catalog read
under ``wrk`` (``benchmarks/telemetry_routes.py``, its SDK-processor row) this
processor costs a median 10 µs less CPU a request (3 %; cheaper in 10 of 15
paired rounds; 45–50 µs in the first, noisier runs). Here the thread that ends a
span encodes a chunk of ``CHUNK`` spans as the chunk fills (~0.5 ms, so no
request waits on a whole batch), and the sender thread only joins chunks into
one ``ExportTraceServiceRequest`` (its ``resource_spans`` is a repeated field:
encoded requests concatenate into one) and sends it with the exporter's own
HTTP client, retries, backoff and compression.

Configured as the SDK's processor is, by ``OTEL_BSP_SCHEDULE_DELAY``,
``OTEL_BSP_MAX_QUEUE_SIZE`` and ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``; like it,
only sampled spans are queued and a full queue drops the newest span (counted
in ``otel_sdk_processor_span_processed_total{error_type="queue_full"}``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from prometheus_client import Counter

from telemetry._metrics import REGISTRY
from telemetry._otlp import SPANS_EXPORTED, FastOTLPSpanExporter, encode_export_request

_logger = logging.getLogger(__name__)

# Spans per chunk encoded in the ending thread: ~0.5 ms of encoding at a time.
CHUNK = 64

# The semantic-convention SDK metric otel.sdk.processor.span.processed: spans
# handed to the exporter (error_type "") or dropped (queue_full).
SPANS_PROCESSED = Counter(
    "otel_sdk_processor_span_processed",
    "Spans the batch processor is done with, by error type (queue_full: dropped).",
    ["error_type"],
    registry=REGISTRY,
)
SPANS_PROCESSED.labels("")  # the series exists (at 0) before the first batch

# The SDK's defaults for the OTEL_BSP_* variables.
_DEFAULTS = {
    "OTEL_BSP_SCHEDULE_DELAY": 5000,
    "OTEL_BSP_MAX_QUEUE_SIZE": 2048,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
}


def _setting(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "").strip()
    if not value:
        return _DEFAULTS[name]
    try:
        number = int(float(value))
    except ValueError:
        number = 0
    if number <= 0:
        _logger.warning("%s=%r is not a positive number; using %d", name, value, _DEFAULTS[name])
        return _DEFAULTS[name]
    return number


class EncodingSpanProcessor(SpanProcessor):
    """Batches sampled spans for a ``FastOTLPSpanExporter``, encoded where they end."""

    def __init__(
        self,
        exporter: FastOTLPSpanExporter,
        *,
        schedule_delay_millis: float = 5000,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
    ) -> None:
        self._exporter = exporter
        self._delay = schedule_delay_millis / 1000
        self._max_queue = max_queue_size
        self._batch = min(max_export_batch_size, max_queue_size)
        self._chunk = min(CHUNK, self._batch)
        self._start()
        if hasattr(os, "register_at_fork"):
            # A forked child has the lock and queue but not the thread.
            os.register_at_fork(after_in_child=self._after_fork)

    @classmethod
    def from_env(
        cls, exporter: FastOTLPSpanExporter, env: Mapping[str, str] | None = None
    ) -> EncodingSpanProcessor:
        env = os.environ if env is None else env
        return cls(
            exporter,
            schedule_delay_millis=_setting(env, "OTEL_BSP_SCHEDULE_DELAY"),
            max_queue_size=_setting(env, "OTEL_BSP_MAX_QUEUE_SIZE"),
            max_export_batch_size=_setting(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        )

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []  # ended, not yet encoded
        self._chunks: deque[tuple[bytes, int]] = deque()  # encoded, not yet sent
        self._encoded = 0  # spans in _chunks
        self._queued = 0  # spans in _spans and _chunks
        self._shutdown = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="OtelSpanSender", daemon=True)
        self._thread.start()
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        if self._pid != os.getpid() and not self._shutdown:
            self._start()

    # -- SpanProcessor ----------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._shutdown or span.context is None or not span.context.trace_flags.sampled:
            return
        chunk = None
        with self._lock:
            if self._queued >= self._max_queue:
                SPANS_PROCESSED.labels("queue_full").inc()
                return
            self._spans.append(span)
            self._queued += 1
            if len(self._spans) >= self._chunk:
                chunk, self._spans = self._spans, []
        if chunk is not None and self._add(chunk) >= self._batch:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send everything queued now, from the calling thread."""
        if self._shutdown:
            return False
        self._send_all()
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._wake.set()
        self._thread.join()
        self._send_all()  # anything that ended while the thread was finishing
        self._exporter.shutdown()  # type: ignore[no-untyped-call]

    # -- the work ---------------------------------------------------------------------
    def _add(self, spans: list[ReadableSpan]) -> int:
        """Encode ``spans`` as one chunk; the spans encoded and waiting after it."""
        try:
            data = encode_export_request(spans)
        except Exception as exc:  # never let telemetry take the service down
            _logger.error("failed to encode %d spans: %s", len(spans), exc)
            SPANS_EXPORTED.labels(type(exc).__name__).inc(len(spans))
            with self._lock:
                self._queued -= len(spans)
                return self._encoded
        with self._lock:
            self._chunks.append((data, len(spans)))
            self._encoded += len(spans)
            return self._encoded

    def _send_all(self, *, partial: bool = True) -> None:
        """Send the encoded chunks; with ``partial``, the spans of an unfilled chunk too."""
        if partial:
            with self._lock:
                left, self._spans = self._spans, []
            if left:
                self._add(left)  # encoded here: it took the whole delay to gather them
        while True:
            parts: list[bytes] = []
            count = 0
            with self._lock:
                while self._chunks and count < self._batch:
                    data, n = self._chunks.popleft()
                    parts.append(data)
                    count += n
                self._encoded -= count
                self._queued -= count
            if not parts:
                return
            SPANS_PROCESSED.labels("").inc(count)
            self._exporter.export_encoded(b"".join(parts), count)

    def _run(self) -> None:
        while not self._shutdown:
            full = self._wake.wait(self._delay)
            self._wake.clear()
            try:
                # Woken by a full batch, the chunk being filled is left to its thread.
                self._send_all(partial=not full or self._shutdown)
            except Exception as exc:  # keep sending; say why this round failed
                _logger.error("span export round failed: %s", exc)
