"""NATS's own numbers for Prometheus: ``/varz`` and ``/jsz`` read at scrape time.

nats-server's monitoring port speaks JSON, not the Prometheus text format.
The upstream answer, ``prometheus-nats-exporter`` (a Go program), cannot be
had here: the Go module proxy refuses that module (403), and neither Debian
nor PyPI packages it. So this is a small exporter of our own, on the same
pattern: a process of its own beside the server (it outlives the services
and tells "NATS is down" apart from "nobody scraped it"), that turns each
scrape into one ``GET /varz`` and one ``GET /jsz`` and answers in the text
format, with ``nats_up`` 0 when the server does not answer within the budget
(a stopped server accepts the connection and says nothing). The budget is
half the scrape timeout Prometheus sends with each scrape
(``X-Prometheus-Scrape-Timeout-Seconds``), at most ``--budget``: a hung NATS
is a scrape that answers ``nats_up 0`` in time, not a scrape that times out
(which would only say the exporter is down).

What it exports, all from the server's view (notifications reports the same
consumer from the client's side, ``notifications_consumer_*``):

* the server: up, version (an info metric), start time, connections, messages
  and bytes in and out, slow consumers, subscriptions, resident memory, CPU;
* JetStream: streams, consumers, stored messages and bytes against the
  limits, API requests and errors;
* per stream: messages, bytes, last sequence, consumers; per consumer: pending,
  ack pending, redelivered, waiting pulls, delivered and ack-floor sequences.

``redline up`` runs it on port 7777 (the upstream exporter's), compose as the
``nats-exporter`` container; Prometheus scrapes it as job ``nats``.
``python -m redline.nats_exporter --monitor http://127.0.0.1:8222``.
Standard library and ``prometheus_client`` only: nothing of the services.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

DEFAULT_PORT = 7777
# Both requests together, at most; less when Prometheus's scrape timeout is short.
DEFAULT_BUDGET_SECONDS = 1.0
# The share of the scrape timeout NATS may take; the rest is for the answer.
TIMEOUT_SHARE = 0.5
JSZ_QUERY = "/jsz?accounts=true&streams=true&consumers=true"


def _start_time(value: str) -> float:
    """RFC 3339 with nanoseconds (``2026-12-06T00:54:52.600357615Z``) → Unix seconds."""
    head, _, frac = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float(f"0.{frac}") if frac else 0.0)


class NatsCollector(Collector):
    """A Prometheus collector that reads a nats-server's monitoring endpoint when scraped."""

    def __init__(self, monitor_url: str, *, budget: float = DEFAULT_BUDGET_SECONDS) -> None:
        if not monitor_url.startswith(("http://", "https://")):
            raise ValueError(f"monitor URL: expected http(s)://host:port, got {monitor_url!r}")
        self.monitor_url = monitor_url.rstrip("/")
        self.budget = budget
        # This scrape's budget, set per request (each request has its own thread).
        self.scrape = threading.local()

    def _get(self, path: str, deadline: float) -> dict[str, Any]:
        timeout = max(deadline - time.monotonic(), 0.05)
        url = self.monitor_url + path  # http(s), checked in __init__
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            data: dict[str, Any] = json.load(response)
        return data

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        deadline = started + getattr(self.scrape, "budget", self.budget)
        up = GaugeMetricFamily(
            "nats_up", "1 when the NATS monitoring endpoint answered this scrape"
        )
        try:
            varz = self._get("/varz", deadline)
        except (OSError, ValueError):
            up.add_metric([], 0)
            yield up
            yield self._duration(started)
            return
        up.add_metric([], 1)
        yield up
        yield from self._server(varz)
        try:
            jsz = self._get(JSZ_QUERY, deadline)
        except (OSError, ValueError):
            jsz = None  # JetStream's numbers missing from this scrape; the server's stay
        if jsz is not None:
            yield from self._jetstream(jsz)
        yield self._duration(started)

    @staticmethod
    def _duration(started: float) -> Metric:
        family = GaugeMetricFamily(
            "nats_exporter_scrape_duration_seconds",
            "Time this scrape spent reading the NATS monitoring endpoint",
        )
        family.add_metric([], time.monotonic() - started)
        return family

    @staticmethod
    def _server(varz: dict[str, Any]) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "nats_server_info",
            "The NATS server, by name and version",
            labels=["server_name", "version"],
        )
        info.add_metric([str(varz.get("server_name", "")), str(varz.get("version", ""))], 1)
        yield info
        if "start" in varz:
            yield GaugeMetricFamily(
                "nats_server_start_time_seconds",
                "When the server started, Unix seconds",
                value=_start_time(varz["start"]),
            )
        gauges = [
            ("nats_connections", "connections", "Client connections open now"),
            ("nats_subscriptions", "subscriptions", "Subscriptions registered now"),
            ("nats_memory_bytes", "mem", "The server's resident memory"),
        ]
        for name, key, doc in gauges:
            yield GaugeMetricFamily(name, doc, value=float(varz.get(key, 0)))
        yield GaugeMetricFamily(
            "nats_cpu_usage_ratio",
            "CPU the server uses, in cores (1 = one core busy)",
            value=float(varz.get("cpu", 0)) / 100,
        )
        counters = [
            ("nats_accepted_connections", "total_connections", "Client connections accepted"),
            ("nats_in_messages", "in_msgs", "Messages received from clients"),
            ("nats_out_messages", "out_msgs", "Messages sent to clients"),
            ("nats_in_bytes", "in_bytes", "Payload bytes received from clients"),
            ("nats_out_bytes", "out_bytes", "Payload bytes sent to clients"),
            ("nats_slow_consumers", "slow_consumers", "Clients disconnected as slow consumers"),
        ]
        for name, key, doc in counters:
            yield CounterMetricFamily(name, doc, value=float(varz.get(key, 0)))

    @staticmethod
    def _jetstream(jsz: dict[str, Any]) -> Iterator[Metric]:
        config = jsz.get("config") or {}
        api = jsz.get("api") or {}
        gauges = [
            ("nats_jetstream_streams", jsz.get("streams"), "Streams"),
            ("nats_jetstream_consumers", jsz.get("consumers"), "Consumers"),
            ("nats_jetstream_messages", jsz.get("messages"), "Messages stored in all streams"),
            ("nats_jetstream_stored_bytes", jsz.get("bytes"), "Bytes stored in all streams"),
            ("nats_jetstream_storage_bytes", jsz.get("storage"), "File storage in use"),
            ("nats_jetstream_memory_bytes", jsz.get("memory"), "Memory storage in use"),
            ("nats_jetstream_storage_limit_bytes", config.get("max_storage"), "File storage limit"),
            ("nats_jetstream_memory_limit_bytes", config.get("max_memory"), "Memory storage limit"),
        ]
        for name, value, doc in gauges:
            yield GaugeMetricFamily(name, doc, value=float(value or 0))
        yield CounterMetricFamily(
            "nats_jetstream_api_requests",
            "JetStream API requests",
            value=float(api.get("total", 0)),
        )
        yield CounterMetricFamily(
            "nats_jetstream_api_errors",
            "JetStream API requests that failed",
            value=float(api.get("errors", 0)),
        )

        streams = _families(STREAM_GAUGES, ["stream"])
        consumers = _families(CONSUMER_GAUGES, ["stream", "consumer"])
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                name = str(stream.get("name", ""))
                for family, path in streams:
                    family.add_metric([name], _dig(stream, path))
                for consumer in stream.get("consumer_detail") or []:
                    labels = [name, str(consumer.get("name", ""))]
                    for family, path in consumers:
                        family.add_metric(labels, _dig(consumer, path))
        yield from (family for family, _ in streams)
        yield from (family for family, _ in consumers)


