"""NATS for the event tests that need their own (the platform's is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.nats_server import NatsServer


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer.in_folder(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()
