"""A real nats-server (Debian's, JetStream on) for tests, and the event settings they run with."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from redline import nats_server as nats_cmd
from tests.harness import free_port, wait_until

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

    @classmethod
    def in_folder(cls, base: Path) -> NatsServer:
        """Not started: JetStream's store and the log under ``base``."""
        return cls(store_dir=base / "jetstream", log_path=base / "nats.log")
