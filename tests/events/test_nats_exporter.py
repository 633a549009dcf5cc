"""redline/nats_exporter.py against a real nats-server: its numbers, promtool, a stopped server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerts.promql import Catalog
from redline.nats_exporter import budget_for
from tests.conftest import require_tool
from tests.harness import ROOT, free_port, terminate, wait_until
from tests.nats_server import NatsServer

STREAM = "EXPORTED"
CONSUMER = "reader"


@pytest.fixture(scope="module")
def exporter(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("nats-exporter") / "exporter.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "redline.nats_exporter"),
                *("--monitor", nats_server.monitor, "--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/metrics"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=15, message="the NATS exporter never answered")
    yield url
    assert terminate(proc, timeout=5) == 0, log.read_text()[-2000:]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _five_published_two_fetched_one_acked(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=["exported.>"])
        for i in range(5):
            await js.publish(f"exported.{i}", b"{}")
        sub = await js.pull_subscribe("exported.>", durable=CONSUMER, stream=STREAM)
        first, _second = await sub.fetch(2, timeout=5)
        await first.ack_sync()
    finally:
        await nc.close()


async def test_exports_the_servers_streams_and_consumers_cleanly(
    exporter: str, nats_server: NatsServer
) -> None:
    await _five_published_two_fetched_one_acked(nats_server.url)
    text = httpx.get(exporter, timeout=5).text
    values = _samples(text)
    stream = (("stream", STREAM),)
    consumer = (("consumer", CONSUMER), ("stream", STREAM))
    assert values["nats_up", ()] == 1
    assert values["nats_jetstream_stream_messages", stream] == 5
    assert values["nats_jetstream_stream_last_sequence", stream] == 5
    assert values["nats_jetstream_stream_consumers", stream] == 1
    assert values["nats_jetstream_consumer_pending_messages", consumer] == 3
    assert values["nats_jetstream_consumer_ack_pending_messages", consumer] == 1
    assert values["nats_jetstream_consumer_delivered_sequence", consumer] == 2
    assert values["nats_jetstream_consumer_ack_floor_sequence", consumer] == 1
    assert values["nats_jetstream_streams", ()] >= 1
    assert values["nats_in_messages_total", ()] >= 5  # the publishes, and JetStream API calls
    assert values["nats_accepted_connections_total", ()] >= 1
    version = [labels for (name, labels) in values if name == "nats_server_info"]
    assert version, "no nats_server_info"
    assert dict(version[0])["server_name"] == "redline"
    assert abs(values["nats_server_start_time_seconds", ()] - time.time()) < 3600

    check = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # What dashboards and rules may read of job nats is exactly what it exports.
    catalog = Catalog.load()
    catalogued = {name for name, s in catalog.series.items() if "nats" in s.jobs}
    assert {name for name, _ in values} == catalogued


def test_a_stopped_server_reads_as_down_within_the_scrape_timeout(
    exporter: str, nats_server: NatsServer
) -> None:
    """SIGSTOP: the server takes the connection and says nothing; the scrape still answers in time."""
    assert nats_server.proc is not None

    def scrape(
        **headers: str,
    ) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], float]:
        started = time.monotonic()
        values = _samples(httpx.get(exporter, headers=headers, timeout=5).text)
        return values, time.monotonic() - started

    os.kill(nats_server.proc.pid, signal.SIGSTOP)
    try:
        alone, alone_took = scrape()  # the default budget, 1 s
        # As Prometheus asks with redline up's 1 s interval: half of its timeout.
        prometheus, prometheus_took = scrape(**{"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    finally:
        os.kill(nats_server.proc.pid, signal.SIGCONT)
    for values in (alone, prometheus):
        assert values["nats_up", ()] == 0
        assert not any(name.startswith("nats_jetstream") for name, _ in values)
    assert 1.0 <= alone_took < 1.8, alone_took
    assert 0.5 <= prometheus_took < 0.9, prometheus_took
    wait_until(
        lambda: _samples(httpx.get(exporter, timeout=5).text)["nats_up", ()] == 1,
        timeout=10,
        message="nats_up never came back to 1 after SIGCONT",
    )


def test_the_budget_is_half_the_scrape_timeout_and_never_more_than_the_cap() -> None:
    assert budget_for("1", 1.0) == 0.5
    assert budget_for("10", 1.0) == 1.0
    assert budget_for(None, 1.0) == 1.0
    assert budget_for("nonsense", 0.8) == 0.8
    assert budget_for("0.01", 1.0) == 0.05