# Per stream and per consumer: the gauge, its help, where /jsz has the value.
STREAM_GAUGES = (
    ("nats_jetstream_stream_messages", "Messages stored in the stream", "state.messages"),
    ("nats_jetstream_stream_bytes", "Bytes stored in the stream", "state.bytes"),
    ("nats_jetstream_stream_last_sequence", "The stream's last sequence", "state.last_seq"),
    ("nats_jetstream_stream_consumers", "Consumers of the stream", "state.consumer_count"),
)
CONSUMER_GAUGES = (
    ("nats_jetstream_consumer_pending_messages", "Not yet delivered", "num_pending"),
    ("nats_jetstream_consumer_ack_pending_messages", "Delivered, not acked", "num_ack_pending"),
    ("nats_jetstream_consumer_redelivered_messages", "Redelivered, not acked", "num_redelivered"),
    ("nats_jetstream_consumer_waiting_pulls", "Pull requests waiting", "num_waiting"),
    ("nats_jetstream_consumer_delivered_sequence", "Last delivered", "delivered.stream_seq"),
    ("nats_jetstream_consumer_ack_floor_sequence", "Acked up to", "ack_floor.stream_seq"),
)


def _families(
    table: tuple[tuple[str, str, str], ...], labels: list[str]
) -> list[tuple[GaugeMetricFamily, str]]:
    return [(GaugeMetricFamily(name, doc, labels=labels), path) for name, doc, path in table]


def _dig(detail: dict[str, Any], path: str) -> float:
    """``detail["a"]["b"]`` for ``"a.b"``; 0 where a step is missing."""
    value: Any = detail
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return float(value or 0)


def budget_for(scrape_timeout: str | None, most: float) -> float:
    """Half of Prometheus's scrape timeout (its header's value), at most ``most``."""
    try:
        timeout = float(scrape_timeout) if scrape_timeout else math.inf
    except ValueError:
        timeout = math.inf
    return max(0.05, min(most, timeout * TIMEOUT_SHARE))


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(
    monitor_url: str, host: str, port: int, *, budget: float = DEFAULT_BUDGET_SECONDS
) -> WSGIServer:
    """Serve the collector's metrics on ``host:port`` from a thread; returns the server."""
    collector = NatsCollector(monitor_url, budget=budget)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
        collector.scrape.budget = budget_for(header, budget)
        try:
            return metrics(environ, start_response)
        finally:
            del collector.scrape.budget

    server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="nats-exporter", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m redline.nats_exporter",
        description="Expose a nats-server's /varz and /jsz as Prometheus metrics.",
    )
    parser.add_argument("--monitor", default="http://127.0.0.1:8222", help="its monitoring URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET_SECONDS,
        help="seconds a scrape may wait for NATS, at most (half the scrape timeout if less)",
    )
    args = parser.parse_args(argv)
    server = serve(args.monitor, args.host, args.port, budget=args.budget)
    print(f"NATS exporter on http://{args.host}:{args.port}/metrics for {args.monitor}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
