"""NATS (Debian's nats-server, JetStream on), an SMTP sink, and a platform wired to them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from redline import nats_server as nats_cmd
from redline.mail_sink import MailSink
from tests.harness import Platform, free_port, wait_until
from tests.otlp_receiver import OtlpReceiver

# Fast enough for tests: retries in tens of milliseconds, dead letters after 3.
EVENTS_ENV = {
    "REDLINE_OUTBOX_POLL_SECONDS": "0.2",
    "REDLINE_RETRY_BACKOFF_SECONDS": "0.05",
    "REDLINE_RETRY_BACKOFF_MAX_SECONDS": "0.2",
    "REDLINE_MAX_DELIVERIES": "3",
    "REDLINE_CONSUMER_STATS_SECONDS": "0.5",
    # A killed consumer's messages come back after this.
    "REDLINE_ACK_WAIT_SECONDS": "2",
}


@dataclass
class NatsServer:
    store_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self) -> NatsServer:
        binary = nats_cmd.binary()
        if binary is None:
            pytest.fail("nats-server not installed: apt-get install nats-server (make test does)")
        argv = nats_cmd.command_line(
            binary,
            host="127.0.0.1",
            port=self.port,
            monitor_port=self.monitor_port,
            store_dir=self.store_dir,
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            return (
                httpx.get(
                    nats_cmd.health_url("127.0.0.1", self.monitor_port), timeout=1
                ).status_code
                == 200
            )

        wait_until(healthy, timeout=15, message="nats-server not healthy")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    base = tmp_path_factory.mktemp("nats")
    server = NatsServer(store_dir=base / "jetstream", log_path=base / "nats.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mail_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    sink = MailSink("127.0.0.1", free_port(), tmp_path_factory.mktemp("mail")).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def events_platform(
    new_database: Callable[[str], str],
    otlp: OtlpReceiver,
    logs_dir: Path,
    nats_server: NatsServer,
    mail_sink: MailSink,
) -> Iterator[Platform]:
    """Every service, with the outboxes, NATS and notifications wired to a real SMTP sink."""
    env = {"REDLINE_NATS_SERVERS": nats_server.url, **EVENTS_ENV}
    p = Platform.build(
        databases=new_database,
        logs=logs_dir / f"events-{free_port()}",
        otlp_endpoint=otlp.endpoint,
        extra_env={
            "accounts": env,
            "orders": env,
            "notifications": {**env, "REDLINE_SMTP_PORT": str(mail_sink.port)},
            "payments": {"REDLINE_PROCESSOR_DECLINE_RATE": "0"},
        },
    ).start()
    yield p
    p.stop()
