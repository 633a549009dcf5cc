"""The retry-budget probe's arithmetic, against fake /metrics and a fake Prometheus.

``retry_counters`` takes the calls of the budget's window before the baseline
as an upper bound (the caller's own counter now minus Prometheus's sample from
``ttl`` ago); ``retry_amplification`` compares the retries since then with
what the budget can have allowed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chaos.probes import prometheus
from chaos.probes.prometheus import retry_amplification, retry_counters
from redline.state import write_state

ROUTE = "/products/{product_id}"


class Fake:
    """What the probes read: the gateway's retry counters, inventory's request
    count, and one Prometheus sample (the calls counted ``ttl`` ago)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.served = 0
        self.calls_then: float | None = None
        self.asked: list[dict[str, list[str]]] = []

    def metrics(self, service: str) -> str:
        if service == "gateway":
            lines = ["# TYPE resilience_retry_attempts counter"]
            lines += [
                f'resilience_retry_attempts_total{{retrier="inventory",outcome="{o}"}} {n}'
                for o, n in self.outcomes.items()
            ]
        else:
            lines = [
                "# TYPE http_server_request_duration_seconds histogram",
                f'http_server_request_duration_seconds_count{{http_route="{ROUTE}"}} {self.served}',
            ]
        return "\n".join(lines) + "\n"

    def query(self, params: dict[str, list[str]]) -> Any:
        self.asked.append(params)
        if self.calls_then is None:
            return []
        return [{"metric": {}, "value": [0, str(self.calls_then)]}]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[Fake, dict[str, Any]]]:
    state = Fake()

    def handler(service: str) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    body = state.metrics(service).encode()
                    kind = "text/plain; version=0.0.4"
                else:
                    result = state.query(parse_qs(url.query))
                    body = json.dumps(
                        {"status": "success", "data": {"resultType": "vector", "result": result}}
                    ).encode()
                    kind = "application/json"
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    servers = {
        n: ThreadingHTTPServer(("127.0.0.1", 0), handler(n))
        for n in ("gateway", "inventory", "prometheus")
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        write_state(tmp_path, {"ports": {n: s.server_address[1] for n, s in servers.items()}})
        yield state, {"redline_state_dir": str(tmp_path)}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def _baseline(configuration: dict[str, Any]) -> dict[str, Any]:
    return retry_counters(
        "test", caller="gateway", dependency="inventory", route=ROUTE, configuration=configuration
    )


def _since(configuration: dict[str, Any]) -> dict[str, Any]:
    return retry_amplification(
        "test", caller="gateway", dependency="inventory", route=ROUTE, configuration=configuration
    )


def test_prior_calls_are_the_counter_now_minus_prometheus_sample_from_ttl_ago(
    fake: tuple[Fake, dict[str, Any]],
) -> None:
    state, configuration = fake
    state.outcomes = {"success": 100, "retry": 10, "exhausted": 5}
    state.calls_then = 60.0
    started = time.time()
    baseline = _baseline(configuration)
    assert baseline["prior_calls"] == 105 - 60  # retries are not calls
    (asked,) = state.asked
    assert 'outcome!="retry"' in asked["query"][0]
    assert abs(float(asked["time"][0]) - (started - 10.0)) < 2.0

    state.outcomes = {"success": 300, "retry": 60, "exhausted": 25, "budget_exhausted": 10}
    state.served = 280
    out = _since(configuration)
    assert (out["calls"], out["attempts"], out["retries"]) == (230, 280, 50)
    assert out["budget_exhausted"] == 10
    # 0.2 per call of this span and of the 45 before it, plus 10/s over 10 s.
    assert out["retries_allowed"] == pytest.approx(0.2 * (230 + 45) + 100)
    assert out["over_budget"] == 0
    assert out["dependency_amplification"] == round(280 / 230, 3)


def test_retries_beyond_the_budget_are_counted_over_it(
    fake: tuple[Fake, dict[str, Any]],
) -> None:
    state, configuration = fake
    state.calls_then = 0.0
    _baseline(configuration)
    state.outcomes = {"success": 100, "retry": 150, "exhausted": 50}
    out = _since(configuration)
    assert out["retries_allowed"] == pytest.approx(0.2 * 150 + 100)
    assert out["over_budget"] == pytest.approx(150 - 130)


def test_a_span_longer_than_the_budgets_window_is_bounded_chunk_by_chunk(
    fake: tuple[Fake, dict[str, Any]],
) -> None:
    """20 s: three chunks of at most 9 s (the budget always sees the last 9 s of
    withdrawals); each allows the floor, and a deposit counts in at most three."""
    state, configuration = fake
    state.calls_then = 0.0
    _baseline(configuration)
    prometheus._COUNTER_BASELINES["test"]["at"] -= 20.0
    state.outcomes = {"success": 1000, "retry": 500}
    out = _since(configuration)
    assert out["retries_allowed"] == pytest.approx(0.2 * 1000 * 3 + 100 * 3)
    assert out["over_budget"] == 0


@pytest.mark.parametrize(
    ("calls_then", "prior"),
    [
        (None, 40),  # no sample that old (a stack up for less than ttl): every call counts
        (90.0, 40),  # more then than now: the caller restarted; every call since counts
    ],
)
def test_without_a_usable_sample_every_call_the_counter_holds_counts(
    fake: tuple[Fake, dict[str, Any]], calls_then: float | None, prior: int
) -> None:
    state, configuration = fake
    state.outcomes = {"success": 30, "exhausted": 10, "retry": 7}
    state.calls_then = calls_then
    assert _baseline(configuration)["prior_calls"] == prior
