"""The edge owns the internal headers: deadline, trace context, baggage, request id.

Issue 15: the gateway believed headers from the internet that should only
travel inside the platform: ``x-deadline-remaining-ms: 0`` got an instant 504
(anyone could burn the availability SLO), a ``traceparent`` with the sampled
flag forced sampling, and a client's ``baggage`` reached every service.

The gateway here runs with its defaults (no trusted callers) in front of a
recording stand-in for inventory, which keeps the headers the gateway sends:
what the platform behind the edge would receive.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import ServiceProcess, otel_env, traceparent, wait_until
from tests.otlp_receiver import OtlpReceiver

DEADLINE = "x-deadline-remaining-ms"
EMPTY_PAGE = {"items": [], "total": 0, "limit": 20, "offset": 0}


class Recorder:
    """An HTTP server that answers every GET with an empty catalog page and keeps the headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                recorder.requests.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps(EMPTY_PAGE).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, request_id: str) -> dict[str, str]:
        """The headers of the request the gateway forwarded for ``request_id``."""
        return wait_until(
            lambda: next((h for h in self.requests if h.get("x-request-id") == request_id), None),
            message=f"no forwarded request with id {request_id}",
        )


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.stop()


@contextmanager
def gateway(
    recorder: Recorder, logs: Path, otlp: OtlpReceiver | None = None, **env: str
) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        "gateway",
        env={
            "REDLINE_INVENTORY_URL": recorder.url,
            **otel_env(otlp.endpoint if otlp else None),
            **env,
        },
        log_path=logs / f"gateway-{os.urandom(4).hex()}.log",
    ).start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def edge(recorder: Recorder, otlp: OtlpReceiver, logs_dir: Path) -> Iterator[ServiceProcess]:
    """The gateway as shipped: no trusted callers, every trace sampled."""
    with gateway(recorder, logs_dir, otlp, REDLINE_TRACE_SAMPLE_RATIO="1.0") as svc:
        yield svc


def request_id() -> str:
    return f"edge-{os.urandom(8).hex()}"


@pytest.mark.parametrize("value", ["0", "1", "-5", "999999999", "soon"])
def test_a_clients_deadline_header_is_ignored_and_the_route_budget_is_sent(
    edge: ServiceProcess, recorder: Recorder, value: str
) -> None:
    rid = request_id()
    r = httpx.get(
        f"{edge.url}/api/v1/products", headers={DEADLINE: value, "x-request-id": rid}, timeout=5
    )
    assert r.status_code == 200, r.text
    sent = int(recorder.received(rid)[DEADLINE])
    assert 0 < sent <= 1000  # the catalog's own budget (1 s), counting down


def test_a_sampled_traceparent_does_not_force_sampling(recorder: Recorder, logs_dir: Path) -> None:
    header, trace_id, _ = traceparent()
    rid = request_id()
    with gateway(recorder, logs_dir, REDLINE_TRACE_SAMPLE_RATIO="0") as svc:
        r = httpx.get(
            f"{svc.url}/api/v1/products", headers={"traceparent": header, "x-request-id": rid}
        )
    assert r.status_code == 200
    sent = recorder.received(rid)["traceparent"]
    _, sent_trace, _, flags = sent.split("-")
    assert sent_trace != trace_id
    assert int(flags, 16) & 1 == 0, sent  # the gateway's sampler (ratio 0) decided


def test_an_untrusted_traceparent_is_a_link_from_a_new_trace(
    edge: ServiceProcess, recorder: Recorder, otlp: OtlpReceiver
) -> None:
    header, trace_id, parent = traceparent()
    rid = request_id()
    r = httpx.get(
        f"{edge.url}/api/v1/products", headers={"traceparent": header, "x-request-id": rid}
    )
    assert r.status_code == 200
    [span] = otlp.wait_for(
        lambda s: (
            s.service_name == "gateway"
            and s.kind == "SERVER"
            and any(link[0] == trace_id for link in s.links)
        )
    )
    assert span.trace_id != trace_id
    assert span.parent_span_id == ""  # a root
    assert span.links == ((trace_id, parent, {"redline.link.reason": "untrusted_parent"}),)
    # What the services behind the edge continue is the new trace.
    assert recorder.received(rid)["traceparent"].split("-")[1] == span.trace_id


def test_a_clients_baggage_and_tracestate_are_not_propagated(
    edge: ServiceProcess, recorder: Recorder
) -> None:
    header, _, _ = traceparent()
    rid = request_id()
    r = httpx.get(
        f"{edge.url}/api/v1/products",
        headers={
            "traceparent": header,
            "tracestate": "evil=1",
            "baggage": "user.id=admin,tenant=other",
            "x-request-id": rid,
        },
    )
    assert r.status_code == 200
    sent = recorder.received(rid)
    assert "baggage" not in sent
    assert "evil" not in sent.get("tracestate", "")


def test_a_trusted_caller_keeps_its_trace_and_baggage(recorder: Recorder, logs_dir: Path) -> None:
    header, trace_id, _ = traceparent()
    rid = request_id()
    with gateway(recorder, logs_dir, REDLINE_TRACE_TRUSTED_CLIENTS="127.0.0.0/8") as svc:
        r = httpx.get(
            f"{svc.url}/api/v1/products",
            headers={"traceparent": header, "baggage": "journey=browse", "x-request-id": rid},
        )
    assert r.status_code == 200
    sent = recorder.received(rid)
    assert sent["traceparent"].split("-")[1] == trace_id
    assert sent["baggage"] == "journey=browse"


@pytest.mark.parametrize(
    "given",
    ["x" * 129, "has space", "semi;colon", 'quote"', "é-accent", ""],
    ids=["too-long", "space", "semicolon", "quote", "non-ascii", "empty"],
)
def test_an_unsafe_request_id_is_replaced_at_the_edge(
    edge: ServiceProcess, recorder: Recorder, given: str
) -> None:
    before = len(recorder.requests)
    r = httpx.get(f"{edge.url}/api/v1/products", headers={b"x-request-id": given.encode()})
    assert r.status_code == 200
    minted = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted), minted
    assert recorder.received(minted)  # and that is the id the platform behind sees
    assert all(h.get("x-request-id") != given for h in recorder.requests[before:])


def test_a_safe_request_id_is_kept(edge: ServiceProcess, recorder: Recorder) -> None:
    rid = "support-ticket-4711:" + "a" * 100
    r = httpx.get(f"{edge.url}/api/v1/products", headers={"x-request-id": rid})
    assert r.headers["x-request-id"] == rid
    assert recorder.received(rid)
