"""Shared fixtures: one PostgreSQL per session, fresh databases, an OTLP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from redline.alert_sink import AlertSink
from redline.mail_sink import MailSink
from services.chassis.db import ensure_database
from services.chassis.pgserver import EmbeddedPostgres
from tests.harness import (
    NO_RANDOM_DECLINES,
    PREDICTABLE_PAYMENTS,
    Platform,
    ServiceProcess,
    Stack,
    free_port,
    otel_env,
)
from tests.nats_server import EVENTS_ENV, NatsServer
from tests.otlp_receiver import OtlpReceiver

_db_counter = itertools.count(1)

# Property tests explore the same examples on every run by default, so CI is
# reproducible; HYPOTHESIS_PROFILE=explore searches new ones on each run.
settings.register_profile("redline", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "redline"))


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL in a fresh directory, destroyed afterwards.

    Not under pytest's tmp_path: the server runs as an unprivileged user, and
    every pytest session resets its base directory to 0700.
    """
    base = Path(tempfile.mkdtemp(prefix="redline-pg-"))
    server = EmbeddedPostgres(
        base / "data", port=free_port(), settings={"fsync": "off", "full_page_writes": "off"}
    )
    try:
        server.ensure_running()
        yield server
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL for the whole session; data is throw-away, so no fsync."""
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def new_database(pg: EmbeddedPostgres) -> Callable[[str], str]:
    """Create an empty database with a unique name; returns its DSN."""

    def make(prefix: str) -> str:
        name = f"{prefix}_{next(_db_counter)}"
        asyncio.run(ensure_database(pg.dsn(), name))
        return pg.dsn(name)

    return make


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def inventory(
    new_database: Callable[[str], str], otlp: OtlpReceiver, logs_dir: Path
) -> Iterator[ServiceProcess]:
    """The inventory service on its own fresh database, exporting to the receiver."""
    svc = ServiceProcess(
        "inventory",
        env={
            "DATABASE_URL": new_database("inventory"),
            "REDLINE_ADMIN_TOKEN": "test-admin-token",
            **otel_env(otlp.endpoint),
        },
        log_path=logs_dir / f"inventory-{free_port()}.log",
    )
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def platform_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """The platform's NATS (tests/events stop and start it)."""
    server = NatsServer.in_folder(tmp_path_factory.mktemp("platform-nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mail_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    """Where the platform's notifications service delivers its mail."""
    sink = MailSink("127.0.0.1", free_port(), tmp_path_factory.mktemp("mail")).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def platform(
    new_database: Callable[[str], str],
    otlp: OtlpReceiver,
    logs_dir: Path,
    platform_nats: NatsServer,
    mail_sink: MailSink,
) -> Iterator[Platform]:
    """All six services on fresh databases, NATS and a mail sink, shared by the modules that use it.

    Tests leave it as they found it (faults cleared, processes running), and
    check invariants that hold whatever other tests did (stock is conserved,
    money charged equals confirmed orders) rather than absolute counts.
    """
    events = {"REDLINE_NATS_SERVERS": platform_nats.url, **EVENTS_ENV}
    p = Platform.build(
        databases=new_database,
        logs=logs_dir / f"platform-{free_port()}",
        otlp_endpoint=otlp.endpoint,
        extra_env={
            "accounts": events,
            "notifications": {**events, "REDLINE_SMTP_PORT": str(mail_sink.port)},
            "payments": PREDICTABLE_PAYMENTS,
            "orders": {
                **events,
                "REDLINE_SAGA_LEASE_SECONDS": "2",
                "REDLINE_SAGA_RECOVERY_INTERVAL_SECONDS": "0.5",
            },
            "gateway": {
                "REDLINE_RATE_LIMIT_USER_PER_SECOND": "10",
                "REDLINE_RATE_LIMIT_USER_BURST": "30",
            },
        },
    ).start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def webhook() -> Iterator[AlertSink]:
    """Where the stack's Alertmanager sends its notifications, for tests to read."""
    sink = AlertSink("127.0.0.1", free_port(), lambda _: None).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def locust_port() -> int:
    """The port a test's Locust run exports metrics on; the stack's Prometheus scrapes it."""
    return free_port()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    otlp: OtlpReceiver,
    webhook: AlertSink,
    locust_port: int,
) -> Iterator[Stack]:
    """`redline up` with compressed alert rules, shared by the modules that need a stack.

    Two instances of inventory: every test on this stack holds with a
    replicated service, and the zero-error experiments
    (tests/test_replica_experiments.py) kill and restart them.
    """
    s = Stack.build(
        tmp_path_factory.mktemp("stack"),
        otlp_endpoint=otlp.endpoint,
        replicas={"inventory": 2},
        extra=[
            "--alert-webhook", webhook.url,
            "--scrape", f"locust=127.0.0.1:{locust_port}",
            # Declines only where a test asks for one (a declining payment method).
            *NO_RANDOM_DECLINES,
        ],
    ).start()  # fmt: skip
    yield s
    s.stop()


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; `make test` installs it (Debian package "
            f"{'prometheus' if name == 'promtool' else name})"
        )
    return path
