"""Fixtures: a manual clock and a recording hook, fresh for each test."""

from __future__ import annotations

import pytest

from services.chassis.resilience import ManualClock
from tests.resilience.support import RecordingHooks


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()
